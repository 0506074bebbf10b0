# 008_replace: replacing a graph or a model is atomic.  A failed replacement
# leaves the old object serving (same answers as its reference); a
# successful one serves the new definition, also to models of a replaced
# graph.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use QuiverTest;
use Test::More;

my $seed = test_seed();
my $node = quiver_node('replace');
my $tmp = PostgreSQL::Test::Utils::tempdir();

my $d = "$tmp/d";
my $meta = gen_case($d, seed => $seed, nodes => 500 + $seed % 300, edges => 2500,
	layers => 2, dim => 12, hidden => 20, classes => 4);
load_case($node, 'd', $d);
create_graph($node, 'g', 'd');
create_model($node, 'm', 'g', 'graphsage', "$d/sage.safetensors");
predictions_ok($node, 'm', 'd', "$d/ref_sage.out", 'the first model');

# Failed model replacements, each followed by the old answers.
run_ref($PYTHON, $REF, 'weights', '--arch', 'graphsage', '--dims', '13,20,4',
	'--seed', $seed, '--out', "$tmp/dim13.st");
for my $bad (
	[ "pg_read_binary_file('$d/gcn.safetensors')", 'graphsage', '{}', qr/tensor/,
		'gcn weights for a graphsage model' ],
	[ "pg_read_binary_file('$tmp/dim13.st')", 'graphsage', '{}', qr/13/,
		'weights for 13 features on a 12-feature graph' ],
	[ "'\\x0011'::bytea", 'graphsage', '{}', qr/safetensors/, 'not safetensors' ],
	[ "pg_read_binary_file('$d/sage.safetensors')", 'graphsage', '{"fanout": [0, 1]}',
		qr/fanout/, 'a bad config' ],
	[ "pg_read_binary_file('$d/sage.safetensors')", 'gin', '{}', qr/gin/, 'an unknown arch' ])
{
	my ($blob, $arch, $config, $re, $what) = @$bad;
	my ($rc, $out, $err) = $node->psql('postgres',
		"SELECT gnn_create_model('m', 'g', '$arch', $blob, '$config')");
	like($err, $re, "replacing with $what fails, naming the problem") or diag($err);
	predictions_ok($node, 'm', 'd', "$d/ref_sage.out", "after $what: the old model serves");
}
is($node->safe_psql('postgres', "SELECT arch || ' ' || config FROM quiver_model WHERE name = 'm'"),
	'graphsage {}', 'the stored definition is unchanged');

# Failed graph replacements.
for my $bad (
	[ 'SELECT src, dst FROM d_edge', "SELECT id, feat FROM d_node UNION ALL SELECT min(id), '{}' FROM d_node",
		qr/duplicate node id|empty|values/, 'a duplicate (and empty) row' ],
	[ 'SELECT src, dst FROM d_edge UNION ALL SELECT 1, 2', 'SELECT id, feat FROM d_node WHERE id NOT IN (1, 2)',
		qr/no feature row/, 'an edge to a node without features' ],
	[ 'SELECT src, dst FROM d_edge', 'SELECT id, feat || 0::real FROM d_node',
		qr/13|12/, 'a feature dimension its models do not take' ])
{
	my ($edges, $feats, $re, $what) = @$bad;
	$edges =~ s/'/''/g;
	$feats =~ s/'/''/g;
	my ($rc, $out, $err) = $node->psql('postgres',
		"SELECT gnn_create_graph('g', '$edges', '$feats')");
	like($err, $re, "replacing the graph with $what fails") or diag($err);
	predictions_ok($node, 'm', 'd', "$d/ref_sage.out", "after $what: the old graph serves");
}
is($node->safe_psql('postgres', "SELECT features_query FROM quiver_graph WHERE name = 'g'"),
	'SELECT id, feat FROM d_node', 'the stored graph definition is unchanged');

# A successful model replacement serves the new weights.
run_ref($PYTHON, $REF, 'weights', '--arch', 'graphsage', '--dims', '12,20,4',
	'--seed', $seed + 1, '--out', "$tmp/sage2.st");
run_ref($PYTHON, $REF, 'ref', '--dir', $d, '--arch', 'graphsage', '--weights', "$tmp/sage2.st",
	'--out', "$tmp/ref_sage2.out");
create_model($node, 'm', 'g', 'graphsage', "$tmp/sage2.st");
predictions_ok($node, 'm', 'd', "$tmp/ref_sage2.out", 'the replaced model serves the new weights');

# A successful graph replacement (now undirected) is seen by its models.
run_ref($PYTHON, $REF, 'ref', '--dir', $d, '--arch', 'graphsage', '--weights', "$tmp/sage2.st",
	'--undirected', '--out', "$tmp/ref_sage2_u.out");
create_graph($node, 'g', 'd', undirected => 1);
predictions_ok($node, 'm', 'd', "$tmp/ref_sage2_u.out",
	'the model of a replaced graph serves the new graph');

# Inside a transaction that rolls back, nothing changes: the engine goes
# back to what the tables hold (drops, model and graph replacements).
for my $undo (
	[ "SELECT gnn_drop_model('m')", 'a dropped model' ],
	[ "SELECT gnn_create_model('m', 'g', 'graphsage', pg_read_binary_file('$d/sage.safetensors'))",
		'a replaced model' ],
	[ "SELECT gnn_create_graph('g', 'SELECT src, dst FROM d_edge', 'SELECT id, feat FROM d_node', false)",
		'a replaced graph' ],
	[ "SELECT gnn_drop_model('m'); SELECT gnn_drop_graph('g')", 'a dropped graph' ])
{
	my ($sql, $what) = @$undo;
	my ($rc, $out, $err) = $node->psql('postgres', "BEGIN; $sql; ROLLBACK;");
	is($rc, 0, "$what in a transaction, rolled back") or diag($err);
	predictions_ok($node, 'm', 'd', "$tmp/ref_sage2_u.out", "after the rollback of $what: as before");
}
# A failure later in the same transaction rolls back the replacement too.
my ($rc, $out, $err) = $node->psql('postgres',
	"BEGIN; SELECT gnn_create_model('m', 'g', 'graphsage', pg_read_binary_file('$d/sage.safetensors')); SELECT 1/0; COMMIT;");
like($err, qr/division by zero/, 'a replacement followed by an error in its transaction');
predictions_ok($node, 'm', 'd', "$tmp/ref_sage2_u.out", 'is undone');

# And both survive a restart as replaced.
$node->restart;
predictions_ok($node, 'm', 'd', "$tmp/ref_sage2_u.out", 'after a restart, the replacements hold');

$node->stop;
done_testing();
