# 011_gpu_glue: the engine's GPU path end to end -- device discovery,
# feature stores in three tiers across two devices, calibration of the GPU
# cost line, hybrid dispatch, spreading batches over devices, cancel during
# a GPU batch, drop while batches run, a device failing under load, and
# re-planning when the requested seeds drift.
#
# It runs on any machine: the engine loads test/fake_gpu/quiver_fake_cuda.so
# (quiver.gpu_module), a CPU test double of cuda/quiver_cuda.so with the same
# ABI that computes with the engine core and fails on request.  It tests the
# glue, not CUDA: the kernels are tested by test/unit/test_gpu_infer.c on a
# GPU host.
use strict;
use warnings;

use Cwd qw(getcwd);
use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use QuiverTest;
use Test::More;
use Time::HiRes qw(time usleep);

my $fake = getcwd() . '/test/fake_gpu/quiver_fake_cuda.so';
plan skip_all => "fake GPU module not built ($fake): run make fake-gpu"
  unless -r $fake;

my $seed = test_seed();
my $n_nodes = 30000;

# Start (or restart) with the fake's settings in the postmaster's environment.
sub start_with
{
	my ($node, %env) = @_;
	local %ENV = %ENV;
	delete @ENV{qw(QUIVER_FAKE_FAIL QUIVER_FAKE_FAIL_AFTER QUIVER_FAKE_DELAY_US)};
	$ENV{QUIVER_FAKE_GPUS} = 2;
	$ENV{$_} = $env{$_} for keys %env;
	$node->start;
	ok(defined wait_for_engine($node, 60), 'the engine runs');
	wait_until(sub { $node->safe_psql('postgres', "SELECT count(*) FROM gnn_models WHERE state = 'ready'") eq '2' }, 120);
}

sub sql { my ($node, $q) = @_; return $node->safe_psql('postgres', $q); }

sub set_threshold
{
	my ($node, $v) = @_;
	sql($node, "ALTER SYSTEM SET quiver.psgs_threshold = $v");
	reload_and_wait($node, 'quiver.psgs_threshold', $v);
}

my $node = PostgreSQL::Test::Cluster->new('gpu');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'quiver'
quiver.engine_threads = 2
quiver.engine_start_timeout = 60000
quiver.gpu_module = '$fake'
quiver.gpu_cache_size = 1
log_min_messages = info
});
{
	local %ENV = %ENV;
	$ENV{QUIVER_FAKE_GPUS} = 2;
	$node->start;
}
sql($node, 'CREATE EXTENSION quiver');
my $tmp = PostgreSQL::Test::Utils::tempdir();
run_ref($PYTHON, $REF, 'weights', '--arch', 'graphsage', '--dims', '16,16,4',
	'--seed', $seed, '--out', "$tmp/sage.st");
run_ref($PYTHON, $REF, 'weights', '--arch', 'gcn', '--dims', '16,8,4',
	'--seed', $seed + 1, '--out', "$tmp/gcn.st");
sql($node, qq{
SELECT setseed(0.$seed);
CREATE TABLE g_node AS SELECT i::bigint AS id,
	(SELECT array_agg(random()::real) FROM generate_series(1, 16) WHERE i >= 0) AS feat
	FROM generate_series(0, $n_nodes - 1) AS i;
CREATE TABLE g_edge AS SELECT (random() * ($n_nodes - 1))::bigint AS src,
	(random() * ($n_nodes - 1))::bigint AS dst FROM generate_series(1, 4 * $n_nodes);
});
create_graph($node, 'g', 'g', undirected => 1);
# full neighbourhoods: the GPU path must compute the CPU path's function
create_model($node, 'sage', 'g', 'graphsage', "$tmp/sage.st", '{"fanout": [-1, -1]}');
create_model($node, 'gcn', 'g', 'gcn', "$tmp/gcn.st", '{"fanout": [-1, -1]}');

# ---- discovery, residency, calibration ----
is(sql($node, q{SELECT string_agg(device || ':' || usable || ':' || (used_bytes > 0), ',' ORDER BY device)
	FROM gnn_gpus()}), '0:true:true,1:true:true', 'two fake GPUs, both serving, both holding data');
like(sql($node, 'SELECT name FROM gnn_gpus() WHERE device = 0'), qr/fake GPU 0/, 'named as the test double');
is(sql($node, q{SELECT bool_and(gpu_cost_samples > 0 AND cost_samples > 0) FROM gnn_stats()}), 't',
	'both paths were timed on probe batches at model creation');
is(sql($node, q{SELECT count(*) FROM gnn_stats() WHERE threshold_reason LIKE '%no GPU%'}), '0',
	'the threshold comes from the two cost lines');
ok($node->log_contains(qr/quiver engine: GPU 1: quiver fake GPU 1/), 'the engine logged both devices');

# ---- the same predictions on CPU and on GPU ----
my $ids = "(SELECT array_agg(id ORDER BY id) FROM g_node WHERE id % 97 = $seed % 97)";
set_threshold($node, '1e+15');
my %cpu;
$cpu{$_} = sql($node, "SELECT node_id, prediction FROM gnn_predict('$_', $ids) ORDER BY node_id")
  for qw(sage gcn);
my $gpu_before = sql($node, 'SELECT sum(gpu_batches) FROM gnn_stats()');
is($gpu_before, '0', 'above every PSGS, no batch went to a GPU');
set_threshold($node, '0');
for my $m (qw(sage gcn))
{
	my $ref = "$tmp/cpu_$m.out";
	open my $fh, '>', $ref or die;
	print $fh $cpu{$m}, "\n";
	close $fh;
	compare_ok($ref, sql($node, "SELECT node_id, prediction FROM gnn_predict('$m', $ids) ORDER BY node_id"),
		"$m: GPU batch equals the CPU path");
	compare_ok($ref, sql($node, "SELECT id, gnn_predict('$m', id) FROM g_node WHERE id % 97 = $seed % 97 ORDER BY id"),
		"$m: GPU single calls equal the CPU path");
}
my ($gb, $local, $peer, $host) = split /\|/, sql($node,
	q{SELECT sum(gpu_batches), sum(gpu_rows_local), sum(gpu_rows_peer), sum(gpu_rows_host)
	  FROM gnn_stats()});
my $hit = sql($node, q{SELECT sum(cache_hit_rate * (gpu_rows_local + gpu_rows_peer + gpu_rows_host))
	/ sum(gpu_rows_local + gpu_rows_peer + gpu_rows_host) FROM gnn_stats()});
ok($gb > 0, "batches ran on the GPUs ($gb)");
ok($local > 0 && $peer > 0 && $host > 0,
	"feature rows came from all three tiers (local $local, peer $peer, host $host)");
ok(abs($hit - ($local + $peer) / ($local + $peer + $host)) < 1e-9,
	"cache hit rate $hit is the share of rows read from GPU memory");
like(sql($node, "SELECT path || ': ' || reason FROM gnn_explain('sage', 7)"),
	qr/^gpu: PSGS .* above the threshold 0\.0 \(set by quiver\.psgs_threshold\)/, 'gnn_explain says GPU and why');

# ---- many clients at once, with slow devices: batches spread over both ----
$node->stop;
start_with($node, QUIVER_FAKE_DELAY_US => 20000);
sql($node, q{SELECT gnn_predict('sage', 1)});
my @bg = map {
	start_psql($node, "SELECT count(*) FROM (SELECT gnn_predict('sage', id) FROM g_node WHERE id % 16 = $_ LIMIT 20) s")
} 0 .. 7;
my @counts = map { (finish_psql($_))[1] } @bg;
is(join(',', @counts), join(',', (20) x 8), '8 concurrent clients all answered');
is(sql($node, 'SELECT bool_and(batches > 0) FROM gnn_gpus()'), 't', 'both devices ran batches');

# ---- cancel while the batch runs on a GPU ----
$node->stop;
start_with($node, QUIVER_FAKE_DELAY_US => 3000000);
my $t0 = time();
my ($rc, $out, $err) = $node->psql('postgres', "SET statement_timeout = '300ms'; SELECT gnn_predict('sage', 5)");
like($err, qr/canceling statement due to statement timeout/, 'statement_timeout cancels a call on the GPU');
ok(time() - $t0 < 2.5, sprintf('promptly (%.2f s; the device takes 3 s)', time() - $t0));
compare_ok("$tmp/cpu_sage.out", sql($node, "SELECT id, gnn_predict('sage', id) FROM g_node WHERE id = (SELECT min(id) FROM g_node WHERE id % 97 = $seed % 97)"),
	'the next call gets its own right answer', '--subset');

# ---- drop a model while its batch runs on a GPU ----
my $used = sql($node, 'SELECT sum(used_bytes) FROM gnn_gpus()');
my $slow = start_psql($node, "SELECT gnn_predict('gcn', 3) IS NOT NULL");
usleep(500_000);
sql($node, "SELECT gnn_drop_model('gcn')");
my ($rc2, $out2) = finish_psql($slow);
is("$rc2:$out2", '0:t', 'the batch in flight finished before the drop');
ok(sql($node, 'SELECT sum(used_bytes) FROM gnn_gpus()') < $used, 'the drop freed device memory');
create_model($node, 'gcn', 'g', 'gcn', "$tmp/gcn.st", '{"fanout": [-1, -1]}');

# ---- a device that fails under load ----
$node->stop;
my $pid_before;
start_with($node, QUIVER_FAKE_FAIL_AFTER => 60);
$pid_before = engine_pid($node);
my ($errors, $ok_calls) = (0, 0);
for my $i (1 .. 60)
{
	my ($r, $o, $e) = $node->psql('postgres', "SELECT gnn_predict('sage', $i) IS NOT NULL");
	if ($r == 0) { $ok_calls++ }
	else
	{
		$errors++;
		like($e, qr/GPU \d: fake CUDA error injected in infer/, 'the failed batch is an error for its request')
		  if $errors == 1;
	}
}
ok($errors >= 1 && $errors <= 2, "one failure per device ($errors)");
is($ok_calls + $errors, 60, 'every call answered');
is(engine_pid($node), $pid_before, 'the engine did not restart');
is(sql($node, 'SELECT count(*) FROM gnn_gpus() WHERE NOT usable AND detail LIKE \'%fake CUDA error%\''), $errors,
	'gnn_gpus says which device is out of service and why');
is(sql($node, "SELECT gnn_predict('sage', 1) IS NOT NULL"), 't', 'calls go on (on the CPU when no GPU is left)');

# ---- re-planning when the requested seeds drift ----
$node->stop;
$node->append_conf('postgresql.conf', "quiver.replan_drift = 0.05\n");
start_with($node);
my $offset = -s $node->logfile;
sql($node, q{SELECT count(*) FROM gnn_predict('sage', (SELECT array_agg(id % 50) FROM generate_series(1, 12000) AS id))});
ok(defined wait_until(sub {
	sql($node, q{SELECT count(*) FROM gnn_predict('sage', '{1}'::bigint[])});
	return $node->log_contains(qr/re-planned GPU features of graph "g"/, $offset);
}, 40), 'a drifted seed distribution re-plans the feature stores');
set_threshold($node, '0');
compare_ok("$tmp/cpu_sage.out", sql($node, "SELECT node_id, prediction FROM gnn_predict('sage', $ids) ORDER BY node_id"),
	'predictions after the re-plan equal the CPU path');

# ---- no module, or a broken one: CPU only, and it says so ----
$node->stop;
$node->append_conf('postgresql.conf', "quiver.gpu_module = '/nonexistent/quiver_cuda.so'\n");
start_with($node);
is(sql($node, 'SELECT count(*) FROM gnn_gpus()'), '0', 'a missing module: no GPU');
ok($node->log_contains(qr/CPU only: .*nonexistent/), 'the log names the missing module');
set_threshold($node, '-1');
is(sql($node, "SELECT DISTINCT threshold_reason FROM gnn_stats()"), 'no GPU path on this host',
	'gnn_stats says why every batch runs on the CPU');
compare_ok("$tmp/cpu_sage.out", sql($node, "SELECT node_id, prediction FROM gnn_predict('sage', $ids) ORDER BY node_id"),
	'and the CPU serves the same predictions');

$node->stop;
done_testing();
