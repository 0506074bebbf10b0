# 023_live_rights: live graphs and rights (DESIGN 1.3, 1.4).
#
# (a) A role that may only write the source tables has its changes captured
#     (the capture reads the catalog and writes the log for it), and the
#     graph follows them exactly.
# (b) No role but the superuser can write the change log or the sources, so
#     no role changes what others are served except through the tables.
# (c) Creating a live graph needs TRIGGER on its tables (CREATE TRIGGER runs
#     as the caller): 42501 otherwise, and nothing is created.
# (d) A second trigger calling quiver_live_capture is refused (it would log
#     changes twice); a live graph is not created in REPEATABLE READ.
# (e) A changed live graph left quiet is compacted in the background and
#     serves the same predictions.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use QuiverTest;
use Test::More;

my $seed = test_seed();
my $node = quiver_node('live_rights');
my $tmp = PostgreSQL::Test::Utils::tempdir();

run_ref($PYTHON, $REF, 'weights', '--arch', 'graphsage', '--dims', '2,6,3',
	'--seed', $seed, '--out', "$tmp/sage.st");

$node->safe_psql(
	'postgres', q{
CREATE ROLE owner_r LOGIN;
CREATE ROLE writer LOGIN;
CREATE ROLE reader LOGIN;
CREATE TABLE n (id bigint PRIMARY KEY, feat real[]);
CREATE TABLE e (src bigint, dst bigint);
ALTER TABLE n OWNER TO owner_r;
ALTER TABLE e OWNER TO owner_r;
GRANT SELECT, INSERT, UPDATE, DELETE ON quiver_graph, quiver_model TO owner_r, reader;
GRANT INSERT, DELETE, UPDATE, SELECT ON n, e TO writer;
GRANT SELECT ON n, e TO reader;
INSERT INTO n SELECT i, ARRAY[i, -i]::real[] FROM generate_series(1, 20) AS i;
INSERT INTO e SELECT i, i % 20 + 1 FROM generate_series(1, 20) AS i;
});
my $w = $node->safe_psql('postgres', "SELECT encode(pg_read_binary_file('$tmp/sage.st'), 'hex')");

# (c) reader may SELECT the tables and write the catalog, but has no
# TRIGGER: 42501, and no graph.
my ($rc, $out, $err) = $node->psql('postgres',
	q{SET ROLE reader; SELECT gnn_create_graph('g', 'SELECT src, dst FROM e', 'SELECT id, feat FROM n', live => true)});
like($err, qr/permission denied for table/, 'no TRIGGER on the tables: permission denied');
is($node->safe_psql('postgres', "SELECT count(*) FROM quiver_graph WHERE name = 'g'"), '0',
	'... and no graph was created');
is($node->safe_psql('postgres', "SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'quiver_live_%'"), '0',
	'... and no trigger was left on the tables');

# the owner creates it
$node->safe_psql('postgres', qq{
SET ROLE owner_r;
SELECT gnn_create_graph('g', 'SELECT src, dst FROM e', 'SELECT id, feat FROM n', live => true);
SELECT gnn_create_model('m', 'g', 'graphsage', decode('$w', 'hex'));
SELECT gnn_create_graph('f', 'SELECT src, dst FROM e WHERE src IN (SELECT id FROM n) AND dst IN (SELECT id FROM n)',
                        'SELECT id, feat FROM n');
SELECT gnn_create_model('mf', 'f', 'graphsage', decode('$w', 'hex'));
});

# (a) writer's changes are captured and served
$node->safe_psql('postgres', q{
SET ROLE writer;
INSERT INTO n VALUES (21, '{5, 5}'), (22, '{-1, 2}');
INSERT INTO e VALUES (21, 1), (22, 21), (1, 22), (3, 99);
DELETE FROM e WHERE src = 2;
UPDATE n SET feat = '{0.5, 0.25}' WHERE id = 4;
});
$node->safe_psql('postgres', q{SELECT gnn_refresh_graph('f')});
is($node->safe_psql('postgres', q{SELECT nodes || '|' || edges || '|' || dangling_edges FROM gnn_graphs WHERE name = 'g'}),
	'22|22|1', "a writer's changes reach the graph: 22 nodes, 22 edges, 1 dangling");
my $ids = join(',', 1 .. 22);
my $live = $node->safe_psql('postgres', "SELECT node_id, prediction FROM gnn_predict('m', '{$ids}'::bigint[])");
my $fresh = $node->safe_psql('postgres', "SELECT node_id, prediction FROM gnn_predict('mf', '{$ids}'::bigint[])");
is($live, $fresh, "predictions after a writer's changes equal a fresh graph's");

# A changed graph left quiet is compacted in the background (canonical
# again), and serves the same predictions.
my $log_at = -s $node->logfile;
ok(wait_until(sub { slurp_file($node->logfile, $log_at) =~ /compacted live graph "g"/ }, 30),
	'a changed live graph left quiet is compacted in the background');
is($node->safe_psql('postgres', "SELECT node_id, prediction FROM gnn_predict('m', '{$ids}'::bigint[])"),
	$fresh, '... and serves the same predictions after');

# (b) nobody but the superuser writes the log or the sources
for my $role (qw(writer owner_r reader))
{
	($rc, $out, $err) = $node->psql('postgres',
		qq{SET ROLE $role; INSERT INTO quiver_live_log (graph, op, sign, a, b) VALUES ('g', 'e', 1, '{1}', '{1}')});
	like($err, qr/permission denied for table quiver_live_log/, "$role cannot write the change log");
	($rc, $out, $err) = $node->psql('postgres',
		qq{SET ROLE $role; UPDATE quiver_live_source SET qual = 'false'});
	like($err, qr/permission denied for table quiver_live_source/, "$role cannot change a graph's sources");
}
is($node->safe_psql('postgres', q{SELECT edges FROM gnn_graphs WHERE name = 'g'}), '22',
	'the graph is as it was');

# (d) a second capture trigger is refused
$node->safe_psql('postgres', q{
CREATE TRIGGER extra AFTER INSERT ON e REFERENCING NEW TABLE AS quiver_new
	FOR EACH STATEMENT EXECUTE FUNCTION quiver_live_capture();
});
($rc, $out, $err) = $node->psql('postgres', q{INSERT INTO e VALUES (5, 6)});
like($err, qr/trigger "extra" must not call quiver_live_capture/, 'a second capture trigger is refused');
$node->safe_psql('postgres', q{DROP TRIGGER extra ON e});
is($node->safe_psql('postgres', q{SELECT edges FROM gnn_graphs WHERE name = 'g'}), '22',
	'... and its statement changed nothing');

($rc, $out, $err) = $node->psql('postgres', q{
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT gnn_create_graph('g2', 'SELECT src, dst FROM e', 'SELECT id, feat FROM n', live => true);
COMMIT;});
like($err, qr/must be created in a READ COMMITTED transaction/, 'no live graph from REPEATABLE READ');

$node->stop;
done_testing();
