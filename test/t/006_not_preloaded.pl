# 006_not_preloaded: without shared_preload_libraries = 'quiver' there is no
# engine.  CREATE EXTENSION still works (the tables are plain SQL), and every
# call fails at once with an error that says what to do, instead of waiting.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use QuiverTest;
use Test::More;
use Time::HiRes qw(time);

my $node = PostgreSQL::Test::Cluster->new('not_preloaded');
$node->init;
$node->append_conf('postgresql.conf', "quiver.engine_start_timeout = 60000\n");
$node->start;

is($node->safe_psql('postgres', 'CREATE EXTENSION quiver; SELECT 1'), '1',
	'CREATE EXTENSION without preloading');
is($node->safe_psql('postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'quiver engine'"),
	'0', 'no engine runs');

$node->safe_psql('postgres',
	q{CREATE TABLE n (id bigint, f real[]); INSERT INTO n VALUES (1, '{1,2}'), (2, '{3,4}');
	  CREATE TABLE e (s bigint, d bigint); INSERT INTO e VALUES (1, 2);});

# Each call: an ERROR naming shared_preload_libraries, well before the 60 s
# engine_start_timeout.
for my $call (
	"SELECT gnn_create_graph('g', 'SELECT s, d FROM e', 'SELECT id, f FROM n')",
	"SELECT gnn_create_model('m', 'g', 'gcn', '\\x00'::bytea)",
	"SELECT gnn_predict('m', 1)",
	"SELECT * FROM gnn_predict('m', '{1,2}'::bigint[])",
	"SELECT gnn_embed('m', 1)",
	"SELECT * FROM gnn_embed('m', '{1,2}'::bigint[], 1)",
	"SELECT * FROM gnn_classify('m', 1)",
	"SELECT * FROM gnn_train('m', 'g', 'gcn', 'SELECT 1::bigint, 0')",
	"SELECT gnn_drop_model('m')",
	"SELECT gnn_drop_graph('g')")
{
	my $t0 = time();
	my ($rc, $out, $err) = $node->psql('postgres', $call);
	my $took = time() - $t0;
	isnt($rc, 0, "fails: $call");
	like($err, qr/shared_preload_libraries/, 'the error says to preload quiver')
	  or diag($err);
	ok($took < 5, sprintf('at once (%.2f s)', $took));
}
is($node->safe_psql('postgres', 'SELECT count(*) FROM quiver_graph'), '0',
	'nothing was stored');

# Preloading afterwards makes the same calls work.
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'quiver'\n");
$node->restart;
is($node->safe_psql('postgres',
		"SELECT nodes, edges FROM gnn_create_graph('g', 'SELECT s, d FROM e', 'SELECT id, f FROM n')"),
	'2|1', 'after preloading and a restart, the engine serves');

$node->stop;
done_testing();
