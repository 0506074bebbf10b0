# 014_commit: what the engine serves follows the catalog's *committed*
# state (DESIGN 1.3).  A create, replace, refresh or drop is seen by its own
# transaction at once, by other sessions only after COMMIT (or COMMIT
# PREPARED, from any session), and leaves no trace after ROLLBACK, ROLLBACK
# TO SAVEPOINT or ROLLBACK PREPARED; any number of objects per transaction.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use QuiverTest;
use Test::More;

my $seed = test_seed();
my $node = quiver_node('commit', conf => "max_prepared_transactions = 4\n");
my $tmp = PostgreSQL::Test::Utils::tempdir();

my $d = "$tmp/d";
gen_case($d, seed => $seed, nodes => 300, edges => 1500, layers => 2, dim => 8,
	hidden => 12, classes => 3);
load_case($node, 'd', $d);
create_graph($node, 'g', 'd');
create_model($node, 'm', 'g', 'graphsage', "$d/sage.safetensors");
my $first = $node->safe_psql('postgres', 'SELECT min(id) FROM d_node');
my $old = $node->safe_psql('postgres', "SELECT gnn_predict('m', $first)");
my $gcn_answer;

# Another model's weights for the same graph: what a replacement serves.
sub predict_in
{
	my ($session, $model) = @_;
	my ($out, $ret) = $session->query("SELECT gnn_predict('$model', $first)");
	my $err = $session->{stderr};
	$session->{stderr} = '';
	return $ret ? "ERROR: $err" : $out;
}

sub predict_now
{
	my ($model) = @_;
	my ($rc, $out, $err) = $node->psql('postgres', "SELECT gnn_predict('$model', $first)");
	return $rc ? "ERROR: $err" : $out;
}

my $a = $node->background_psql('postgres', on_error_stop => 0);

# ---- a replacement in an open transaction ----
$a->query_safe('BEGIN');
$a->query_safe("SELECT gnn_create_model('m', 'g', 'gcn', pg_read_binary_file('$d/gcn.safetensors'))");
$gcn_answer = predict_in($a, 'm');
isnt($gcn_answer, $old, 'the replacing transaction sees its new model at once');
is(predict_now('m'), $old, 'other sessions still get the committed model (no dirty read)');
$a->query_safe('COMMIT');
is(predict_now('m'), $gcn_answer, 'after COMMIT returns, every session gets the new model');
is($node->safe_psql('postgres',
	"SELECT state || ' ' || (resident_version = version) FROM gnn_models WHERE name = 'm'"),
	'ready true', 'gnn_models: the committed version is resident');

# ---- a rolled-back replacement and drop ----
$a->query_safe('BEGIN');
$a->query_safe("SELECT gnn_create_model('m', 'g', 'graphsage', pg_read_binary_file('$d/sage.safetensors'))");
is(predict_in($a, 'm'), $old, 'a second replacement is seen by its transaction');
$a->query_safe("SELECT gnn_drop_model('m')");
like(predict_in($a, 'm'), qr/does not exist/, 'then its drop too');
is(predict_now('m'), $gcn_answer, 'others see neither');
$a->query_safe('ROLLBACK');
is(predict_now('m'), $gcn_answer, 'ROLLBACK leaves the committed model serving');

# ---- savepoints ----
$a->query_safe('BEGIN');
$a->query_safe('SAVEPOINT s1');
$a->query_safe("SELECT gnn_create_model('m', 'g', 'graphsage', pg_read_binary_file('$d/sage.safetensors'))");
is(predict_in($a, 'm'), $old, 'inside a savepoint the replacement is seen');
$a->query_safe('ROLLBACK TO SAVEPOINT s1');
is(predict_in($a, 'm'), $gcn_answer, 'after ROLLBACK TO SAVEPOINT the transaction sees the committed model');
$a->query_safe('SAVEPOINT s2');
$a->query_safe("SELECT gnn_create_model('m_new', 'g', 'graphsage', pg_read_binary_file('$d/sage.safetensors'))");
$a->query_safe('RELEASE SAVEPOINT s2');
$a->query_safe('SAVEPOINT s3');
$a->query_safe("SELECT gnn_drop_model('m')");
$a->query_safe('ROLLBACK TO SAVEPOINT s3');
is(predict_in($a, 'm_new'), $old, 'a released savepoint keeps its change');
$a->query_safe('COMMIT');
is(predict_now('m'), $gcn_answer, 'the rolled-back savepoints left the committed model');
is(predict_now('m_new'), $old, 'the released savepoint\'s model is published at commit');

# The issue's case: a failed create inside a savepoint, rolled back, changes nothing.
$a->query_safe('BEGIN');
$a->query_safe('SAVEPOINT a');
$a->query("SELECT * FROM gnn_create_graph('g', 'SELECT 1::bigint, 1::bigint', 'SELECT 1::bigint, ARRAY[9,9]::real[]')");
like($a->{stderr}, qr/feature/, 'a graph whose feature width its models do not take is refused');
$a->{stderr} = '';
$a->query_safe('ROLLBACK TO SAVEPOINT a');
$a->query_safe('COMMIT');
is(predict_now('m'), $gcn_answer, 'a rolled-back graph replacement was never served');
is($node->safe_psql('postgres', "SELECT nodes FROM gnn_graphs WHERE name = 'g'"), '300',
	'the resident graph is the committed one');

# ---- two-phase commit ----
$a->query_safe('BEGIN');
$a->query_safe("SELECT gnn_create_model('m2pc', 'g', 'graphsage', pg_read_binary_file('$d/sage.safetensors'))");
$a->query_safe("SELECT gnn_drop_model('m_new')");
$a->query_safe("PREPARE TRANSACTION 'p1'");
like(predict_now('m2pc'), qr/does not exist/, 'a prepared create is not served');
is(predict_now('m_new'), $old, 'a prepared drop is not applied');
$node->safe_psql('postgres', "COMMIT PREPARED 'p1'");
is(predict_now('m2pc'), $old, 'COMMIT PREPARED from another session publishes the create');
like(predict_now('m_new'), qr/does not exist/, '... and the drop');

$a->query_safe('BEGIN');
$a->query_safe("SELECT gnn_drop_model('m2pc')");
$a->query_safe("SELECT gnn_create_model('m', 'g', 'graphsage', pg_read_binary_file('$d/sage.safetensors'))");
$a->query_safe("PREPARE TRANSACTION 'p2'");
$node->safe_psql('postgres', "ROLLBACK PREPARED 'p2'");
is(predict_now('m2pc'), $old, 'ROLLBACK PREPARED: the dropped model still serves');
is(predict_now('m'), $gcn_answer, 'ROLLBACK PREPARED: the replaced model is the committed one');

# ---- any number of objects in one transaction ----
my $many = join('', map {
	"SELECT gnn_create_model('many_$_', 'g', 'graphsage', pg_read_binary_file('$d/sage.safetensors'));\n"
} 1 .. 40);
$a->query_safe("BEGIN;\n$many");
is($a->query_safe("SELECT count(*) FROM generate_series(1, 40) i WHERE gnn_predict('many_' || i, $first) IS NOT NULL"),
	'40', 'forty models created in one transaction are all seen by it');
$a->query_safe('ROLLBACK');
is($node->safe_psql('postgres', "SELECT count(*) FROM gnn_resident() WHERE name LIKE 'many\\_%'"),
	'0', 'a rolled-back transaction of forty creates leaves nothing resident');
$a->query_safe("BEGIN;\n$many\nCOMMIT;");
is($node->safe_psql('postgres',
	"SELECT count(*) FROM generate_series(1, 40) i WHERE gnn_predict('many_' || i, $first) IS NOT NULL"),
	'40', 'committed, all forty serve other sessions at once');
ok(wait_until(sub {
	$node->safe_psql('postgres',
		"SELECT count(*) FROM gnn_models WHERE name LIKE 'many\\_%' AND state = 'ready' AND resident_version = version") eq '40' }, 30),
	'gnn_models shows all forty ready at their catalog version');

# ---- gnn_refresh_graph ----
my ($rc, $out, $err);
my $last = $node->safe_psql('postgres', 'SELECT max(id) FROM d_node');
my $new_id = $last + 1000;
$node->safe_psql('postgres', "INSERT INTO d_node SELECT $new_id, feat FROM d_node WHERE id = $first");
like(predict_now('m'), qr/^\{/, 'the model serves before the refresh');
# a refresh rolled back to a savepoint leaves the committed graph
$a->query_safe('BEGIN');
$a->query_safe('SAVEPOINT r');
is($a->query_safe("SELECT nodes FROM gnn_refresh_graph('g')"), '301', 'a refresh inside a savepoint reads the new row');
$a->query_safe('ROLLBACK TO SAVEPOINT r');
$a->query("SELECT gnn_predict('m', $new_id)");
like($a->{stderr}, qr/does not exist in graph/, 'after ROLLBACK TO SAVEPOINT the transaction sees the committed graph');
$a->{stderr} = '';
$a->query_safe('ROLLBACK');
($rc, $out, $err) = $node->psql('postgres', "SELECT gnn_predict('m', $new_id)");
like($err, qr/does not exist in graph/, 'a rolled-back refresh was never served');

$a->query_safe('BEGIN');
is($a->query_safe("SELECT nodes FROM gnn_refresh_graph('g')"), '301', 'gnn_refresh_graph re-runs the stored queries');
like($a->query_safe("SELECT gnn_predict('m', $new_id)"), qr/\{/, 'the refreshing transaction sees the new node');
($rc, $out, $err) = $node->psql('postgres', "SELECT gnn_predict('m', $new_id)");
like($err, qr/does not exist in graph/, 'others do not, before commit');
$a->query_safe('COMMIT');
like($node->safe_psql('postgres', "SELECT gnn_predict('m', $new_id)"), qr/\{/,
	'after commit the refreshed graph serves its models');

$a->quit;
$node->stop;
done_testing();
