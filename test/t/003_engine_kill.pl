# 003_engine_kill: the engine dies and comes back without user action.
#
# kill -9 (while a larger graph is loading, and while idle): PostgreSQL
# treats it as a crashed child and restarts the cluster (restart_after_crash);
# the engine then rebuilds every graph and model from the tables.
# kill -TERM: the engine exits cleanly and is restarted a second later,
# sessions survive.  In every case the predictions come back within seconds
# and equal the reference.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use QuiverTest;
use Test::More;
use Time::HiRes qw(time usleep);

my $seed = test_seed();
my $node = quiver_node('kill');
my $tmp = PostgreSQL::Test::Utils::tempdir();

my $d = "$tmp/d";
gen_case($d, seed => $seed, nodes => 600 + $seed % 300, edges => 3000, layers => 2);
load_case($node, 'd', $d);
create_graph($node, 'd', 'd');
create_model($node, 'd_sage', 'd', 'graphsage', "$d/sage.safetensors");
create_model($node, 'd_gcn', 'd', 'gcn', "$d/gcn.safetensors");
predictions_ok($node, 'd_sage', 'd', "$d/ref_sage.out", 'before any kill');

# A larger graph, generated in SQL: 200k nodes, 2M edges.
$node->safe_psql(
	'postgres', q{
CREATE TABLE big_node AS
	SELECT i::bigint AS id,
		   ARRAY[(i % 97) / 97.0, (i % 89) / 89.0, (i % 83) / 83.0, (i % 79) / 79.0,
				 (i % 73) / 73.0, (i % 71) / 71.0, (i % 67) / 67.0, (i % 61) / 61.0]::real[] AS feat
	FROM generate_series(1, 200000) AS i;
CREATE TABLE big_edge AS
	SELECT 1 + (i * 2654435761) % 200000 AS src, 1 + (i * 40503 + i / 7) % 200000 AS dst
	FROM generate_series(1::bigint, 2000000) AS i;
});

# Seconds until d_sage answers again, or undef after 120 s.
sub seconds_to_answer
{
	return wait_until(
		sub {
			my ($rc) = $node->psql('postgres',
				"SELECT gnn_predict('d_sage', (SELECT min(id) FROM d_node))");
			return $rc == 0;
		},
		120);
}

# kill -9 while gnn_create_graph of the larger graph is in the engine: the
# backend has read the rows and waits (wait_event Extension) for the engine.
my $pid = engine_pid($node);
my $load = start_psql($node,
	q{SELECT nodes FROM gnn_create_graph('big', 'SELECT src, dst FROM big_edge', 'SELECT id, feat FROM big_node')},
	appname => 'bigload');
my $mon = $node->background_psql('postgres');
my $seen = wait_until(
	sub {
		$mon->query(
			q{SELECT count(*) FROM pg_stat_activity WHERE application_name = 'bigload'
			  AND wait_event_type = 'Extension'}) eq '1';
	},
	120);
ok(defined $seen, 'the load reached the engine');
note(sprintf('load waited on the engine after %.2f s', $seen // -1));
my $t_kill = time();
kill 'KILL', $pid;
my ($rc, $out, $err) = finish_psql($load);
isnt($rc, 0, 'the interrupted load fails') or diag("out: $out");
note("load said: $err");
eval { $mon->quit };

my $secs = seconds_to_answer();
ok(defined $secs && $secs < 30, 'answers within seconds of kill -9 during a load')
  or diag('took ' . ($secs // 'more than 120') . ' s');
note(sprintf('answers %.2f s after kill -9', time() - $t_kill));
isnt(engine_pid($node), $pid, 'a new engine');
predictions_ok($node, 'd_sage', 'd', "$d/ref_sage.out", 'd_sage after kill -9 during a load');
predictions_ok($node, 'd_gcn', 'd', "$d/ref_gcn.out", 'd_gcn after kill -9 during a load');
is($node->safe_psql('postgres',
		"SELECT count(*) FROM quiver_graph WHERE name = 'big'")
	  . $node->safe_psql('postgres', "SELECT count(*) FROM gnn_resident() WHERE name = 'big'"),
	'00', 'the interrupted graph exists nowhere');
ok($node->log_contains(qr/terminated by signal 9/), 'the postmaster saw the crash');

# The engine loads after the crash; this graph must be rebuilt after the next.
is($node->safe_psql('postgres',
		q{SELECT nodes FROM gnn_create_graph('big', 'SELECT src, dst FROM big_edge', 'SELECT id, feat FROM big_node')}),
	'200000', 'the larger graph loads after the crash');
run_ref($PYTHON, $REF, 'weights', '--arch', 'gcn', '--dims', '8,8,3',
	'--seed', $seed, '--out', "$tmp/big_gcn.st");
create_model($node, 'big_gcn', 'big', 'gcn', "$tmp/big_gcn.st");
my $big_before = $node->safe_psql('postgres',
	'SELECT id, gnn_predict(\'big_gcn\', id) FROM big_node WHERE id % 20011 = 1 ORDER BY id');

# kill -9 while idle.
$pid = engine_pid($node);
$t_kill = time();
kill 'KILL', $pid;
$secs = seconds_to_answer();
ok(defined $secs && $secs < 60, 'answers within seconds of kill -9 while idle')
  or diag('took ' . ($secs // 'more than 120') . ' s');
note(sprintf('answers %.2f s after kill -9 (with the larger graph to rebuild)', time() - $t_kill));
predictions_ok($node, 'd_sage', 'd', "$d/ref_sage.out", 'd_sage after kill -9 while idle');
predictions_ok($node, 'd_gcn', 'd', "$d/ref_gcn.out", 'd_gcn after kill -9 while idle');
my $bfile = "$tmp/big_before.out";
PostgreSQL::Test::Utils::append_to_file($bfile, "$big_before\n");
compare_ok($bfile,
	$node->safe_psql('postgres',
		'SELECT id, gnn_predict(\'big_gcn\', id) FROM big_node WHERE id % 20011 = 1 ORDER BY id'),
	'the larger graph was rebuilt: same predictions');

# kill -TERM: a clean exit; no cluster restart, so an open session survives
# and its next call waits for the new engine.
my $session = $node->background_psql('postgres');
my $backend = $session->query_safe('SELECT pg_backend_pid()');
$pid = engine_pid($node);
kill 'TERM', $pid;
my $t_term = time();
my ($answer, $failed) = $session->query("SELECT gnn_predict('d_gcn', (SELECT min(id) FROM d_node)) IS NOT NULL");
is($answer, 't', 'the same session is answered after kill -TERM')
  or diag("failed: $failed");
note(sprintf('answered %.2f s after kill -TERM', time() - $t_term));
ok(time() - $t_term < 30, 'within seconds');
is($session->query_safe('SELECT pg_backend_pid()'), $backend, 'the session was not restarted');
isnt(engine_pid($node), $pid, 'a new engine after kill -TERM');
predictions_ok($node, 'd_sage', 'd', "$d/ref_sage.out", 'd_sage after kill -TERM');

# A call while the engine is down, with a short engine_start_timeout, fails
# with a clear error instead of hanging (or succeeds if the engine is back).
$pid = engine_pid($node);
kill 'TERM', $pid;
my $t0 = time();
my ($r, $o, $e) = $node->psql('postgres',
	"SET quiver.engine_start_timeout = 200; SELECT gnn_predict('d_gcn', (SELECT min(id) FROM d_node)) IS NOT NULL");
my $took = time() - $t0;
ok($took < 10, sprintf('a call while the engine restarts returns (%.2f s)', $took));
ok($r == 0 ? $o eq 't' : $e =~ /engine/i, 'with an answer, or an error that names the engine')
  or diag("rc $r, out '$o', err '$e'");
note("engine down: rc $r, $e");
ok(defined wait_for_engine($node, 30, $pid), 'the engine comes back');
predictions_ok($node, 'd_gcn', 'd', "$d/ref_gcn.out", 'd_gcn at the end');

# kill -TERM while a scan whose calls QuiverPrefetch batches waits on the
# engine (slowed down so that it certainly waits): the scan gets either its
# whole, right answer or an error that names the engine, nothing stuck.
$node->safe_psql('postgres', 'ALTER SYSTEM SET quiver.debug_engine_delay_ms = 300');
reload_and_wait($node, 'quiver.debug_engine_delay_ms', '300');
my $scan = start_psql($node,
	"SELECT id, gnn_predict('d_sage', id) FROM d_node ORDER BY id", appname => 'scanner');
ok( wait_until(
		sub {
			$node->safe_psql('postgres',
				"SELECT count(*) FROM pg_stat_activity WHERE application_name = 'scanner' AND wait_event_type = 'Extension'"
			) eq '1';
		},
		30),
	'the batched scan waits on the engine');
$pid = engine_pid($node);
kill 'TERM', $pid;
($r, $o, $e) = finish_psql($scan);
if ($r == 0)
{
	compare_ok("$d/ref_sage.out", $o, 'the batched scan across kill -TERM answers right');
}
else
{
	like($e, qr/engine/i, 'the batched scan across kill -TERM fails with an error that names the engine');
}
note("batched scan across kill -TERM: rc $r");
$node->safe_psql('postgres', 'ALTER SYSTEM RESET quiver.debug_engine_delay_ms');
reload_and_wait($node, 'quiver.debug_engine_delay_ms', '0');
ok(defined wait_for_engine($node, 30, $pid), 'the engine is back after the scan');
predictions_ok($node, 'd_sage', 'd', "$d/ref_sage.out", 'a batched scan after that is right');
is($node->safe_psql('postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' AND wait_event_type = 'Extension'"),
	'0', 'no backend is left waiting on the engine');

$session->quit;
$node->stop;
done_testing();
