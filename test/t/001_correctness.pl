# 001_correctness: GraphSAGE, GCN and GAT predictions, embeddings and
# classes against the independent
# numpy reference (test/ref/quiver_ref.py), 2 and 3 layers, directed and
# undirected graphs, scalar and batch calls, every id and feature type.
#
# Graphs differ per run (the seed is printed): sizes and dimensions are drawn
# from it, and every graph has duplicate edges, self loops (some doubled), a
# hub, isolated nodes and sparse negative ids.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use QuiverTest;
use Test::More;

my $seed = test_seed();
my $node = quiver_node('correctness');
my $tmp = PostgreSQL::Test::Utils::tempdir();

# Four cases: (directed, undirected) x (2, 3 layers), each with a GraphSAGE
# and a GCN model.  Sizes vary with the seed.
my $i = 0;
my %meta;
for my $case (
	{ name => 'd2', layers => 2, undirected => 0 },
	{ name => 'd3', layers => 3, undirected => 0 },
	{ name => 'u2', layers => 2, undirected => 1 },
	{ name => 'u3', layers => 3, undirected => 1 })
{
	my $s = $seed + 101 * $i++;
	my $n = 300 + $s % 700;
	my $dir = "$tmp/$case->{name}";
	my $meta = gen_case(
		$dir,
		seed => $s,
		nodes => $n,
		edges => 4 * $n + $s % 1000,
		isolated => 3 + $s % 7,
		dim => 4 + $s % 29,
		hidden => 8 + $s % 41,
		classes => 2 + $s % 9,
		layers => $case->{layers},
		undirected => $case->{undirected});
	my $g = $case->{name};
	$meta{$g} = $meta;
	load_case($node, $g, $dir);

	is(create_graph($node, $g, $g, undirected => $case->{undirected}),
		"$meta->{nodes}|$meta->{edges}|$meta->{dim}",
		"$g: gnn_create_graph reports nodes, edges (after to_undirected: "
		  . ($case->{undirected} ? 'yes' : 'no') . ") and feature_dim");

	for my $arch ([ 'sage', 'graphsage' ], [ 'gcn', 'gcn' ], [ 'gat', 'gat' ])
	{
		my ($short, $name) = @$arch;
		my $m = "${g}_$short";
		my $ref = "$dir/ref_$short.out";
		create_model($node, $m, $g, $name, "$dir/$short.safetensors");
		my $scalar = predict_all($node, $m, $g);
		compare_ok($ref, $scalar, "$m: scalar predictions equal the reference");
		compare_ok($ref, predict_all($node, $m, $g, unbatched => 1),
			"$m: scalar predictions, each call its own request, equal the reference");
		my $batch = predict_batch($node, $m, $g);
		compare_ok($ref, $batch, "$m: batch predictions equal the reference");
		# scalar and batch agree with each other as closely
		my $sfile = "$dir/scalar_$short.out";
		PostgreSQL::Test::Utils::append_to_file($sfile, "$scalar\n");
		compare_ok($sfile, $batch, "$m: batch agrees with scalar calls");
	}

	# The hub, isolated nodes and doubled self loops are in the outputs
	# above; check them by name too, so a failure says which kind broke.
	my @special = grep { defined } ($meta->{hub}, @{ $meta->{isolated} }[0 .. 1],
		@{ $meta->{double_self_loop} }[0 .. 1]);
	compare_ok(
		"$dir/ref_sage.out",
		predict_all($node, "${g}_sage", $g, where => "id IN (@{[ join ',', @special ]})"),
		"$g: hub, isolated and double-self-loop nodes",
		'--subset');
}

# gnn_embed: hidden-layer outputs (after the ReLU) against the reference's
# full-neighbour forward cut at that layer, scalar calls (batched by
# QuiverPrefetch) and batch calls; layer NULL is L-1.  gnn_classify: the
# argmax of the reference's logits and its softmax probability.
for my $case ([ 'd3', 0 ], [ 'u2', 1 ], [ 'u3', 1 ])
{
	my ($g, $und) = @$case;
	my $dir = "$tmp/$g";
	my $layers = $meta{$g}{layers};
	for my $arch ([ 'sage', 'graphsage' ], [ 'gcn', 'gcn' ], [ 'gat', 'gat' ])
	{
		my ($short, $name) = @$arch;
		my $m = "${g}_$short";
		for my $layer (1 .. $layers - 1, 'NULL')
		{
			my $ref = "$dir/embed_${short}_$layer.out";
			run_ref($PYTHON, $REF, 'embed', '--dir', $dir, '--arch', $name,
				'--weights', "$dir/$short.safetensors", '--out', $ref,
				($layer eq 'NULL' ? () : ('--layer', $layer)), ($und ? ('--undirected') : ()));
			compare_ok($ref,
				$node->safe_psql('postgres',
					"SELECT id, gnn_embed('$m', id, $layer) FROM ${g}_node ORDER BY id"),
				"$m: gnn_embed layer $layer, scalar calls, equals the reference");
			compare_ok($ref,
				$node->safe_psql('postgres',
					"SELECT node_id, embedding FROM gnn_embed('$m', "
					  . "(SELECT array_agg(id ORDER BY md5(id::text)) FROM ${g}_node), $layer)"),
				"$m: gnn_embed layer $layer, one batch call, equals the reference");
		}
		my $cref = "$dir/classify_$short.out";
		run_ref($PYTHON, $REF, 'classify', '--ref', "$dir/ref_$short.out",
			'--out', $cref);
		compare_ok($cref,
			$node->safe_psql('postgres',
				"SELECT id, ARRAY[c.label::real, c.probability] FROM ${g}_node, "
				  . "LATERAL gnn_classify('$m', id) c ORDER BY id"),
			"$m: gnn_classify equals the reference's argmax and softmax probability");
		compare_ok($cref,
			$node->safe_psql('postgres',
				"SELECT id, ARRAY[(gnn_classify('$m', id)).label::real, "
				  . "(gnn_classify('$m', id)).probability] FROM ${g}_node ORDER BY id"),
			"$m: gnn_classify in a select list (batched) equals the reference");
	}
}

# Sampling with fanouts no smaller than the largest in-degree takes every
# in-edge (duplicates included), so it is the full-neighbour result.
{
	my $dir = "$tmp/d2";
	my $maxdeg = $meta{d2}{max_in_degree};
	create_model($node, 'd2_sage_wide', 'd2', 'graphsage', "$dir/sage.safetensors",
		qq({"fanout": [$maxdeg, @{[ $maxdeg + 3 ]}]}));
	compare_ok("$dir/ref_sage.out", predict_all($node, 'd2_sage_wide', 'd2'),
		"fanout [$maxdeg, ...] >= max in-degree equals full neighbourhoods");

	# With fanout [2, 2], nodes without in-edges have one possible answer.
	create_model($node, 'd2_sage_f2', 'd2', 'graphsage', "$dir/sage.safetensors",
		'{"fanout": [2, 2]}');
	create_model($node, 'd2_gcn_f2', 'd2', 'gcn', "$dir/gcn.safetensors",
		'{"fanout": [2, 2]}');
	my $noin = join(',', @{ $meta{d2}{no_in_edges} });
	ok($noin ne '', 'd2 has nodes without in-edges');
	compare_ok("$dir/ref_sage.out",
		predict_all($node, 'd2_sage_f2', 'd2', where => "id IN ($noin)"),
		'graphsage fanout [2, 2]: nodes without in-edges', '--subset');
	compare_ok("$dir/ref_gcn.out",
		predict_all($node, 'd2_gcn_f2', 'd2', where => "id IN ($noin)"),
		'gcn fanout [2, 2]: nodes without in-edges', '--subset');
	# and sampled answers elsewhere are finite vectors of the right size
	my $bad = $node->safe_psql(
		'postgres', q{
SELECT count(*) FROM d2_node,
	LATERAL (SELECT gnn_predict('d2_sage_f2', id) AS p) AS x
	WHERE cardinality(p) <> (SELECT cardinality(gnn_predict('d2_sage', id)))
	   OR EXISTS (SELECT 1 FROM unnest(p) v WHERE v = 'NaN' OR abs(v) = 'Infinity')});
	is($bad, '0', 'sampled predictions are finite and of the model\'s output size');
}

# Every id type (smallint, integer, bigint) and double precision features:
# a case with small ids, read through casts.
{
	my $dir = "$tmp/small_ids";
	my $meta = gen_case($dir, seed => $seed + 7, nodes => 400, edges => 1600,
		id_range => 15000, layers => 2);
	load_case($node, 'si', $dir);
	is( create_graph(
			$node, 'si_types', 'si',
			edges_query => 'SELECT src::smallint, dst::integer FROM si_edge',
			features_query => 'SELECT id::integer, feat::float8[] FROM si_node'),
		"$meta->{nodes}|$meta->{edges}|$meta->{dim}",
		'smallint/integer ids and double precision features load');
	create_model($node, 'si_sage', 'si_types', 'graphsage', "$dir/sage.safetensors");
	create_model($node, 'si_gcn', 'si_types', 'gcn', "$dir/gcn.safetensors");
	predictions_ok($node, 'si_sage', 'si', "$dir/ref_sage.out",
		'graphsage over smallint/integer ids, float8 features');
	predictions_ok($node, 'si_gcn', 'si', "$dir/ref_gcn.out",
		'gcn over smallint/integer ids, float8 features');
}

# Batches larger than quiver.max_batch are split and still right.
{
	$node->safe_psql('postgres', 'ALTER SYSTEM SET quiver.max_batch = 7');
	reload_and_wait($node, 'quiver.max_batch', '7');
	compare_ok("$tmp/u3/ref_gcn.out", predict_batch($node, 'u3_gcn', 'u3'),
		'a batch over max_batch = 7 equals the reference');
	$node->safe_psql('postgres', 'ALTER SYSTEM RESET quiver.max_batch');
	reload_and_wait($node, 'quiver.max_batch', '4096');
}

# The views agree with what was created.
is( $node->safe_psql(
		'postgres',
		"SELECT string_agg(name || ':' || state, ',' ORDER BY name) FROM gnn_graphs"),
	'd2:ready,d3:ready,si_types:ready,u2:ready,u3:ready',
	'gnn_graphs lists every graph, ready');
is($node->safe_psql('postgres', 'SELECT count(*) FROM gnn_models WHERE state = \'ready\''),
	'17', 'gnn_models lists every model, ready');

$node->stop;
done_testing();
