# 002_restart: graphs and models live in tables; after a restart (fast or
# after a full stop) the engine rebuilds them by re-running the stored
# queries, and the same predictions come back without any user action.
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
my $node = quiver_node('restart');
my $tmp = PostgreSQL::Test::Utils::tempdir();

my $d = "$tmp/d";
my $u = "$tmp/u";
gen_case($d, seed => $seed, nodes => 800 + $seed % 400, edges => 4000, layers => 2);
gen_case($u, seed => $seed + 1, nodes => 500 + $seed % 300, edges => 2000,
	layers => 3, undirected => 1);
load_case($node, 'd', $d);
load_case($node, 'u', $u);
create_graph($node, 'd', 'd');
create_graph($node, 'u', 'u', undirected => 1);
create_model($node, 'd_sage', 'd', 'graphsage', "$d/sage.safetensors", '{"fanout": [-1, -1]}');
create_model($node, 'd_gcn', 'd', 'gcn', "$d/gcn.safetensors");
create_model($node, 'u_sage', 'u', 'graphsage', "$u/sage.safetensors");
create_model($node, 'u_gcn', 'u', 'gcn', "$u/gcn.safetensors");

my $dmax = $node->safe_psql('postgres', 'SELECT max(id) FROM d_node');

# Every model's predictions against its reference.
sub all_models_ok
{
	my ($when) = @_;
	# (d_node may have gained a row, which is not in the reference)
	my $old = "id <= $dmax";
	compare_ok("$d/ref_sage.out", predict_all($node, 'd_sage', 'd', where => $old), "$when: d_sage");
	compare_ok("$d/ref_gcn.out", predict_all($node, 'd_gcn', 'd', where => $old), "$when: d_gcn");
	predictions_ok($node, 'u_sage', 'u', "$u/ref_sage.out", "$when: u_sage");
	predictions_ok($node, 'u_gcn', 'u', "$u/ref_gcn.out", "$when: u_gcn");
}

# Seconds until one prediction of each model succeeds (the calls themselves
# wait for a starting engine, up to quiver.engine_start_timeout).
sub seconds_to_first_answer
{
	my $t0 = time();
	my $ok = wait_until(
		sub {
			my ($rc) = $node->psql('postgres',
				"SELECT gnn_predict('d_sage', (SELECT min(id) FROM d_node)), "
				  . "gnn_predict('u_gcn', (SELECT max(id) FROM u_node))");
			return $rc == 0;
		},
		120);
	return defined $ok ? time() - $t0 : undef;
}

all_models_ok('before restart');
my $pid0 = engine_pid($node);
ok($pid0 ne '', "the engine runs (pid $pid0)");

$node->restart;
my $secs = seconds_to_first_answer();
ok(defined $secs && $secs < 20, 'answers within seconds of a restart')
  or diag('took ' . ($secs // 'more than 120') . ' s');
note(sprintf('first answers %.2f s after pg_ctl restart returned', $secs // -1));
all_models_ok('after restart');
isnt(engine_pid($node), $pid0, 'a new engine process');

# The rebuild reads the tables as they are now: rows added before the
# restart are in the rebuilt graph (the stored definition is the query).
$node->safe_psql('postgres',
	q{INSERT INTO d_node SELECT id + 1, feat FROM d_node WHERE id = (SELECT max(id) FROM d_node)});
$node->stop('fast');
$node->start;
$secs = seconds_to_first_answer();
ok(defined $secs && $secs < 20, 'answers within seconds of stop and start');
all_models_ok('after stop and start');
is( $node->safe_psql('postgres',
		"SELECT nodes = (SELECT count(*) FROM d_node) FROM gnn_graphs WHERE name = 'd'"),
	't', 'the rebuilt graph has the row added before the restart');
ok( $node->safe_psql('postgres',
		"SELECT cardinality(gnn_predict('d_sage', (SELECT max(id) FROM d_node)))") > 0,
	'and predicts for it');

# Nothing was lost: definitions, names, states.
is( $node->safe_psql(
		'postgres',
		"SELECT string_agg(name || ':' || state, ',' ORDER BY name) FROM gnn_models"),
	'd_gcn:ready,d_sage:ready,u_gcn:ready,u_sage:ready',
	'every model is ready again');

$node->stop;
done_testing();
