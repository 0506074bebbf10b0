# 018_edges_of_input: defects found by trying quiver as a hostile user, each
# kept fixed here: results of any width (rows wider than a request slot
# come back through a shared memory segment, scalar, batch and batched
# scans alike), non-finite features refused naming the node, empty names
# refused, gnn_explain on a model that failed to load says why, and the
# directory holds as many graphs and models as its limits say.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use QuiverTest;
use Test::More;

my $node = quiver_node('edges');
my $tmp = PostgreSQL::Test::Utils::tempdir();

$node->safe_psql('postgres', q{
CREATE TABLE n (id bigint PRIMARY KEY, feat real[]);
CREATE TABLE e (src bigint, dst bigint);
INSERT INTO n SELECT i, ARRAY[i, 1, -1, 0.5]::real[] FROM generate_series(1, 40) i;
INSERT INTO e SELECT i, i % 40 + 1 FROM generate_series(1, 40) i;
SELECT * FROM gnn_create_graph('g', 'SELECT src, dst FROM e', 'SELECT id, feat FROM n');
});

# ---- a model whose output is wider than a request slot ----
my $wide = 20000;		# 64 kB slot: at most 16382 floats beside one id
run_ref($PYTHON, $REF, 'weights', '--arch', 'gcn', '--dims', "4,$wide", '--seed', 3,
	'--out', "$tmp/wide.st");
$node->safe_psql('postgres',
	"SELECT gnn_create_model('wide', 'g', 'gcn', pg_read_binary_file('$tmp/wide.st'))");
my ($rc, $out, $err) = $node->psql('postgres',
	"SELECT array_length(gnn_predict('wide', 7), 1)", timeout => 30);
is($out, $wide, "a $wide-wide prediction comes back whole (scalar call)") or diag($err);
is($node->safe_psql('postgres',
	"SELECT count(*) FILTER (WHERE array_length(prediction, 1) = $wide) FROM gnn_predict('wide', ARRAY[1, 2, 3]::bigint[])"),
	'3', 'and in the batch form');
is($node->safe_psql('postgres',
	"SELECT count(*) FILTER (WHERE array_length(gnn_predict('wide', id), 1) = $wide) FROM n"),
	'40', 'and in a batched table scan');
is($node->safe_psql('postgres',
	"SELECT (SELECT gnn_predict('wide', 7)) = (SELECT prediction FROM gnn_predict('wide', ARRAY[7]::bigint[]))"),
	't', 'the scalar and batch forms agree on the wide rows');

# ---- non-finite features are refused, naming the node ----
for my $bad (
	[ "ARRAY[1, ''NaN'', 0, 0]::real[]", qr/node 99 .*non-finite.*NaN.*position 2/, 'NaN (real[])' ],
	[ "ARRAY[1, 0, ''Infinity'', 0]::float8[]", qr/node 99 .*non-finite.*inf.*position 3/i, 'Infinity (float8[])' ],
	[ "ARRAY[1, 0, 0, 1e300]::float8[]", qr/node 99 .*non-finite/, 'a float8 too large for real' ])
{
	my ($feat, $re, $what) = @$bad;
	($rc, $out, $err) = $node->psql('postgres',
		"\\set VERBOSITY verbose\nSELECT * FROM gnn_create_graph('g', 'SELECT src, dst FROM e', "
		  . "'SELECT id, feat FROM n UNION ALL SELECT 99, $feat')");
	like($err, $re, "a feature row with $what is refused naming the node and position");
	like($err, qr/ERROR:  22000/, "  ... as a data exception (22000)");
}
is($node->safe_psql('postgres', "SELECT nodes FROM gnn_graphs WHERE name = 'g'"), '40',
	'the graph is unchanged after the refused replacements');

# ---- gnn_refresh_graph: bad input, and a stored query that fails now ----
($rc, $out, $err) = $node->psql('postgres', "SELECT * FROM gnn_refresh_graph('no_such_graph')");
like($err, qr/graph "no_such_graph" does not exist/, 'refreshing an unknown graph names it');
is($node->safe_psql('postgres', "SELECT gnn_refresh_graph(NULL) IS NULL"), 't',
	'gnn_refresh_graph(NULL) is NULL (STRICT)');
$node->safe_psql('postgres', q{
CREATE TABLE n3 AS SELECT * FROM n;
SELECT * FROM gnn_create_graph('g3', 'SELECT src, dst FROM e', 'SELECT id, feat FROM n3');
});
$node->safe_psql('postgres',
	"SELECT gnn_create_model('m3', 'g3', 'gcn', pg_read_binary_file('$tmp/wide.st'))");
my $before = $node->safe_psql('postgres', "SELECT gnn_predict('m3', 7)");
$node->safe_psql('postgres', "UPDATE n3 SET feat = ARRAY[1, 'NaN', 0, 0]::real[] WHERE id = 7");
($rc, $out, $err) = $node->psql('postgres', "SELECT * FROM gnn_refresh_graph('g3')");
like($err, qr/node 7 .*non-finite/, 'a refresh whose rows are now bad fails naming the node');
is($node->safe_psql('postgres', "SELECT gnn_predict('m3', 7)"), $before,
	'  ... and the graph it would have replaced goes on serving');
$node->safe_psql('postgres', 'DROP TABLE n3 CASCADE');
($rc, $out, $err) = $node->psql('postgres', "SELECT * FROM gnn_refresh_graph('g3')");
like($err, qr/n3/, 'a refresh whose table is gone fails naming it');
is($node->safe_psql('postgres', "SELECT gnn_predict('m3', 7)"), $before, '  ... the old graph still serves');
$node->safe_psql('postgres', "SELECT gnn_drop_model('m3'); SELECT gnn_drop_graph('g3')");

# ---- config "seed": bad values are refused naming them ----
for my $seedv ('-1', '1.5', '"7"', 'true', '18446744073709551616')
{
	($rc, $out, $err) = $node->psql('postgres',
		"SELECT gnn_create_model('wide', 'g', 'gcn', pg_read_binary_file('$tmp/wide.st'), '{\"seed\": $seedv}')");
	my $shown = $seedv =~ s/"//gr;
	like($err, qr/seed.*\Q$shown\E|\Q$shown\E.*seed/i, "config seed $seedv is refused, naming the value");
}
is($node->safe_psql('postgres', "SELECT array_length(gnn_predict('wide', 7), 1)"), $wide,
	'after the refused configs the model still serves');

# ---- empty names ----
($rc, $out, $err) = $node->psql('postgres',
	"SELECT gnn_create_graph('', 'SELECT src, dst FROM e', 'SELECT id, feat FROM n')");
like($err, qr/graph name must not be empty/, 'an empty graph name is refused');
($rc, $out, $err) = $node->psql('postgres',
	"SELECT gnn_create_model('', 'g', 'gcn', pg_read_binary_file('$tmp/wide.st'))");
like($err, qr/model name must not be empty/, 'an empty model name is refused');

# ---- gnn_explain of a model that failed to load says why ----
# A model whose graph's queries fail after a restart is failed, not missing.
$node->safe_psql('postgres', q{
CREATE TABLE n2 AS SELECT * FROM n;
SELECT * FROM gnn_create_graph('g2', 'SELECT src, dst FROM e', 'SELECT id, feat FROM n2');
});
$node->safe_psql('postgres',
	"SELECT gnn_create_model('m2', 'g2', 'gcn', pg_read_binary_file('$tmp/wide.st'))");
$node->safe_psql('postgres', 'DROP TABLE n2');
$node->restart;
wait_for_engine($node, 60);
($rc, $out, $err) = $node->psql('postgres', "SELECT * FROM gnn_explain('m2', 1)");
like($err, qr/model "m2" is not loaded: .*graph "g2"/, 'gnn_explain on a failed model says why');
($rc, $out, $err) = $node->psql('postgres', "SELECT gnn_predict('m2', 1)");
like($err, qr/model "m2" is not loaded/, 'gnn_predict too');
is($node->safe_psql('postgres', "SELECT state FROM gnn_graphs WHERE name = 'g2'"), 'failed',
	'the graph that cannot be rebuilt is failed');
like($node->safe_psql('postgres', "SELECT detail FROM gnn_graphs WHERE name = 'g2'"),
	qr/n2/, '  ... naming the missing table');

# The table comes back: the graph loads again and brings its model back.
$node->safe_psql('postgres', 'CREATE TABLE n2 AS SELECT * FROM n');
ok(wait_until(sub {
	$node->safe_psql('postgres', "SELECT state FROM gnn_models WHERE name = 'm2'") eq 'ready' }, 90),
	'once its table exists again the graph reloads and its model comes back, without user action');
like($node->safe_psql('postgres', "SELECT gnn_predict('m2', 1)::text"), qr/^\{/, 'and serves');

# ---- the directory holds graphs and models up to their limits ----
my $sql = join('', map {
	"SELECT gnn_create_model('many$_', 'g', 'gcn', pg_read_binary_file('$tmp/small.st'));\n"
} 1 .. 200);
run_ref($PYTHON, $REF, 'weights', '--arch', 'gcn', '--dims', '4,2', '--seed', 3, '--out', "$tmp/small.st");
$node->safe_psql('postgres', $sql);
is($node->safe_psql('postgres', "SELECT count(*) FROM generate_series(1, 200) i WHERE gnn_predict('many' || i, 5) IS NOT NULL"),
	'200', 'two hundred models on top of the graphs serve (the directory is not shared by a count of 128)');

$node->stop;
done_testing();
