# 009_dump: graph and model definitions are plain extension tables, so
# pg_dump carries them; a cluster restored from the dump serves the same
# predictions (the engine rebuilds its state from the restored tables when
# it starts).
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use QuiverTest;
use Test::More;

my $seed = test_seed();
my $src = quiver_node('dump_src');
my $tmp = PostgreSQL::Test::Utils::tempdir();

my $d = "$tmp/d";
gen_case($d, seed => $seed, nodes => 300 + $seed % 200, edges => 1500, layers => 2);
load_case($src, 'd', $d);
create_graph($src, 'g', 'd', undirected => 1);
run_ref($PYTHON, $REF, 'ref', '--dir', $d, '--arch', 'graphsage', '--weights',
	"$d/sage.safetensors", '--undirected', '--out', "$tmp/ref_sage_u.out");
create_model($src, 'm', 'g', 'graphsage', "$d/sage.safetensors", '{"fanout": [-1, -1]}');
predictions_ok($src, 'm', 'd', "$tmp/ref_sage_u.out", 'the source cluster serves');

my $dump = "$tmp/db.dump";
$src->command_ok([ 'pg_dump', '-Fc', '-f', $dump, '-d', $src->connstr('postgres') ],
	'pg_dump');
$src->stop;

my $dst = quiver_node('dump_dst', no_extension => 1);
$dst->command_ok([ 'pg_restore', '--exit-on-error', '-d', $dst->connstr('postgres'), $dump ],
	'pg_restore into a fresh cluster');
is($dst->safe_psql('postgres', 'SELECT count(*) FROM quiver_graph') . '|'
	  . $dst->safe_psql('postgres', 'SELECT count(*) FROM quiver_model'),
	'1|1', 'the definitions were restored');
is( $dst->safe_psql(
		'postgres',
		"SELECT weights = pg_read_binary_file('$d/sage.safetensors') FROM quiver_model WHERE name = 'm'"),
	't', 'with the weights intact');

$dst->restart;
predictions_ok($dst, 'm', 'd', "$tmp/ref_sage_u.out", 'the restored cluster serves the same predictions');
is($dst->safe_psql('postgres', "SELECT undirected, state FROM gnn_graphs WHERE name = 'g'"),
	't|ready', 'the graph is rebuilt as undirected');

$dst->stop;
done_testing();
