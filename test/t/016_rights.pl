# 016_rights: rights are checked before any work (DESIGN 1.3).
#
# (a) A role without rights cannot replace a graph, even inside a savepoint
#     that it rolls back: 42501, and no session's predictions change.
# (b) The rights check comes before the queries run: a features query that
#     would divide by zero still gives 42501.
# (c) Only the owner (a member of the owning role, a superuser) replaces,
#     refreshes or drops; table privileges are not enough, and the catalog
#     rows cannot be changed by hand either.  A replacement keeps the owner.
# (d) A graph's queries are re-run with its creator's search_path: after a
#     restart, an engine restart and a refresh by a superuser whose own
#     search_path differs, the graph reads the same tables.
# (e) gnn_graphs and gnn_models are readable by a role without any rights.
# (f) ... and with its creator's role: queries that read rows only while
#     current_user is the creator keep their rows after a refresh by a
#     superuser and after a restart.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use QuiverTest;
use Test::More;

my $seed = test_seed();
my $node = quiver_node('rights', conf => "quiver.catalog_poll_interval = 200\n");
my $tmp = PostgreSQL::Test::Utils::tempdir();

my $d = "$tmp/d";
gen_case($d, seed => $seed, nodes => 300, edges => 1500, layers => 2, dim => 8,
	hidden => 12, classes => 3);
load_case($node, 'd', $d);

# Weights readable by every role (pg_read_binary_file needs more rights than
# the roles below have).
$node->safe_psql(
	'postgres', qq{
CREATE TABLE w (arch text PRIMARY KEY, b bytea NOT NULL);
INSERT INTO w VALUES ('sage', pg_read_binary_file('$d/sage.safetensors')),
                     ('gcn', pg_read_binary_file('$d/gcn.safetensors'));
GRANT SELECT ON w TO PUBLIC;
});
sub weights { return "(SELECT b FROM public.w WHERE arch = '$_[0]')" }

# Roles: nobody has no rights at all; alice, bob and carol may write the
# catalog tables and read the source tables; carol is a member of alice.
$node->safe_psql(
	'postgres', q{
CREATE ROLE nobody LOGIN;
CREATE ROLE alice LOGIN;
CREATE ROLE bob LOGIN;
CREATE ROLE carol LOGIN;
GRANT SELECT, INSERT, UPDATE, DELETE ON quiver_graph, quiver_model TO alice, bob, carol;
GRANT SELECT ON d_node, d_edge TO alice, bob, carol;
GRANT alice TO carol;
});

my @ids = split /\n/, $node->safe_psql('postgres', 'SELECT id FROM d_node ORDER BY id');
my $id_list = join(',', @ids);
my $first = $ids[0];

# Every prediction of a model, by ids (no table rights needed).
sub predict_sql
{
	my ($model) = @_;
	return "SELECT id, gnn_predict('$model', id) FROM unnest(ARRAY[$id_list]::bigint[]) id ORDER BY id";
}

# psql as a role, verbose errors: (rc, stdout, stderr).
sub psql_as
{
	my ($role, $sql) = @_;
	return $node->psql('postgres', "\\set VERBOSITY verbose\n$sql",
		connstr => $node->connstr('postgres') . " user=$role");
}

# The SQLSTATE of the first error in a verbose stderr, or 'none'.
sub sqlstate
{
	my ($err) = @_;
	return $err =~ /ERROR:\s+([0-9A-Z]{5}):/ ? $1 : 'none';
}

# Output of a query as superuser, or "ERROR: ..." when it fails.
sub try_sql
{
	my ($sql) = @_;
	my ($rc, $out, $err) = $node->psql('postgres', $sql);
	return $rc ? "ERROR: $err" : $out;
}

# What the catalog holds and what is resident, version by version.
my $resident_sql = q{
SELECT 'graph', name, owner, version, resident_version, loaded_at, nodes FROM gnn_graphs
UNION ALL
SELECT 'model', name, owner, version, resident_version, loaded_at, out_dim FROM gnn_models
ORDER BY 1, 2};

# ---- (a) the issue's attack, by a role without rights ----
create_graph($node, 'g1', 'd');
create_model($node, 'm1', 'g1', 'graphsage', "$d/sage.safetensors");
my $before = $node->safe_psql('postgres', predict_sql('m1'));
compare_ok("$d/ref_sage.out", $before, 'm1 serves the reference');
my $before_resident = $node->safe_psql('postgres', $resident_sql);

# sessions open before the attack: a superuser's and the attacker's own
my $other = $node->background_psql('postgres');
is($other->query_safe(predict_sql('m1')), $before, 'a session opened before: predictions');
my $att = $node->background_psql('postgres', on_error_stop => 0,
	extra_params => [ '-U', 'nobody', '-v', 'VERBOSITY=verbose' ]);
is($att->query_safe('SELECT current_user'), 'nobody', 'the attacker is role nobody');
is($att->query_safe(predict_sql('m1')), $before, 'a role without rights may predict');

$att->query_safe('BEGIN');
$att->query_safe('SAVEPOINT a');
$att->query(q{SELECT * FROM gnn_create_graph('g1', 'SELECT 1::bigint, 1::bigint', 'SELECT 1::bigint, ARRAY[9,9]::real[]')});
is(sqlstate($att->{stderr}), '42501', '(a) gnn_create_graph over g1 by a role without rights: 42501')
  or diag($att->{stderr});
$att->{stderr} = '';
$att->query_safe('ROLLBACK TO SAVEPOINT a');
is($att->query_safe(predict_sql('m1')), $before,
	'(a) inside the attacker\'s transaction, after ROLLBACK TO SAVEPOINT: predictions unchanged');
$att->query_safe('COMMIT');
is($att->query_safe(predict_sql('m1')), $before, '(a) the attacker\'s session: predictions unchanged');
is($other->query_safe(predict_sql('m1')), $before, '(a) the other open session: predictions unchanged');
is($node->safe_psql('postgres', predict_sql('m1')), $before, '(a) a new session: predictions unchanged');
is($node->safe_psql('postgres', $resident_sql), $before_resident,
	'(a) gnn_graphs/gnn_models: no version changed, nothing reloaded');
is($node->safe_psql('postgres', "SELECT nodes, feature_dim FROM gnn_graphs WHERE name = 'g1'"),
	'300|8', '(a) the resident g1 is the committed one');

# every other write function, by the same role
for my $c (
	[ 'gnn_create_graph (new)', q{SELECT * FROM gnn_create_graph('g_new', 'SELECT 1::bigint, 1::bigint', 'SELECT 1::bigint, ARRAY[9,9]::real[]')} ],
	[ 'gnn_create_model (replace)', "SELECT gnn_create_model('m1', 'g1', 'gcn', " . weights('gcn') . ')' ],
	[ 'gnn_create_model (new)', "SELECT gnn_create_model('m_new', 'g1', 'gcn', " . weights('gcn') . ')' ],
	[ 'gnn_refresh_graph', q{SELECT * FROM gnn_refresh_graph('g1')} ],
	[ 'gnn_drop_model', q{SELECT gnn_drop_model('m1')} ],
	[ 'gnn_drop_graph', q{SELECT gnn_drop_graph('g1')} ],
	[ 'SELECT on quiver_graph', q{SELECT * FROM quiver_graph} ],
	[ 'UPDATE of quiver_graph', q{UPDATE quiver_graph SET undirected = true WHERE name = 'g1'} ],
  )
{
	my ($what, $sql) = @$c;
	my ($rc, $out, $err) = psql_as('nobody', $sql);
	is(sqlstate($err), '42501', "(a) $what by a role without rights: 42501") or diag($err);
}
is($node->safe_psql('postgres', predict_sql('m1')), $before, '(a) predictions unchanged after all of them');
is($other->query_safe(predict_sql('m1')), $before, '(a) ... in the other open session too');
$att->quit;
$other->quit;
is($node->safe_psql('postgres', $resident_sql), $before_resident, '(a) versions unchanged after all of them');

# ---- (b) rights before work ----
my $div0 = q{SELECT 1::bigint, ARRAY[1/0]::real[]};
my $div0_lit = $div0 =~ s/'/''/gr;
for my $name ('g1', 'g_new')
{
	my ($rc, $out, $err) = psql_as('nobody',
		"SELECT * FROM gnn_create_graph('$name', 'SELECT 1::bigint, 1::bigint', '$div0_lit')");
	is(sqlstate($err), '42501', "(b) a features query dividing by zero, graph $name: still 42501")
	  or diag($err);
}
{
	# the query does fail when it runs (a superuser, a new name)
	my ($rc, $out, $err) = $node->psql('postgres',
		"\\set VERBOSITY verbose\nSELECT * FROM gnn_create_graph('g_div0', 'SELECT 1::bigint, 1::bigint', '$div0_lit')");
	is(sqlstate($err), '22012', '(b) ... which divides by zero when someone allowed runs it') or diag($err);
}

# ---- (c) owners ----
my ($rc, $out, $err) = psql_as('alice',
	q{SELECT nodes FROM gnn_create_graph('ga', 'SELECT src, dst FROM d_edge', 'SELECT id, feat FROM d_node')});
is($out, '300', '(c) alice, with the table privileges, creates a graph') or diag($err);
($rc, $out, $err) = psql_as('alice', "SELECT gnn_create_model('ma', 'ga', 'graphsage', " . weights('sage') . ')');
is($rc, 0, '(c) ... and a model') or diag($err);
is($node->safe_psql('postgres',
	q{SELECT (SELECT owner FROM gnn_graphs WHERE name = 'ga') || ' ' || (SELECT owner FROM gnn_models WHERE name = 'ma')}),
	'alice alice', '(c) alice owns them');
my $ma_sage = $node->safe_psql('postgres', predict_sql('ma'));
compare_ok("$d/ref_sage.out", $ma_sage, '(c) alice\'s model serves');
my $before_c = $node->safe_psql('postgres', $resident_sql);

for my $c (
	[ 'replace her graph', 'graph "ga"', q{SELECT * FROM gnn_create_graph('ga', 'SELECT src, dst FROM d_edge', 'SELECT id, feat FROM d_node')} ],
	[ 'replace her graph (features query dividing by zero)', 'graph "ga"', "SELECT * FROM gnn_create_graph('ga', 'SELECT src, dst FROM d_edge', '$div0_lit')" ],
	[ 'refresh her graph', 'graph "ga"', q{SELECT * FROM gnn_refresh_graph('ga')} ],
	[ 'drop her graph (which has a model)', 'graph "ga"', q{SELECT gnn_drop_graph('ga')} ],
	[ 'replace her model', 'model "ma"', "SELECT gnn_create_model('ma', 'ga', 'gcn', " . weights('gcn') . ')' ],
	[ 'drop her model', 'model "ma"', q{SELECT gnn_drop_model('ma')} ],
  )
{
	my ($what, $object, $sql) = @$c;
	($rc, $out, $err) = psql_as('bob', $sql);
	is(sqlstate($err), '42501', "(c) bob may not $what: 42501") or diag($err);
	like($err, qr/must be owner of \Q$object\E/, "(c) ... \"must be owner of $object\"");
}
for my $c (
	[ 'UPDATE quiver_graph', q{UPDATE quiver_graph SET undirected = true WHERE name = 'ga'} ],
	[ 'UPDATE quiver_graph (owner)', q{UPDATE quiver_graph SET owner = 'bob' WHERE name = 'ga'} ],
	[ 'DELETE FROM quiver_graph', q{DELETE FROM quiver_graph WHERE name = 'ga'} ],
	[ 'UPDATE quiver_model', q{UPDATE quiver_model SET weights = (SELECT b FROM w WHERE arch = 'gcn') WHERE name = 'ma'} ],
	[ 'DELETE FROM quiver_model', q{DELETE FROM quiver_model WHERE name = 'ma'} ],
	[ 'INSERT a graph owned by alice', q{INSERT INTO quiver_graph (name, edges_query, features_query, owner) VALUES ('gx', 'SELECT 1, 1', 'SELECT 1, ARRAY[1]::real[]', 'alice')} ],
  )
{
	my ($what, $sql) = @$c;
	($rc, $out, $err) = psql_as('bob', $sql);
	is(sqlstate($err), '42501', "(c) bob's direct $what of alice's rows: 42501") or diag($err);
}
is($node->safe_psql('postgres', $resident_sql), $before_c, '(c) none of bob\'s attempts changed a version');
is($node->safe_psql('postgres', predict_sql('ma')), $ma_sage, '(c) alice\'s model still serves the same');

# carol, a member of alice, may replace
($rc, $out, $err) = psql_as('carol',
	q{SELECT nodes FROM gnn_create_graph('ga', 'SELECT src, dst FROM d_edge', 'SELECT id, feat FROM d_node')});
is($out, '300', '(c) carol, a member of alice, may replace alice\'s graph') or diag($err);
($rc, $out, $err) = psql_as('carol', "SELECT gnn_create_model('ma', 'ga', 'gcn', " . weights('gcn') . ')');
is($rc, 0, '(c) ... and her model') or diag($err);
my $ma_gcn = $node->safe_psql('postgres', predict_sql('ma'));
compare_ok("$d/ref_gcn.out", $ma_gcn, '(c) carol\'s replacement serves');
is($node->safe_psql('postgres',
	q{SELECT (SELECT owner FROM gnn_graphs WHERE name = 'ga') || ' ' || (SELECT owner FROM gnn_models WHERE name = 'ma')}),
	'alice alice', '(c) a replacement by a member keeps the owner');
($rc, $out, $err) = psql_as('carol', q{SELECT nodes FROM gnn_refresh_graph('ga')});
is($out, '300', '(c) carol may refresh alice\'s graph') or diag($err);

# a superuser may
$node->safe_psql('postgres', "SELECT gnn_create_model('ma', 'ga', 'graphsage', " . weights('sage') . ')');
is($node->safe_psql('postgres', predict_sql('ma')), $ma_sage, '(c) a superuser may replace alice\'s model');
is($node->safe_psql('postgres', q{SELECT nodes FROM gnn_refresh_graph('ga')}), '300',
	'(c) a superuser may refresh alice\'s graph');
is($node->safe_psql('postgres',
	q{SELECT (SELECT owner FROM gnn_graphs WHERE name = 'ga') || ' ' || (SELECT owner FROM gnn_models WHERE name = 'ma')}),
	'alice alice', '(c) a replacement by a superuser keeps the owner');
is($node->safe_psql('postgres',
	q{SELECT string_agg(state || ' ' || (resident_version = version), ',') FROM gnn_models WHERE name = 'ma'}),
	'ready true', '(c) the replaced model is resident at its catalog version');

# and alice herself may drop
($rc, $out, $err) = psql_as('alice', q{SELECT gnn_drop_model('ma'); SELECT gnn_drop_graph('ga')});
is($rc, 0, '(c) alice drops her model and graph') or diag($err);
like(try_sql("SELECT gnn_predict('ma', $first)"), qr/does not exist/, '(c) the dropped model is gone');

# ---- (d) the creator's search_path ----
my $a = "$tmp/a";
my $b = "$tmp/b";
gen_case($a, seed => $seed + 1, nodes => 250, edges => 1000, layers => 2, dim => 6,
	hidden => 10, classes => 4);
gen_case($b, seed => $seed + 2, nodes => 180, edges => 700, layers => 2, dim => 6,
	hidden => 10, classes => 4);
$node->safe_psql(
	'postgres', qq{
CREATE SCHEMA s1;
CREATE TABLE s1.nodes (id bigint PRIMARY KEY, feat real[] NOT NULL);
CREATE TABLE s1.edges (src bigint NOT NULL, dst bigint NOT NULL);
COPY s1.nodes FROM '$a/features.csv' (FORMAT csv);
COPY s1.edges FROM '$a/edges.csv' (FORMAT csv);
CREATE TABLE public.nodes (id bigint PRIMARY KEY, feat real[] NOT NULL);
CREATE TABLE public.edges (src bigint NOT NULL, dst bigint NOT NULL);
COPY public.nodes FROM '$b/features.csv' (FORMAT csv);
COPY public.edges FROM '$b/edges.csv' (FORMAT csv);
INSERT INTO w VALUES ('a_sage', pg_read_binary_file('$a/sage.safetensors'));
CREATE ROLE sam LOGIN;
ALTER ROLE sam SET search_path = s1;
GRANT USAGE ON SCHEMA s1 TO sam;
GRANT SELECT ON s1.nodes, s1.edges, public.nodes, public.edges TO sam;
GRANT SELECT, INSERT, UPDATE, DELETE ON quiver_graph, quiver_model TO sam;
});
($rc, $out, $err) = psql_as('sam',
	q{SELECT current_setting('search_path'), (SELECT nodes FROM public.gnn_create_graph('gs', 'SELECT src, dst FROM edges', 'SELECT id, feat FROM nodes'))});
is($out, 's1|250', '(d) sam (search_path s1) creates a graph from unqualified names: s1\'s tables')
  or diag($err);
($rc, $out, $err) = psql_as('sam', "SELECT public.gnn_create_model('ms', 'gs', 'graphsage', (SELECT b FROM public.w WHERE arch = 'a_sage'))");
is($rc, 0, '(d) ... and a model') or diag($err);
is($node->safe_psql('postgres', q{SELECT search_path, owner FROM quiver_graph WHERE name = 'gs'}),
	's1|sam', '(d) the catalog keeps the creator\'s search_path and the owner');
my @a_ids = split /\n/, $node->safe_psql('postgres', 'SELECT id FROM s1.nodes ORDER BY id');
my $ms_sql = "SELECT id, gnn_predict('ms', id) FROM unnest(ARRAY[" . join(',', @a_ids)
  . "]::bigint[]) id ORDER BY id";
my $ms_before = $node->safe_psql('postgres', $ms_sql);
compare_ok("$a/ref_sage.out", $ms_before, '(d) the model serves s1\'s graph (reference A)');

$node->restart;
ok(defined wait_for_engine($node, 60), '(d) an engine runs after the restart');
ok(defined wait_until(sub { try_sql($ms_sql) eq $ms_before }, 60),
	'(d) after a restart the rebuilt graph gives identical predictions')
  or diag(substr(try_sql($ms_sql), 0, 500));
is($node->safe_psql('postgres', q{SELECT nodes FROM gnn_graphs WHERE name = 'gs'}), '250',
	'(d) ... it was rebuilt from s1\'s tables');

my $old_pid = engine_pid($node);
kill 'TERM', $old_pid;
ok(defined wait_for_engine($node, 60, $old_pid), '(d) the engine comes back after SIGTERM');
ok(defined wait_until(sub { try_sql($ms_sql) eq $ms_before }, 60),
	'(d) after the engine restart the predictions are identical')
  or diag(substr(try_sql($ms_sql), 0, 500));
is($node->safe_psql('postgres', q{SELECT nodes FROM gnn_graphs WHERE name = 'gs'}), '250',
	'(d) ... from s1\'s tables');

is($node->safe_psql('postgres',
	q{SELECT current_setting('search_path'), (SELECT nodes FROM gnn_refresh_graph('gs'))}),
	'"$user", public|250',
	'(d) gnn_refresh_graph by a superuser whose search_path is public still reads s1');
is($node->safe_psql('postgres', $ms_sql), $ms_before, '(d) after the refresh the predictions are identical');
is($node->safe_psql('postgres', q{SELECT search_path, owner FROM quiver_graph WHERE name = 'gs'}),
	's1|sam', '(d) a refresh keeps the stored search_path and the owner');
is($node->safe_psql('postgres',
	q{SELECT string_agg(state || ' ' || (resident_version = version), ',') FROM gnn_graphs WHERE name = 'gs'}),
	'ready true', '(d) the refreshed graph is resident at its catalog version');

# ---- (e) the views, for a role without rights ----
($rc, $out, $err) = psql_as('nobody', q{SELECT name, state, resident_version = version FROM gnn_graphs ORDER BY name});
is($out, "g1|ready|t\ngs|ready|t", '(e) gnn_graphs is readable by a role without rights') or diag($err);
($rc, $out, $err) = psql_as('nobody', q{SELECT name, graph, state, resident_version = version FROM gnn_models ORDER BY name});
is($out, "m1|g1|ready|t\nms|gs|ready|t", '(e) gnn_models is readable by a role without rights') or diag($err);
($rc, $out, $err) = psql_as('nobody', q{SELECT count(*) FROM gnn_resident()});
is($out, '4', '(e) ... and gnn_resident()') or diag($err);

# ---- (f) the creator's role: queries that depend on current_user ----
# alice's queries read rows only while current_user is alice: a refresh by
# a superuser and the rebuild after a restart must run them as alice.
my $as_alice = q{WHERE current_user = 'alice'};
($rc, $out, $err) = psql_as('alice',
	"SELECT nodes FROM gnn_create_graph('gu', "
	  . sql_literal("SELECT src, dst FROM d_edge $as_alice") . ', '
	  . sql_literal("SELECT id, feat FROM d_node $as_alice") . ')');
is($out, '300', '(f) alice creates a graph whose queries read rows only as alice') or diag($err);
($rc, $out, $err) = psql_as('alice', "SELECT gnn_create_model('mu', 'gu', 'graphsage', " . weights('sage') . ')');
is($rc, 0, '(f) ... and a model') or diag($err);
is($node->safe_psql('postgres', "SELECT current_user = 'alice', count(*) FROM d_node $as_alice"),
	'f|0', '(f) the same features query run by the superuser reads no row');
my $mu_before = $node->safe_psql('postgres', predict_sql('mu'));
compare_ok("$d/ref_sage.out", $mu_before, '(f) alice\'s model serves the reference');

is($node->safe_psql('postgres', q{SELECT current_user = 'alice', (SELECT nodes FROM gnn_refresh_graph('gu'))}),
	'f|300', '(f) gnn_refresh_graph by a superuser runs the queries as alice: 300 nodes');
is($node->safe_psql('postgres',
	q{SELECT nodes, state, resident_version = version FROM gnn_graphs WHERE name = 'gu'}),
	'300|ready|t', '(f) the refreshed graph is resident with its 300 nodes');
is($node->safe_psql('postgres', predict_sql('mu')), $mu_before, '(f) after the refresh the predictions are identical');
is($node->safe_psql('postgres', q{SELECT owner FROM gnn_graphs WHERE name = 'gu'}), 'alice',
	'(f) the refresh keeps the owner');

$node->restart;
ok(defined wait_for_engine($node, 60), '(f) an engine runs after the restart');
ok(defined wait_until(sub { try_sql(predict_sql('mu')) eq $mu_before }, 60),
	'(f) after a restart the rebuilt graph gives identical predictions')
  or diag(substr(try_sql(predict_sql('mu')), 0, 500));
is($node->safe_psql('postgres',
	q{SELECT nodes, state, resident_version = version FROM gnn_graphs WHERE name = 'gu'}),
	'300|ready|t', '(f) ... it was rebuilt as alice, with its 300 nodes');

$node->stop;
done_testing();
