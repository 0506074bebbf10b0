# 017_reload_lock: a reload from the catalog that waits on a lock does not
# stop serving (DESIGN 1.3).
#
# A graph's source table is held ACCESS EXCLUSIVE by an open transaction
# while a new catalog version of the graph commits, so the engine must
# reload it from its queries.  The reload runs in the dynamic background
# worker "quiver loader", which waits on the lock (wait_event_type 'Lock')
# up to quiver.load_lock_timeout; meanwhile the old version keeps serving
# other sessions (quickly, with the old answers) and the lock holder itself,
# gnn_graphs says 'stale' (or 'loading') with the lock timeout as detail,
# and once the lock is released the graph reloads without user action.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use QuiverTest;
use Test::More;
use Time::HiRes qw(time usleep);

my $seed = test_seed();
my $node = quiver_node('reload_lock',
	conf => "quiver.catalog_poll_interval = 200\nquiver.load_lock_timeout = 2000\n");
my $tmp = PostgreSQL::Test::Utils::tempdir();

# Seconds the lock is held.
my $HOLD = 10;

my $d = "$tmp/d";
gen_case($d, seed => $seed, nodes => 300, edges => 1500, layers => 2, dim => 8,
	hidden => 12, classes => 3);
load_case($node, 'd', $d);
create_graph($node, 'g', 'd');
create_model($node, 'm', 'g', 'graphsage', "$d/sage.safetensors");
predictions_ok($node, 'm', 'd', "$d/ref_sage.out", 'the model serves the reference');

# Predictions by literal ids: other sessions must not touch the locked table.
my @ids = split /\n/, $node->safe_psql('postgres', 'SELECT id FROM d_node ORDER BY id');
my $first = $ids[0];
sub predict_sql
{
	my ($model) = @_;
	return "SELECT id, gnn_predict('$model', id) FROM unnest(ARRAY["
	  . join(',', @ids) . "]::bigint[]) id ORDER BY id";
}
my $old = $node->safe_psql('postgres', predict_sql('m'));
my $old_first = $node->safe_psql('postgres', "SELECT gnn_predict('m', $first)");

# The graph's state in gnn_graphs: "state|resident_version = version|detail".
my $state_sql = q{SELECT state, resident_version = version, coalesce(detail, '') FROM gnn_graphs WHERE name = 'g'};
is($node->safe_psql('postgres', $state_sql), 'ready|t|', 'the graph is ready at its catalog version');
my $v0 = $node->safe_psql('postgres', q{SELECT version FROM gnn_graphs WHERE name = 'g'});

# A committed change of the source table: the resident graph does not have
# it; a reload would.
$node->safe_psql('postgres',
	"UPDATE d_node SET feat = (SELECT array_agg(x * 3 + 1) FROM unnest(feat) x) WHERE id = $first");
is($node->safe_psql('postgres', "SELECT gnn_predict('m', $first)"), $old_first,
	'a change of the source table alone does not change the resident graph');

# ---- hold the lock and force a reload ----
my $holder = $node->background_psql('postgres', on_error_stop => 0);
$holder->query_safe('BEGIN');
$holder->query_safe('LOCK TABLE d_node IN ACCESS EXCLUSIVE MODE');
my $holder_pid = $holder->query_safe('SELECT pg_backend_pid()');
my $t_lock = time();

# a new catalog version (the superuser may write the row by hand)
$node->safe_psql('postgres', q{UPDATE quiver_graph SET created_at = now() WHERE name = 'g'});
my $v1 = $node->safe_psql('postgres', q{SELECT version FROM quiver_graph WHERE name = 'g'});
cmp_ok($v1, '>', $v0, 'the UPDATE committed a new catalog version of the graph');

my $mon = $node->background_psql('postgres', on_error_stop => 0);
my ($n_pred, $n_slow, $n_wrong, $worst) = (0, 0, 0, 0);
my ($saw_loader_lock, $saw_stale) = (0, 0);
my ($last_state, $activity, $holder_answer, $holder_secs) = ('', '', undef, undef);
while (time() - $t_lock < $HOLD)
{
	# another session predicts (a new connection each time)
	my $t0 = time();
	my $timed_out = 0;
	my ($rc, $out, $err) = $node->psql('postgres', predict_sql('m'), timeout => 30,
		timed_out => \$timed_out);
	($rc, $err) = (-1, 'no answer in 30 s') if $timed_out;
	my $secs = time() - $t0;
	$n_pred++;
	$worst = $secs if $secs > $worst;
	if ($secs >= 1)
	{
		$n_slow++;
		note(sprintf('a prediction took %.2f s at %.1f s into the lock', $secs, $t0 - $t_lock));
	}
	if ($rc != 0 || $out ne $old)
	{
		$n_wrong++;
		note("a prediction under the lock: rc $rc, " . ($rc ? $err : 'other answers'));
	}

	# the loader waits on the lock
	my $waiting = $mon->query(
		q{SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'quiver loader' AND wait_event_type = 'Lock'});
	$saw_loader_lock = 1 if ($waiting // '') =~ /^[1-9]/;
	$activity = $mon->query(
		q{SELECT string_agg(backend_type || ':' || coalesce(wait_event_type, '-') || ':' || coalesce(wait_event, '-') || ':' || coalesce(left(query, 60), ''), ' / ') FROM pg_stat_activity WHERE backend_type LIKE 'quiver%'});

	# gnn_graphs: the old version serves, the new one is stale or loading
	$last_state = $mon->query($state_sql) // '';
	$saw_stale = 1 if $last_state =~ /^(stale|loading)\|f\|.*lock timeout/i;

	# halfway, the lock holder itself predicts
	if (!defined $holder_answer && time() - $t_lock > $HOLD / 2)
	{
		my $h0 = time();
		$holder_answer = $holder->query("SELECT gnn_predict('m', $first)");
		$holder_secs = time() - $h0;
		$holder->{stderr} = '';
	}
	usleep(100_000);
}
note("quiver processes near the end of the lock: $activity");
note("gnn_graphs near the end of the lock: $last_state");
note(sprintf('%d predictions under the lock, slowest %.3f s', $n_pred, $worst));

cmp_ok($n_pred, '>=', 5, 'other sessions predicted repeatedly while the lock was held');
is($n_slow, 0, 'each prediction under the lock was answered in under 1 s')
  or diag(sprintf('%d of %d took 1 s or more, the slowest %.2f s', $n_slow, $n_pred, $worst));
is($n_wrong, 0, 'each gave the old version\'s answers');
ok($saw_loader_lock, 'pg_stat_activity showed the quiver loader waiting on a lock')
  or diag("quiver processes: $activity");
ok($saw_stale, 'gnn_graphs showed the graph stale (or loading) with the lock timeout as detail')
  or diag("last gnn_graphs row: $last_state");
is($holder_answer, $old_first, 'the lock holder predicts on the graph\'s model and gets the old answer');
ok(defined $holder_secs && $holder_secs < 1, 'the lock holder does not deadlock with the reload')
  or diag(sprintf('the lock holder waited %.2f s', $holder_secs // -1));
is($holder->query_safe("SELECT count(*) FROM pg_locks WHERE pid = $holder_pid AND relation = 'd_node'::regclass AND mode = 'AccessExclusiveLock' AND granted"),
	'1', 'the holder still holds the lock');

# ---- release: the graph reloads by itself ----
$holder->query_safe('COMMIT');
my $t_release = time();
my $reloaded = wait_until(sub { $node->safe_psql('postgres', $state_sql) eq 'ready|t|' }, 40);
ok(defined $reloaded, 'after the lock is released the graph reloads without user action')
  or diag($node->safe_psql('postgres', $state_sql));
note(sprintf('reloaded %.2f s after the release', $reloaded)) if defined $reloaded;
is($node->safe_psql('postgres', q{SELECT resident_version FROM gnn_graphs WHERE name = 'g'}), $v1,
	'the resident version is the committed one');
ok(defined wait_until(sub { $node->safe_psql('postgres',
	q{SELECT state || ' ' || (resident_version = version) FROM gnn_models WHERE name = 'm'}) eq 'ready true' }, 20),
	'its model is ready');
my $new_first = $node->safe_psql('postgres', "SELECT gnn_predict('m', $first)");
isnt($new_first, $old_first, 'the reloaded graph has the committed change of its source table');

# the reloaded graph is what a fresh create from the same tables gives
create_graph($node, 'g_check', 'd');
create_model($node, 'm_check', 'g_check', 'graphsage', "$d/sage.safetensors");
is($node->safe_psql('postgres', predict_sql('m')), $node->safe_psql('postgres', predict_sql('m_check')),
	'the reloaded graph equals a fresh gnn_create_graph of the same tables');

$holder->quit;
$mon->quit;
$node->stop;
done_testing();
