# QuiverTest.pm — helpers shared by quiver's TAP tests (test/t/*.pl).
#
# Test cases come from the independent numpy reference test/ref/quiver_ref.py:
# it writes a graph (features.csv, edges.csv), PyG-named safetensors weights
# and float64 reference outputs; the tests load the CSVs into tables, create
# graphs and models from them and compare gnn_predict's answers with the
# reference (relative error < 1e-5, see relative_errors in quiver_ref.py).
#
# Every run draws a new seed (QUIVER_TEST_SEED=n repeats one); the seed is
# printed with each test file's output.

package QuiverTest;

use strict;
use warnings;

use Cwd qw(abs_path);
use Exporter qw(import);
use File::Basename qw(dirname);
use File::Temp;
use IPC::Run;
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

our @EXPORT = qw(
  test_seed quiver_node gen_case load_case create_graph create_model
  predict_all predict_batch compare_ok run_ref engine_pid wait_until
  wait_for_engine start_psql finish_psql predictions_ok slurp_ref
  reload_and_wait $PYTHON $REF);

our $PYTHON = -x '/usr/bin/python3' ? '/usr/bin/python3' : 'python3';
our $REF = abs_path(dirname(abs_path(__FILE__)) . '/../ref/quiver_ref.py');

# The seed of this run: QUIVER_TEST_SEED, else drawn from the clock.
my $seed;

sub test_seed
{
	if (!defined $seed)
	{
		$seed = $ENV{QUIVER_TEST_SEED} // (int(time() * 1000) ^ $$) % 1000003;
		diag("seed $seed (QUIVER_TEST_SEED=$seed repeats this run)");
	}
	return $seed;
}

# A started cluster with quiver preloaded and the extension created in
# "postgres" (the database the engine serves by default).
sub quiver_node
{
	my ($name, %opt) = @_;
	my $node = PostgreSQL::Test::Cluster->new($name);

	$node->init;
	$node->append_conf(
		'postgresql.conf', qq{
shared_preload_libraries = 'quiver'
quiver.engine_threads = 2
quiver.engine_start_timeout = 60000
restart_after_crash = on
log_min_messages = info
});
	$node->append_conf('postgresql.conf', $opt{conf}) if $opt{conf};
	$node->start;
	$node->safe_psql('postgres', 'CREATE EXTENSION quiver')
	  unless $opt{no_extension};
	return $node;
}

# Run the reference generator; returns the case's meta.json as a hash.
sub gen_case
{
	my ($dir, %arg) = @_;
	my @cmd = ($PYTHON, $REF, 'gen', '--out', $dir);

	for my $k (sort keys %arg)
	{
		next if $k eq 'undirected';
		(my $flag = $k) =~ s/_/-/g;
		push @cmd, "--$flag", $arg{$k};
	}
	push @cmd, '--undirected' if $arg{undirected};
	run_ref(@cmd);
	return decode_json(slurp_file("$dir/meta.json"));
}

# Run a reference command; dies with its output when it fails.
sub run_ref
{
	my @cmd = @_;
	my ($out, $err) = ('', '');
	my $ok = IPC::Run::run(\@cmd, '>', \$out, '2>', \$err);
	die "command failed: @cmd\n$out$err" unless $ok;
	note($out) if $out ne '';
	return $out;
}

# Tables <prefix>_node(id, feat) and <prefix>_edge(src, dst) from a case.
sub load_case
{
	my ($node, $prefix, $dir) = @_;
	$node->safe_psql(
		'postgres', qq{
CREATE TABLE ${prefix}_node (id bigint PRIMARY KEY, feat real[] NOT NULL);
CREATE TABLE ${prefix}_edge (src bigint NOT NULL, dst bigint NOT NULL);
COPY ${prefix}_node FROM '$dir/features.csv' (FORMAT csv);
COPY ${prefix}_edge FROM '$dir/edges.csv' (FORMAT csv);
});
}

# gnn_create_graph over a loaded case; returns "nodes|edges|feature_dim".
sub create_graph
{
	my ($node, $graph, $prefix, %opt) = @_;
	my $und = $opt{undirected} ? 'true' : 'false';
	my $edges = $opt{edges_query} // "SELECT src, dst FROM ${prefix}_edge";
	my $feats = $opt{features_query} // "SELECT id, feat FROM ${prefix}_node";
	$edges =~ s/'/''/g;
	$feats =~ s/'/''/g;
	return $node->safe_psql('postgres',
		    "SELECT nodes, edges, feature_dim FROM gnn_create_graph('$graph', "
		  . "'$edges', '$feats', $und)");
}

# gnn_create_model with weights read from a file by the server.
sub create_model
{
	my ($node, $model, $graph, $arch, $file, $config) = @_;
	$config //= '{}';
	$node->safe_psql('postgres',
		    "SELECT gnn_create_model('$model', '$graph', '$arch', "
		  . "pg_read_binary_file('$file'), '$config')");
}

# "id|{...}" lines for every node of a case, one scalar call per node (the
# calls batched by QuiverPrefetch, or each its own request with unbatched).
sub predict_all
{
	my ($node, $model, $prefix, %opt) = @_;
	my $where = $opt{where} // 'true';
	my $set = $opt{unbatched} ? 'SET quiver.prefetch_rows = 0; ' : '';
	return $node->safe_psql('postgres',
		"${set}SELECT id, gnn_predict('$model', id) FROM ${prefix}_node WHERE $where ORDER BY id");
}

# The same through one batch call, ids in a scrambled order; also checks
# that the rows come back in input order.
sub predict_batch
{
	my ($node, $model, $prefix) = @_;
	my $out = $node->safe_psql(
		'postgres', qq{
WITH ids AS (SELECT array_agg(id ORDER BY md5(id::text)) AS a FROM ${prefix}_node),
	 b AS (SELECT row_number() OVER () AS ord, * FROM gnn_predict('$model', (SELECT a FROM ids)))
SELECT b.node_id, b.prediction,
	   b.node_id = (SELECT a FROM ids)[b.ord] AS in_order
	FROM b ORDER BY b.ord});
	my @lines = split /\n/, $out;
	my $misordered = grep { !/\|t$/ } @lines;
	is($misordered, 0, "$model: batch rows come back in input order");
	return join("\n", map { s/\|[tf]$//r } @lines);
}

# Compare psql output text with a reference file through quiver_ref.py.
sub compare_ok
{
	my ($ref, $got, $name, @flags) = @_;
	my ($fh, $file) = File::Temp::tempfile(DIR => PostgreSQL::Test::Utils::tempdir());
	print $fh $got, "\n";
	close $fh;
	my ($out, $err) = ('', '');
	IPC::Run::run([ $PYTHON, $REF, 'compare', @flags, $ref, $file ],
		'>', \$out, '2>', \$err);
	my $rc = $? >> 8;
	chomp $out;
	ok($rc == 0, "$name") or diag("$out$err");
	note($out) if $rc == 0;
	return $rc == 0;
}

# Every prediction of a model equals the reference file.
sub predictions_ok
{
	my ($node, $model, $prefix, $ref, $name) = @_;
	return compare_ok($ref, predict_all($node, $model, $prefix), $name);
}

# The pid of the running engine, or '' when none.
sub engine_pid
{
	my ($node) = @_;
	my ($ret, $out, $err) = $node->psql('postgres',
		"SELECT pid FROM pg_stat_activity WHERE backend_type = 'quiver engine'");
	return $ret == 0 ? $out : '';
}

# Poll $check (a sub) until it returns true or $timeout seconds pass;
# returns the seconds waited, or undef on timeout.
sub wait_until
{
	my ($check, $timeout) = @_;
	my $t0 = time();
	while (time() - $t0 < $timeout)
	{
		return time() - $t0 if $check->();
		usleep(20_000);
	}
	return undef;
}

# Wait until an engine runs (a pid other than $old_pid when given).
sub wait_for_engine
{
	my ($node, $timeout, $old_pid) = @_;
	return wait_until(
		sub {
			my $pid = engine_pid($node);
			return $pid ne '' && (!defined $old_pid || $pid ne $old_pid);
		},
		$timeout // 60);
}

# Start psql running $sql in the background; finish_psql collects it.
sub start_psql
{
	my ($node, $sql, %opt) = @_;
	my %h = (out => '', err => '', t0 => time());
	local %ENV = %ENV;
	$ENV{PGAPPNAME} = $opt{appname} if $opt{appname};
	$h{run} = IPC::Run::start(
		[
			'psql', '-XAtq', '-v', 'ON_ERROR_STOP=1',
			'-d', $node->connstr('postgres'), '-c', $sql
		],
		'>', \$h{out}, '2>', \$h{err},
		IPC::Run::timeout($opt{timeout} // 300));
	return \%h;
}

# Wait for a background psql; returns (exit code, stdout, stderr, seconds).
sub finish_psql
{
	my ($h) = @_;
	eval { $h->{run}->finish; };
	my $rc = $@ ? -1 : $h->{run}->result(0);
	chomp $h->{out};
	return ($rc, $h->{out}, $h->{err}, time() - $h->{t0});
}

# Reload the configuration and wait until a new session sees $guc = $value
# (pg_settings.setting: the value in the GUC's base unit).
sub reload_and_wait
{
	my ($node, $guc, $value) = @_;
	$node->reload;
	wait_until(
		sub {
			$node->safe_psql('postgres',
				"SELECT setting FROM pg_settings WHERE name = '$guc'") eq $value;
		},
		30)
	  or die "$guc never became $value";
	# the engine reads the file on its next loop; it wakes on SIGHUP
	usleep(300_000);
}

# The reference file's "id|{...}" lines for some ids, as one text.
sub slurp_ref
{
	my ($ref, @ids) = @_;
	my %want = map { $_ => 1 } @ids;
	return join("\n", grep { /^(-?\d+)\|/ && $want{$1} } split(/\n/, slurp_file($ref)));
}

# ---- live graphs (DESIGN 1.4): helpers of 020_live_property, 021_live_concurrency
# and 022_live_standby ----

push @EXPORT, qw(
  sql_literal create_live_graph live_fresh_edges_sql live_setup live_ids
  live_expected_counts live_counts live_predictions live_fresh_predictions
  compare_predictions live_check);

# A SQL string literal.
sub sql_literal
{
	my ($s) = @_;
	$s =~ s/'/''/g;
	return "'$s'";
}

# gnn_create_graph(..., live => true); returns "nodes|edges|feature_dim".
sub create_live_graph
{
	my ($node, $graph, $edges, $feats, %opt) = @_;
	my $und = $opt{undirected} ? 'true' : 'false';
	return $node->safe_psql('postgres',
		    'SELECT nodes, edges, feature_dim FROM gnn_create_graph('
		  . join(', ', map { sql_literal($_) } $graph, $edges, $feats)
		  . ", undirected => $und, live => true)");
}

# The edges query of a live graph without its dangling rows (an endpoint
# with no row in the features query): what a fresh, non-live graph of the
# same committed contents reads.  Columns are taken by position.
sub live_fresh_edges_sql
{
	my ($edges, $feats) = @_;
	return "SELECT s, d FROM ($edges) AS q(s, d) "
	  . "WHERE s IN (SELECT i FROM ($feats) AS f(i)) "
	  . "AND d IN (SELECT i FROM ($feats) AS f(i))";
}

# A live graph and its models, and the same models on a fresh (non-live)
# graph "<name>_fresh" whose edges query leaves the dangling rows out: the
# graph a live one must equal after every commit.  %def: name, edges,
# features, undirected, models => [ [suffix, arch, weights file, config] ].
# Returns the set that live_check takes.
sub live_setup
{
	my ($node, %def) = @_;
	my $g = $def{name};
	my $fresh = "${g}_fresh";
	my $und = $def{undirected} ? 'true' : 'false';

	create_live_graph($node, $g, $def{edges}, $def{features},
		undirected => $def{undirected});
	$node->safe_psql('postgres',
		    'SELECT gnn_create_graph('
		  . join(', ', map { sql_literal($_) } $fresh,
			live_fresh_edges_sql($def{edges}, $def{features}), $def{features})
		  . ", $und)");
	my @pairs;
	for my $m (@{ $def{models} })
	{
		my ($suffix, $arch, $file, $config) = @$m;
		create_model($node, "${g}_$suffix", $g, $arch, $file, $config);
		create_model($node, "${fresh}_$suffix", $fresh, $arch, $file, $config);
		push @pairs, [ "${g}_$suffix", "${fresh}_$suffix" ];
	}
	return { %def, fresh => $fresh, pairs => \@pairs };
}

# The node ids of a set's committed contents, ascending.
sub live_ids
{
	my ($node, $set) = @_;
	my $out = $node->safe_psql('postgres',
		"SELECT i FROM ($set->{features}) AS f(i) ORDER BY i");
	return [ grep { $_ ne '' } split /\n/, $out ];
}

# "nodes|edges|dangling_edges" computed in SQL from the committed contents:
# nodes = rows of the features query; edges = rows of the edges query with
# both endpoints among them (after to_undirected for an undirected graph:
# reverse edges added, duplicates removed); dangling_edges = rows of the
# edges query with an endpoint missing (counted before any undirected
# expansion).
sub live_expected_counts
{
	my ($node, $set) = @_;
	my $edges_count = $set->{undirected}
	  ? '(SELECT count(*) FROM (SELECT s, d FROM ok UNION SELECT d, s FROM ok) u)'
	  : '(SELECT count(*) FROM ok)';
	return $node->safe_psql(
		'postgres', qq{
WITH v AS (SELECT i FROM ($set->{features}) AS f(i)),
	 q AS (SELECT s, d FROM ($set->{edges}) AS q(s, d)),
	 ok AS (SELECT s, d FROM q WHERE s IN (SELECT i FROM v) AND d IN (SELECT i FROM v))
SELECT (SELECT count(*) FROM v), $edges_count, (SELECT count(*) FROM q) - (SELECT count(*) FROM ok)});
}

# "nodes|edges|dangling_edges" of a live graph, as gnn_graphs shows them.
sub live_counts
{
	my ($node, $graph) = @_;
	return $node->safe_psql('postgres',
		"SELECT nodes, edges, dangling_edges FROM gnn_graphs WHERE name = " . sql_literal($graph));
}

# "id|{...}" lines of one batch call gnn_predict(model, ids[]), or
# "ERROR: ..." when it fails.  $who: a node, or a BackgroundPsql session.
sub live_predictions
{
	my ($who, $model, $ids) = @_;
	my $sql = 'SELECT node_id, prediction FROM gnn_predict(' . sql_literal($model)
	  . ", '{" . join(',', @$ids) . "}'::bigint[])";
	if ($who->isa('PostgreSQL::Test::BackgroundPsql'))
	{
		my $out = $who->query($sql);
		my $err = $who->{stderr};
		$who->{stderr} = '';
		return $err ne '' ? "ERROR: $err" : $out;
	}
	my ($rc, $out, $err) = $who->psql('postgres', $sql);
	return $rc ? "ERROR: $err" : $out;
}

# Refresh a set's fresh graph from the committed contents, then the
# predictions of its model $k (0 = the first pair) for $ids.
sub live_fresh_predictions
{
	my ($node, $set, $k, $ids, %opt) = @_;
	$node->safe_psql('postgres',
		'SELECT nodes FROM gnn_refresh_graph(' . sql_literal($set->{fresh}) . ')')
	  unless $opt{no_refresh};
	return live_predictions($node, $set->{pairs}[$k][1], $ids);
}

# Compare "id|{...}" texts as quiver_ref.py compare does: the same ids in
# the same order, and per element |got - want| / max(|want|, 0.1 max|want|)
# below $tol (1e-5).  Returns (ok, what was found).
sub compare_predictions
{
	my ($got, $want, $tol) = @_;
	$tol //= 1e-5;
	my $num = qr/^[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?$/;
	my $parse = sub {
		my ($text, $what) = @_;
		my @rows;
		for my $line (split /\n/, $text)
		{
			return (undef, "$what: cannot read '" . substr($line, 0, 200) . "'")
			  unless $line =~ /^(-?\d+)\|\{(.*)\}$/;
			my @v = split /,/, $2;
			for (@v)
			{
				return (undef, "$what: node $1 has a non-numeric value '$_'")
				  unless $_ =~ $num;
			}
			push @rows, [ $1, \@v ];
		}
		return (\@rows, undef);
	};
	my ($g, $gerr) = $parse->($got, 'got');
	return (0, $gerr) unless $g;
	my ($w, $werr) = $parse->($want, 'want');
	return (0, $werr) unless $w;
	return (0, sprintf('got %d rows, want %d', scalar @$g, scalar @$w))
	  unless @$g == @$w;
	my $scale = 0;
	for my $r (@$w)
	{
		for (@{ $r->[1] }) { $scale = abs($_) if abs($_) > $scale; }
	}
	my $floor = 0.1 * $scale > 1e-30 ? 0.1 * $scale : 1e-30;
	my ($max, $where) = (0, '');
	for my $i (0 .. $#$w)
	{
		my ($gi, $wi) = ($g->[$i], $w->[$i]);
		return (0, "row $i: got node $gi->[0], want node $wi->[0]")
		  unless $gi->[0] == $wi->[0];
		return (0, sprintf('node %s: %d values, want %d',
				$wi->[0], scalar @{ $gi->[1] }, scalar @{ $wi->[1] }))
		  unless @{ $gi->[1] } == @{ $wi->[1] };
		for my $j (0 .. $#{ $wi->[1] })
		{
			my ($a, $b) = ($gi->[1][$j], $wi->[1][$j]);
			my $den = abs($b) > $floor ? abs($b) : $floor;
			my $err = abs($a - $b) / $den;
			($max, $where) = ($err, "node $wi->[0] column $j: got $a, want $b")
			  if $err > $max;
		}
	}
	my $what = sprintf('%d rows, max relative error %.3g%s',
		scalar @$w, $max, $where ne '' ? " ($where)" : '');
	return ($max < $tol, $what);
}

# After a commit: a live set's gnn_graphs counts equal the counts computed
# in SQL, and (when it has nodes) every current node's prediction of its
# live models equals that of the fresh graph's models, refreshed from the
# committed contents.  %opt: label; models => how many pairs to compare
# (default all); session => a BackgroundPsql that reads the live models
# (default new sessions).  Returns (all passed, ids, the first pair's
# fresh predictions).
sub live_check
{
	my ($node, $set, %opt) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my $label = ($opt{label} // 'check') . ": $set->{name}";
	my $all = 1;

	my $want = live_expected_counts($node, $set);
	$all &= is(live_counts($node, $set->{name}), $want,
		"$label: gnn_graphs nodes|edges|dangling_edges = $want");
	my ($nodes) = split /\|/, $want;
	return ($all, [], '') if $nodes == 0;

	my $ids = live_ids($node, $set);
	my $npairs = $opt{models} // scalar @{ $set->{pairs} };
	my $first_fresh = '';
	for my $k (0 .. $npairs - 1)
	{
		my ($live, $fresh) = @{ $set->{pairs}[$k] };
		my $f = live_fresh_predictions($node, $set, $k, $ids, no_refresh => $k > 0);
		if ($k == 0)
		{
			$first_fresh = $f;
			# the fresh graph is the reference: its counts are the SQL's
			my ($fn, $fe) = split /\|/, $want;
			my $fc = $node->safe_psql('postgres',
				'SELECT nodes, edges FROM gnn_graphs WHERE name = ' . sql_literal($set->{fresh}));
			$all &= is($fc, "$fn|$fe", "$label: the fresh graph has the expected nodes|edges");
		}
		my $l = live_predictions($opt{session} // $node, $live, $ids);
		my ($ok, $what) = compare_predictions($l, $f);
		$all &= ok($ok, "$label: $live equals $fresh on every node") or diag($what);
	}
	return ($all, $ids, $first_fresh);
}

1;
