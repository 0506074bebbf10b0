#!/bin/bash
#
# scripts/sqlsmith.sh — random SQL (Debian's sqlsmith) against quiver, on
# Debian 12, as root:
#
#   sudo bash scripts/sqlsmith.sh            # SQLSMITH_SECONDS=60 by default
#
# 1. installs sqlsmith (Debian package `sqlsmith`, 1.4 in bookworm) when it
#    is missing; quiver must be installed already (make install, or
#    SQLSMITH_BUILD=1 to build and install it first);
# 2. starts a throw-away cluster with quiver preloaded (lib.sh's
#    start_cluster), creates a graph "g" (make_graph_tables: 300 nodes, 4
#    features), a GraphSAGE model "m" and a GCN model "m_gcn", and a role
#    for sqlsmith (below);
# 3. runs sqlsmith for SQLSMITH_SECONDS (sqlsmith 1.4 can stop after
#    --max-queries but not after a time: `timeout -s INT` stops it, and
#    SIGINT makes it print its report);
# 4. fails when the server crashed: "terminated by signal", PANIC, TRAP or a
#    crash restart in the server log, a new postmaster pid, the engine (the
#    "quiver engine" background worker) gone or restarted, or SELECT 1
#    failing afterwards.  Prints sqlsmith's own counts (queries, errors,
#    broken connections), the internal errors (XX000) the server logged for
#    statements that call quiver, and, last, one line:
#      sqlsmith: 1 passed, 0 failed      (or 0 passed, 1 failed)
#
# How sqlsmith is restricted, and why:
# - It connects as "smith", a role that is not a superuser: sqlsmith calls
#   any function it finds, and as a superuser that includes
#   pg_terminate_backend (a random pid can hit the engine, which the check
#   would then report as a crash), pg_reload_conf, lo_export and
#   pg_read_file.  A plain role cannot signal the engine (a background
#   worker without a role counts as a superuser's process) nor touch files.
#   sqlsmith runs each statement in BEGIN ... ROLLBACK with
#   statement_timeout = 1s, so nothing it changes stays.  smith may write
#   quiver_graph and quiver_model (as roles that create graphs do, see
#   test/t/016_rights.pl), so sqlsmith also writes definitions by hand;
#   "g", "m" and "m_gcn" belong to postgres, which smith may not change.
# - --exclude-catalog: no pg_catalog or information_schema tables in FROM;
#   queries draw on the tables and views smith may read: quiver's views
#   gnn_graphs and gnn_models, its catalog tables, the graph's tables, views over quiver's
#   set-returning functions (sqlsmith only calls functions that return one
#   value) and a table of arguments, real and hostile (model and graph
#   names, node ids and id arrays, weights blobs, configs, queries).
# - sqlsmith reads the functions it may call with an unqualified
#   "FROM pg_proc".  smith's search_path starts with information_schema,
#   where a view information_schema.pg_proc shows quiver's functions and a
#   few dozen plain built-ins (text, bytea, jsonb, integers, set_config);
#   without it quiver's functions are a handful among ~3000 and are seldom
#   drawn.  information_schema, not a schema of our own, because
#   --exclude-catalog hides it from FROM.  SQLSMITH_ALL_ROUTINES=1 lets
#   sqlsmith use every function (still as smith).
#
# Environment: SQLSMITH_SECONDS (60), SQLSMITH_SEED (random; printed, to
# repeat a run's choices), SQLSMITH_ALL_ROUTINES=1, SQLSMITH_BUILD=1,
# SQLSMITH_PGBIN (another PostgreSQL 15 bin directory, with its own quiver),
# KEEP=1 keeps the cluster's directory (the server log, sqlsmith's output);
# the two logs are also kept when the run fails.

set -u -o pipefail

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
PGBIN=${SQLSMITH_PGBIN:-$PGBIN}
PG_CONFIG=$PGBIN/pg_config
SECS=${SQLSMITH_SECONDS:-60}
SEED=${SQLSMITH_SEED:-$((RANDOM * 32768 + RANDOM))}

# The closing line, on any exit.
RESULT=""
finish() {
	local rc=$?
	if [ -z "$RESULT" ]; then
		RESULT="0 passed, 1 failed"
	fi
	if [ -n "${CLUSTER_DIR:-}" ] && [ "$RESULT" != "1 passed, 0 failed" ] && [ "${KEEP:-0}" != 1 ]; then
		local keep
		keep=$(mktemp -d /tmp/quiver-sqlsmith.XXXXXX)
		cp "$CLUSTER_DIR/server.log" "$CLUSTER_DIR/sqlsmith.log" "$keep/" 2>/dev/null
		echo "logs kept in $keep"
	fi
	stop_cluster
	echo "sqlsmith: $RESULT"
	exit "$rc"
}
trap finish EXIT
die() { printf 'sqlsmith.sh: %s\n' "$*" >&2; exit 2; }

[ "$(id -u)" = 0 ] || die "run as root: it installs packages and runs a cluster as postgres"
[[ $SECS =~ ^[0-9]+$ ]] && [ "$SECS" -gt 0 ] || die "SQLSMITH_SECONDS must be a positive number of seconds"

# ---- 1. sqlsmith and quiver -------------------------------------------------
say "sqlsmith"
if ! command -v sqlsmith >/dev/null; then
	export DEBIAN_FRONTEND=noninteractive
	{ apt-get update -q && apt-get install -y -q --no-install-recommends sqlsmith </dev/null; } >/dev/null ||
		die "apt-get install sqlsmith failed"
fi
echo "$(command -v sqlsmith) ($(dpkg-query -W -f='${Version}' sqlsmith 2>/dev/null || echo '?'))"
if [ "${SQLSMITH_BUILD:-0}" = 1 ]; then
	install_packages || die "apt-get failed"
	build_install || die "make or make install failed"
fi
[ -f "$("$PG_CONFIG" --pkglibdir)/quiver.so" ] ||
	die "quiver is not installed in $("$PG_CONFIG" --pkglibdir) (make install, or SQLSMITH_BUILD=1)"
echo "quiver: $(ls -l --time-style=+%F\ %T "$("$PG_CONFIG" --pkglibdir)/quiver.so" | awk '{print $6, $7}') $("$PG_CONFIG" --pkglibdir)/quiver.so"

# ---- 2. a cluster with a graph and models ---------------------------------
say "cluster"
start_cluster <<CONF || die "the cluster did not start"
log_line_prefix = '%m [%p] %e '
track_activity_query_size = 16384
restart_after_crash = on
track_functions = 'all'
quiver.engine_threads = 2
CONF
echo "cluster in $CLUSTER_DIR, port $CLUSTER_PORT"

make_graph_tables fz 300 6 4 >/dev/null || die "make_graph_tables failed"
write_sage_weights 4,16,5 "$CLUSTER_DIR/sage.safetensors" || die "write_sage_weights failed"
$PYTHON "$QUIVER_ROOT/test/ref/quiver_ref.py" weights --arch gcn --dims 4,8,5 --seed 2 \
	--out "$CLUSTER_DIR/gcn.safetensors" && chown postgres: "$CLUSTER_DIR/gcn.safetensors" ||
	die "GCN weights failed"

cluster_psql >/dev/null <<SQL || die "creating the graph, the models or the role failed"
SELECT nodes FROM gnn_create_graph('g', 'SELECT src, dst FROM fz_edge', 'SELECT id, feat FROM fz_node');
SELECT gnn_create_model('m', 'g', 'graphsage', pg_read_binary_file('$CLUSTER_DIR/sage.safetensors'), '{"fanout": [3, 2]}');
SELECT gnn_create_model('m_gcn', 'g', 'gcn', pg_read_binary_file('$CLUSTER_DIR/gcn.safetensors'), '{"fanout": [-1, -1]}');
SELECT gnn_predict('m', 0::bigint), gnn_predict('m_gcn', 0::bigint);

CREATE ROLE smith LOGIN;
GRANT SELECT ON fz_node, fz_edge, gnn_graphs, gnn_models TO smith;
-- as test/t/016_rights.pl does for roles that create graphs and models
GRANT SELECT, INSERT, UPDATE, DELETE ON quiver_graph, quiver_model TO smith;
GRANT CREATE ON SCHEMA public TO smith;

-- what sqlsmith may call (see the top of this script)
CREATE VIEW information_schema.pg_proc AS
	SELECT * FROM pg_catalog.pg_proc p
	WHERE ${SQLSMITH_ALL_ROUTINES:+true OR} p.oid IN (SELECT objid FROM pg_depend
	                 WHERE classid = 'pg_proc'::regclass AND refclassid = 'pg_extension'::regclass
	                   AND refobjid = (SELECT oid FROM pg_extension WHERE extname = 'quiver'))
	   OR (p.pronamespace = 'pg_catalog'::regnamespace
	       AND NOT EXISTS (SELECT FROM unnest(p.proargtypes) t JOIN pg_type y ON y.oid = t WHERE y.typtype = 'p')
	       AND p.proname IN ('substr', 'left', 'right', 'lower', 'upper', 'repeat', 'md5', 'length',
	                         'octet_length', 'btrim', 'replace', 'quote_ident', 'quote_literal',
	                         'string_to_array', 'int8', 'int4', 'abs', 'random', 'sha256', 'decode',
	                         'encode', 'get_byte', 'set_byte', 'jsonb_set', 'jsonb_insert',
	                         'jsonb_array_length', 'jsonb_typeof', 'jsonb_strip_nulls', 'set_config', 'current_setting', 'int8larger',
	                         'int8smaller', 'count', 'sum', 'max', 'min', 'string_agg', 'bool_and',
	                         'bool_or'));
GRANT SELECT ON information_schema.pg_proc TO smith;
ALTER ROLE smith SET search_path = information_schema, pg_catalog, public;
ALTER ROLE smith SET quiver.default_model = 'm';
SQL

# smith's own objects (the superuser reads the weights files): arguments,
# real and hostile, and views over quiver's set-returning functions.
cluster_psql >/dev/null <<SQL || die "creating smith's objects failed"
CREATE TABLE smith_args (model text, graph text, arch text, node_id bigint, node_ids bigint[],
                         weights bytea, config jsonb, edges text, features text, guc text);
INSERT INTO smith_args VALUES
 ('m', 'g', 'graphsage', 0, '{0,1,2}', pg_read_binary_file('$CLUSTER_DIR/sage.safetensors'),
  '{"fanout": [3, 2]}', 'SELECT src, dst FROM fz_edge', 'SELECT id, feat FROM fz_node', 'quiver.default_model'),
 ('m_gcn', 'g', 'gcn', 1, '{}', pg_read_binary_file('$CLUSTER_DIR/gcn.safetensors'),
  '{}', 'SELECT src::int, dst::int FROM fz_edge', 'SELECT id, feat::float8[] FROM fz_node', 'quiver.prefetch_rows'),
 ('', '', '', -1, '{NULL}', '\\x00', '{"fanout": "x"}', 'SELECT 1', 'SELECT', 'quiver.engine_start_timeout'),
 (repeat('n', 200), repeat('g', 200), 'GCN', 9223372036854775807, '{-1,9223372036854775807}',
  substring(pg_read_binary_file('$CLUSTER_DIR/sage.safetensors') FROM 1 FOR 40),
  '{"fanout": [-2, 1e30]}', 'SELECT pg_sleep(5), 1', 'SELECT id, NULL::real[] FROM fz_node', 'quiver.nonexistent'),
 (NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
 ('a''b;--', '%s%n%s', 'gat', -9223372036854775808, '{{1,2},{3,4}}', '\\xffffffffffffffff7b7d',
  'null', 'DELETE FROM smith_args RETURNING 1, 2', 'SELECT id, ARRAY[1, 2]::real[] FROM fz_node', ''),
 ('g', 'm', 'graphsage', 299, '[3:4]={5,6}', '\\x0200000000000000',
  '{"fanout": [0, 0], "seed": -1}', 'SELECT src, dst FROM fz_edge UNION ALL SELECT 1000, 1001',
  'SELECT id, ARRAY[[1, 2], [3, 4]]::real[] FROM fz_node', 'statement_timeout');
CREATE VIEW smith_stats AS SELECT * FROM gnn_stats();
CREATE VIEW smith_gpus AS SELECT * FROM gnn_gpus();
CREATE VIEW smith_batch AS
	SELECT a.model, a.node_ids, p.node_id, p.prediction
	FROM smith_args a, LATERAL gnn_predict(a.model, a.node_ids) p;
ALTER TABLE smith_args OWNER TO smith;
ALTER VIEW smith_stats OWNER TO smith;
ALTER VIEW smith_gpus OWNER TO smith;
ALTER VIEW smith_batch OWNER TO smith;
SQL

# ---- 3. sqlsmith ------------------------------------------------------------
engine_pid() {
	cluster_psql -At -c "SELECT string_agg(pid::text, ',') FROM pg_stat_activity WHERE backend_type = 'quiver engine'" 2>/dev/null
}
postmaster_pid() { head -n 1 "$CLUSTER_DIR/data/postmaster.pid" 2>/dev/null; }
ENGINE0=$(engine_pid)
PM0=$(postmaster_pid)
[ -n "$ENGINE0" ] || die "no quiver engine runs before sqlsmith"
LOG0=$(stat -c %s "$CLUSTER_DIR/server.log")

say "sqlsmith for $SECS s (seed $SEED${SQLSMITH_ALL_ROUTINES:+, all routines})"
opts=(--verbose --exclude-catalog --seed="$SEED"
	--target="host=$CLUSTER_DIR port=$CLUSTER_PORT dbname=postgres user=smith")
echo "sqlsmith ${opts[*]}"
timeout -s INT -k 15 "$SECS" sqlsmith "${opts[@]}" >"$CLUSTER_DIR/sqlsmith.log" 2>&1
rc=$?
[ $rc = 124 ] || echo "sqlsmith stopped before its time: exit $rc"
chmod 644 "$CLUSTER_DIR/sqlsmith.log"

# sqlsmith's report (printed on SIGINT): "queries: N", "count<TAB>first line
# of the error" per error, "error rate: x"; progress: . ok, e error,
# S syntax error, t timeout, C broken connection.
S=$CLUSTER_DIR/sqlsmith.log
queries=$(grep -E '^queries: [0-9]+' "$S" | tail -n 1 | awk '{print $2}')
rate=$(grep -E '^error rate: ' "$S" | tail -n 1 | awk '{print $3}')
broken=$(grep -E '^[.eStC]+$' "$S" | tr -cd 'C' | wc -c)
errors=$(awk '/^queries: /{n = 0; inrep = 1; next} inrep && /^error rate: /{tot = n; inrep = 0} inrep && /^[0-9]+\t/{n += $1} END {print tot + 0}' "$S")
say "sqlsmith's report"
awk '/^queries: /{buf = ""; inrep = 1} inrep {buf = buf $0 "\n"} /^error rate: /{inrep = 0; last = buf} END {printf "%s", last}' "$S" | head -n 25

# ---- 4. did the server survive? --------------------------------------------
say "checks"
FAIL=()
NEW=$(tail -c +"$((LOG0 + 1))" "$CLUSTER_DIR/server.log")
crash=$(grep -E 'terminated by signal|was terminated by exception|PANIC:|TRAP:|terminating any other active server processes|all server processes terminated' <<<"$NEW")
if [ -n "$crash" ]; then
	FAIL+=("the server crashed")
	echo "crash lines in the server log, with the statements that were running:"
	grep -E -A1 'terminated by signal|was terminated by exception|PANIC:|TRAP:' <<<"$NEW" | head -n 40
fi
exits=$(grep -E 'background worker "quiver engine".*exited' <<<"$NEW")
[ -z "$exits" ] || { FAIL+=("the engine exited"); echo "$exits" | head -n 10; }
# give a crash restart a moment before asking
for _ in $(seq 50); do cluster_psql -At -c 'SELECT 1' >/dev/null 2>&1 && break; sleep 0.2; done
if [ "$(cluster_psql -At -c 'SELECT 1' 2>/dev/null)" != 1 ]; then FAIL+=("SELECT 1 fails after the run"); fi
[ "$(postmaster_pid)" = "$PM0" ] || FAIL+=("the postmaster pid changed ($PM0 -> $(postmaster_pid))")
ENGINE1=$(engine_pid)
[ "$ENGINE1" = "$ENGINE0" ] || FAIL+=("the engine is not the one that started (pid $ENGINE0 -> ${ENGINE1:-none})")
[ "$(cluster_psql -At -c "SELECT gnn_predict('m', 0::bigint) IS NOT NULL" 2>/dev/null)" = t ] ||
	FAIL+=("model m no longer predicts")

# The server log's entries, one a line (a statement's lines joined), and
# those of statements that call quiver (or smith's views over it).
# (mawk has no {n} in regular expressions)
entries() { awk '/^[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9] [0-9:.]+ [A-Z]+ \[[0-9]+\] /{if (e != "") print e; e = $0; next} {e = e " " $0} END {if (e != "") print e}'; }
ENTRIES=$(entries <<<"$NEW")
# an ERROR entry followed by its STATEMENT entry: "sqlstate message" for
# each error whose statement calls a quiver function (views not counted)
quiver_errors=$(awk '/\] [0-9A-Z][0-9A-Z][0-9A-Z][0-9A-Z][0-9A-Z] ERROR: /{err = $0; next} / STATEMENT: /{if (err != "" && $0 ~ /gnn_[a-z_]+\(|smith_(stats|gpus|batch)/) {sub(/^.*\] /, "", err); sub(/ ERROR: +/, " ", err); print substr(err, 1, 150)} err = ""; next} {err = ""}' <<<"$ENTRIES")
internal=$(grep -E '^XX000 ' <<<"$quiver_errors" | sort | uniq -c | sort -rn)
ninternal=$(grep -cE ' XX000 ERROR: ' <<<"$ENTRIES")

say "summary"
echo "sqlsmith's counts: ${queries:-?} queries, $errors errors (error rate ${rate:-?}), $broken broken connections"
echo "quiver functions that returned (pg_stat_user_functions, calls that raised an ERROR are not counted):"
cluster_psql -At -F ' ' -c "SELECT '  ' || funcname || '(' || pg_get_function_identity_arguments(funcid) || ')', calls FROM pg_stat_user_functions WHERE schemaname = 'public' AND funcname ~ '^gnn_' ORDER BY calls DESC" 2>/dev/null
echo "errors in statements that call quiver: $(grep -c . <<<"$quiver_errors")$([ -n "$quiver_errors" ] && echo ', the most frequent:')"
[ -z "$quiver_errors" ] || sort <<<"$quiver_errors" | uniq -c | sort -rn | head -n 12
echo "internal errors (XX000) in the server log: $ninternal; in statements calling quiver: $(grep -c . <<<"$internal")"
[ -z "$internal" ] || head -n 10 <<<"$internal"
if [ ${#FAIL[@]} = 0 ]; then
	echo "the server, the postmaster ($PM0) and the engine ($ENGINE0) survived"
	RESULT="1 passed, 0 failed"
	exit 0
fi
printf 'FAILED: %s\n' "${FAIL[@]}"
RESULT="0 passed, 1 failed"
exit 1
