# 027_work_memory: the working memory of batches counts against
# quiver.memory_limit and is released when the engine is idle (issue 9).
#
# A wide model (hidden layer of 4096) answers one batch of its graph's 4096
# nodes: the inference workspace then holds at least 4096 x 4096 floats
# (64 MiB) of activations.  Under quiver.memory_limit = 40MB a 10 MB graph
# that fits beside what is resident is refused while that workspace is held,
# with the error counting it among the MB in use; once the engine has been
# idle for a second it releases the workspace and the same create succeeds.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use QuiverTest;
use Test::More;

my $seed = test_seed();
my $MiB = 1024 * 1024;
my $limit_mb = 40;
# CPU only, so that every batch runs in the engine's own workspace
my $node = quiver_node('work_memory',
	# whole requests in one batch (slices would keep the workspace small)
	conf => "quiver.memory_limit = '${limit_mb}MB'\nquiver.gpu_module = 'none'\nquiver.slice_size = 0\n");
my $tmp = PostgreSQL::Test::Utils::tempdir();

# The wide model's graph: 4096 nodes, 4 features, a ring.  The graph to
# create: 1000 nodes of 2560 features (10 MB), quick to read.
$node->safe_psql('postgres', q{
CREATE TABLE w_node AS SELECT i::bigint AS id, ARRAY[i % 7, 1, -1, (i % 13) / 13.0]::real[] AS feat
	FROM generate_series(1, 4096) i;
CREATE TABLE w_edge AS SELECT i::bigint AS src, (i % 4096 + 1)::bigint AS dst
	FROM generate_series(1, 4096) i;
CREATE TABLE big_node AS SELECT i::bigint AS id, array_fill(i::real, ARRAY[2560]) AS feat
	FROM generate_series(1, 1000) i;
CREATE TABLE big_edge AS SELECT i::bigint AS src, (i % 1000 + 1)::bigint AS dst
	FROM generate_series(1, 1000) i;
});
run_ref($PYTHON, $REF, 'weights', '--arch', 'graphsage', '--dims', '4,4096,2',
	'--seed', $seed, '--out', "$tmp/wide.st");
is(create_graph($node, 'wg', 'w'), '4096|4096|4', 'the wide model\'s graph loads');
create_model($node, 'wide', 'wg', 'graphsage', "$tmp/wide.st");

my $resident = $node->safe_psql('postgres', 'SELECT sum(bytes) FROM gnn_resident()');
cmp_ok($resident, '<', 2 * $MiB, "the graph and the model hold $resident bytes");
my $resident_mb = int(($resident + $MiB - 1) / $MiB);

# bytes = rowptr 8(N+1) + col 4E + degrees 4N + ids 8N + id map 12 cap
#         + features 4ND (+ the struct), cap = 2048 for N = 1000
my $need = 8 * 1001 + 4 * 1000 + 4 * 1000 + 8 * 1000 + 12 * 2048 + 4 * 1000 * 2560;
my $need_mb = int(($need + $MiB - 1) / $MiB);
cmp_ok($resident + $need + 1024, '<', $limit_mb * $MiB,
	"the graph to create ($need_mb MB) fits beside what is resident");

# One request of 4096 ids (4096 x (8 + 4 x 2) bytes fill the 64 kB slot),
# one batch (quiver.max_batch is 4096).
my $batch = q{SELECT count(*) FROM gnn_predict('wide', (SELECT array_agg(id ORDER BY id) FROM w_node))};
my $create = q{SELECT nodes FROM gnn_create_graph('big', 'SELECT src, dst FROM big_edge', 'SELECT id, feat FROM big_node')};

# The engine publishes the working memory it holds when it gets busy after
# an idle second (and releases it after one), so each try first waits out
# what the last one left, then runs the batch and at once the create, in a
# transaction rolled back should it succeed.  Reading the 10 MB of rows
# takes far less than the second the engine keeps the workspace; a loaded
# machine gets more tries.
my ($refused, $used_mb);
for my $try (1 .. 5)
{
	sleep(3);
	my ($rc, $out, $err) = $node->psql('postgres',
		"\\set VERBOSITY verbose\n$batch;\nBEGIN;\n$create;\nROLLBACK;");
	like($out, qr/^4096$/m, "try $try: the batch answered its 4096 ids") or diag($err);
	if ($rc != 0)
	{
		$refused = $err;
		last;
	}
	note("try $try: the create was not refused (the engine released the workspace first)");
}
ok(defined $refused, 'after a batch of the wide model the create is refused');
$refused //= '';
like($refused, qr/ERROR:\s+54000: graph "big" needs $need_mb MB resident, but quiver\.memory_limit is $limit_mb MB and (\d+) MB are in use/,
	'program_limit_exceeded, with the MB needed, the limit and the MB in use')
  or diag($refused);
($used_mb) = $refused =~ /and (\d+) MB are in use/;
$used_mb //= 0;
cmp_ok($used_mb, '>=', $resident_mb + 64,
	"the MB in use ($used_mb) count the batch's workspace (at least 64 MiB) besides the $resident_mb MB resident");
is($node->safe_psql('postgres', q{SELECT count(*) FROM gnn_graphs WHERE name = 'big'}), '0',
	'nothing of the refused graph is kept');

# Idle, the engine releases the workspace: the same create then fits.
my $waited = wait_until(
	sub {
		my ($rc) = $node->psql('postgres', $create);
		return $rc == 0;
	},
	60);
ok(defined $waited, 'once the working memory is released the same create succeeds')
  or diag(($node->psql('postgres', $create))[2]);
note(sprintf('released and created after %.1f s', $waited)) if defined $waited;
is($node->safe_psql('postgres',
	q{SELECT nodes, state, resident_version = version FROM gnn_graphs WHERE name = 'big'}),
	'1000|ready|t', 'the graph is resident');
is($node->safe_psql('postgres', $batch), '4096', 'the wide model still serves');

$node->stop;
done_testing();
