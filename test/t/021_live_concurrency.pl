# 021_live_concurrency: a live graph (DESIGN 1.4) under concurrent writers
# and readers, across an engine that dies and a server restart, and against
# bad rows.
#
# 1. pgbench: 8 clients insert and delete edges, update features and add
#    and remove nodes while 8 other clients call gnn_predict (scalar and
#    batch) on the live models, about 10 s; no client fails, and at the end
#    the live graph equals a fresh graph of the committed contents.
# 2. A stream of committed inserts (edges and nodes) runs while the engine
#    is stopped (kill -TERM: sessions survive) and, separately, killed
#    (kill -9: the cluster restarts); more rows are committed while it is
#    down; once it is back the graph holds every committed row.
# 3. A server restart rebuilds the same graph.
# 4. A statement that would put a bad row into the graph (NULL id, NULL or
#    ragged feature row, a non-finite value, a NULL edge endpoint; INSERT,
#    UPDATE and COPY) fails with gnn_create_graph's error, leaves no row in
#    the table and the graph as it was.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use QuiverTest;
use Test::More;
use Time::HiRes qw(time usleep);

my $seed = test_seed();
srand($seed);
my $node = quiver_node('live_concurrency', conf => "max_connections = 60\n");
my $tmp = PostgreSQL::Test::Utils::tempdir();

# 8 features, 12 hidden, 4 classes.
run_ref($PYTHON, $REF, 'weights', '--arch', 'graphsage', '--dims', '8,12,4',
	'--seed', $seed, '--out', "$tmp/sage.st");
run_ref($PYTHON, $REF, 'weights', '--arch', 'gcn', '--dims', '8,12,4',
	'--seed', $seed + 1, '--out', "$tmp/gcn.st");

sub feat { return '{' . join(',', map { sprintf('%.3f', rand(2) - 1) } 1 .. 8) . '}'; }

# Nodes 1..300 are always there (the readers predict them); 301..320 come
# and go; edges reach up to 330 (some dangling).
my $N = 300;
$node->safe_psql('postgres',
	    "CREATE TABLE n (id bigint UNIQUE, feat real[]);\n"
	  . "CREATE TABLE e (src bigint, dst bigint);\n"
	  . 'INSERT INTO n VALUES '
	  . join(', ', map { "($_, '" . feat() . "')" } 1 .. $N + 10) . ";\n"
	  . 'INSERT INTO e VALUES '
	  . join(', ', map { '(' . (1 + int(rand(330))) . ', ' . (1 + int(rand(330))) . ')' } 1 .. 1500)
	  . ";\n");

my $set = live_setup(
	$node,
	name => 'lg',
	edges => 'SELECT src, dst FROM e',
	features => 'SELECT id, feat FROM n',
	undirected => 0,
	models => [ [ 'sage', 'graphsage', "$tmp/sage.st", '{}' ], [ 'gcn', 'gcn', "$tmp/gcn.st", '{}' ] ]);
live_check($node, $set, label => 'initial');

# The live graph equals its fresh twin once its counts are right (after an
# engine or server restart the graph may still be loading: wait for it).
sub settled_check
{
	my ($label, $timeout) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my $want = live_expected_counts($node, $set);
	my $got;
	ok( defined wait_until(
			sub { $got = eval { live_counts($node, 'lg') }; defined $got && $got eq $want },
			$timeout // 60),
		"$label: the live graph has the committed rows within seconds")
	  or diag('counts ' . ($got // 'unreadable') . ", want $want");
	live_check($node, $set, label => $label);
}

# ---- 1. pgbench: writers and readers at once ----
my %writers = (
	'live_ins_edge.sql@4' => q{
\set s random(1, 330)
\set d random(1, 330)
INSERT INTO e VALUES (:s, :d);
},
	'live_del_edge.sql@3' => q{
\set s random(1, 330)
DELETE FROM e WHERE ctid = (SELECT ctid FROM e WHERE src = :s LIMIT 1);
},
	'live_move_edge.sql@1' => q{
\set s random(1, 330)
\set d random(1, 330)
UPDATE e SET dst = :d WHERE ctid = (SELECT ctid FROM e WHERE src = :s LIMIT 1);
},
	'live_feat.sql@1' => q{
\set x random(1, 300)
UPDATE n SET feat = ARRAY[random(), random(), random(), random(), random(), random(), random(), random()]::real[] WHERE id = :x;
},
	'live_node.sql@1' => q{
\set x random(301, 320)
INSERT INTO n VALUES (:x, '{1,0,1,0,1,0,1,0}') ON CONFLICT (id) DO UPDATE SET feat = ARRAY[random(), 0, 0, 0, 0, 0, 0, 1]::real[];
},
	'live_del_node.sql@1' => q{
\set x random(301, 320)
DELETE FROM n WHERE id = :x;
},
	'live_tx.sql@1' => q{
\set s random(1, 330)
\set d random(1, 330)
BEGIN;
INSERT INTO e VALUES (:s, :d), (:d, :s);
DELETE FROM e WHERE ctid = (SELECT ctid FROM e WHERE dst = :d LIMIT 1);
COMMIT;
},
	'live_rollback.sql@1' => q{
\set s random(1, 330)
BEGIN;
INSERT INTO e VALUES (:s, :s);
DELETE FROM n WHERE id = :s;
ROLLBACK;
});

# Readers: a wrong-sized or missing answer raises an error (a failed client).
$node->safe_psql(
	'postgres', q{
CREATE FUNCTION must(ok boolean, what text) RETURNS int LANGUAGE plpgsql AS $$
BEGIN
	IF ok IS NOT TRUE THEN
		RAISE EXCEPTION 'wrong answer: %', what;
	END IF;
	RETURN 1;
END $$;
});
my @readers;
for my $r (
	[ 'live_read_one', 4, q{
\set x random(1, 300)
SELECT must(cardinality(p) = 4, 'lg_sage ' || :x) FROM (SELECT gnn_predict('lg_sage', :x::bigint) AS p) s;
} ],
	[ 'live_read_gcn', 2, q{
\set x random(1, 300)
SELECT must(cardinality(p) = 4, 'lg_gcn ' || :x) FROM (SELECT gnn_predict('lg_gcn', :x::bigint) AS p) s;
} ],
	[ 'live_read_batch', 2, q{
\set x random(1, 290)
SELECT must(count(*) = 8 AND bool_and(cardinality(prediction) = 4), 'batch from ' || :x)
	FROM gnn_predict('lg_sage', ARRAY[:x, :x + 1, :x + 2, :x + 3, :x + 4, :x + 5, :x + 6, :x + 7]::bigint[]);
} ],
	[ 'live_read_scan', 1, q{
\set x random(1, 280)
SELECT must(count(*) = 20, 'scan from ' || :x)
	FROM (SELECT gnn_predict('lg_gcn', id) AS p FROM n WHERE id >= :x AND id < :x + 20 OFFSET 0) s
	WHERE cardinality(p) = 4;
} ])
{
	my ($name, $weight, $text) = @$r;
	PostgreSQL::Test::Utils::append_to_file("$tmp/$name.sql", $text);
	push @readers, '-f', "$tmp/$name.sql\@$weight";
}

my $edges_before = $node->safe_psql('postgres', 'SELECT count(*) FROM e');
my ($rout, $rerr) = ('', '');
my $rh = IPC::Run::start(
	[ 'pgbench', '-n', '-c', '8', '-j', '4', '-T', '11', @readers, '-d', $node->connstr('postgres') ],
	'>', \$rout, '2>', \$rerr, IPC::Run::timeout(300));
my $t0 = time();
$node->pgbench(
	'-n -c 8 -j 4 -T 10',
	0,
	[ qr{number of failed transactions: 0 }, qr{number of transactions actually processed: [1-9]} ],
	[ qr{^$} ],
	'8 writers insert, delete and move edges and change nodes for 10 s',
	\%writers);
note(sprintf('writers ran %.1f s', time() - $t0));
$rh->finish;
is($rh->result(0), 0, '8 readers call gnn_predict on the live models meanwhile: pgbench exits 0')
  or diag($rerr);
like($rout, qr{number of failed transactions: 0 }, 'no reader got a wrong-sized answer or an error');
like($rout, qr{number of transactions actually processed: [1-9]}, 'the readers were served');
unlike($rerr, qr/ERROR|aborted/, 'no reader aborted') or diag($rerr);
note($rout);
isnt($node->safe_psql('postgres', 'SELECT count(*) FROM e'), $edges_before, 'the writers changed the edges');
live_check($node, $set, label => 'after pgbench');

# ---- 2. the engine stops in the middle of a stream of commits ----
my $next_node = 1000;

# A script of autocommitted inserts: edges among the fixed nodes, new nodes
# and edges to and from them.
sub stream_script
{
	my ($rows) = @_;
	my $sql = '';
	for (1 .. $rows)
	{
		my $x = $next_node++;
		my ($s, $d) = (1 + int(rand($N)), 1 + int(rand($N)));
		$sql .= "INSERT INTO e VALUES ($s, $d);\n";
		$sql .= "INSERT INTO n VALUES ($x, '" . feat() . "');\n";
		$sql .= "INSERT INTO e VALUES ($x, $s), ($d, $x), ($x, " . ($x + 1) . ");\n";
		$sql .= "SELECT pg_sleep(0.01);\n";
	}
	return $sql;
}

# psql running a script file, each statement its own transaction.
sub start_stream
{
	my ($name, $rows) = @_;
	my $file = "$tmp/$name.sql";
	PostgreSQL::Test::Utils::append_to_file($file, stream_script($rows));
	my %h = (out => '', err => '');
	$h{run} = IPC::Run::start(
		[ 'psql', '-XAtq', '-d', $node->connstr('postgres'), '-f', $file ],
		'>', \$h{out}, '2>', \$h{err}, IPC::Run::timeout(300));
	return \%h;
}

# Wait until $k more nodes of the stream are committed.
sub wait_rows
{
	my ($from, $k) = @_;
	return wait_until(
		sub {
			my ($rc, $out) = $node->psql('postgres', "SELECT count(*) FROM n WHERE id >= $from");
			return $rc == 0 && $out >= $k;
		},
		60);
}

# kill -TERM: the engine exits and is restarted; sessions (and the stream) go on.
{
	my $from = $next_node;
	my $stream = start_stream('stream_term', 150);
	ok(defined wait_rows($from, 20), 'TERM: the stream commits');
	my $pid = engine_pid($node);
	kill 'TERM', $pid;
	my $t_kill = time();
	# more commits while the engine is down, from another session
	my $down_id = $next_node + 5000;
	my $t1 = time();
	my ($rc, $out, $err) = $node->psql('postgres',
		    "INSERT INTO n VALUES ($down_id, '" . feat() . "'); "
		  . "INSERT INTO e VALUES ($down_id, 1), (2, $down_id), ($down_id, 99999)");
	is($rc, 0, 'TERM: commits go on while the engine is down') or diag($err);
	note(sprintf('TERM: the commit took %.2f s, engine pid now "%s"', time() - $t1, engine_pid($node)));
	$stream->{run}->finish;
	is($stream->{run}->result(0), 0, 'TERM: every statement of the stream committed')
	  or diag($stream->{err});
	ok(defined wait_for_engine($node, 60, $pid), 'TERM: the engine comes back');
	note(sprintf('TERM: engine back %.2f s after the kill', time() - $t_kill));
	settled_check('after kill -TERM');
	like(live_predictions($node, 'lg_sage', [$down_id]), qr/^$down_id\|\{/,
		'TERM: the node committed while the engine was down is predictable');
}

# kill -9: the postmaster restarts the cluster; the stream loses its session.
{
	my $from = $next_node;
	my $stream = start_stream('stream_kill', 150);
	ok(defined wait_rows($from, 20), 'KILL: the stream commits');
	my $pid = engine_pid($node);
	kill 'KILL', $pid;
	my $t_kill = time();
	$stream->{run}->finish;
	note('KILL: the stream ended with: ' . substr($stream->{err}, 0, 300));
	# commit as soon as the server takes connections again (the engine is
	# still starting or rebuilding then)
	my $down_id = $next_node + 5000;
	my $back = wait_until(
		sub {
			my ($rc) = $node->psql('postgres',
				    "BEGIN; INSERT INTO n VALUES ($down_id, '" . feat() . "'); "
				  . "INSERT INTO e VALUES ($down_id, 3), (4, $down_id); COMMIT;");
			return $rc == 0;
		},
		60);
	ok(defined $back, 'KILL: commits go on once the server is back, engine up or not');
	note(sprintf('KILL: committed %.2f s after the kill, engine pid "%s"', time() - $t_kill, engine_pid($node)));
	my $more = start_stream('stream_after_kill', 30);
	$more->{run}->finish;
	is($more->{run}->result(0), 0, 'KILL: a further stream commits') or diag($more->{err});
	ok(defined wait_for_engine($node, 60, $pid), 'KILL: the engine comes back');
	settled_check('after kill -9');
	like(live_predictions($node, 'lg_sage', [$down_id]), qr/^$down_id\|\{/,
		'KILL: the node committed while the engine was down is predictable');
}

# ---- 3. a server restart ----
my ($rc, $out, $err) = $node->psql('postgres',
	'DELETE FROM e WHERE src % 7 = 0; UPDATE n SET feat = feat[2:8] || feat[1:1] WHERE id % 5 = 0');
is($rc, 0, 'edges deleted and features rotated before the restart') or diag($err);
live_check($node, $set, label => 'before the restart');
$node->restart;
ok(defined wait_for_engine($node, 60), 'an engine runs after the restart');
settled_check('after a server restart');

# ---- 4. bad rows ----
my $f8 = feat();
my $copy_bad = "$tmp/bad.copy";
PostgreSQL::Test::Utils::append_to_file($copy_bad,
	"9101\t$f8\n9102\t{1,2,3}\n9103\t$f8\n");
my @bad = (
	[ 'INSERT of a NULL node id', "INSERT INTO n VALUES (NULL, '$f8')", qr/returned a NULL/,
		'SELECT count(*) FROM n WHERE id IS NULL' ],
	[ 'INSERT of a NULL feature row', 'INSERT INTO n VALUES (9001, NULL)',
		qr/feature row of node 9001 is NULL/, 'SELECT count(*) FROM n WHERE id = 9001' ],
	[ 'INSERT of a ragged feature row', q{INSERT INTO n VALUES (9002, '{1,2}')},
		qr/feature row of node 9002 has 2 values/, 'SELECT count(*) FROM n WHERE id = 9002' ],
	[ 'INSERT of a feature row too long', q{INSERT INTO n VALUES (9003, '{1,2,3,4,5,6,7,8,9}')},
		qr/feature row of node 9003 has 9 values/, 'SELECT count(*) FROM n WHERE id = 9003' ],
	[ 'INSERT of a NaN feature', q{INSERT INTO n VALUES (9004, '{1,2,3,NaN,5,6,7,8}')},
		qr/non-finite value/, 'SELECT count(*) FROM n WHERE id = 9004' ],
	[ 'INSERT of an infinite feature', q{INSERT INTO n VALUES (9005, '{1,2,3,4,5,6,7,-Infinity}')},
		qr/non-finite value/, 'SELECT count(*) FROM n WHERE id = 9005' ],
	[ 'a multi-row INSERT with one bad row', "INSERT INTO n VALUES (9006, '$f8'), (9007, '{1}'), (9008, '$f8')",
		qr/feature row of node 9007 has 1 values?/, 'SELECT count(*) FROM n WHERE id BETWEEN 9006 AND 9008' ],
	[ 'UPDATE to a NULL feature row', 'UPDATE n SET feat = NULL WHERE id = 5',
		qr/feature row of node 5 is NULL/, 'SELECT count(*) FROM n WHERE id = 5 AND feat IS NULL' ],
	[ 'UPDATE to a ragged feature row', q{UPDATE n SET feat = '{1,2,3}' WHERE id = 6},
		qr/feature row of node 6 has 3 values/, 'SELECT count(*) FROM n WHERE id = 6 AND cardinality(feat) = 3' ],
	[ 'UPDATE to a NaN feature', q{UPDATE n SET feat[3] = 'NaN' WHERE id = 7},
		qr/non-finite value/, q{SELECT count(*) FROM n WHERE id = 7 AND feat[3] = 'NaN'} ],
	[ 'UPDATE to a NULL node id', 'UPDATE n SET id = NULL WHERE id = 8',
		qr/returned a NULL/, 'SELECT count(*) FROM n WHERE id IS NULL' ],
	[ 'COPY with a ragged row', "\\copy n FROM '$copy_bad'",
		qr/feature row of node 9102 has 3 values/, 'SELECT count(*) FROM n WHERE id BETWEEN 9101 AND 9103' ],
	[ 'INSERT of an edge with a NULL src', 'INSERT INTO e VALUES (NULL, 1)',
		qr/returned a NULL/, 'SELECT count(*) FROM e WHERE src IS NULL' ],
	[ 'INSERT of an edge with a NULL dst', 'INSERT INTO e VALUES (1, NULL)',
		qr/returned a NULL/, 'SELECT count(*) FROM e WHERE dst IS NULL' ],
	[ 'UPDATE of an edge to a NULL dst', 'UPDATE e SET dst = NULL WHERE src = 2',
		qr/returned a NULL/, 'SELECT count(*) FROM e WHERE dst IS NULL' ]);

my $ids = live_ids($node, $set);
my $counts_before = live_counts($node, 'lg');
my $pred_before = live_predictions($node, 'lg_sage', $ids);
like($pred_before, qr/^\d+\|\{/, 'predictions before the bad rows');

# The graph is as it was: same counts, same predictions.
sub unchanged
{
	my ($label) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	is(live_counts($node, 'lg'), $counts_before, "$label: gnn_graphs counts unchanged");
	my ($ok, $what) = compare_predictions(live_predictions($node, 'lg_sage', $ids), $pred_before);
	ok($ok, "$label: predictions unchanged") or diag($what);
}

for my $b (@bad)
{
	my ($what, $sql, $re, $left) = @$b;
	my ($rc, $out, $err) = $node->psql('postgres', $sql);
	isnt($rc, 0, "$what fails");
	like($err, $re, "$what: gnn_create_graph's error") or diag($err);
	is($node->safe_psql('postgres', $left), '0', "$what: the row is not in the table");
	unchanged($what);
}

# in transactions: a bad row aborts the transaction; rolled back to a
# savepoint, the rest commits
{
	my $s = $node->background_psql('postgres', on_error_stop => 0);
	$s->query_safe('BEGIN');
	$s->query_safe("INSERT INTO n VALUES (9201, '$f8')");
	$s->query('INSERT INTO n VALUES (9202, NULL)');
	like($s->{stderr}, qr/feature row of node 9202 is NULL/, 'a bad row in a transaction fails');
	$s->{stderr} = '';
	$s->query('COMMIT');
	$s->{stderr} = '';
	is($node->safe_psql('postgres', 'SELECT count(*) FROM n WHERE id IN (9201, 9202)'), '0',
		'the failed transaction committed nothing');
	unchanged('a transaction with a bad row');

	$s->query_safe('BEGIN');
	$s->query_safe("INSERT INTO n VALUES (9301, '$f8')");
	$s->query_safe('INSERT INTO e VALUES (9301, 1), (2, 9301)');
	$s->query_safe('SAVEPOINT a');
	$s->query(q{INSERT INTO n VALUES (9302, '{1,2}')});
	like($s->{stderr}, qr/feature row of node 9302 has 2 values/, 'a bad row after a savepoint fails');
	$s->{stderr} = '';
	$s->query_safe('ROLLBACK TO SAVEPOINT a');
	$s->query_safe("INSERT INTO n VALUES (9303, '$f8')");
	$s->query_safe('COMMIT');
	$s->quit;
	is($node->safe_psql('postgres', 'SELECT string_agg(id::text, \',\' ORDER BY id) FROM n WHERE id > 9300'),
		'9301,9303', 'the rows around the savepoint committed');
	like(live_predictions($node, 'lg_sage', [ 9301, 9303 ]), qr/^9301\|\{.*\n9303\|\{/,
		'and are in the graph');
}
live_check($node, $set, label => 'after the bad rows');

$node->stop;
done_testing();
