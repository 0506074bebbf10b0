# 015_standby: a hot standby's engine serves the replicated catalog and
# follows the primary (DESIGN 1.3, 1.8).
#
# A primary and a streaming standby, both preloading quiver.  Every change
# made on the primary (create, a model with variants profiled on the
# standby, model and graph replacement, refresh, model
# and graph drops) is asserted on the standby after wait_for_catchup plus a
# bounded wait for its engine: the standby gives the same predictions as the
# primary and as the reference, and its gnn_graphs and gnn_resident() show
# what the primary's do.
# The write functions fail on the standby at once with 25006 and change
# nothing; a restarted standby rebuilds the same state.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use QuiverTest;
use Test::More;
use Time::HiRes qw(time);

my $seed = test_seed();
my $tmp = PostgreSQL::Test::Utils::tempdir();

# Seconds the standby's engine gets to follow a replayed change.
my $FOLLOW = 20;

# The conf lines of quiver_node, and a short catalog poll.
my $conf = q{
shared_preload_libraries = 'quiver'
quiver.engine_threads = 2
quiver.engine_start_timeout = 60000
restart_after_crash = on
log_min_messages = info
quiver.catalog_poll_interval = 200
};

my $primary = PostgreSQL::Test::Cluster->new('primary');
$primary->init(allows_streaming => 1);
$primary->append_conf('postgresql.conf', $conf);
$primary->start;
$primary->safe_psql('postgres', 'CREATE EXTENSION quiver');

my $d = "$tmp/d";
gen_case($d, seed => $seed, nodes => 300, edges => 1500, layers => 2, dim => 8,
	hidden => 12, classes => 3);
load_case($primary, 'd', $d);
my $first = $primary->safe_psql('postgres', 'SELECT min(id) FROM d_node');
my $last = $primary->safe_psql('postgres', 'SELECT max(id) FROM d_node');

$primary->backup('b');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($primary, 'b', has_streaming => 1);
# the backup's postgresql.conf already has the lines; say them again so the
# standby's own file preloads quiver whatever the backup held
$standby->append_conf('postgresql.conf', $conf);
$standby->start;
ok(defined wait_for_engine($standby, 60), 'the standby runs an engine');
is($standby->safe_psql('postgres', 'SELECT pg_is_in_recovery()'), 't', 'it is a hot standby');

# Output of $sql, or "ERROR: ..." when it fails.
sub try_sql
{
	my ($node, $sql) = @_;
	my ($rc, $out, $err) = $node->psql('postgres', $sql);
	return $rc ? "ERROR: $err" : $out;
}

# predict_all as text, or "ERROR: ..." when it fails.
sub try_predict_all
{
	my ($node, $model) = @_;
	return try_sql($node, "SELECT id, gnn_predict('$model', id) FROM d_node ORDER BY id");
}

# Replay the primary's WAL on the standby, then wait until $check holds
# there; returns the seconds the engine took, or undef.
sub follow
{
	my ($check) = @_;
	$primary->wait_for_catchup($standby);
	my $t = wait_until($check, $FOLLOW);
	note(sprintf('the standby followed in %.2f s after replay', $t)) if defined $t;
	return $t;
}

# ---- a graph and a model created on the primary ----
create_graph($primary, 'g', 'd');
create_model($primary, 'm', 'g', 'graphsage', "$d/sage.safetensors");
my $p_sage = predict_all($primary, 'm', 'd');
compare_ok("$d/ref_sage.out", $p_sage, 'primary: the model equals the reference');
ok(defined follow(sub { try_predict_all($standby, 'm') eq $p_sage }),
	'standby: a graph and model created on the primary serve within seconds')
  or diag(substr(try_predict_all($standby, 'm'), 0, 500));
compare_ok("$d/ref_sage.out", predict_all($standby, 'm', 'd'),
	'standby: its predictions equal the reference');
is($standby->safe_psql('postgres', "SELECT nodes FROM gnn_graphs WHERE name = 'g'"),
	'300', 'standby: gnn_graphs shows the graph with its nodes');

# ---- a model with variants (DESIGN 1.7): profiled where it is installed ----
create_model($primary, 'mv', 'g', 'graphsage', "$d/sage.safetensors",
	'{"fanout": [-1, -1], "seed": 3, "variants": [{"fanout": [1, 1]}]}');
my $vq = "SELECT variant, config::text, agreement, sampled FROM gnn_variants('mv') ORDER BY variant";
my $p_variants = $primary->safe_psql('postgres', $vq);
ok(defined follow(sub {
			my ($rc, $out) = $standby->psql('postgres', $vq);
			$rc == 0 && $out eq $p_variants
		}),
	'standby: a model with variants is profiled there as on the primary (configs, agreement, nodes sampled)')
  or diag("primary:\n$p_variants\nstandby:\n" . $standby->safe_psql('postgres', $vq));
# under an impossible target the standby chooses a variant and counts the
# miss (which one depends on its own cost lines); with a floor of 1 it
# serves variant 0, as the primary does
my $tight = "SET quiver.latency_target = '0.001ms'; %s SELECT node_id, prediction FROM gnn_predict('mv', "
  . "(SELECT array_agg(id ORDER BY id) FROM d_node)) ORDER BY node_id";
$standby->safe_psql('postgres', sprintf($tight, ''));
is($standby->safe_psql('postgres', "SELECT sum(batches) > 0 AND sum(misses) = sum(batches) FROM gnn_variants('mv')"),
	't', 'standby: a batch under an impossible target is served by a variant and counted missed');
my ($same, $what) = compare_predictions(
	$standby->safe_psql('postgres', sprintf($tight, 'SET quiver.min_agreement = 1;')),
	$primary->safe_psql('postgres', sprintf($tight, 'SET quiver.min_agreement = 1;')));
ok($same, 'standby: with a floor of 1 it serves what the primary serves') or diag($what);
$primary->safe_psql('postgres', "SELECT gnn_drop_model('mv')");
ok(defined follow(sub {
			my ($rc) = $standby->psql('postgres', "SELECT 1 FROM gnn_variants('mv')");
			$rc != 0
		}),
	'standby: the dropped model\'s variants are gone');
# the engines cut batches without a target for a second after a targeted
# request; the exact comparisons below want the usual batches again
sleep 2;

# ---- a model replaced on the primary (gcn weights) ----
$primary->safe_psql('postgres',
	"SELECT gnn_create_model('m', 'g', 'gcn', pg_read_binary_file('$d/gcn.safetensors'))");
my $p_gcn = predict_all($primary, 'm', 'd');
isnt($p_gcn, $p_sage, 'primary: the replacement gives other answers');
compare_ok("$d/ref_gcn.out", $p_gcn, 'primary: the replacement equals the gcn reference');
ok(defined follow(sub { try_predict_all($standby, 'm') eq $p_gcn }),
	'standby: the replaced model serves the new answers')
  or diag(substr(try_predict_all($standby, 'm'), 0, 500));
compare_ok("$d/ref_gcn.out", predict_all($standby, 'm', 'd'),
	'standby: the replacement equals the gcn reference');

# ---- gnn_refresh_graph after a new node row ----
my $new_id = $last + 1000;
$primary->safe_psql('postgres', "INSERT INTO d_node SELECT $new_id, feat FROM d_node WHERE id = $first");
$primary->wait_for_catchup($standby);
like(try_sql($standby, "SELECT gnn_predict('m', $new_id)"), qr/does not exist in graph/,
	'standby: a new row is not in the graph before the refresh');
is($primary->safe_psql('postgres', "SELECT nodes FROM gnn_refresh_graph('g')"), '301',
	'primary: gnn_refresh_graph reads the new row');
my $p_new = $primary->safe_psql('postgres', "SELECT gnn_predict('m', $new_id)");
like($p_new, qr/^\{/, 'primary: the new node is predictable');
ok(defined follow(sub { try_sql($standby, "SELECT gnn_predict('m', $new_id)") eq $p_new }),
	'standby: after the refresh the new node is predictable, with the primary\'s answer')
  or diag(try_sql($standby, "SELECT gnn_predict('m', $new_id)"));
is($standby->safe_psql('postgres', "SELECT nodes FROM gnn_graphs WHERE name = 'g'"),
	'301', 'standby: gnn_graphs shows the refreshed graph');
is(try_predict_all($standby, 'm'), predict_all($primary, 'm', 'd'),
	'standby: every prediction equals the primary\'s after the refresh');

# ---- a model dropped, another created ----
$primary->safe_psql('postgres', "SELECT gnn_drop_model('m')");
create_model($primary, 'm2', 'g', 'graphsage', "$d/sage.safetensors");
my $p_m2 = predict_all($primary, 'm2', 'd', where => "id <> $new_id");
ok( defined follow(
		sub {
			try_sql($standby, "SELECT gnn_predict('m', $first)") =~ /does not exist/
			  && try_sql($standby, "SELECT id, gnn_predict('m2', id) FROM d_node WHERE id <> $new_id ORDER BY id") eq $p_m2;
		}),
	'standby: the dropped model stops serving and the new one serves')
  or diag(try_sql($standby, "SELECT gnn_predict('m', $first)") . "\n"
	  . substr(try_sql($standby, "SELECT gnn_predict('m2', $first)"), 0, 300));
like(try_sql($standby, "SELECT gnn_predict('m', $first)"), qr/model "m" does not exist|does not exist/,
	'standby: the dropped model does not exist');
compare_ok("$d/ref_sage.out",
	try_sql($standby, "SELECT id, gnn_predict('m2', id) FROM d_node WHERE id <> $new_id ORDER BY id"),
	'standby: the new model equals the reference');
is($standby->safe_psql('postgres', "SELECT count(*) FROM gnn_models WHERE name = 'm'"),
	'0', 'standby: gnn_models no longer lists the dropped model');

# ---- gnn_models / gnn_graphs on the standby ----
my $state_sql = q{
SELECT 'graph', name, state, resident_version = version FROM gnn_graphs
UNION ALL
SELECT 'model', name, state, resident_version = version FROM gnn_models
ORDER BY 1, 2};
is($standby->safe_psql('postgres', $state_sql),
	"graph|g|ready|t\nmodel|m2|ready|t",
	'standby: gnn_graphs/gnn_models say ready, resident_version = version');
is($standby->safe_psql('postgres', $state_sql), $primary->safe_psql('postgres', $state_sql),
	'standby and primary agree on what is resident');
is($standby->safe_psql('postgres', 'SELECT name, version FROM gnn_models ORDER BY 1'),
	$primary->safe_psql('postgres', 'SELECT name, version FROM gnn_models ORDER BY 1'),
	'the standby holds the primary\'s catalog versions');

# ---- write functions on the standby: 25006 at once, nothing changes ----
my $versions_sql = q{
SELECT 'graph', name, version, resident_version, loaded_at FROM gnn_graphs
UNION ALL
SELECT 'model', name, version, resident_version, loaded_at FROM gnn_models
ORDER BY 1, 2};
my $before_versions = $standby->safe_psql('postgres', $versions_sql);
my $before_m2 = try_predict_all($standby, 'm2');
# each query would take 30 s if it ran: a quick error shows nothing was read
my $slow_feats = "SELECT id, feat FROM d_node, pg_sleep(30)";
my @writes = (
	[ 'gnn_create_graph (new)', "SELECT * FROM gnn_create_graph('g_new', 'SELECT src, dst FROM d_edge', '$slow_feats')" ],
	[ 'gnn_create_graph (replace)', "SELECT * FROM gnn_create_graph('g', 'SELECT src, dst FROM d_edge', '$slow_feats')" ],
	[ 'gnn_create_model (new)', "SELECT gnn_create_model('m_new', 'g', 'gcn', pg_read_binary_file('$d/gcn.safetensors'))" ],
	[ 'gnn_create_model (replace)', "SELECT gnn_create_model('m2', 'g', 'gcn', pg_read_binary_file('$d/gcn.safetensors'))" ],
	[ 'gnn_refresh_graph', "SELECT * FROM gnn_refresh_graph('g')" ],
	[ 'gnn_drop_model', "SELECT gnn_drop_model('m2')" ],
	[ 'gnn_drop_graph', "SELECT gnn_drop_graph('g')" ],
	[ 'gnn_drop_model (unknown)', "SELECT gnn_drop_model('nope')" ],
	[ 'gnn_train', "SELECT * FROM gnn_train('m_trained', 'g', 'gcn', 'SELECT id, 0 FROM d_node')" ],
);
for my $w (@writes)
{
	my ($what, $sql) = @$w;
	my $t0 = time();
	my ($rc, $out, $err) = $standby->psql('postgres', "\\set VERBOSITY verbose\n$sql");
	my $took = time() - $t0;
	isnt($rc, 0, "standby: $what fails");
	like($err, qr/ERROR:\s+25006:/, "standby: $what fails with 25006 (read_only_sql_transaction)")
	  or diag($err);
	cmp_ok($took, '<', 5, "standby: $what fails at once")
	  or diag(sprintf('took %.2f s', $took));
}
is($standby->safe_psql('postgres', $versions_sql), $before_versions,
	'standby: the refused calls changed no version and reloaded nothing');
is(try_predict_all($standby, 'm2'), $before_m2, 'standby: predictions are unchanged');
like(try_sql($standby, "SELECT gnn_predict('m_new', $first)"), qr/does not exist/,
	'standby: the refused create left no model');
is($standby->safe_psql('postgres', q{SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(30)%' AND pid <> pg_backend_pid()}),
	'0', 'standby: no refused query is still running');

# ---- a standby restart rebuilds the same state ----
my $before_restart = try_predict_all($standby, 'm2');
my $before_state = $standby->safe_psql('postgres', $state_sql);
$standby->restart;
ok(defined wait_for_engine($standby, 60), 'standby: an engine runs after the restart');
ok(defined wait_until(sub { try_predict_all($standby, 'm2') eq $before_restart }, 60),
	'standby: after a restart the same predictions are served')
  or diag(substr(try_predict_all($standby, 'm2'), 0, 500));
is(try_sql($standby, "SELECT gnn_predict('m2', $new_id)"),
	$primary->safe_psql('postgres', "SELECT gnn_predict('m2', $new_id)"),
	'standby: the refreshed node is there after the restart');
ok(defined wait_until(sub { $standby->safe_psql('postgres', $state_sql) eq $before_state }, 30),
	'standby: gnn_graphs/gnn_models show the same resident versions after the restart')
  or diag($standby->safe_psql('postgres', $state_sql));

# ---- and it still follows the primary after its restart ----
create_model($primary, 'm3', 'g', 'gcn', "$d/gcn.safetensors");
my $p_m3 = predict_all($primary, 'm3', 'd', where => "id <> $new_id");
ok(defined follow(sub { try_sql($standby, "SELECT id, gnn_predict('m3', id) FROM d_node WHERE id <> $new_id ORDER BY id") eq $p_m3 }),
	'standby: a model created after the standby restarted serves there too');
compare_ok("$d/ref_gcn.out", $p_m3, 'standby: ... equal to the gcn reference');

# ---- the graph replaced on the primary: another edges query, fewer edges ----
my $graph_sql = q{SELECT nodes, edges, version, resident_version, state FROM gnn_graphs WHERE name = 'g'};
my $edges_before = $primary->safe_psql('postgres', q{SELECT edges FROM gnn_graphs WHERE name = 'g'});
my $m2_before = predict_all($primary, 'm2', 'd');
my $fewer = 'SELECT src, dst FROM d_edge ORDER BY src, dst LIMIT 1000';
is($primary->safe_psql('postgres',
	"SELECT nodes, edges FROM gnn_create_graph('g', '$fewer', 'SELECT id, feat FROM d_node')"),
	'301|1000', 'primary: graph g replaced by one with another edges query (1000 edges)');
isnt($edges_before, '1000', "primary: ... which changes its edge count ($edges_before before)");
ok(defined wait_until(sub {
	$primary->safe_psql('postgres', q{SELECT state, resident_version = version FROM gnn_graphs WHERE name = 'g'})
	  eq 'ready|t' }, $FOLLOW),
	'primary: the replaced graph is resident at its catalog version');
my $p_graph = $primary->safe_psql('postgres', $graph_sql);
my $p_replaced = predict_all($primary, 'm2', 'd');
isnt($p_replaced, $m2_before, 'primary: m2 answers from the replaced graph');
ok( defined follow(
		sub {
			$standby->safe_psql('postgres', $graph_sql) eq $p_graph
			  && try_predict_all($standby, 'm2') eq $p_replaced;
		}),
	'standby: the replaced graph is followed')
  or diag($standby->safe_psql('postgres', $graph_sql) . "\n"
	  . substr(try_predict_all($standby, 'm2'), 0, 300));
is($standby->safe_psql('postgres', $graph_sql), $p_graph,
	'standby: gnn_graphs shows the primary\'s nodes, edges, version and resident version');
is(try_sql($standby, "SELECT gnn_predict('m2', $first)"),
	$primary->safe_psql('postgres', "SELECT gnn_predict('m2', $first)"),
	'standby: a prediction over the replaced graph equals the primary\'s');

# ---- the graph's models and the graph dropped on the primary ----
is($primary->safe_psql('postgres', q{SELECT string_agg(name, ',' ORDER BY name) FROM gnn_models WHERE graph = 'g'}),
	'm2,m3', 'primary: the models of g are m2 and m3');
$primary->safe_psql('postgres',
	q{SELECT gnn_drop_model('m2'); SELECT gnn_drop_model('m3'); SELECT gnn_drop_graph('g');});
my $gone_sql = q{
SELECT (SELECT count(*) FROM gnn_graphs WHERE name = 'g')
     + (SELECT count(*) FROM gnn_models WHERE name IN ('m2', 'm3'))
     + (SELECT count(*) FROM gnn_resident() WHERE name IN ('g', 'm2', 'm3'))};
is($primary->safe_psql('postgres', $gone_sql), '0',
	'primary: gnn_graphs, gnn_models and gnn_resident() no longer list g, m2, m3');
ok(defined follow(sub { $standby->safe_psql('postgres', $gone_sql) eq '0' }),
	'standby: the dropped graph and models are followed')
  or diag($standby->safe_psql('postgres', 'SELECT kind, name, state FROM gnn_resident()'));
is($standby->safe_psql('postgres', q{SELECT count(*) FROM gnn_graphs WHERE name = 'g'}), '0',
	'standby: gnn_graphs no longer lists the dropped graph');
is($standby->safe_psql('postgres', q{SELECT count(*) FROM gnn_resident() WHERE kind = 'graph' AND name = 'g'}),
	'0', 'standby: gnn_resident() no longer lists it');
is($standby->safe_psql('postgres', 'SELECT count(*) FROM gnn_resident()'), '0',
	'standby: nothing is resident any more, as on the primary')
  or diag($standby->safe_psql('postgres', 'SELECT kind, name, state FROM gnn_resident()'));
is($primary->safe_psql('postgres', 'SELECT count(*) FROM gnn_resident()'), '0',
	'primary: nothing is resident either');
like(try_sql($standby, "SELECT gnn_predict('m2', $first)"), qr/does not exist/,
	'standby: the dropped model does not exist');

$standby->stop;
$primary->stop;
done_testing();
