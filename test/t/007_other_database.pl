# 007_other_database: the engine serves one database, quiver.database.
# Calls from another database get an error that names both databases;
# gnn_resident() and gnn_stats() there return no row (nothing resident
# belongs to it); the served database is unaffected.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use QuiverTest;
use Test::More;
use Time::HiRes qw(time);

my $node = quiver_node('other_db', conf => "quiver.database = 'served'\n", no_extension => 1);
$node->safe_psql('postgres', 'CREATE DATABASE served');
$node->safe_psql('postgres', 'CREATE DATABASE other');
$node->safe_psql('served', 'CREATE EXTENSION quiver');
$node->safe_psql('other', 'CREATE EXTENSION quiver');

for my $db ('served', 'other')
{
	$node->safe_psql($db,
		q{CREATE TABLE n (id bigint, f real[]); INSERT INTO n VALUES (1, '{1,2}'), (2, '{3,4}');
		  CREATE TABLE e (s bigint, d bigint); INSERT INTO e VALUES (1, 2);});
}

# The engine attaches to "served" (it may be retrying while it did not exist).
ok(defined wait_until(sub {
	$node->safe_psql('postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'quiver engine' AND datname = 'served'") eq '1';
}, 60), 'the engine serves database "served"');

is($node->safe_psql('served',
		"SELECT nodes, edges FROM gnn_create_graph('g', 'SELECT s, d FROM e', 'SELECT id, f FROM n')"),
	'2|1', 'gnn_create_graph works in the served database');

my $t0 = time();
my ($rc, $out, $err) = $node->psql('other',
	"SELECT gnn_create_graph('g', 'SELECT s, d FROM e', 'SELECT id, f FROM n')");
isnt($rc, 0, 'gnn_create_graph fails in another database');
like($err, qr/served/, 'the error names the served database') or diag($err);
like($err, qr/other/, 'and the calling one') or diag($err);
ok(time() - $t0 < 5, 'at once');
for my $call ("SELECT gnn_predict('m', 1)", "SELECT gnn_embed('m', 1)",
	"SELECT * FROM gnn_embed('m', '{1,2}'::bigint[])", "SELECT * FROM gnn_classify('m', 1)",
	"SELECT * FROM gnn_train('m', 'g', 'gcn', 'SELECT 1::bigint, 0')")
{
	($rc, $out, $err) = $node->psql('other', $call);
	isnt($rc, 0, "fails in another database: $call");
	like($err, qr/quiver\.database|served/, 'with the same explanation') or diag($err);
}
is($node->safe_psql('other', 'SELECT count(*) FROM quiver_graph'), '0',
	'nothing was stored in the other database');

# gnn_resident() and gnn_stats() show only the calling database's objects:
# from another database they return no row (directory_snapshot), not an
# error, while the served database has a graph and a model that served.
my $tmp = PostgreSQL::Test::Utils::tempdir();
run_ref($PYTHON, $REF, 'weights', '--arch', 'graphsage', '--dims', '2,4,3',
	'--seed', 1, '--out', "$tmp/sage.st");
$node->safe_psql('served',
	"SELECT gnn_create_model('m', 'g', 'graphsage', pg_read_binary_file('$tmp/sage.st'))");
like($node->safe_psql('served', "SELECT gnn_predict('m', 1)"), qr/^\{.*\}$/,
	'the served database has a model that serves');
is($node->safe_psql('served', 'SELECT count(*) FROM gnn_resident()'), '2',
	'gnn_resident() in the served database: its graph and model');
# (the engine counts a batch just after it answers it)
ok(defined wait_until(sub {
	$node->safe_psql('served', q{SELECT count(*) FROM gnn_stats() WHERE model = 'm' AND requests > 0}) eq '1' }, 10),
	'gnn_stats() in the served database: its model, with requests');
($rc, $out, $err) = $node->psql('other', 'SELECT count(*) FROM gnn_resident()');
is("$rc|$out", '0|0', 'gnn_resident() from another database: no error, no row') or diag($err);
($rc, $out, $err) = $node->psql('other', 'SELECT count(*) FROM gnn_stats()');
is("$rc|$out", '0|0', 'gnn_stats() from another database: no error, no row') or diag($err);
is($node->safe_psql('other', 'SELECT count(*) FROM gnn_graphs') . '|'
	  . $node->safe_psql('other', 'SELECT count(*) FROM gnn_models'),
	'0|0', 'nor do its gnn_graphs and gnn_models');
is($node->safe_psql('served', "SELECT state FROM gnn_graphs WHERE name = 'g'"),
	'ready', 'the served database still has its graph');

$node->stop;
done_testing();
