# 022_live_standby: a hot standby's live graphs follow the primary's
# replayed changes (DESIGN 1.3, 1.4).
#
# A primary and a streaming standby, both preloading quiver.  Live graphs
# (directed and undirected, a GraphSAGE and a GCN model each) are created on
# the primary, with non-live fresh twins there that are rebuilt from the
# committed contents for each comparison.  After each change on the primary
# (inserts, feature updates, node renumbering, deletes, TRUNCATE, COPY, a
# rolled-back transaction) the standby, polled for up to 30 s after replay,
# shows gnn_graphs counts equal to those computed on the primary, and every
# node's prediction of every live model equals the fresh model's on the
# primary.  gnn_create_graph (live or not) fails there at once with 25006;
# a restarted standby serves the same graphs and goes on following.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use QuiverTest;
use Test::More;
use Time::HiRes qw(time);

my $seed = test_seed();
srand($seed);
my $tmp = PostgreSQL::Test::Utils::tempdir();

# Seconds the standby gets to follow a replayed change.
my $FOLLOW = 30;

my $conf = q{
shared_preload_libraries = 'quiver'
quiver.engine_threads = 2
quiver.engine_start_timeout = 60000
restart_after_crash = on
log_min_messages = info
quiver.catalog_poll_interval = 200
};

my $primary = PostgreSQL::Test::Cluster->new('live_primary');
$primary->init(allows_streaming => 1);
$primary->append_conf('postgresql.conf', $conf);
$primary->start;
$primary->safe_psql('postgres', 'CREATE EXTENSION quiver');

run_ref($PYTHON, $REF, 'weights', '--arch', 'graphsage', '--dims', '4,6,3',
	'--seed', $seed, '--out', "$tmp/sage.st");
run_ref($PYTHON, $REF, 'weights', '--arch', 'gcn', '--dims', '4,6,3',
	'--seed', $seed + 1, '--out', "$tmp/gcn.st");

sub feat { return '{' . join(',', map { sprintf('%.3f', rand(2) - 1) } 1 .. 4) . '}'; }
sub rid { return 1 + int(rand(88)); }

# nodes 1..80, edges among 1..88 (some dangling)
$primary->safe_psql('postgres',
	    "CREATE TABLE n (id bigint PRIMARY KEY, feat real[]);\n"
	  . "CREATE TABLE e (src bigint, dst bigint);\n"
	  . 'INSERT INTO n VALUES ' . join(', ', map { "($_, '" . feat() . "')" } 1 .. 80) . ";\n"
	  . 'INSERT INTO e VALUES ' . join(', ', map { '(' . rid() . ', ' . rid() . ')' } 1 .. 300) . ";\n");

$primary->backup('b');
my $standby = PostgreSQL::Test::Cluster->new('live_standby');
$standby->init_from_backup($primary, 'b', has_streaming => 1);
$standby->append_conf('postgresql.conf', $conf);
$standby->start;
ok(defined wait_for_engine($standby, 60), 'the standby runs an engine');
is($standby->safe_psql('postgres', 'SELECT pg_is_in_recovery()'), 't', 'it is a hot standby');

# ---- live graphs created on the primary ----
my @models = (
	[ 'sage', 'graphsage', "$tmp/sage.st", '{}' ],
	[ 'gcn', 'gcn', "$tmp/gcn.st", '{}' ]);
my @sets = (
	live_setup(
		$primary,
		name => 'ld',
		edges => 'SELECT src, dst FROM e',
		features => 'SELECT id, feat FROM n',
		undirected => 0,
		models => \@models),
	live_setup(
		$primary,
		name => 'lu',
		edges => 'SELECT src, dst FROM e',
		features => 'SELECT id, feat FROM n',
		undirected => 1,
		models => \@models));

# After a change on the primary: the primary's live graphs equal their
# fresh twins at once, and the standby's within $FOLLOW s of replay.
sub follows
{
	my ($label) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	for my $set (@sets)
	{
		live_check($primary, $set, label => "$label (primary)");
		my $want_counts = live_expected_counts($primary, $set);
		my $ids = live_ids($primary, $set);
		my @want = map { live_fresh_predictions($primary, $set, $_, $ids, no_refresh => $_ > 0) }
		  0 .. $#{ $set->{pairs} };
		$primary->wait_for_catchup($standby);
		my ($got_counts, @why);
		my $t = wait_until(
			sub {
				@why = ();
				$got_counts = eval { live_counts($standby, $set->{name}) } // 'unreadable';
				push @why, "counts $got_counts, want $want_counts" if $got_counts ne $want_counts;
				return 0 if @why;
				return 1 unless @$ids;
				for my $k (0 .. $#{ $set->{pairs} })
				{
					my $live = $set->{pairs}[$k][0];
					my ($ok, $what) =
					  compare_predictions(live_predictions($standby, $live, $ids), $want[$k]);
					push @why, "$live: $what" unless $ok;
				}
				return !@why;
			},
			$FOLLOW);
		ok(defined $t, "$label: the standby's $set->{name} follows within $FOLLOW s: counts $want_counts, every prediction")
		  or diag(join("\n", @why));
		note(sprintf('%s: %s followed %.2f s after replay', $label, $set->{name}, $t)) if defined $t;
	}
}

# A change on the primary; a failure is a failed test.
sub primary_do
{
	my ($label, $sql) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my ($rc, $out, $err) = $primary->psql('postgres', $sql);
	is($rc, 0, "primary: $label runs") or diag($err);
}

follows('created');
is(($standby->psql('postgres', q{SELECT string_agg(name || ':' || live, ',' ORDER BY name COLLATE "C") FROM gnn_graphs}))[1],
	'ld:true,ld_fresh:false,lu:true,lu_fresh:false', 'standby: gnn_graphs.live says which graphs are live');

# ---- changes on the primary ----
primary_do('inserts',
	    'INSERT INTO n VALUES ' . join(', ', map { "($_, '" . feat() . "')" } 81 .. 86) . ";\n"
	  . 'INSERT INTO e VALUES ' . join(', ', map { '(' . rid() . ', ' . rid() . ')' } 1 .. 20)
	  . ", (81, 81), (82, 81), (82, 81), (81, 200);\n");
follows('inserts');

primary_do('feature updates and a renumbered node',
	"UPDATE n SET feat = '" . feat() . "' WHERE id % 4 = 1; UPDATE n SET id = 300 WHERE id = 2; UPDATE e SET dst = 300 WHERE dst = 3");
follows('feature updates and a renumbered node');

primary_do('a delete of nodes and edges',
	'DELETE FROM n WHERE id IN (5, 6, 7, 81); DELETE FROM e WHERE src = 10 OR dst = 11');
follows('a delete of nodes and edges');

# a rolled-back transaction leaves no trace on the standby either
my $before = $primary->safe_psql('postgres', 'SELECT count(*) FROM e');
primary_do('a rolled-back transaction', "BEGIN; TRUNCATE e; INSERT INTO n VALUES (400, '" . feat() . "'); ROLLBACK;");
is($primary->safe_psql('postgres', 'SELECT count(*) FROM e'), $before, 'the rolled-back truncate left the edges');
follows('a rolled-back transaction');

primary_do('TRUNCATE of the edges', 'TRUNCATE e');
follows('TRUNCATE of the edges');

my $copy = "$tmp/edges.copy";
PostgreSQL::Test::Utils::append_to_file($copy,
	join('', map { rid() . "\t" . rid() . "\n" } 1 .. 150) . "1\t1\n1\t1\n4\t500\n");
my ($rc, $out, $err) = $primary->psql('postgres', "\\copy e FROM '$copy'");
is($rc, 0, 'COPY FROM STDIN of edges on the primary') or diag($err);
follows('COPY of edges');

my $ncopy = "$tmp/nodes.copy";
PostgreSQL::Test::Utils::append_to_file($ncopy, join('', map { "$_\t" . feat() . "\n" } 1 .. 60));
($rc, $out, $err) = $primary->psql('postgres', "BEGIN;\nTRUNCATE n;\n\\copy n FROM '$ncopy'\nCOMMIT;");
is($rc, 0, 'TRUNCATE and COPY of the nodes in one transaction on the primary') or diag($err);
follows('TRUNCATE and COPY of the nodes');

# ---- gnn_create_graph on the standby: 25006 at once ----
for my $live ('false', 'true')
{
	my $t0 = time();
	($rc, $out, $err) = $standby->psql('postgres',
		"\\set VERBOSITY verbose\nSELECT * FROM gnn_create_graph('s', 'SELECT src, dst FROM e', 'SELECT id, feat FROM n', live => $live)"
	);
	isnt($rc, 0, "standby: gnn_create_graph(live => $live) fails");
	like($err, qr/ERROR:\s+25006:/, "standby: gnn_create_graph(live => $live) fails with 25006")
	  or diag($err);
	cmp_ok(time() - $t0, '<', 5, "standby: ... at once");
}
is($standby->safe_psql('postgres', "SELECT count(*) FROM quiver_graph WHERE name = 's'"), '0',
	'standby: the refused create left no graph');

# ---- a restarted standby serves the same graphs and follows on ----
$standby->restart;
ok(defined wait_for_engine($standby, 60), 'standby: an engine runs after the restart');
follows('after the standby restarted');
primary_do('changes after the standby restarted',
	"INSERT INTO e VALUES (1, 2), (2, 1), (3, 3); UPDATE n SET feat = '" . feat() . "' WHERE id = 1; DELETE FROM n WHERE id = 4");
follows('changes after the standby restarted');

$standby->stop;
$primary->stop;
done_testing();
