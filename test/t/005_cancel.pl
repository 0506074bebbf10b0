# 005_cancel: statement_timeout and pg_cancel_backend abort a call that
# waits for the engine, promptly; the engine drops the abandoned request,
# and the next calls get their own (right) answers.
#
# quiver.debug_engine_delay_ms makes the engine sleep before each predict
# batch, so a call is certain to be waiting when it is cancelled.
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
my $node = quiver_node('cancel');
my $tmp = PostgreSQL::Test::Utils::tempdir();

my $d = "$tmp/d";
my $meta = gen_case($d, seed => $seed, nodes => 400 + $seed % 200, edges => 2000, layers => 2);
load_case($node, 'd', $d);
create_graph($node, 'd', 'd');
create_model($node, 'sage', 'd', 'graphsage', "$d/sage.safetensors");
create_model($node, 'gcn', 'd', 'gcn', "$d/gcn.safetensors");
predictions_ok($node, 'sage', 'd', "$d/ref_sage.out", 'before: sage');

my @ids = split /\n/, $node->safe_psql('postgres', 'SELECT id FROM d_node ORDER BY id LIMIT 4');
my $delay = 4000;

$node->safe_psql('postgres', "ALTER SYSTEM SET quiver.debug_engine_delay_ms = $delay");
reload_and_wait($node, 'quiver.debug_engine_delay_ms', $delay);

# The delay is in force: an uncancelled call takes about that long, and
# answers right.
my $t0 = time();
my $got = $node->safe_psql('postgres', "SELECT $ids[0], gnn_predict('sage', $ids[0])");
my $slow = time() - $t0;
ok($slow >= $delay / 1000 * 0.9, sprintf('with the delay a call takes %.2f s', $slow));
compare_ok("$d/ref_sage.out", $got, 'and answers right', '--subset');

# statement_timeout on a call, a batch, and a scan whose calls QuiverPrefetch
# batches: each is cancelled promptly.
sub timeout_ok
{
	my ($sql, $what) = @_;
	my $t = time();
	my ($rc, $out, $err) = $node->psql('postgres', "SET statement_timeout = '300ms'; $sql");
	my $took = time() - $t;
	like($err, qr/canceling statement due to statement timeout/, "statement_timeout cancels $what");
	ok($took < 2, sprintf('promptly (%.2f s, the engine delay is %.1f s)', $took, $delay / 1000));
}
timeout_ok("SELECT gnn_predict('sage', $ids[1])", 'the call');
timeout_ok("SELECT * FROM gnn_predict('gcn', '{$ids[0],$ids[1],$ids[2]}'::bigint[])", 'a batch');
timeout_ok("SELECT id, gnn_predict('sage', id) FROM d_node", 'a batched scan');

# pg_cancel_backend from another session
my $call = start_psql($node, "SELECT gnn_predict('gcn', $ids[2])", appname => 'victim');
my $pid;
wait_until(
	sub {
		$pid = $node->safe_psql('postgres',
			"SELECT pid FROM pg_stat_activity WHERE application_name = 'victim' AND wait_event_type = 'Extension'");
		return $pid ne '';
	},
	30);
ok($pid, 'the call waits for the engine');
usleep(200_000);
my $t_cancel = time();
$node->safe_psql('postgres', "SELECT pg_cancel_backend($pid)");
my ($rc, $out, $err) = finish_psql($call);
my $took = time() - $t_cancel;
like($err, qr/canceling statement due to user request/, 'pg_cancel_backend cancels the call');
ok($took < 2, sprintf('promptly (%.2f s after the cancel)', $took));

# The next call, while the engine may still be sleeping on the abandoned
# requests, gets its own answer, not one meant for a cancelled call.
$got = $node->safe_psql('postgres', "SELECT $ids[3], gnn_predict('gcn', $ids[3])");
compare_ok("$d/ref_gcn.out", $got, 'the next call gets its own answer', '--subset');

# A cancelled call in an open session: the session goes on working.
my $session = $node->background_psql('postgres', on_error_stop => 0);
$session->query("SET statement_timeout = '300ms'");
my ($o1, $e1) = $session->query("SELECT gnn_predict('sage', $ids[0])");
ok($e1, 'a cancelled call in a session fails');
$session->query("SET statement_timeout = 0");
# (query, not query_safe: BackgroundPsql keeps the earlier error's stderr)
my $o2 = $session->query("SELECT $ids[1], gnn_predict('sage', $ids[1])");
compare_ok("$d/ref_sage.out", $o2, 'and the session\'s next call answers right', '--subset');

# Without the delay: nothing is stuck, calls are fast and right again.
$node->safe_psql('postgres', 'ALTER SYSTEM RESET quiver.debug_engine_delay_ms');
reload_and_wait($node, 'quiver.debug_engine_delay_ms', '0');
$t0 = time();
predictions_ok($node, 'sage', 'd', "$d/ref_sage.out", 'after the cancels: sage');
predictions_ok($node, 'gcn', 'd', "$d/ref_gcn.out", 'after the cancels: gcn');
ok(time() - $t0 < 30, 'at normal speed');
is($node->safe_psql('postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' AND wait_event_type = 'Extension'"),
	'0', 'no backend is left waiting on the engine');

$session->quit;
$node->stop;
done_testing();
