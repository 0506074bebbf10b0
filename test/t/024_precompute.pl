# 024_precompute: models with "precompute": true (DESIGN 1.5, OMEGA).
#
# - With nothing changed, a precomputed model's predictions equal the full
#   computation: the float64 reference on the awkward graphs of
#   001_correctness (duplicates, self loops, hub, isolated nodes, negative
#   sparse ids), GraphSAGE, GCN and GAT, 2 and 3 layers, scalar and batch
#   calls; with a sampled last layer (fanout [2, -1]) they equal the same
#   model without precomputation.
# - While the rows are being computed, and after, gnn_models says so, with
#   the bytes held; the memory limit refuses the model with the bytes its
#   layers need; bad configs are errors naming the value.
# - On a live graph, after every commit of a seeded random sequence of
#   changes, models with "recompute": 1 equal the same models on a fresh
#   graph of the committed contents (the full computation on the current
#   graph); a model with "recompute": 0 serves stored rows, and once the
#   background refresher has caught up (gnn_stats.stale_rows = 0) it equals
#   the full computation too, also after an idle compaction renumbered the
#   nodes.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use QuiverTest;
use Test::More;

my $seed = test_seed();
srand($seed);
my $node = quiver_node('precompute');
my $tmp = PostgreSQL::Test::Utils::tempdir();

# Wait until every listed model's precomputed layers are ready.
sub wait_ready
{
	my (@models) = @_;
	my $list = join(',', map { sql_literal($_) } @models);
	my $want = scalar @models;
	return wait_until(
		sub {
			$node->safe_psql('postgres',
				"SELECT count(*) FROM gnn_models WHERE name IN ($list) AND precompute = 'ready'")
			  eq $want;
		},
		60);
}

# ---- exactness with nothing changed ----------------------------------------
my $i = 0;
for my $case ({ name => 'd2', layers => 2, undirected => 0 },
	{ name => 'u3', layers => 3, undirected => 1 })
{
	my $s = $seed + 31 * $i++;
	my $n = 200 + $s % 300;
	my $dir = "$tmp/$case->{name}";
	my $g = $case->{name};
	gen_case($dir, seed => $s, nodes => $n, edges => 4 * $n, isolated => 4,
		dim => 5 + $s % 7, hidden => 12, classes => 3 + $s % 4,
		layers => $case->{layers}, undirected => $case->{undirected});
	load_case($node, $g, $dir);
	create_graph($node, $g, $g, undirected => $case->{undirected});
	my @models;
	for my $arch ([ 'sage', 'graphsage' ], [ 'gcn', 'gcn' ], [ 'gat', 'gat' ])
	{
		my ($short, $name) = @$arch;
		create_model($node, "${g}_${short}_pre", $g, $name, "$dir/$short.safetensors",
			'{"precompute": true}');
		create_model($node, "${g}_${short}_pre2", $g, $name, "$dir/$short.safetensors",
			'{"precompute": true, "fanout": [2' . (', -1' x ($case->{layers} - 1)) . ']}');
		create_model($node, "${g}_${short}_f2", $g, $name, "$dir/$short.safetensors",
			'{"fanout": [2' . (', -1' x ($case->{layers} - 1)) . ']}');
		push @models, "${g}_${short}_pre", "${g}_${short}_pre2";
	}
	ok(wait_ready(@models), "$g: every precomputed model is ready");
	like($node->safe_psql('postgres',
			"SELECT string_agg(DISTINCT (precompute_bytes >= precompute_needed_bytes AND precompute_progress = 1)::text, ',') "
			  . "FROM gnn_models WHERE name LIKE '${g}_%_pre%'"),
		qr/^true$/, "$g: gnn_models shows the bytes held (at least those needed) and progress 1");
	for my $short ('sage', 'gcn', 'gat')
	{
		my $m = "${g}_${short}_pre";
		compare_ok("$dir/ref_$short.out", predict_all($node, $m, $g),
			"$m: precomputed predictions equal the reference (full computation)");
		compare_ok("$dir/ref_$short.out", predict_batch($node, $m, $g),
			"$m: batch predictions too");
		my $f2 = "$dir/f2_$short.out";
		PostgreSQL::Test::Utils::append_to_file($f2,
			predict_all($node, "${g}_${short}_f2", $g) . "\n");
		compare_ok($f2, predict_all($node, "${g}_${short}_pre2", $g),
			"${g}_${short}_pre2: a sampled last layer equals the same model without precomputation");
	}
}
is($node->safe_psql('postgres',
		"SELECT count(*) FROM gnn_models WHERE precompute IS NULL AND name LIKE '%_f2'"),
	'6', 'models without "precompute" show no precompute state');

# ---- bad configs and the memory limit ----------------------------------------
run_ref($PYTHON, $REF, 'weights', '--arch', 'graphsage', '--dims', '4,256,3',
	'--seed', $seed, '--out', "$tmp/wide.st");
run_ref($PYTHON, $REF, 'weights', '--arch', 'graphsage', '--dims', '4,3',
	'--seed', $seed, '--out', "$tmp/one.st");
$node->safe_psql('postgres', q{
CREATE TABLE big_node AS SELECT i::bigint AS id, ARRAY[i % 3, i % 5, i % 7, 1]::real[] AS feat
	FROM generate_series(1, 20000) AS i;
CREATE TABLE big_edge AS SELECT i::bigint AS src, (i * 7 % 20000 + 1)::bigint AS dst
	FROM generate_series(1, 20000) AS i;
SELECT gnn_create_graph('big', 'SELECT src, dst FROM big_edge', 'SELECT id, feat FROM big_node');
});
for my $bad (
	[ '{"precompute": true, "fanout": [5, 3]}', 'wide.st', qr/fanout\[1\] must be -1, not 3/ ],
	[ '{"precompute": true}', 'one.st', qr/needs a hidden layer to store/ ],
	[ '{"recompute": 0.5}', 'wide.st', qr/recompute = 0.5 needs "precompute": true/ ],
	[ '{"precompute": true, "recompute": 1.5}', 'wide.st', qr/recompute = 1.5 must be a number between 0 and 1/ ],
	[ '{"precompute": "yes"}', 'wide.st', qr/precompute = "yes" is not a boolean/ ])
{
	my ($config, $file, $re) = @$bad;
	my ($rc, $out, $err) = $node->psql('postgres',
		"SELECT gnn_create_model('bad', 'big', 'graphsage', pg_read_binary_file('$tmp/$file'), '$config')");
	isnt($rc, 0, "refused: $config");
	like($err, $re, 'the error names the value') or diag($err);
}
# 20000 nodes x 256 hidden floats = 20 MB of rows, over a 12 MB limit
$node->safe_psql('postgres', 'ALTER SYSTEM SET quiver.memory_limit = 12');
reload_and_wait($node, 'quiver.memory_limit', '12');
my ($rc, $out, $err) = $node->psql('postgres',
	"SELECT gnn_create_model('wide', 'big', 'graphsage', pg_read_binary_file('$tmp/wide.st'), '{\"precompute\": true}')");
isnt($rc, 0, 'a precomputed model over quiver.memory_limit is refused');
like($err, qr/the precomputed layers of model "wide" needs 2\d MB resident, but quiver.memory_limit is 12 MB/,
	'naming the bytes its layers need') or diag($err);
is($node->safe_psql('postgres', "SELECT count(*) FROM quiver_model WHERE name IN ('wide', 'bad')"),
	'0', 'nothing was stored');
$node->safe_psql('postgres', 'ALTER SYSTEM RESET quiver.memory_limit');
reload_and_wait($node, 'quiver.memory_limit', '0');
($rc, $out, $err) = $node->psql('postgres',
	"SELECT gnn_create_model('wide', 'big', 'graphsage', pg_read_binary_file('$tmp/wide.st'), '{\"precompute\": true}')");
is($rc, 0, 'under the limit it is created');
like($err, qr/NOTICE:  model "wide": its hidden layers of 20000 nodes \(2\d MB\) are precomputed in the background/,
	'with a NOTICE saying what is precomputed') or diag($err);
ok(wait_ready('wide'), 'and its layers are computed');

# ---- live graphs: recompute 1 exact at once, recompute 0 after the refresher
run_ref($PYTHON, $REF, 'weights', '--arch', $_->[0], '--dims', '4,6,3',
	'--seed', $seed + $_->[1], '--out', "$tmp/live_$_->[0].st")
  for ([ 'graphsage', 1 ], [ 'gcn', 2 ], [ 'gat', 3 ]);
$node->safe_psql('postgres', q{
CREATE TABLE n (id bigint PRIMARY KEY, feat real[] NOT NULL);
CREATE TABLE e (src bigint NOT NULL, dst bigint NOT NULL);
});
sub feat { return '{' . join(',', map { sprintf('%.3f', rand(2) - 1) } 1 .. 4) . '}'; }
sub rint { my ($lo, $hi) = @_; return $lo + int(rand($hi - $lo + 1)); }
$node->safe_psql('postgres',
	'INSERT INTO n VALUES ' . join(',', map { "($_, '" . feat() . "')" } 1 .. 60));
$node->safe_psql('postgres',
	'INSERT INTO e VALUES ' . join(',', map { '(' . rint(1, 60) . ',' . rint(1, 60) . ')' } 1 .. 240));
my $set = live_setup(
	$node,
	name => 'lv',
	edges => 'SELECT src, dst FROM e',
	features => 'SELECT id, feat FROM n',
	undirected => 0,
	models => [
		[ 'sage1', 'graphsage', "$tmp/live_graphsage.st", '{"precompute": true, "recompute": 1}' ],
		[ 'gat1', 'gat', "$tmp/live_gat.st", '{"precompute": true, "recompute": 1}' ],
		[ 'gcn0', 'gcn', "$tmp/live_gcn.st", '{"precompute": true}' ],
	]);
ok(wait_ready('lv_sage1', 'lv_gat1', 'lv_gcn0'), 'the live models are precomputed');
# the refresher waits an hour: stale rows stay stale while the changes come
$node->safe_psql('postgres', 'ALTER SYSTEM SET quiver.refresh_delay = 3600000');
reload_and_wait($node, 'quiver.refresh_delay', '3600000');
my $next_id = 1000;
my $all_ok = 1;
for my $step (1 .. 15)
{
	my @sql;
	push @sql, 'INSERT INTO e VALUES ' . join(',', map { '(' . rint(1, 60) . ',' . rint(1, 60) . ')' } 1 .. rint(1, 8));
	push @sql, "DELETE FROM e WHERE ctid IN (SELECT ctid FROM e ORDER BY random() LIMIT " . rint(0, 4) . ')';
	push @sql, "UPDATE n SET feat = '" . feat() . "' WHERE id = " . rint(1, 60);
	if ($step % 3 == 0)
	{
		my $id = $next_id++;
		push @sql, "INSERT INTO n VALUES ($id, '" . feat() . "')";
		push @sql, "INSERT INTO e VALUES ($id, " . rint(1, 60) . '), (' . rint(1, 60) . ", $id)";
	}
	push @sql, 'DELETE FROM n WHERE id = ' . rint(1, 60) if $step % 5 == 0;
	$node->safe_psql('postgres', "SELECT setseed(" . ($step / 100) . "); BEGIN; " . join('; ', @sql) . '; COMMIT;');
	my ($ok) = live_check($node, $set, label => "step $step", models => 2);
	$all_ok &&= $ok;
}
ok($all_ok, 'after every commit, recompute 1 equals the full computation on the current graph');
is($node->safe_psql('postgres',
		"SELECT bool_and(recomputed_rows > 0) FROM gnn_stats() WHERE model IN ('lv_sage1', 'lv_gat1')"),
	't', 'they read stored rows and recomputed stale ones (gnn_stats.recomputed_rows)');

like($node->safe_psql('postgres', "SELECT stale_rows FROM gnn_stats() WHERE model = 'lv_gcn0'"),
	qr/^[1-9]\d*$/, 'the changes left stale rows (gnn_stats.stale_rows)');
ok($node->safe_psql('postgres', "SELECT refresh_lag_ms FROM gnn_stats() WHERE model = 'lv_gcn0'") > 0,
	'and a refresh lag');

# recompute 0: exact again once the refresher has caught up
$node->safe_psql('postgres', 'ALTER SYSTEM RESET quiver.refresh_delay');
reload_and_wait($node, 'quiver.refresh_delay', '0');
sub refreshed
{
	return wait_until(
		sub {
			$node->safe_psql('postgres',
				"SELECT stale_rows = 0 AND refreshed_rows > 0 FROM gnn_stats() WHERE model = 'lv_gcn0'")
			  eq 't';
		},
		60);
}
ok(refreshed(), 'the refresher recomputed the stale rows of the recompute 0 model');
my ($ok) = live_check($node, $set, label => 'refreshed');
ok($ok, 'after the refresher caught up, recompute 0 equals the full computation');
# an idle compaction (the graph quiet for 2 s) renumbers the nodes: rows move
ok(wait_until(sub { $node->log_contains(qr/compacted live graph "lv"/) }, 60),
	'the live graph was compacted when idle');
ok(refreshed(), 'nothing is stale after the compaction');
($ok) = live_check($node, $set, label => 'compacted');
ok($ok, 'after the compaction every model still equals the full computation');
ok(!$node->log_contains(qr/precomputed layers of model "lv_\w+" (are recomputed|dropped)/),
	'the compaction moved the stored rows (none recomputed from scratch)');

$node->stop;
done_testing();
