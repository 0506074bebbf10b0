# 020_live_property: a live graph (DESIGN 1.4) is, after every commit, the
# graph gnn_create_graph would build from its tables' committed contents,
# less the edges with an endpoint that has no node row (counted in
# gnn_graphs.dangling_edges).
#
# Two pairs of tables: n/e (bigint ids, real[] features, plain tables) and
# n2/e2 (int ids, some negative, double precision[] features, filters
# "WHERE active" and "WHERE kind = 1", e2 partitioned by kind), each with a
# directed and an undirected live graph and a GraphSAGE and a GCN model per
# graph (2 layers, every neighbour).  A seeded random sequence of
# transactions then changes the tables: edges inserted (duplicates, self
# loops, edges to missing nodes), deleted and moved; features updated; nodes
# deleted, re-inserted, renumbered, switched in and out of the filter; rows
# moved between partitions; TRUNCATE (also of one partition) and COPY FROM
# STDIN; some transactions roll back, some roll back to a savepoint, some
# are prepared and committed or rolled back from another session.  While a
# transaction is open (or prepared) the live models still give the last
# committed answers; after each commit every node's prediction of every live
# model equals that of the same model on a fresh graph built from the
# committed contents (relative error < 1e-5), and gnn_graphs' nodes, edges
# and dangling_edges equal counts computed in SQL.  The queries a live graph
# may not take are refused with 0A000 first; a server restart at the end
# rebuilds the same graphs.
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
my $STEPS = 100;
my $t_start = time();

my $node = quiver_node('live_property', conf => "max_prepared_transactions = 4\n");
my $tmp = PostgreSQL::Test::Utils::tempdir();

# 4 features, 6 hidden, 3 classes.
run_ref($PYTHON, $REF, 'weights', '--arch', 'graphsage', '--dims', '4,6,3',
	'--seed', $seed, '--out', "$tmp/sage.st");
run_ref($PYTHON, $REF, 'weights', '--arch', 'gcn', '--dims', '4,6,3',
	'--seed', $seed + 1, '--out', "$tmp/gcn.st");

$node->safe_psql(
	'postgres', q{
CREATE TABLE n (id bigint PRIMARY KEY, feat real[]);
CREATE TABLE e (src bigint, dst bigint);
CREATE TABLE n2 (id int NOT NULL UNIQUE, feat double precision[],
				 active boolean NOT NULL DEFAULT true);
CREATE TABLE e2 (src int, dst int, kind int NOT NULL DEFAULT 1) PARTITION BY LIST (kind);
CREATE TABLE e2_k1 PARTITION OF e2 FOR VALUES IN (1);
CREATE TABLE e2_other PARTITION OF e2 DEFAULT;
CREATE TABLE nu (id bigint, feat real[]);
CREATE TABLE nuu (id bigint, part int, feat real[], UNIQUE (id, part));
});

# ---- random rows ----
sub rint { my ($lo, $hi) = @_; return $lo + int(rand($hi - $lo + 1)); }
sub pick { return $_[ int(rand(scalar @_)) ]; }
sub feat { return '{' . join(',', map { sprintf('%.3f', rand(2) - 1) } 1 .. 4) . '}'; }

# Node ids lo..hi; edge endpoints reach "slack" beyond, where rows rarely are.
my %pair = (
	1 => { n => 'n', e => 'e', lo => 1, hi => 40, slack => 4, kind => 0 },
	2 => { n => 'n2', e => 'e2', lo => -20, hi => 20, slack => 3, kind => 1 });
sub node_id { my ($p) = @_; return rint($p->{lo}, $p->{hi}); }
sub end_id { my ($p) = @_; return rint($p->{lo} - $p->{slack}, $p->{hi} + $p->{slack}); }

# One edge row: "(src, dst)" or "(src, dst, kind)", and its COPY line.
sub edge_row
{
	my ($p, $loop) = @_;
	my $s = end_id($p);
	my $d = $loop ? $s : end_id($p);
	return ([ $s, $d ]) unless $p->{kind};
	return ([ $s, $d, rand() < 0.8 ? 1 : pick(0, 2) ]);
}
sub edge_values { return join(', ', map { '(' . join(', ', @$_) . ')' } @_); }
sub edge_copy { return join('', map { join("\t", @$_) . "\n" } @_); }

# COPY FROM STDIN of some rows, as psql's \copy sends it (the rows from a
# file: COPY's inline data does not pass through a background psql).
my $copies = 0;
sub copy_in
{
	my ($target, $data) = @_;
	my $file = "$tmp/copy_" . $copies++ . '.txt';
	PostgreSQL::Test::Utils::append_to_file($file, $data);
	return "\\copy $target FROM '$file'";
}

# initial contents
for my $p (values %pair)
{
	my @nodes = grep { rand() < 0.85 } $p->{lo} .. $p->{hi};
	my $rows = join(', ',
		map { "($_, '" . feat() . "'" . ($p->{kind} ? ', ' . (rand() < 0.85 ? 'true' : 'false') : '') . ')' }
		  @nodes);
	my @edges = ((map { edge_row($p) } 1 .. 120), (map { edge_row($p, 1) } 1 .. 5));
	push @edges, @edges[ 0 .. 9 ];    # duplicates
	$node->safe_psql('postgres',
		"INSERT INTO $p->{n} VALUES $rows; INSERT INTO $p->{e} VALUES " . edge_values(@edges));
}

# ---- queries a live graph may not take: 0A000, nothing created ----
{
	my @bad = (
		[ 'edges from a join', 'SELECT e.src, e.dst FROM e JOIN n ON n.id = e.src', 'SELECT id, feat FROM n',
			qr/must read one table/ ],
		[ 'edges from two tables', 'SELECT e.src, e.dst FROM e, n WHERE n.id = e.dst', 'SELECT id, feat FROM n',
			qr/must read one table/ ],
		[ 'edges of a UNION', 'SELECT src, dst FROM e UNION ALL SELECT dst, src FROM e', 'SELECT id, feat FROM n',
			qr/must read one table/ ],
		[ 'features from a join', 'SELECT src, dst FROM e', 'SELECT n.id, n.feat FROM n JOIN n2 ON n2.id = n.id',
			qr/must read one table/ ],
		[ 'a node id column that is not unique', 'SELECT src, dst FROM e', 'SELECT id, feat FROM nu',
			qr/unique/i ],
		[ 'a node id column unique only with another column', 'SELECT src, dst FROM e', 'SELECT id, feat FROM nuu',
			qr/unique/i ],
		[ 'a WHERE that reads another table', 'SELECT src, dst FROM e WHERE src IN (SELECT id FROM n)',
			'SELECT id, feat FROM n', qr/WHERE|must read one table/ ],
		[ 'a features WHERE that reads another table', 'SELECT src, dst FROM e',
			'SELECT id, feat FROM n WHERE EXISTS (SELECT 1 FROM e WHERE e.src = n.id)', qr/WHERE|must read one table/ ],
		[ 'a select list that is not columns of the table', 'SELECT src + 1, dst FROM e', 'SELECT id, feat FROM n',
			qr/./ ]);
	for my $b (@bad)
	{
		my ($what, $edges, $feats, $re) = @$b;
		my ($rc, $out, $err) = $node->psql('postgres',
			    "\\set VERBOSITY verbose\nSELECT * FROM gnn_create_graph('bad', "
			  . sql_literal($edges) . ', ' . sql_literal($feats) . ', live => true)');
		like($err, qr/ERROR:\s+0A000:/, "live graph refused with 0A000: $what") or diag($err);
		like($err, $re, "... and the message says which rule: $what");
	}
	is($node->safe_psql('postgres', "SELECT count(*) FROM quiver_graph WHERE name = 'bad'"),
		'0', 'the refused live graphs were not created');
}

# ---- the live graphs and their fresh twins ----
my @models = (
	[ 'sage', 'graphsage', "$tmp/sage.st", '{}' ],
	[ 'gcn', 'gcn', "$tmp/gcn.st", '{}' ]);
my @sets = (
	live_setup(
		$node,
		name => 'ld',
		edges => 'SELECT src, dst FROM e',
		features => 'SELECT id, feat FROM n',
		undirected => 0,
		models => \@models),
	live_setup(
		$node,
		name => 'lu',
		edges => 'SELECT src, dst FROM e',
		features => 'SELECT id, feat FROM n',
		undirected => 1,
		models => \@models),
	live_setup(
		$node,
		name => 'ld2',
		edges => 'SELECT src, dst FROM e2 WHERE kind = 1',
		features => 'SELECT id::bigint, feat::real[] FROM n2 WHERE active',
		undirected => 0,
		models => \@models),
	live_setup(
		$node,
		name => 'lu2',
		edges => 'SELECT src::bigint, dst FROM e2 WHERE kind = 1',
		features => 'SELECT id, feat FROM n2 WHERE active',
		undirected => 1,
		models => \@models));
is(join(',', sort split /\n/, ($node->psql('postgres',
			q{SELECT name || ':' || live FROM gnn_graphs WHERE name LIKE 'l%'}))[1]),
	'ld2:true,ld2_fresh:false,ld:true,ld_fresh:false,lu2:true,lu2_fresh:false,lu:true,lu_fresh:false',
	'gnn_graphs.live says which graphs are live');

# A session older than every change below: it reads the live models.
my $reader = $node->background_psql('postgres', on_error_stop => 0);
$reader->set_query_timer_restart;
# The writer.
my $w = $node->background_psql('postgres', on_error_stop => 0);
$w->set_query_timer_restart;

# The last committed state per set: [ids, fresh predictions of its first model].
my %last;

# Check every set after a commit (or a rollback); remembers the state.
sub check_all
{
	my ($label, %opt) = @_;
	my $all = 1;
	for my $set (@sets)
	{
		my ($ok, $ids, $fresh) = live_check($node, $set, label => $label, %opt);
		$all &&= $ok;
		$last{ $set->{name} } = [ $ids, $fresh ];
	}
	return $all;
}

# While a transaction is open or prepared, the live models give the last
# committed answers (read through the older session).
sub check_unseen
{
	my ($label) = @_;
	for my $set (@sets)
	{
		my ($ids, $fresh) = @{ $last{ $set->{name} } };
		next unless @$ids;
		my $live = $set->{pairs}[0][0];
		my ($ok, $what) = compare_predictions(live_predictions($reader, $live, $ids), $fresh);
		ok($ok, "$label: $live still gives the committed answers") or diag($what);
	}
}

check_all('initial');

# Run one statement in the writer; a failure is a failed test, and the
# rest of the writer's transaction is skipped (rolled back at the step's end).
my $failed_statements = 0;
my $aborted = 0;
sub w_run
{
	my ($label, $sql) = @_;
	return 0 if $aborted;
	$w->query($sql);
	return 1 if $w->{stderr} eq '';
	fail("$label: statement succeeds: " . substr($sql, 0, 300));
	diag($w->{stderr});
	$w->{stderr} = '';
	$failed_statements++;
	$aborted = 1;
	return 0;
}

# One random change to one table pair (of pair $which, or the change
# named $only): (sql, short name).
sub random_op
{
	my ($which, $only) = @_;
	my $p = $pair{ $which // pick(1, 2) };
	my ($n, $e) = ($p->{n}, $p->{e});
	my ($x, $y, $u, $v) = (node_id($p), node_id($p), end_id($p), end_id($p));
	my $ecols = $p->{kind} ? '(src, dst, kind)' : '(src, dst)';
	my @ops = (
		[ 10, 'insert edges',
			sub { "INSERT INTO $e VALUES " . edge_values(map { edge_row($p, rand() < 0.2) } 1 .. rint(1, 4)) } ],
		[ 3, 'duplicate edges', sub { "INSERT INTO $e SELECT * FROM $e WHERE src = $u" } ],
		[ 2, 'insert dangling edge',
			sub { "INSERT INTO $e $ecols VALUES ($u, " . ($p->{hi} + $p->{slack} + 1) . ($p->{kind} ? ', 1' : '') . ')' } ],
		[ 6, 'delete an edge',
			sub { "DELETE FROM $e WHERE (tableoid, ctid) IN (SELECT tableoid, ctid FROM $e WHERE dst = $u LIMIT 1)" } ],
		[ 3, 'delete edges of a node', sub { "DELETE FROM $e WHERE src = $u OR dst = $u" } ],
		[ 4, 'move edge dst',
			sub { "UPDATE $e SET dst = $v WHERE (tableoid, ctid) IN (SELECT tableoid, ctid FROM $e WHERE src = $u LIMIT 2)" } ],
		[ 2, 'move edge src', sub { "UPDATE $e SET src = $v WHERE dst = $u" } ],
		[ 6, 'update feature', sub { "UPDATE $n SET feat = '" . feat() . "' WHERE id = $x" } ],
		[ 2, 'update features',
			sub { "UPDATE $n SET feat = ARRAY[feat[2], feat[1], feat[4], -feat[3]] WHERE abs(id) % 3 = " . rint(0, 2) } ],
		[ 7, 'upsert node',
			sub { "INSERT INTO $n (id, feat) VALUES ($x, '" . feat() . "') ON CONFLICT (id) DO UPDATE SET feat = EXCLUDED.feat" } ],
		[ 2, 'insert node or nothing',
			sub { "INSERT INTO $n (id, feat) VALUES ($x, '" . feat() . "') ON CONFLICT (id) DO NOTHING" } ],
		[ 4, 'delete node', sub { "DELETE FROM $n WHERE id = $x" } ],
		[ 4, 'renumber node',
			sub { "UPDATE $n SET id = $y WHERE id = $x AND NOT EXISTS (SELECT 1 FROM $n WHERE id = $y)" } ],
		[ 3, 'copy nodes',
			sub {
				my %ids = map { node_id($p) => 1 } 1 .. rint(1, 4);
				my @ids = sort { $a <=> $b } keys %ids;
				"DELETE FROM $n WHERE id IN (" . join(', ', @ids) . ");\n"
				  . copy_in("$n (id, feat)", join('', map { "$_\t" . feat() . "\n" } @ids));
			} ],
		[ 0, 'refill nodes',
			sub {
				my @ids = ($p->{lo}, grep { rand() < 0.4 } $p->{lo} + 1 .. $p->{hi});
				"DELETE FROM $n WHERE id IN (" . join(', ', @ids) . ");\n"
				  . copy_in("$n (id, feat)", join('', map { "$_\t" . feat() . "\n" } @ids));
			} ],
		[ 3, 'copy edges',
			sub { copy_in("$e $ecols", edge_copy(map { edge_row($p, rand() < 0.1) } 1 .. rint(1, 6))) } ],
		[ 1, 'truncate edges', sub { "TRUNCATE $e" } ],
		[ 1, 'truncate nodes',
			sub {
				my @ids = grep { rand() < 0.5 } $p->{lo} .. $p->{hi};
				"TRUNCATE $n"
				  . (rand() < 0.75 && @ids
					? ";\n" . copy_in("$n (id, feat)", join('', map { "$_\t" . feat() . "\n" } @ids))
					: '');
			} ]);
	if ($p->{kind})
	{
		push @ops,
		  [ 3, 'switch node active', sub { "UPDATE n2 SET active = NOT active WHERE id = $x" } ],
		  [ 3, 'move edges across partitions',
			sub { "UPDATE e2 SET kind = CASE kind WHEN 1 THEN " . pick(0, 2) . " ELSE 1 END WHERE src = $u" } ],
		  [ 1, 'insert into a partition', sub { "INSERT INTO e2_k1 VALUES ($u, $v, 1), ($v, $v, 1)" } ],
		  [ 1, 'truncate a partition', sub { 'TRUNCATE e2_k1' } ];
	}
	if ($only)
	{
		my ($op) = grep { $_->[1] eq $only } @ops;
		return ($op->[2]->(), "$op->[1] ($n/$e)");
	}
	my $total = 0;
	$total += $_->[0] for @ops;
	my $r = rand($total);
	for my $op (@ops)
	{
		$r -= $op->[0];
		next if $r >= 0;
		return ($op->[2]->(), "$op->[1] ($n/$e)");
	}
	die 'unreachable';
}

# Some random changes in the writer; returns their names.  A pair whose
# graph has fewer than 8 nodes left gets some by COPY first.
my @refill;
sub ops
{
	my ($label, $count) = @_;
	my @names;
	for (1 .. $count)
	{
		my ($sql, $name) = @refill ? random_op(shift(@refill), 'refill nodes') : random_op();
		push @names, $name;
		w_run("$label: $name", $sql) or last;
	}
	return @names;
}

my %kinds;
my $checks_failed = 0;
for my $step (1 .. $STEPS)
{
	@refill = grep { @{ $last{ $_->[1] }[0] } < 8 } ([ 1, 'ld' ], [ 2, 'ld2' ]);
	@refill = map { $_->[0] } @refill;
	my $r = rand();
	my $label = "step $step";
	my @names;
	my $kind;
	if ($r < 0.1)
	{
		$kind = 'autocommit';
		@names = ops($label, 1);
	}
	elsif ($r < 0.62)
	{
		$kind = 'commit';
		w_run($label, 'BEGIN');
		@names = ops($label, rint(1, 4));
		check_unseen("$label (open)") if rand() < 0.3;
		w_run($label, 'COMMIT');
	}
	elsif ($r < 0.74)
	{
		$kind = 'rollback';
		w_run($label, 'BEGIN');
		@names = ops($label, rint(1, 4));
		check_unseen("$label (open)");
		w_run($label, 'ROLLBACK');
	}
	elsif ($r < 0.88)
	{
		$kind = 'savepoint';
		w_run($label, 'BEGIN');
		@names = ops($label, rint(0, 2));
		w_run($label, 'SAVEPOINT a');
		push @names, map { "[rolled back] $_" } ops($label, rint(1, 3));
		w_run($label, 'ROLLBACK TO SAVEPOINT a');
		if (rand() < 0.5)
		{
			w_run($label, 'SAVEPOINT b');
			push @names, map { "[released] $_" } ops($label, rint(1, 2));
			w_run($label, 'RELEASE SAVEPOINT b');
		}
		push @names, ops($label, rint(0, 2));
		check_unseen("$label (open)") if rand() < 0.3;
		w_run($label, 'COMMIT');
	}
	else
	{
		my $commit = rand() < 0.5;
		$kind = $commit ? 'commit prepared' : 'rollback prepared';
		w_run($label, 'BEGIN');
		@names = ops($label, rint(1, 3));
		if (w_run($label, "PREPARE TRANSACTION 'p$step'"))
		{
			check_unseen("$label (prepared)");
			# from another session
			my ($rc, $out, $err) = $node->psql('postgres',
				($commit ? 'COMMIT' : 'ROLLBACK') . " PREPARED 'p$step'");
			is($rc, 0, "$label: $kind from another session") or diag($err);
		}
	}
	if ($aborted)
	{
		$w->query('ROLLBACK');
		$w->{stderr} = '';
		$aborted = 0;
		$kind .= ' (failed, rolled back)';
	}
	$kinds{$kind}++;
	note("$label: $kind: " . join('; ', @names));
	$checks_failed++ unless check_all("$label ($kind)", session => $step % 2 ? $reader : undef);
}
note(join(', ', map { "$kinds{$_} $_" } sort keys %kinds));
is($failed_statements, 0, 'every random statement ran');
is($checks_failed, 0, "after each of $STEPS transactions every live graph equals its fresh graph");
note(sprintf('%d steps in %.1f s', $STEPS, time() - $t_start));

# ---- a server restart rebuilds the same graphs ----
$reader->quit;
$w->quit;
$node->restart;
ok(defined wait_for_engine($node, 60), 'an engine runs after the restart');
my ($want_all, $got_all);
ok( defined wait_until(
		sub {
			$want_all = join(' ', map { live_expected_counts($node, $_) } @sets);
			$got_all = join(' ', map { my $c = eval { live_counts($node, $_->{name}) }; $c // 'unreadable' } @sets);
			return $got_all eq $want_all;
		},
		60),
	'after the restart every live graph is rebuilt with its counts')
  or diag("counts $got_all, want $want_all");
check_all('after restart');

$node->stop;
done_testing();
