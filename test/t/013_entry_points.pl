# 013_entry_points: every SQL function of the extension, called with hostile
# arguments, never crashes or hangs the server (DESIGN.md 1.1: "Every function
# fails with a clear ERROR, never a crash, when the library is not preloaded,
# the engine is down, or it is called from another database"; bad input gets
# an ereport(ERROR) with an errcode; 1.3: a change that fails or is rolled
# back leaves no trace in what is served).
#
# The functions are found in the catalog (pg_proc joined with pg_depend on
# the extension), so a function added later is covered without touching this
# file; so are the extension's views.  Arguments are generated from each
# argument's type (and, for a few well-known names such as "edges" or
# "config", from its name): NULL, empty, 63/64/200-byte and non-ASCII
# strings, quotes, semicolons and format directives, extreme integers,
# empty, NULL-holding, 2-D and offset arrays, 100,000-id batches, garbage,
# truncated and malformed safetensors blobs (huge or overflowing shapes,
# offsets out of range, wrong dtypes, zero-width layers, gaps in the layer
# numbers), bad jsonb configs, "queries" that are not (src, dst) or
# (id, feature) or that never end.  Each call varies one argument; the
# others keep a sane value (names: the served graph "g" and model "m", so a
# failed create is a failed replace); also all NULLs and the trailing
# DEFAULT arguments left out.  Calls that change things are also made in a
# savepoint that is rolled back (its transaction committed); functions that
# change nothing are also called over a VALUES list of all hostile values of
# one argument (QuiverPrefetch's batched path).  Last, quiver.default_model
# and the user-settable quiver GUCs at hostile values before predictions.
#
# Settings:
#   (a) quiver preloaded, extension created, a small graph "g" and a model
#       "m" existing (the database the engine serves);
#   (b) a second database of the same server, extension and tables created,
#       while the engine serves the first one;
#   (c) a server without quiver in shared_preload_libraries, extension created.
# Every call must, within statement_timeout (plus a grace): return, or raise
# an ERROR with a SQLSTATE other than XX000 (internal error: elog instead of
# ereport); the session must live on (SELECT 1), the server must not crash
# (no "terminated by signal", PANIC or TRAP in the log, the postmaster's pid
# unchanged) and, in (a) and (b), the engine must keep its pid.  In (b) and
# (c) a call must fail at once, not wait until statement_timeout.  In (a),
# after a change that failed or was rolled back m must predict what it did
# before; after one that committed, predictions and the views must still
# answer or fail cleanly (then g and m are created again).
#
# One ok() per call, named "[setting] SQL"; each setting ends with a summary
# of the calls that failed, grouped by reason.  QUIVER_FUZZ_VERBOSE=1 notes
# every call's outcome.  About 2,200 calls, 30-40 s.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use IPC::Run;
use List::Util qw(min);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use QuiverTest;
use Test::More;
use Time::HiRes qw(time usleep);

my $STMT_TIMEOUT = 2;                    # seconds, statement_timeout of every call
my $GRACE = 1.5;                         # a cancelled call must be back by then
my $HANG = $STMT_TIMEOUT + 10;           # no answer after this long: a hang
my $VERBOSE = $ENV{QUIVER_FUZZ_VERBOSE} // 0;
my $T0 = time();

# ---------------------------------------------------------------- fixtures

my $tmp = PostgreSQL::Test::Utils::tempdir();
my %weights_file;
for my $w ([ 'sage', 'graphsage', '4,8,3' ], [ 'gcn', 'gcn', '4,8,3' ],
	[ 'sage_wide', 'graphsage', '5,8,3' ])
{
	my ($key, $arch, $dims) = @$w;
	$weights_file{$key} = "$tmp/$key.safetensors";
	run_ref($PYTHON, $REF, 'weights', '--arch', $arch, '--dims', $dims,
		'--seed', '1', '--out', $weights_file{$key});
}
my $sage_blob = slurp_file($weights_file{sage});

my $EDGES = 'SELECT src, dst FROM fz_edge';
my $FEATURES = 'SELECT id, feat FROM fz_node';
my $LABELS = 'SELECT id, (id % 3)::int FROM fz_node';
my $MODEL_CONFIG = '{"fanout": [2, 2]}';

# Tables of a database: 50 nodes (ids 1..50, 4 features), 100 edges, the
# weights, and a victim table that hostile "queries" try to change.
sub setup_db
{
	my ($node, $db) = @_;
	$node->safe_psql(
		$db, qq{
CREATE TABLE fz_node AS SELECT i::bigint AS id,
	ARRAY[sin(i), cos(i), sin(2 * i), cos(3 * i)]::real[] AS feat
	FROM generate_series(1, 50) i;
CREATE TABLE fz_edge AS SELECT 1 + (i * 7) % 50 AS src, 1 + (i * 13) % 50 AS dst
	FROM generate_series(1::bigint, 100) i;
CREATE TABLE fz_victim (a bigint, b bigint);
INSERT INTO fz_victim VALUES (1, 2), (2, 3), (3, 4);
CREATE TABLE fz_weights (name text PRIMARY KEY, w bytea NOT NULL);
INSERT INTO fz_weights VALUES
	('sage', pg_read_binary_file('$weights_file{sage}')),
	('gcn', pg_read_binary_file('$weights_file{gcn}')),
	('sage_wide', pg_read_binary_file('$weights_file{sage_wide}'));
});
}

# ---------------------------------------------------------------- values

sub lit { my ($s) = @_; $s =~ s/'/''/g; return "'$s'"; }
sub hexlit { my ($b) = @_; return "'\\x" . unpack('H*', $b) . "'::bytea"; }

# A safetensors blob: 8-byte little-endian length, header, data.
sub st_raw { my ($header, $data) = @_; return pack('Q<', length $header) . $header . ($data // ''); }

# A well-formed safetensors blob of zero-filled F32 tensors [name, [shape]].
sub st_tensors
{
	my (@t) = @_;
	my (@h, $off);
	$off = 0;
	for my $t (@t)
	{
		my ($name, $shape, $dtype) = @$t;
		my $n = 1;
		$n *= $_ for @$shape;
		my $bytes = 4 * $n;
		push @h, sprintf('"%s":{"dtype":"%s","shape":[%s],"data_offsets":[%d,%d]}',
			$name, $dtype // 'F32', join(',', @$shape), $off, $off + $bytes);
		$off += $bytes;
	}
	return st_raw('{' . join(',', @h) . '}', "\0" x $off);
}

# GraphSAGE tensors for dims (in, h1, ..., out).
sub sage_tensors
{
	my (@dims) = @_;
	my @t;
	for my $i (0 .. $#dims - 1)
	{
		push @t, [ "convs.$i.lin_l.weight", [ $dims[ $i + 1 ], $dims[$i] ] ],
		  [ "convs.$i.lin_l.bias", [ $dims[ $i + 1 ] ] ],
		  [ "convs.$i.lin_r.weight", [ $dims[ $i + 1 ], $dims[$i] ] ];
	}
	return @t;
}

my $one_tensor = '"convs.0.lin_l.weight":{"dtype":"F32","shape":%s,"data_offsets":%s}';
my @BYTEA = (
	"''::bytea",
	hexlit("\0"),
	hexlit("\xde\xad\xbe\xef"),
	hexlit(pack('Q<', ~0)),                    # header length 2^64-1
	hexlit(pack('Q<', 1 << 40) . '{}'),                        # header length past the end
	hexlit(pack('Q<', 0)),                                     # empty header
	hexlit(substr($sage_blob, 0, 8)),                          # truncated: length only
	hexlit(substr($sage_blob, 0, 40)),                         # truncated header
	hexlit(substr($sage_blob, 0, length($sage_blob) - 1)),     # truncated data
	hexlit($sage_blob . "\0\0\0\0"),                           # trailing bytes
	hexlit(st_raw('{}')),
	hexlit(st_raw('[]')),
	hexlit(st_raw('"x"')),
	hexlit(st_raw('{"a":')),
	hexlit(st_raw("{}\0\0\0\0\0\0")),
	hexlit(st_raw("\xff\xfe{}")),
	hexlit(st_raw('{"__metadata__": 5}')),
	hexlit(st_raw('[' x 5000 . ']' x 5000)),
	hexlit(st_raw(sprintf("{$one_tensor}", '[8,4]', '[0,1000000]'), "\0" x 128)),
	hexlit(st_raw(sprintf("{$one_tensor}", '[8,4]', '[128,0]'), "\0" x 128)),
	hexlit(st_raw(sprintf("{$one_tensor}", '[-1,4]', '[0,128]'), "\0" x 128)),
	hexlit(st_raw(sprintf("{$one_tensor}", '[4611686018427387904,4]', '[0,0]'))),
	hexlit(st_raw(sprintf("{$one_tensor}", '[4294967296,4294967296]', '[0,128]'), "\0" x 128)),
	hexlit(st_raw(sprintf("{$one_tensor}", '[1e30,4]', '[0,128]'), "\0" x 128)),
	hexlit(st_raw(sprintf("{$one_tensor}", '"x"', '"y"'), "\0" x 128)),
	hexlit(st_raw(sprintf("{$one_tensor}", '[8,4]', '[-128,0]'), "\0" x 128)),
	hexlit(st_tensors(map { [ $_->[0], $_->[1], 'I64' ] } sage_tensors(4, 8, 3))),
	hexlit(st_tensors(map { [ $_->[0], $_->[1], 'F16' ] } sage_tensors(4, 8, 3))),
	hexlit(st_tensors(map { [ $_->[0], $_->[1], 'BF16' ] } sage_tensors(4, 8, 3))),
	hexlit(st_tensors(sage_tensors(4, 0, 3))),                 # zero-width hidden layer
	hexlit(st_tensors(sage_tensors(4, 8, 0))),                 # zero classes
	hexlit(st_tensors(sage_tensors(4, 3))),                    # one layer
	hexlit(st_tensors(sage_tensors(4, 4, 4, 4, 4, 4, 4, 4, 3))),  # more layers than fanouts
	hexlit(st_tensors(grep { $_->[0] !~ /^convs\.1\./ } sage_tensors(4, 8, 8, 3))),  # a gap
	hexlit(st_tensors(map { [ $_->[0] =~ s/^convs\.1\./convs.99999999999./r, $_->[1] ] } sage_tensors(4, 8, 3))),
	hexlit(st_tensors(map { [ $_->[0] =~ s/^convs\.1\./convs.-1./r, $_->[1] ] } sage_tensors(4, 8, 3))),
	hexlit(st_tensors(map { [ $_->[0], $_->[0] =~ /bias/ ? [7] : $_->[1] ] } sage_tensors(4, 8, 3))),
	"(SELECT w FROM fz_weights WHERE name = 'gcn')",           # GCN tensors
	"(SELECT w FROM fz_weights WHERE name = 'sage_wide')",     # input width 5, graph has 4
	"(SELECT w FROM fz_weights WHERE name = 'sage')");

my @JSONB = map { lit($_) . '::jsonb' } (
	'{}', 'null', '[]', '"x"', '1',
	'{"fanout": "x"}', '{"fanout": []}', '{"fanout": null}', '{"fanout": [null, null]}',
	'{"fanout": [-2, -2]}', '{"fanout": [0, 0]}', '{"fanout": [1.5, 2]}',
	'{"fanout": [1e30, 1]}', '{"fanout": [2147483648, 1]}', '{"fanout": [-1, -1]}',
	'{"fanout": [15, 10, 5, 4, 3, 2, 1]}', '{"fanout": {"a": 1}}', '{"fanout": ["1", "2"]}',
	'{"seed": -1}', '{"seed": "x"}', '{"seed": 1e400}', '{"seed": 18446744073709551616}',
	'{"precompute": "yes"}', '{"recompute": 2}', '{"variants": "x"}', '{"variants": [{"fanout": "x"}]}',
	'{"hidden": -1, "layers": 0, "epochs": -1, "batch_size": 0}',
	'{"epochs": 1000000000, "hidden": 1000000}', '{"lr": "NaN"}', '{"init_from": "nonexistent"}',
	'{"x": ' . ('[' x 1000) . (']' x 1000) . '}');

my @TEXT = map { lit($_) . '::text' } (
	'', ' ', 'n' x 63, 'n' x 64, 'n' x 200, "a'b", 'x"; DROP TABLE fz_victim; --',
	"'; SELECT pg_sleep(60); --", '%s%s%s%n%n', '\\', "tab\there\nnewline", "\xc3\xbc\xe5\x90\x8d",
	'nonexistent', 'm', 'g', 'graphsage', 'gcn', 'gat');

# Texts that are queries (arguments named edges, features, labels, ...).
my @QUERY = map { lit($_) . '::text' } (
	'SELECT 1', 'SELECT 1, 2', "$EDGES WHERE false", "$FEATURES WHERE false",
	'SELECT NULL::bigint, NULL::bigint', 'SELECT id, NULL::real[] FROM fz_node',
	q{SELECT 'a'::text, 'b'::text}, 'SELECT 1.5::numeric, 2.5::numeric',
	'SELECT id, ARRAY[]::real[] FROM fz_node',
	q{SELECT id, ARRAY['NaN', 'Infinity', 0, 0]::real[] FROM fz_node},
	'SELECT id, ARRAY[[1, 2], [3, 4]]::real[] FROM fz_node',
	q{SELECT id, '[5:8]={1,2,3,4}'::real[] FROM fz_node},
	'SELECT id, ARRAY[1, NULL, 3, 4]::real[] FROM fz_node',
	'SELECT id, (id % 3)::int FROM fz_node UNION ALL SELECT NULL, NULL',
	'SELECT 9223372036854775807, -9223372036854775808',
	"$EDGES UNION ALL SELECT 1000, 1001",
	'SELECT src::smallint, dst::smallint FROM fz_edge', 'SELECT id, feat::float8[] FROM fz_node',
	'SELECT 1 / 0, 2', "$EDGES; DROP TABLE fz_victim", 'DELETE FROM fz_victim RETURNING a, b',
	'COMMIT', 'BEGIN', 'VACUUM', 'SELECT * FROM', 'SELECT $1, $2', "$EDGES FOR UPDATE",
	'SELECT pg_sleep(30), 1',
	'SELECT i, i + 1 FROM generate_series(1, 1000000000) i',
	'WITH RECURSIVE r AS (SELECT 1 AS a UNION ALL SELECT a + 1 FROM r) SELECT a, a FROM r');

my %BY_TYPE = (
	'text' => \@TEXT,
	'name' => [ map { "$_" =~ s/::text$/::name/r } @TEXT ],
	'bigint' => [ map { "${_}::bigint" } '0', '-1', '1', '2147483648', '9223372036854775807', '(-9223372036854775807 - 1)' ],
	'integer' => [ map { "${_}::integer" } '0', '-1', '1', '2147483647', '(-2147483647 - 1)' ],
	'smallint' => [ map { "${_}::smallint" } '0', '-1', '32767', '(-32767 - 1)' ],
	'boolean' => [ 'true', 'false' ],
	'double precision' => [ map { "'$_'::float8" } 'NaN', 'Infinity', '-Infinity', '-1', '0', '1e308' ],
	'real' => [ map { "'$_'::real" } 'NaN', 'Infinity', '-1', '0' ],
	'bigint[]' => [
		map({ lit($_) . '::bigint[]' } '{}', '{NULL}', '{1,NULL,2}', '{-1}', '{1,1,1}',
			'{9223372036854775807,-9223372036854775808}', '{{1,2},{3,4}}', '[5:6]={1,2}'),
		'array_fill(1::bigint, ARRAY[100000])',
		'ARRAY(SELECT generate_series(1::bigint, 200000))' ],
	'bytea' => \@BYTEA,
	'jsonb' => \@JSONB,
	'json' => [ map { s/::jsonb$/::json/r } @JSONB ]);

# A sane value for an argument, so that the hostile one is what fails.
sub sane_value
{
	my ($f, $name, $type) = @_;
	$name //= '';
	if ($name eq 'name')
	{
		return lit($f->{proname} =~ /graph/ ? 'g' : 'm') . "::$type";
	}
	return "'g'::$type" if $name eq 'graph';
	return "'m'::$type" if $name =~ /^(model|init_from)$/;
	return "'graphsage'::$type" if $name eq 'arch';
	return lit($EDGES) . "::$type" if $name eq 'edges';
	return lit($FEATURES) . "::$type" if $name eq 'features';
	return lit($LABELS) . "::$type" if $name eq 'labels';
	return lit($MODEL_CONFIG) . "::$type" if $name eq 'config';
	return "(SELECT w FROM fz_weights WHERE name = 'sage')" if $type eq 'bytea';
	return "1::$type" if $type =~ /^(bigint|integer|smallint|real|double precision|numeric)$/;
	return 'false' if $type eq 'boolean';
	return "'{1,2,3}'::$type" if $type =~ /^(bigint|integer|smallint)\[\]$/;
	return "'m'::$type" if $type =~ /^(text|name|character varying)$/;
	return "'{}'::$type" if $type =~ /^jsonb?$/;
	return "NULL::$type";
}

# Hostile values for an argument: NULL, then by name and type.
sub hostile_values
{
	my ($name, $type) = @_;
	my @v = ("NULL::$type");
	push @v, @QUERY if defined $name && $name =~ /^(edges|features|labels|query|sql)$/;
	if ($BY_TYPE{$type}) { push @v, @{ $BY_TYPE{$type} }; }
	elsif ($type =~ /\[\]$/) { push @v, map { lit($_) . "::$type" } '{}', '{NULL}', '{{1}}'; }
	return @v;
}

# ---------------------------------------------------------------- discovery

# The extension's functions and views, from the catalog.
sub discover
{
	my ($node, $db) = @_;
	my $rows = $node->safe_psql(
		$db, q{
SELECT p.oid::regprocedure::text,
       quote_ident(n.nspname) || '.' || quote_ident(p.proname),
       p.proname, p.prokind, p.proretset,
       (SELECT typtype::text FROM pg_type WHERE oid = p.prorettype) IN ('c', 'p')
         AND p.prorettype <> 'void'::regtype AND p.prorettype <> 'trigger'::regtype,
       p.pronargdefaults,
       coalesce((SELECT string_agg(format_type(t, NULL) || ':' || y.typtype::text, ';' ORDER BY o)
                 FROM unnest(p.proargtypes) WITH ORDINALITY a(t, o) JOIN pg_type y ON y.oid = a.t), ''),
       coalesce(array_to_string(p.proargnames, ';', ''), ''),
       coalesce(array_to_string(p.proargmodes::text[], ';'), '')
FROM pg_depend d
JOIN pg_extension e ON e.oid = d.refobjid
JOIN pg_proc p ON p.oid = d.objid
JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE d.classid = 'pg_proc'::regclass AND d.refclassid = 'pg_extension'::regclass
  AND d.deptype = 'e' AND e.extname = 'quiver'
ORDER BY 1});
	my @f;
	for my $line (split /\n/, $rows)
	{
		my ($sig, $qname, $proname, $kind, $retset, $composite, $ndef, $types, $names, $modes) =
		  split /\|/, $line, -1;
		my @types = map { [ split /:/ ] } grep { $_ ne '' } split /;/, $types;
		my @allnames = split /;/, $names, -1;
		my @modes = split /;/, $modes, -1;
		# proargnames covers OUT arguments too; keep the input ones
		my @in_names;
		for my $i (0 .. $#allnames)
		{
			push @in_names, $allnames[$i] if !@modes || $modes[$i] =~ /^[ibv]$/;
		}
		push @f, {
			sig => $sig, qname => $qname, proname => $proname, kind => $kind,
			from => ($retset eq 't' || $composite eq 't'),
			ndefaults => $ndef,
			types => [ map { $_->[0] } @types ],
			pseudo => scalar(grep { $_->[1] eq 'p' } @types),
			names => [ map { $in_names[$_] // '' } 0 .. $#types ],
		};
	}
	my @views = split /\n/, $node->safe_psql(
		$db, q{
SELECT c.oid::regclass::text FROM pg_depend d JOIN pg_extension e ON e.oid = d.refobjid
JOIN pg_class c ON c.oid = d.objid
WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_extension'::regclass
  AND d.deptype = 'e' AND e.extname = 'quiver' AND c.relkind IN ('v', 'm')
ORDER BY 1});
	return (\@f, \@views);
}

sub call_sql
{
	my ($f, @args) = @_;
	my $call = "$f->{qname}(" . join(', ', @args) . ')';
	return "CALL $call" if $f->{kind} eq 'p';
	return "SELECT * FROM $call" if $f->{from};
	return "SELECT $call";
}

sub mutates { my ($f) = @_; return $f && $f->{proname} =~ /create|drop|train|refresh/; }

# The calls for one function: each argument hostile in turn (the others
# sane), all NULL, the trailing defaults left out, and, for functions that
# change nothing, a scan over all hostile values of one argument at once
# (rows evaluated in one statement: QuiverPrefetch's batched path).
sub calls_for
{
	my ($f) = @_;
	my @types = @{ $f->{types} };
	my @names = @{ $f->{names} };
	my @sane = map { sane_value($f, $names[$_], $types[$_]) } 0 .. $#types;
	my (@calls, %seen);
	my $add = sub {
		my ($sql) = @_;
		push @calls, { sql => $sql, f => $f } unless $seen{$sql}++;
	};
	if ($f->{pseudo})
	{
		note("$f->{sig}: pseudo-type argument, called with NULLs only");
		$add->(call_sql($f, map { 'NULL' } @types));
		return @calls;
	}
	$add->(call_sql($f, @sane));
	for my $i (0 .. $#types)
	{
		for my $v (hostile_values($names[$i], $types[$i]))
		{
			my @a = @sane;
			$a[$i] = $v;
			$add->(call_sql($f, @a));
		}
	}
	$add->(call_sql($f, map { "NULL::$_" } @types)) if @types;
	for my $k (1 .. $f->{ndefaults})
	{
		$add->(call_sql($f, @sane[ 0 .. $#types - $k ]));
	}
	# a change in a subtransaction rolled back, its transaction committed:
	# nothing of it may stay (DESIGN.md 1.3)
	if (mutates($f))
	{
		push @calls, map {
			{ %$_, pre => 'BEGIN; SAVEPOINT s', post => 'ROLLBACK TO SAVEPOINT s; COMMIT', rolled_back => 1 }
		} grep { !$_->{pre} } @calls;
	}
	if (!mutates($f) && !$f->{from} && $f->{kind} eq 'f')
	{
		for my $i (0 .. $#types)
		{
			my @vals = grep { !/generate_series|array_fill/ } hostile_values($names[$i], $types[$i]);
			next if @vals < 2;
			my @a = @sane;
			$a[$i] = 'v.x';
			my $values = join(', ', map { "($_)" } $sane[$i], @vals);
			$add->(call_sql($f, @a) . " FROM (VALUES $values) v(x)");
		}
	}
	return @calls;
}

# ---------------------------------------------------------------- a session

# psql reading its statements from a pipe; every call is followed by
# markers that carry psql's ERROR and SQLSTATE variables and a liveness
# probe (SELECT 1 and the engine's pid).
sub session_start
{
	my ($node, $db) = @_;
	my $s = { node => $node, db => $db, in => '', out => '', err => '', n => 0 };
	$s->{h} = IPC::Run::start(
		[ 'psql', '-XAtq', '-v', 'ON_ERROR_STOP=0', '-d', $node->connstr($db) ],
		'<', \$s->{in}, '>', \$s->{out}, '2>', \$s->{err});
	$s->{in} .= "SET statement_timeout = '${STMT_TIMEOUT}s';\n"
	  . "SET client_min_messages = warning;\n"
	  . "SET application_name = 'quiver_fuzz';\n"
	  . "SET quiver.default_model = 'm';\n"
	  . "\\set VERBOSITY verbose\n\\o /dev/null\n\\echo \@\@READY\n";
	wait_for($s, qr/^\@\@READY$/m, time() + 30) == 1
	  or die "psql did not start: $s->{err}";
	return $s;
}

sub session_end
{
	my ($s) = @_;
	eval {
		$s->{h}->pump_nb;
		if ($s->{h}->pumpable) { $s->{in} .= "\\q\n"; $s->{h}->finish; }
		else { $s->{h}->kill_kill; }
	};
	eval { $s->{h}->kill_kill } if $@;
}

# 1: $re matched; 0: psql exited first; -1: the deadline passed.
sub wait_for
{
	my ($s, $re, $deadline) = @_;
	my $nap = 0.0002;
	while (1)
	{
		eval { $s->{h}->pump_nb };
		return 1 if $s->{out} =~ $re;
		if (!$s->{h}->pumpable)
		{
			eval { $s->{h}->finish };
			return $s->{out} =~ $re ? 1 : 0;
		}
		return -1 if time() > $deadline;
		usleep(int($nap * 1e6));
		$nap = min($nap * 2, 0.005);
	}
}

sub postmaster_pid
{
	my ($node) = @_;
	my $file = $node->data_dir . '/postmaster.pid';
	return '' unless -f $file;
	open my $fh, '<', $file or return '';
	my $pid = <$fh>;
	close $fh;
	chomp $pid;
	return $pid // '';
}

sub log_since
{
	my ($node, $pos) = @_;
	open my $fh, '<', $node->logfile or return '';
	seek $fh, $pos, 0;
	local $/;
	my $text = <$fh> // '';
	close $fh;
	return $text;
}

my $CRASH_RE = qr/terminated by signal|was terminated by exception|PANIC:|TRAP:|terminating any other active server processes|all server processes terminated/;

# Run one statement; returns a record of what happened.
sub run_call
{
	my ($s, $sql, %opt) = @_;
	my $node = $s->{node};
	my $n = ++$s->{n};
	my $r = { sql => $sql, pre => $opt{pre} };
	$s->{out} = '';
	$s->{err} = '';
	my $logpos = -s $node->logfile;
	my $pm = postmaster_pid($node);
	$s->{in} .= "$opt{pre};\n" if $opt{pre};
	$s->{in} .= "\\echo \@\@S $n\n$sql;\n\\echo \@\@R $n :ERROR :SQLSTATE\n";
	$s->{in} .= "$opt{post};\n" if $opt{post};
	$s->{in} .= "\\unset alive\n\\unset engine\n"
	  . "SELECT 1 AS alive, coalesce((SELECT string_agg(pid::text, ',' ORDER BY pid) FROM pg_stat_activity "
	  . "WHERE backend_type = 'quiver engine'), '-') AS engine \\gset\n"
	  . "\\echo \@\@A $n :alive :engine\n";
	my $t0 = time();
	my $got = wait_for($s, qr/^\@\@R $n (\S+) (\S*)$/m, $t0 + $HANG);
	$r->{secs} = time() - $t0;
	if ($got == 1)
	{
		$s->{out} =~ /^\@\@R $n (\S+) (\S*)$/m;
		($r->{error}, $r->{sqlstate}) = ($1 eq 'true', $2);
		$got = wait_for($s, qr/^\@\@A $n (\S+) (\S+)$/m, time() + $HANG);
		if ($got == 1)
		{
			$s->{out} =~ /^\@\@A $n (\S+) (\S+)$/m;
			($r->{alive}, $r->{engine}) = ($1 eq '1', $2);
		}
	}
	$r->{lost} = $got == 0;
	$r->{hang} = $got == -1;
	$r->{message} = $s->{err};
	$r->{message} =~ s/^psql:<stdin>:\d+: //mg;
	$r->{message} =~ s/\n+$//;
	if ($got != 1)
	{
		# a hang: end the backend; a lost session: wait for the server
		if ($r->{hang})
		{
			eval { $s->{h}->kill_kill };
			$node->psql('postgres',
				"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'quiver_fuzz'");
		}
		$r->{back} = defined wait_until(sub { ($node->psql('postgres', 'SELECT 1'))[0] == 0 }, 60);
		$s->{dead} = 1;
	}
	my $log = log_since($node, $logpos);
	my @crash = grep { /$CRASH_RE/ || /Failed process was running/ } split /\n/, $log;
	$r->{crash} = \@crash if grep { /$CRASH_RE/ } @crash;
	$r->{engine_exit} = [ grep { /background worker "quiver engine".*exited with exit code/ } split /\n/, $log ];
	$r->{postmaster_changed} = postmaster_pid($node) ne $pm;
	return $r;
}

# The text of one value in the session, or "ERROR: ..." (undef: no answer).
sub run_probe
{
	my ($s, $sql) = @_;
	my $n = ++$s->{n};
	$s->{out} = '';
	$s->{err} = '';
	$s->{in} .= "\\unset probe\nSELECT ($sql)::text AS probe \\gset\n\\echo \@\@P $n :probe\n";
	my $got = wait_for($s, qr/^\@\@P $n (.*)$/m, time() + $HANG);
	if ($got != 1)
	{
		$s->{dead} = 1;
		return undef;
	}
	$s->{out} =~ /^\@\@P $n (.*)$/m;
	my $v = $1;
	return $v eq ':probe' ? 'ERROR: ' . ($s->{err} =~ s/^psql:<stdin>:\d+: //mgr =~ s/\n+$//r) : $v;
}

# ---------------------------------------------------------------- a setting

my @GUC_VALUES = ('-1', '0', '2147483647', '1e308', 'NaN', "''", 'x');

# What is wrong with a call's record: a list of [kind, detail].  $st holds
# the setting's state (the engine's pid, updated when it changes).
sub judge
{
	my ($r, $st, %o) = @_;
	my @why;
	push @why, [ 'crash', 'server crashed: ' . join(' / ', @{ $r->{crash} }) ] if $r->{crash};
	push @why, [ 'hang', sprintf('no answer after %.0f s', $r->{secs}) ] if $r->{hang};
	push @why, [ 'session lost', $r->{message} || 'psql exited' ] if $r->{lost} && !$r->{crash};
	push @why, [ 'server down', 'the server did not come back within 60 s' ]
	  if defined $r->{back} && !$r->{back};
	push @why, [ 'postmaster', 'the postmaster pid changed' ] if $r->{postmaster_changed};
	push @why, [ 'not alive', 'SELECT 1 failed after the call' ]
	  if !$r->{hang} && !$r->{lost} && !$r->{alive};
	push @why, [ 'slow', sprintf('took %.1f s, past statement_timeout %d s', $r->{secs}, $STMT_TIMEOUT) ]
	  if !$r->{hang} && $r->{secs} > $STMT_TIMEOUT + $GRACE;
	if ($r->{error})
	{
		my $code = $r->{sqlstate} // '';
		push @why, [ 'no sqlstate', "ERROR without SQLSTATE: $r->{message}" ] if $code !~ /^[0-9A-Z]{5}$/;
		push @why, [ 'XX000', "internal error: $r->{message}" ] if $code eq 'XX000';
		push @why, [ 'waited', "waited for statement_timeout instead of failing at once: $r->{message}" ]
		  if $o{at_once} && $code eq '57014';
	}
	if ($o{engine} && !$r->{crash} && !$r->{lost} && !$r->{hang} && defined $r->{engine}
		&& $r->{engine} ne $st->{engine})
	{
		push @why, [ 'engine restarted', "engine pid $st->{engine} -> $r->{engine} "
			  . join(' / ', @{ $r->{engine_exit} }) ];
		$st->{engine} = $r->{engine};
	}
	return @why;
}

# A new session when the last one died (a crash, a hang, a FATAL), once
# the server, and the engine where there is one, are back.
sub revive
{
	my ($s, $st, %o) = @_;
	return $s unless $s->{dead};
	session_end($s);
	if ($o{engine})
	{
		wait_for_engine($o{node}, 60);
		$st->{engine} = QuiverTest::engine_pid($o{node}) || $st->{engine};
	}
	return session_start($o{node}, $o{db});
}

# Run every call of a setting; one ok() per call.  With probe (setting a):
# after a change that failed or was rolled back, the probe must give what
# it gave before; after a change that committed, a prediction over every
# node and the views must still answer or fail cleanly, and then the
# served graph and model are restored.
sub fuzz_setting
{
	my (%o) = @_;
	my ($label, $node, $db) = @o{qw(label node db)};
	my ($funcs, $views) = discover($node, $db);
	my %by_name = map { $_->{proname} => 1 } @$funcs;
	ok($by_name{gnn_predict} && $by_name{gnn_create_graph} && $by_name{gnn_create_model},
		"[$label] discovery finds the extension's functions (" . scalar(@$funcs) . ' functions, '
		  . scalar(@$views) . ' views)')
	  or diag(explain [ map { $_->{sig} } @$funcs ]);
	note("[$label] $_->{sig}") for @$funcs;

	my @calls = map { calls_for($_) } @$funcs;
	push @calls, map { { sql => "SELECT * FROM $_" } } @$views;
	# the model named by quiver.default_model, hostile
	for my $v (@TEXT)
	{
		push @calls, { sql => 'SELECT gnn_predict(1::bigint)',
			pre => "SELECT set_config('quiver.default_model', $v, false)",
			post => "SELECT set_config('quiver.default_model', 'm', false)" };
	}
	# the user-settable GUCs of quiver at edge values, then predictions
	if ($o{gucs})
	{
		my @gucs = split /\n/, $node->safe_psql($db,
			"SELECT name FROM pg_settings WHERE name LIKE 'quiver.%' AND context = 'user' AND name <> 'quiver.default_model' ORDER BY 1");
		for my $g (@gucs)
		{
			push @calls, map {
				{ sql => q{SELECT gnn_predict('m', 1::bigint), gnn_predict('m', x) FROM generate_series(1::bigint, 50) x},
				  pre => "SET $g = $_", post => "RESET $g" }
			} @GUC_VALUES;
		}
	}
	note("[$label] " . scalar(@calls) . ' calls');

	my $t0 = time();
	my $s = session_start($node, $db);
	my $st = {};
	if ($o{engine})
	{
		my $r = run_call($s, 'SELECT 1');
		$st->{engine} = $r->{engine};
		isnt($st->{engine} // '-', '-', "[$label] an engine runs");
	}
	my $want = $o{probe} ? run_probe($s, $o{probe}) : undef;
	my $pm0 = postmaster_pid($node);
	my (%fail, $restores);
	for my $c (@calls)
	{
		my $r = run_call($s, $c->{sql}, pre => $c->{pre}, post => $c->{post});
		my @why = judge($r, $st, %o);

		$s = revive($s, $st, %o);
		my $changed = mutates($c->{f}) && !$r->{error} && !$c->{rolled_back};
		if ($o{probe} && mutates($c->{f}) && !$r->{crash} && !$r->{lost} && !$r->{hang})
		{
			if ($changed)
			{
				my $after = run_call($s, $o{after_change});
				push @why, map { [ "$_->[0] (after the change)", "$o{after_change}: $_->[1]" ] }
				  judge($after, $st, %o);
				$s = revive($s, $st, %o);
			}
			else
			{
				my $got = run_probe($s, $o{probe});
				$s = revive($s, $st, %o);
				if (!defined $got || $got ne $want)
				{
					push @why, [ 'left a trace', sprintf('a %s change left %s = %s, not %s',
						$r->{error} ? 'failed' : 'rolled back', $o{probe}, $got // '(no answer)', $want) ];
					$changed = 1;
				}
			}
		}
		if ($o{restore} && ($changed || $r->{crash} || $r->{lost} || $r->{hang}))
		{
			$restores++;
			my $rr = run_call($s, $o{restore});
			if ($rr->{error} || $rr->{lost} || $rr->{hang})
			{
				diag("[$label] restoring g and m failed: $rr->{message}");
				$s = revive($s, $st, %o);
			}
			$want = run_probe($s, $o{probe}) if $o{probe};
		}

		my $desc = "[$label] " . ($c->{pre} ? "$c->{pre}; " : '') . $c->{sql}
		  . ($c->{post} ? "; $c->{post}" : '');
		$desc =~ s/\n/\\n/g;
		$desc =~ s/\t/\\t/g;
		my $short = length($desc) > 300 ? substr($desc, 0, 300) . '...(' . length($desc) . ' chars)' : $desc;
		ok(!@why, $short) or diag(join("\n", map { "$_->[0]: $_->[1]" } @why));
		if ($VERBOSE)
		{
			note(sprintf('  %.3f s, %s', $r->{secs},
				$r->{error} ? "ERROR $r->{sqlstate}: " . (split /\n/, $r->{message})[0] : 'ok'));
		}
		push @{ $fail{ $_->[0] } }, "$desc\n      -> $_->[1]" for @why;
	}
	session_end($s);
	is(postmaster_pid($node), $pm0, "[$label] the postmaster is the one that started");
	is($node->safe_psql($db, 'SELECT 1'), '1', "[$label] the server answers after all calls");
	note(sprintf('[%s] %d calls in %.1f s (%d restores of g and m)', $label, scalar(@calls),
		time() - $t0, $restores // 0));
	if (%fail)
	{
		my $n = 0;
		$n += @$_ for values %fail;
		diag("[$label] $n failures:");
		for my $k (sort keys %fail)
		{
			diag("  $k (" . scalar(@{ $fail{$k} }) . "):");
			diag("    $_") for @{ $fail{$k} };
		}
	}
}

# ---------------------------------------------------------------- (a) and (b)

my $node = quiver_node('entry_points', conf => qq{
log_line_prefix = '%m [%p] %e '
track_activity_query_size = 16384
quiver.engine_start_timeout = 60000
});
setup_db($node, 'postgres');
my $restore = qq{SELECT nodes FROM gnn_create_graph('g', '$EDGES', '$FEATURES');
SELECT gnn_create_model('m', 'g', 'graphsage', (SELECT w FROM fz_weights WHERE name = 'sage'), '$MODEL_CONFIG');
SELECT gnn_predict('m', 1::bigint)};
$node->safe_psql('postgres', $restore);
like($node->safe_psql('postgres', "SELECT gnn_predict('m', 1::bigint)"), qr/^\{[^,]+,[^,]+,[^,]+\}$/,
	'[a] model m predicts');

fuzz_setting(label => 'a', node => $node, db => 'postgres', engine => 1, gucs => 1,
	restore => $restore, probe => "gnn_predict('m', 1::bigint)",
	after_change => q{SELECT gnn_predict('m', x),
	(SELECT count(*) FROM gnn_predict('m', ARRAY(SELECT generate_series(1::bigint, 50)))),
	(SELECT count(*) FROM gnn_models), (SELECT count(*) FROM gnn_graphs)
	FROM generate_series(1::bigint, 50) x});

like($node->safe_psql('postgres', "SELECT gnn_predict('m', 1::bigint)"), qr/^\{[^,]+,[^,]+,[^,]+\}$/,
	'[a] after all calls, m predicts');
my $victim = $node->safe_psql('postgres',
	"SELECT CASE WHEN to_regclass('fz_victim') IS NULL THEN 'gone' ELSE (SELECT count(*) FROM fz_victim)::text END");
note("[a] fz_victim after the hostile queries: $victim rows (3 before)");
diag("[a] NOTE: a query given to a quiver function changed data: fz_victim has $victim rows, not 3")
  if $victim ne '3';

$node->safe_psql('postgres', 'CREATE DATABASE other');
$node->safe_psql('other', 'CREATE EXTENSION quiver');
setup_db($node, 'other');
fuzz_setting(label => 'b', node => $node, db => 'other', engine => 1, at_once => 1);
like($node->safe_psql('postgres', "SELECT gnn_predict('m', 1::bigint)"), qr/^\{[^,]+,[^,]+,[^,]+\}$/,
	'[b] the served database still serves m');
$node->stop;

# ---------------------------------------------------------------- (c)

my $bare = PostgreSQL::Test::Cluster->new('entry_points_bare');
$bare->init;
$bare->append_conf('postgresql.conf', qq{
restart_after_crash = on
log_line_prefix = '%m [%p] %e '
track_activity_query_size = 16384
quiver.engine_start_timeout = 60000
});
$bare->start;
$bare->safe_psql('postgres', 'CREATE EXTENSION quiver');
setup_db($bare, 'postgres');
fuzz_setting(label => 'c', node => $bare, db => 'postgres', at_once => 1);
$bare->stop;

note(sprintf('total %.1f s', time() - $T0));
done_testing();
