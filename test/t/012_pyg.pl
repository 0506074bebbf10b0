# 012_pyg: quiver against real PyTorch Geometric.
#
# The README's export path, literally: test/ref/pyg_export.py builds
# torch_geometric.nn.models.GraphSAGE, GCN and GAT (2 and 3 layers, GAT
# with 2 heads when they divide the hidden width, seeded init,
# a few training steps), saves model.state_dict() with
# safetensors.torch.save_file, and writes PyG's own full-graph inference,
# model(x, edge_index), over the same graph.  Here the graph is loaded from
# SQL tables with gnn_create_graph, the weights with gnn_create_model
# (pg_read_binary_file, every fanout -1), and every node's gnn_predict must
# equal PyG's output: per element |got - pyg| / max(|pyg|, 0.1 max|pyg|)
# < 1e-5 (quiver_ref.py compare), against PyG's float32 output and against
# the same PyG model evaluated in float64.  Directed and to_undirected.
#
# The graphs are quiver_ref.py's awkward ones (duplicate edges, self loops,
# some doubled, a hub, isolated nodes, sparse negative ids), drawn from the
# run's seed.  The numpy reference's own weights are also run through PyG,
# which checks quiver_ref.py itself against PyG.
#
# Needs torch, torch_geometric and safetensors for /usr/bin/python3
# (scripts/pyg_setup.sh); skipped, with the import error, without them.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use Cwd qw(abs_path);
use IPC::Run;
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use QuiverTest;
use Test::More;
use Time::HiRes qw(time);

my $EXPORT = abs_path("$FindBin::RealBin/../ref/pyg_export.py");

# Skip (not pass) when PyG cannot be imported.
{
	my ($out, $err) = ('', '');
	IPC::Run::run([ $PYTHON, $EXPORT, 'check' ], '>', \$out, '2>', \$err);
	chomp(my $why = "$out$err");
	if ($? != 0)
	{
		$why =~ s/\s+/ /g;
		plan skip_all => "PyTorch Geometric is not importable by $PYTHON "
		  . "($why); scripts/pyg_setup.sh installs it";
	}
	note("PyG: $why");
}

# The numpy reference's GAT against PyG's GAT itself (float64, full graphs,
# predictions and hidden layers, 1 to 3 layers and heads).
{
	my ($out, $err) = ('', '');
	IPC::Run::run([ $PYTHON, $REF, 'pygcheck' ], '>', \$out, '2>', \$err);
	is($?, 0, 'quiver_ref.py pygcheck: the GAT reference equals torch_geometric GAT')
	  or diag("$out$err");
}

my $seed = test_seed();
my $node = quiver_node('pyg');
my $tmp = PostgreSQL::Test::Utils::tempdir();

my $i = 0;
for my $case (
	{ name => 'd2', layers => 2, undirected => 0 },
	{ name => 'd3', layers => 3, undirected => 0 },
	{ name => 'u2', layers => 2, undirected => 1 },
	{ name => 'u3', layers => 3, undirected => 1 })
{
	my $s = $seed + 211 * $i++;
	my $n = 300 + $s % 500;
	my $g = "pyg_$case->{name}";
	my $dir = "$tmp/$case->{name}";
	my %size = (
		hidden => 8 + $s % 41,
		classes => 2 + $s % 9,
		layers => $case->{layers});

	# The graph (CSV files for COPY) from the numpy reference's generator.
	gen_case(
		$dir,
		seed => $s,
		nodes => $n,
		edges => 4 * $n + $s % 1000,
		isolated => 3 + $s % 7,
		dim => 4 + $s % 29,
		undirected => $case->{undirected},
		%size);

	# PyG: models, weights, outputs.
	my $t0 = time();
	run_ref($PYTHON, $EXPORT, 'export', '--dir', $dir, '--seed', $s,
		(map { ("--$_", $size{$_}) } sort keys %size),
		$case->{undirected} ? ('--undirected') : ());
	note(sprintf('%s: pyg_export.py took %.1f s', $g, time() - $t0));
	my $meta = decode_json(slurp_file("$dir/pyg_meta.json"));

	load_case($node, $g, $dir);
	is(create_graph($node, $g, $g, undirected => $case->{undirected}),
		"$meta->{nodes}|$meta->{edges}|$meta->{dim}",
		"$g: gnn_create_graph has PyG's node count, edge_index columns"
		  . ($case->{undirected} ? ' after to_undirected' : '')
		  . ' and feature dimension');

	my $fanout = '[' . join(', ', (-1) x $case->{layers}) . ']';
	for my $arch ([ 'sage', 'graphsage' ], [ 'gcn', 'gcn' ], [ 'gat', 'gat' ])
	{
		my ($short, $name) = @$arch;
		my $m = "${g}_$short";
		my @want = map {
				$short eq 'sage'
				  ? ("convs.$_.lin_l.bias", "convs.$_.lin_l.weight", "convs.$_.lin_r.weight")
				  : $short eq 'gat'
				  ? ("convs.$_.att_dst", "convs.$_.att_src", "convs.$_.bias", "convs.$_.lin.weight")
				  : ("convs.$_.bias", "convs.$_.lin.weight")
		} 0 .. $case->{layers} - 1;
		is(join(',', @{ $meta->{$short}{tensors} }), join(',', sort @want),
			"$m: PyG's state_dict has the tensor names of DESIGN 1.2");
		create_model($node, $m, $g, $name, "$dir/pyg_$short.safetensors",
			qq({"fanout": $fanout}));

		my $got = predict_all($node, $m, $g);
		compare_ok("$dir/pyg_$short.out", $got,
			"$m: every node's gnn_predict equals PyG's float32 model(x, edge_index)");
		compare_ok("$dir/pyg_$short.f64.out", $got,
			"$m: and the same PyG model in float64");
		compare_ok("$dir/pyg_$short.out", predict_batch($node, $m, $g),
			"$m: batch gnn_predict equals PyG's output");

		# quiver_ref.py's float64 outputs are PyG's, for its own weights
		compare_ok("$dir/ref_$short.out", slurp_file("$dir/pyg_refweights_$short.out"),
			"$g: the numpy reference agrees with PyG ($name, reference weights)");
	}
}

$node->stop;
done_testing();
