# 010_load_limits: quiver.memory_limit refuses a graph that would not fit,
# saying how much it needs, and leaves what is resident serving; a load that
# takes more than a few seconds reports its progress; graph bytes follow the
# documented formula.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use QuiverTest;
use Test::More;

my $node = quiver_node('limits');

# a small graph that fits: 1000 nodes, 8 features, 3000 edges
$node->safe_psql('postgres', q{
CREATE TABLE small_node AS SELECT i::bigint AS id, array_fill(i::real, ARRAY[8]) AS feat
	FROM generate_series(1, 1000) i;
CREATE TABLE small_edge AS SELECT 1 + (i * 7919) % 1000 AS src, 1 + (i * 104729) % 1000 AS dst
	FROM generate_series(1::bigint, 3000) i;
CREATE TABLE big_node AS SELECT i::bigint AS id, array_fill(i::real, ARRAY[64]) AS feat
	FROM generate_series(1, 20000) i;
CREATE TABLE big_edge AS SELECT 1 + (i * 7919) % 20000 AS src, 1 + (i * 104729) % 20000 AS dst
	FROM generate_series(1::bigint, 50000) i;
});
is( $node->safe_psql('postgres',
		"SELECT nodes || '|' || edges FROM gnn_create_graph('small', 'SELECT src, dst FROM small_edge', 'SELECT id, feat FROM small_node')"),
	'1000|3000', 'small graph loads');

# bytes = rowptr 8(N+1) + col 4E + degrees 4N + ids 8N + id map 12 cap
#         + features 4ND (+ the struct), cap = 2048 for N = 1000
my $expect = 8 * 1001 + 4 * 3000 + 4 * 1000 + 8 * 1000 + 12 * 2048 + 4 * 1000 * 8;
my $bytes = $node->safe_psql('postgres', "SELECT bytes FROM gnn_graphs WHERE name = 'small'");
ok($bytes >= $expect && $bytes <= $expect + 256,
	"gnn_graphs.bytes ($bytes) is CSR + degrees + id map + features ($expect + the header)");

# 1 MB: the big graph (20000 x 64 floats = 5 MB of features) does not fit
$node->append_conf('postgresql.conf', "quiver.memory_limit = '1MB'");
reload_and_wait($node, 'quiver.memory_limit', '1');
my ($rc, $out, $err) = $node->psql('postgres',
	"SELECT * FROM gnn_create_graph('big', 'SELECT src, dst FROM big_edge', 'SELECT id, feat FROM big_node')");
isnt($rc, 0, 'a graph over quiver.memory_limit is refused');
# N = 20000, E = 50000, D = 64, id map capacity 65536
my $need = 8 * 20001 + 4 * 50000 + 4 * 20000 + 8 * 20000 + 12 * 65536 + 4 * 20000 * 64;
my $need_mb = int(($need + 1048575) / 1048576);
like($err, qr/graph "big" needs $need_mb MB resident, but quiver.memory_limit is 1 MB/,
	'the error says how much the graph needs and what the limit is');
like($err, qr/HINT:.*quiver.memory_limit/, 'and how to make room');
is($node->safe_psql('postgres', "SELECT count(*) FROM gnn_graphs WHERE name = 'big'"), '0',
	'nothing of the refused graph is kept');
# replacing "small" by itself fits: the graph it replaces is not counted
is( $node->safe_psql('postgres',
		"SELECT nodes FROM gnn_create_graph('small', 'SELECT src, dst FROM small_edge', 'SELECT id, feat FROM small_node')"),
	'1000', 'replacing a resident graph counts only the new one');

$node->append_conf('postgresql.conf', "quiver.memory_limit = '64MB'");
reload_and_wait($node, 'quiver.memory_limit', '64');
is( $node->safe_psql('postgres',
		"SELECT nodes FROM gnn_create_graph('big', 'SELECT src, dst FROM big_edge', 'SELECT id, feat FROM big_node')"),
	'20000', 'with room, the same graph loads');

# Progress: a features query slowed to ~7 s (6000 rows, 1 ms or more each)
# gets NOTICEs while it is read.
($rc, $out, $err) = $node->psql('postgres',
	"SELECT nodes FROM gnn_create_graph('slow', 'SELECT src, dst FROM small_edge', "
	  . "'SELECT id, feat FROM big_node, LATERAL (SELECT pg_sleep(0.001 + 0 * id)) s WHERE id <= 6000')");
is($rc, 0, 'a slow load completes');
like($err, qr/NOTICE:  quiver: read \d+ feature rows so far/, 'a slow load reports its progress');

done_testing();
