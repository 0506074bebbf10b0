# 004_concurrency: 16 concurrent clients (pgbench -c 16), each checking
# every answer it gets against the reference inside the database: a wrong
# answer raises an error, which pgbench counts as a failed transaction.
# Single calls, batches and scans whose calls QuiverPrefetch batches, of two
# models, are mixed, requests of different
# backends are merged into engine batches (quiver.batch_wait_us), and the
# models and graph are replaced while the clients run.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use QuiverTest;
use Test::More;

my $seed = test_seed();
my $node = quiver_node('concurrency', conf => "max_connections = 40\n");
my $tmp = PostgreSQL::Test::Utils::tempdir();

my $d = "$tmp/d";
my $meta = gen_case($d, seed => $seed, nodes => 1500 + $seed % 500, edges => 8000,
	layers => 2, dim => 24, hidden => 48, classes => 5);
my $n = $meta->{nodes};
load_case($node, 'd', $d);
create_graph($node, 'd', 'd');
create_model($node, 'sage', 'd', 'graphsage', "$d/sage.safetensors");
create_model($node, 'gcn', 'd', 'gcn', "$d/gcn.safetensors");

# The reference, numbered 1..n per model, and each model's error floor
# (0.1 * max |reference|, as quiver_ref.py compare).
$node->safe_psql(
	'postgres', qq{
CREATE TABLE expect (model text, k serial, id bigint, pred float8[], PRIMARY KEY (model, k));
CREATE TEMP TABLE staging (id bigint, pred float8[]);
COPY staging FROM '$d/ref_sage.out' (DELIMITER '|');
INSERT INTO expect (model, id, pred) SELECT 'sage', id, pred FROM staging;
TRUNCATE staging;
COPY staging FROM '$d/ref_gcn.out' (DELIMITER '|');
INSERT INTO expect (model, id, pred) SELECT 'gcn', id, pred FROM staging;
UPDATE expect SET k = k - $n WHERE model = 'gcn';
CREATE TABLE expect_floor AS
	SELECT model, 0.1 * max(abs(v)) AS floor FROM expect, unnest(pred) AS v GROUP BY model;

-- Relative error of one answer against the reference (NULL if sizes differ).
CREATE FUNCTION rel_error(got real[], want float8[], floor float8) RETURNS float8
	LANGUAGE sql IMMUTABLE
	AS \$\$ SELECT CASE WHEN cardinality(got) = cardinality(want)
			THEN (SELECT max(abs(g - r) / greatest(abs(r), floor))
				  FROM unnest(got::float8[], want) AS u(g, r)) END \$\$;

-- One scalar call, checked.
CREATE FUNCTION check_one(m text, kk int) RETURNS void
	LANGUAGE plpgsql
	AS \$\$
DECLARE
	e		record;
	got		real[];
	err		float8;
BEGIN
	SELECT x.id, x.pred, f.floor INTO STRICT e
		FROM expect x JOIN expect_floor f USING (model) WHERE x.model = m AND x.k = kk;
	got := gnn_predict(m, e.id);
	err := rel_error(got, e.pred, e.floor);
	IF err IS NULL OR err >= 1e-5 THEN
		RAISE EXCEPTION 'wrong answer from % for node %: % (reference %, relative error %)',
			m, e.id, got, e.pred, err;
	END IF;
END \$\$;

-- A batch of n consecutive reference rows, checked row by row and in order.
CREATE FUNCTION check_batch(m text, kk int, n int) RETURNS void
	LANGUAGE plpgsql
	AS \$\$
DECLARE
	ids		bigint[];
	r		record;
	rows	int := 0;
BEGIN
	SELECT array_agg(id ORDER BY k) INTO ids FROM expect WHERE model = m AND k >= kk AND k < kk + n;
	FOR r IN SELECT b.node_id, b.prediction, x.id, x.pred, f.floor
			   FROM gnn_predict(m, ids) WITH ORDINALITY AS b(node_id, prediction, ord)
			   JOIN expect x ON x.model = m AND x.k = kk + b.ord - 1
			   JOIN expect_floor f ON f.model = m
	LOOP
		rows := rows + 1;
		IF r.node_id <> r.id OR NOT (rel_error(r.prediction, r.pred, r.floor) < 1e-5) THEN
			RAISE EXCEPTION 'wrong batch answer from % for node % (row for %): % (reference %)',
				m, r.node_id, r.id, r.prediction, r.pred;
		END IF;
	END LOOP;
	IF rows <> cardinality(ids) THEN
		RAISE EXCEPTION 'batch of % ids returned % rows', cardinality(ids), rows;
	END IF;
END \$\$;

-- n consecutive reference rows through one scan, its calls batched.
CREATE FUNCTION check_scan(m text, kk int, n int) RETURNS void
	LANGUAGE plpgsql
	AS \$\$
DECLARE
	total	int;
	wrong	int;
BEGIN
	SELECT count(*), count(*) FILTER (WHERE NOT (rel_error(s.got, s.pred, s.floor) < 1e-5))
		INTO total, wrong
		FROM (SELECT x.pred, f.floor, gnn_predict(m, x.id) AS got
			  FROM expect x JOIN expect_floor f USING (model)
			  WHERE x.model = m AND x.k >= kk AND x.k < kk + n OFFSET 0) s;
	IF total <> n OR wrong <> 0 THEN
		RAISE EXCEPTION 'scan of % rows from %: % rows, % wrong', n, m, total, wrong;
	END IF;
END \$\$;
});

# The checks themselves catch wrong answers.
my ($rc, $o, $err) = $node->psql('postgres',
	"UPDATE expect SET pred[1] = pred[1] + 0.01 WHERE model = 'sage' AND k = 1 RETURNING 1; "
	  . "SELECT check_one('sage', 1)");
like($err, qr/wrong answer from sage/, 'check_one rejects a wrong answer');
($rc, $o, $err) = $node->psql('postgres', "SELECT check_batch('sage', 1, 4)");
like($err, qr/wrong batch answer from sage/, 'check_batch rejects a wrong answer');
($rc, $o, $err) = $node->psql('postgres', "SELECT check_scan('sage', 1, 4)");
like($err, qr/scan of 4 rows from sage: 4 rows, 1 wrong/, 'check_scan rejects a wrong answer');
$node->safe_psql('postgres',
	"UPDATE expect SET pred[1] = pred[1] - 0.01 WHERE model = 'sage' AND k = 1");
$node->safe_psql('postgres', "SELECT check_one('sage', 1), check_batch('sage', 1, 4), check_scan('sage', 1, 4)");
pass('and accepts the right ones');
like($node->safe_psql('postgres', "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF)
		SELECT gnn_predict('gcn', x.id) FROM expect x WHERE x.model = 'gcn' AND x.k >= 1 AND x.k < 65"),
	qr/Prefetched Ids: 64/, 'the scan\'s 64 calls are batched');

my $nb = $n - 31;
# name, weight, script
my @scripts = (
	[ 'sage_one', 4, "\\set k random(1, $n)\nSELECT check_one('sage', :k);\n" ],
	[ 'gcn_one', 4, "\\set k random(1, $n)\nSELECT check_one('gcn', :k);\n" ],
	[ 'sage_batch', 1, "\\set k random(1, $nb)\nSELECT check_batch('sage', :k, 32);\n" ],
	[ 'gcn_batch', 1, "\\set k random(1, $nb)\nSELECT check_batch('gcn', :k, 32);\n" ],
	[ 'sage_scan', 1, "\\set k random(1, $nb)\nSELECT check_scan('sage', :k, 32);\n" ],
	[ 'gcn_scan', 1, "\\set k random(1, $nb)\nSELECT check_scan('gcn', :k, 32);\n" ]);
my @script_opts;
for my $s (@scripts)
{
	my ($name, $weight, $text) = @$s;
	PostgreSQL::Test::Utils::append_to_file("$tmp/$name.sql", $text);
	push @script_opts, '-f', "$tmp/$name.sql\@$weight";
}

# pgbench with 16 clients; returns (exit code, stdout, stderr).
sub pgbench_run
{
	my ($tx, $background) = @_;
	my @cmd = ('pgbench', '-n', '-c', '16', '-j', '4', '-t', $tx, @script_opts,
		'-d', $node->connstr('postgres'));
	my ($out, $err) = ('', '');
	my $h = IPC::Run::start(\@cmd, '>', \$out, '2>', \$err, IPC::Run::timeout(600));
	return ($h, sub { $h->finish; return ($h->result(0), $out, $err); }) if $background;
	$h->finish;
	return ($h->result(0), $out, $err);
}

sub pgbench_ok
{
	my ($res, $tx, $name) = @_;
	my ($code, $out, $err) = @$res;
	my $total = 16 * $tx;
	is($code, 0, "$name: pgbench exits 0") or diag($err);
	like($out, qr{number of transactions actually processed: $total/$total},
		"$name: all $total transactions done");
	like($out, qr{number of failed transactions: 0 }, "$name: no wrong answer");
	unlike($err, qr/ERROR|aborted/, "$name: no client aborted") or diag($err);
	note($out);
}

# 1. Requests merged into batches: a lone request waits for no one, but
# with 16 clients and a short wait, requests of several backends share
# engine batches.
$node->safe_psql('postgres', 'ALTER SYSTEM SET quiver.batch_wait_us = 2000');
reload_and_wait($node, 'quiver.batch_wait_us', '2000');
my $before = $node->safe_psql('postgres',
	"SELECT requests || '|' || batches FROM gnn_stats() WHERE model = 'sage'");
pgbench_ok([ pgbench_run(60) ], 60, 'batch_wait_us = 2000');
my $after = $node->safe_psql('postgres',
	"SELECT requests || '|' || batches FROM gnn_stats() WHERE model = 'sage'");
my ($r0, $b0) = split /\|/, $before;
my ($r1, $b1) = split /\|/, $after;
note("sage: " . ($r1 - $r0) . " requests in " . ($b1 - $b0) . " batches");
ok($b1 - $b0 < $r1 - $r0, 'concurrent requests share engine batches');

# 2. No batching wait: every client still gets its own answers.
$node->safe_psql('postgres', 'ALTER SYSTEM SET quiver.batch_wait_us = 0');
reload_and_wait($node, 'quiver.batch_wait_us', '0');
pgbench_ok([ pgbench_run(100) ], 100, 'batch_wait_us = 0');

# 3. Models and the graph replaced (same definitions) while clients run:
# every answer stays right, old or new object alike.
my ($h, $wait) = pgbench_run(150, 1);
my $rounds = 0;
while ($h->pumpable && $rounds < 20)
{
	create_model($node, 'sage', 'd', 'graphsage', "$d/sage.safetensors");
	create_model($node, 'gcn', 'd', 'gcn', "$d/gcn.safetensors");
	create_graph($node, 'd', 'd');
	$rounds++;
	$h->pump_nb;
}
ok($rounds >= 1, "models and graph replaced $rounds times while the clients ran");
pgbench_ok([ $wait->() ], 150, 'replacements under load');

# Statistics add up.
is( $node->safe_psql(
		'postgres',
		"SELECT bool_and(requests > 0 AND seeds >= requests AND batches <= requests) FROM gnn_stats() WHERE model IN ('sage', 'gcn')"
	),
	't',
	'gnn_stats: requests, seeds and batches are consistent');

$node->stop;
done_testing();
