# 019_repeatable: sampled predictions are repeatable (DESIGN 1.1).  With a
# fanout, which neighbours a node samples depends only on (model seed,
# node, hop, graph version): two calls, the scalar and batch forms, a
# batched scan, another batch around the node and a restart all give the
# same answer; config "seed" picks another draw, and so does a refresh (a
# new graph version).  The GPU path draws what the CPU path does: checked
# with the fake GPU module (test/fake_gpu, a CPU test double of the GPU
# module that samples with the engine core, keyed as the CUDA sampler is),
# when it is built; the CUDA sampler itself is checked by the unit tests on
# a GPU host.
use strict;
use warnings;

use Cwd qw(getcwd);
use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use QuiverTest;
use Test::More;

my $seed = test_seed();
my $node = quiver_node('repeat');
my $tmp = PostgreSQL::Test::Utils::tempdir();
my $d = "$tmp/d";
gen_case($d, seed => $seed, nodes => 400, edges => 6000, layers => 2, dim => 8,
	hidden => 16, classes => 4);
load_case($node, 'd', $d);
create_graph($node, 'g', 'd');
create_model($node, 'm', 'g', 'graphsage', "$d/sage.safetensors", '{"fanout": [3, 2]}');
create_model($node, 'm7', 'g', 'graphsage', "$d/sage.safetensors", '{"fanout": [3, 2], "seed": 7}');

# The node with the most in-neighbours: sampling matters most there.
my $hub = $node->safe_psql('postgres',
	'SELECT dst FROM d_edge GROUP BY dst ORDER BY count(*) DESC, dst LIMIT 1');
my $one = $node->safe_psql('postgres', "SELECT gnn_predict('m', $hub)");

# Equal up to float32 rounding of the dense layers (a node alone and in a
# big batch may take different BLAS kernels).
sub close_ok
{
	my ($got, $want, $name) = @_;
	my @g = ($got =~ /(-?[\d.]+(?:e[-+]?\d+)?)/gi);
	my @w = ($want =~ /(-?[\d.]+(?:e[-+]?\d+)?)/gi);
	my $max = 0;
	my $scale = 0.1;
	$scale = abs($_) > $scale ? abs($_) : $scale for @w;
	for my $i (0 .. $#w)
	{
		my $e = abs(($g[$i] // 1e9) - $w[$i]) / $scale;
		$max = $e if $e > $max;
	}
	ok(@g == @w && $max < 1e-5, $name) or diag("got $got, want $want (error $max)");
}

is($node->safe_psql('postgres', "SELECT gnn_predict('m', $hub)"), $one,
	'two calls of the same node give the same answer');
is($node->safe_psql('postgres', "SELECT count(DISTINCT gnn_predict('m', $hub)::text) FROM generate_series(1, 20)"),
	'1', 'twenty calls in one query (batched by QuiverPrefetch) agree');
close_ok($node->safe_psql('postgres',
	"SELECT prediction FROM gnn_predict('m', ARRAY(SELECT id FROM d_node ORDER BY md5(id::text))) WHERE node_id = $hub"),
	$one, 'the node in a batch of every node equals the node alone');
close_ok($node->safe_psql('postgres',
	"SELECT p FROM (SELECT id, gnn_predict('m', id) AS p FROM d_node) s WHERE id = $hub"),
	$one, 'the node in a batched table scan equals the node alone');

# Many clients at once: batches are merged differently, answers are not.
my $all = $node->safe_psql('postgres', "SET quiver.prefetch_rows = 0; SELECT id, gnn_predict('m', id) FROM d_node ORDER BY id");
my @h = map { start_psql($node, "SELECT id, gnn_predict('m', id) FROM d_node ORDER BY id") } 1 .. 4;
my $same = 0;
for my $h (@h)
{
	my ($rc, $out) = finish_psql($h);
	$same++ if $rc == 0 && compare_rows($out, $all);
}
is($same, 4, 'four concurrent scans (merged into other batches) give every node the same answer');

my $other = $node->safe_psql('postgres', "SELECT gnn_predict('m7', $hub)");
isnt($other, $one, 'config "seed": 7 draws another neighbourhood for the hub');
is($node->safe_psql('postgres', "SELECT gnn_predict('m7', $hub)"), $other, '... repeatably');

# A restart rebuilds the same graph version: the same draws.
$node->restart;
wait_for_engine($node, 60);
is($node->safe_psql('postgres', "SELECT gnn_predict('m', $hub)"), $one,
	'after a restart the node samples the same neighbours');
ok(compare_rows($node->safe_psql('postgres',
	"SET quiver.prefetch_rows = 0; SELECT id, gnn_predict('m', id) FROM d_node ORDER BY id"), $all),
	'... and so does every node');

# A refresh is a new graph version: a new draw, repeatable again.
$node->safe_psql('postgres', "SELECT * FROM gnn_refresh_graph('g')");
my $refreshed = $node->safe_psql('postgres', "SELECT gnn_predict('m', $hub)");
is($node->safe_psql('postgres', "SELECT gnn_predict('m', $hub)"), $refreshed,
	'after a refresh, calls agree again');

# Rows equal up to rounding, line by line ("id|{...}").
sub compare_rows
{
	my ($a, $b) = @_;
	my @a = split /\n/, $a;
	my @b = split /\n/, $b;
	return 0 unless @a == @b;
	for my $i (0 .. $#a)
	{
		my ($ia, $va) = split /\|/, $a[$i];
		my ($ib, $vb) = split /\|/, $b[$i];
		return 0 unless $ia eq $ib;
		my @x = ($va =~ /(-?[\d.]+(?:e[-+]?\d+)?)/gi);
		my @y = ($vb =~ /(-?[\d.]+(?:e[-+]?\d+)?)/gi);
		return 0 unless @x == @y;
		my $scale = 0.1;
		$scale = abs($_) > $scale ? abs($_) : $scale for @y;
		for my $k (0 .. $#x)
		{
			return 0 if abs($x[$k] - $y[$k]) / $scale > 1e-5;
		}
	}
	return 1;
}

$node->stop;

# ---- the GPU path, through the fake GPU module ----
SKIP:
{
	my $fake = getcwd() . '/test/fake_gpu/quiver_fake_cuda.so';
	skip "fake GPU module not built ($fake): run make fake-gpu", 6 unless -r $fake;

	my $gpu = PostgreSQL::Test::Cluster->new('repeat_gpu');
	$gpu->init;
	$gpu->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'quiver'
quiver.engine_threads = 2
quiver.engine_start_timeout = 60000
quiver.gpu_module = '$fake'
log_min_messages = info
});
	{
		local %ENV = %ENV;
		delete @ENV{qw(QUIVER_FAKE_FAIL QUIVER_FAKE_FAIL_AFTER QUIVER_FAKE_DELAY_US)};
		$ENV{QUIVER_FAKE_GPUS} = 1;
		$gpu->start;
	}
	$gpu->safe_psql('postgres', 'CREATE EXTENSION quiver');
	load_case($gpu, 'd', $d);
	create_graph($gpu, 'g', 'd');
	create_model($gpu, 'm', 'g', 'graphsage', "$d/sage.safetensors", '{"fanout": [3, 2]}');
	is($gpu->safe_psql('postgres', 'SELECT count(*) FROM gnn_gpus() WHERE usable'), '1',
		'fake GPU: one device serves');

	my $every = "SELECT node_id, prediction FROM gnn_predict('m', ARRAY(SELECT id FROM d_node ORDER BY id)) ORDER BY node_id";
	my $gpu_batches = q{SELECT gpu_batches FROM gnn_stats() WHERE model = 'm'};
	set_threshold($gpu, '1e+15');
	my $cpu_all = $gpu->safe_psql('postgres', $every);
	my $cpu_hub = $gpu->safe_psql('postgres', "SELECT gnn_predict('m', $hub)");
	is($gpu->safe_psql('postgres', $gpu_batches), '0', 'fake GPU: above every PSGS the CPU path answers');

	set_threshold($gpu, '0');
	ok(compare_rows($gpu->safe_psql('postgres', $every), $cpu_all),
		'fake GPU: on the GPU path every node samples the neighbours it does on the CPU path');
	close_ok($gpu->safe_psql('postgres', "SELECT gnn_predict('m', $hub)"), $cpu_hub,
		'fake GPU: the hub alone on the GPU path equals the CPU path');
	is($gpu->safe_psql('postgres', "SELECT gnn_predict('m', $hub)"),
		$gpu->safe_psql('postgres', "SELECT gnn_predict('m', $hub)"),
		'fake GPU: two calls on the GPU path agree');
	# (a batch is counted just after it is answered)
	ok(defined wait_until(sub { $gpu->safe_psql('postgres', $gpu_batches) > 0 }, 10),
		'fake GPU: those batches ran on the GPU path');
	$gpu->stop;
}

# Fix quiver.psgs_threshold (pg_settings shows $v) and wait for it.
sub set_threshold
{
	my ($n, $v) = @_;
	$n->safe_psql('postgres', "ALTER SYSTEM SET quiver.psgs_threshold = $v");
	reload_and_wait($n, 'quiver.psgs_threshold', $v);
}

done_testing();
