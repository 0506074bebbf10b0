#!/bin/bash
#
# test/bench/live_bench.sh — a live graph (DESIGN 1.4) under a stream of
# committed changes: what following the tables costs the writers, how fast
# changes are applied, and what they do to prediction latency.
#
#   sudo bash test/bench/live_bench.sh
#   sudo EDGES=200000 NODES=20000 RUN_SECONDS=5 bash test/bench/live_bench.sh   # quick
#
# Builds and installs quiver, starts a throw-away cluster (autovacuum off,
# no checkpoint during the runs), and makes
#   live_node(id bigint PRIMARY KEY, feat real[])   NODES rows, DIM random features
#   live_edge(src bigint, dst bigint)               EDGES uniform random edges,
#                                                   both ends in 0 .. NODES-1
#   plain_edge                                      a copy of live_edge, no graph on it
# then a directed graph "live" over live_node/live_edge with live => true
# and a 2-layer GraphSAGE "m" (DIM -> 64 -> 16, fanout [10, 5]) on it.
#
# pgbench runs RUN_SECONDS per run with per-transaction logs.  A writer
# transaction is one INSERT of ROWS_PER_TX random edges
#   INSERT INTO <table> SELECT (random() * (NODES-1))::bigint,
#                              (random() * (NODES-1))::bigint FROM generate_series(1, 100)
# (every endpoint exists, so no edge dangles); a reader transaction is
# SELECT gnn_predict('m', :id) on a uniform random id.  Rows committed are
# count(*) after a run less count(*) before it; with the delete stream on,
# rows inserted are the INSERT transactions pgbench logged x ROWS_PER_TX and
# rows deleted the rest of the difference.
#
# Output: a header line (machine, CPU, commit, settings), then one JSON
# line per phase, in this order:
#   load        gnn_create_graph(..., live => true): SQL call and engine
#               load_ms; the same graph non-live (created, timed, dropped
#               first) for reference; gnn_create_model's time
#   insert      CLIENTS_WRITE writers on plain_edge, then on live_edge:
#               rows/s each and live / plain (goal >= 0.5)
#   applied     the same writers on live_edge, with CLIENTS_DELETE clients
#               each deleting up to ROWS_PER_TX random original rows per
#               transaction (random ctids in the loaded heap, a TID scan;
#               0 skips): edge changes/s (rows inserted + deleted / seconds
#               of the run), then the check that gnn_graphs.edges equals
#               count(*) of live_edge, and how long after the last commit it
#               first did (the insert line carries the same check)
#   predict     CLIENTS_READ readers: "rest" right after the load (a freshly
#               built, compact graph; measured before the insert phase),
#               "streaming" (CLIENTS_WRITE writers on live_edge running
#               concurrently) and "rest_after" (right after that stream:
#               pending deltas unless a compaction ran, see "compaction"),
#               then "rest_compacted" (gnn_refresh_graph: the same edges,
#               freshly built); p50/p99/max ms each; ratios to rest and
#               rest_after / rest_compacted (goal: p99 within 1.2x)
#   compaction  server log lines that mention "compact", or a TODO line
#               when the engine logs none (no figure is made up)
# Progress and SQL output go to stderr; stdout holds only JSON lines.
#
# Environment: EDGES (10000000), NODES (1000000), DIM (16),
# CLIENTS_WRITE (8), CLIENTS_READ (8), CLIENTS_DELETE (2), ROWS_PER_TX (100),
# RUN_SECONDS (30), JOBS (pgbench threads per run, at most: nproc),
# APPLY_TIMEOUT (seconds the applied check waits, 60), EXTRA_CONF (more
# postgresql.conf lines), KEEP=1 (keep the cluster directory).
# At the defaults on 2 cores: about 5 minutes after the build (six pgbench
# runs of RUN_SECONDS, the rest is making the tables and graphs), ~3 GB of disk.

set -euo pipefail
shopt -s inherit_errexit		# a failure inside $(...) stops the script too
# shellcheck source=SCRIPTDIR/../../scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib.sh"
EDGES=${EDGES:-10000000}
NODES=${NODES:-1000000}
DIM=${DIM:-16}
CLIENTS_WRITE=${CLIENTS_WRITE:-8}
CLIENTS_READ=${CLIENTS_READ:-8}
CLIENTS_DELETE=${CLIENTS_DELETE:-2}
ROWS_PER_TX=${ROWS_PER_TX:-100}
RUN_SECONDS=${RUN_SECONDS:-30}
JOBS=${JOBS:-$(nproc)}
APPLY_TIMEOUT=${APPLY_TIMEOUT:-60}
EXTRA_CONF=${EXTRA_CONF:-}
GRAPH=live
MAX_ID=$((NODES - 1))

[ "$(id -u)" = 0 ] || { echo "run as root: it installs packages and PostgreSQL files" >&2; exit 2; }
if ! { [ "$NODES" -ge 2 ] && [ "$EDGES" -ge 1000 ] && [ "$CLIENTS_WRITE" -ge 1 ] && [ "$CLIENTS_READ" -ge 1 ]; }; then
	echo "need NODES >= 2, EDGES >= 1000, CLIENTS_WRITE >= 1, CLIENTS_READ >= 1" >&2
	exit 2
fi
install_packages >&2
build_install >&2
trap 'stop_cluster >&2' EXIT		# stdout: JSON lines only
start_cluster <<CONF >&2
autovacuum = off
max_wal_size = '16GB'
checkpoint_timeout = '1h'
$EXTRA_CONF
CONF
LOG=$CLUSTER_DIR/server.log

# ---- helpers ----

now_us() { echo $(($(date +%s%N) / 1000)); }

# shellcheck source=SCRIPTDIR/bench_lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/bench_lib.sh"

graph_col() { cluster_psql -At -c "SELECT $1 FROM gnn_graphs WHERE name = '$GRAPH'"; }
graph_row() { cluster_psql -At -c "SELECT row_to_json(g) FROM gnn_graphs g WHERE name = '$GRAPH'" 2>/dev/null || true; }
count_rows() { cluster_psql -At -c "SELECT count(*) FROM $1"; }
log_lines() { wc -l <"$LOG"; }
# compact_lines FROM [TO]: server log lines FROM+1 .. TO (or the end) that mention "compact".
compact_lines() { sed -n "$(($1 + 1)),${2:-\$}p" "$LOG" | grep -ci compact || true; }

# applied_check LAST_END_US: after the writers are done, does the live graph
# hold every committed edge row?  The first look at gnn_graphs.edges comes
# right away; count(*) of live_edge (fixed now that nothing writes) follows;
# then gnn_graphs is polled until they agree or APPLY_TIMEOUT passes.
# visible_after_ms: from the last commit pgbench logged to the end of the
# look that first agreed (an upper bound: it includes psql's start-up).
applied_check() {
	local last=$1 e t rows first=false ok=false t_match="" deadline
	e=$(graph_col edges)
	t=$(now_us)
	rows=$(count_rows live_edge)
	if [ "$e" = "$rows" ]; then
		first=true ok=true t_match=$t
	else
		deadline=$(($(now_us) + APPLY_TIMEOUT * 1000000))
		while [ "$(now_us)" -lt "$deadline" ]; do
			e=$(graph_col edges)
			t=$(now_us)
			if [ "$e" = "$rows" ]; then ok=true t_match=$t; break; fi
			sleep 0.05
		done
	fi
	emit table_rows="$rows" graph_edges="$e" \
		dangling_edges="$(graph_col dangling_edges 2>/dev/null || true)" \
		applied="$ok" matched_on_first_check="$first" \
		visible_after_ms="$([ -n "$t_match" ] && [ -n "$last" ] && echo $(((t_match - last) / 1000)))"
}

# ---- tables, graph, model ----

echo "{\"machine\": \"$(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo)\", \"cpu\": \"$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)\", \"commit\": \"$(git -C "$QUIVER_ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)\", \"postgres\": \"$("$PGBIN"/postgres --version | awk '{print $3}')\", \"edges\": $EDGES, \"nodes\": $NODES, \"dim\": $DIM, \"clients_write\": $CLIENTS_WRITE, \"clients_read\": $CLIENTS_READ, \"clients_delete\": $CLIENTS_DELETE, \"rows_per_tx\": $ROWS_PER_TX, \"run_seconds\": $RUN_SECONDS}"

feat=$(for _ in $(seq "$DIM"); do printf 'random(), '; done)
say "tables: $NODES nodes, $EDGES edges" >&2
cluster_psql <<SQL >&2
SELECT setseed(0.42);
CREATE TABLE live_node AS
	SELECT i::bigint AS id, ARRAY[${feat%, }]::real[] AS feat FROM generate_series(0, $MAX_ID) AS i;
ALTER TABLE live_node ADD PRIMARY KEY (id);
CREATE TABLE live_edge AS
	SELECT (random() * $MAX_ID)::bigint AS src, (random() * $MAX_ID)::bigint AS dst
	FROM generate_series(1, $EDGES);
CREATE TABLE plain_edge AS TABLE live_edge;
VACUUM (ANALYZE) live_node, live_edge, plain_edge;
CHECKPOINT;
SQL
# The heap of the original edge rows, for the delete stream's random ctids.
heap=$(cluster_psql -At -F ' ' -c \
	"SELECT relpages, ceil(reltuples / greatest(relpages, 1))::int FROM pg_class WHERE relname = 'live_edge'")
read -r PAGES TUPLES_PER_PAGE <<<"$heap"

# create_graph NAME LIVE: one JSON object, the call's wall time and its row.
create_graph() {
	local t0 t1 out nodes edges dim ms
	t0=$(now_us)
	out=$(cluster_psql -At -F ' ' -c "SELECT nodes, edges, feature_dim, load_ms
		FROM gnn_create_graph('$1', 'SELECT src, dst FROM live_edge', 'SELECT id, feat FROM live_node',
			undirected => false, live => $2)")
	t1=$(now_us)
	read -r nodes edges dim ms <<<"$out"
	emit sql_ms=$(((t1 - t0) / 1000)) load_ms="$ms" nodes="$nodes" edges="$edges" feature_dim="$dim"
}

say "load: non-live reference, then live" >&2
non_live=$(create_graph ref false)
cluster_psql -c "SELECT gnn_drop_graph('ref')" >/dev/null
live=$(create_graph "$GRAPH" true)
write_sage_weights "$DIM,64,16" "$CLUSTER_DIR/m.st" >&2
t0=$(now_us)
cluster_psql -c "SELECT gnn_create_model('m', '$GRAPH', 'graphsage',
	pg_read_binary_file('$CLUSTER_DIR/m.st'), '{\"fanout\": [10, 5]}')" >/dev/null
model_ms=$((($(now_us) - t0) / 1000))
emit phase=load live="$live" non_live="$non_live" \
	live_over_non_live_sql="$(ratio "$(jget "$live" sql_ms)" "$(jget "$non_live" sql_ms)")" \
	model="graphsage $DIM-64-16 fanout [10,5]" model_ms="$model_ms" graph="$(graph_row)"

for t in live_edge plain_edge; do
	cat >"$CLUSTER_DIR/insert_$t.sql" <<SQL
INSERT INTO $t SELECT (random() * $MAX_ID)::bigint, (random() * $MAX_ID)::bigint FROM generate_series(1, $ROWS_PER_TX);
SQL
done
cat >"$CLUSTER_DIR/delete.sql" <<SQL
DELETE FROM live_edge WHERE ctid = ANY (ARRAY(SELECT format('(%s,%s)', floor(random() * $PAGES)::int, 1 + floor(random() * $TUPLES_PER_PAGE)::int)::tid FROM generate_series(1, $ROWS_PER_TX)));
SQL
cat >"$CLUSTER_DIR/predict.sql" <<SQL
\set id random(0, $MAX_ID)
SELECT gnn_predict('m', :id);
SQL
chown postgres: "$CLUSTER_DIR"/*.sql

# ---- predictions at rest on the freshly built graph (reported with "predict") ----

say "predict: rest" >&2
rest=$(bench_run rest "$CLIENTS_READ" "$CLUSTER_DIR/predict.sql")

# ---- insert throughput, without and with the live graph ----

# insert_run TABLE: writers on TABLE; JSON with rows committed and rows/s.
insert_run() {
	local c0 c1 s
	c0=$(count_rows "$1")
	s=$(bench_run "insert_$1" "$CLIENTS_WRITE" "$CLUSTER_DIR/insert_$1.sql")
	c1=$(count_rows "$1")
	emit rows=$((c1 - c0)) transactions="$(jget "$s" transactions)" seconds="$(jget "$s" seconds)" \
		rows_per_s="$(awk -v r=$((c1 - c0)) -v t="$(jget "$s" seconds)" 'BEGIN { if (t > 0) printf "%.0f", r / t }')" \
		p50_ms="$(jget "$s" p50_ms)" p99_ms="$(jget "$s" p99_ms)" last_end_us="$(jget "$s" last_end_us)"
}

say "insert: plain_edge, then live_edge" >&2
plain=$(insert_run plain_edge)
livein=$(insert_run live_edge)
check=$(applied_check "$(jget "$livein" last_end_us)")
r=$(ratio "$(jget "$livein" rows_per_s)" "$(jget "$plain" rows_per_s)")
emit phase=insert clients="$CLIENTS_WRITE" rows_per_tx="$ROWS_PER_TX" plain="$plain" live="$livein" \
	live_over_plain="$r" goal=">= 0.5" goal_met="$(awk -v r="$r" 'BEGIN { print (r != "" && r >= 0.5) ? "true" : "false" }')" \
	live_check="$check"

# ---- sustained applied changes: inserts (and deletes), then the check ----

say "applied: $CLIENTS_WRITE inserting and $CLIENTS_DELETE deleting clients on live_edge" >&2
c0=$(count_rows live_edge)
bench_start changes_ins "$CLIENTS_WRITE" "$CLUSTER_DIR/insert_live_edge.sql"
ins_pid=$BENCH_PID
del_pid=""
if [ "$CLIENTS_DELETE" -gt 0 ]; then
	bench_start changes_del "$CLIENTS_DELETE" "$CLUSTER_DIR/delete.sql"
	del_pid=$BENCH_PID
fi
bench_wait changes_ins "$ins_pid"
[ -z "$del_pid" ] || bench_wait changes_del "$del_pid"
ins=$(pgbench_stats "$CLUSTER_DIR/log_changes_ins")
del='{"transactions": 0, "last_end_us": null, "seconds": null}'
[ -z "$del_pid" ] || del=$(pgbench_stats "$CLUSTER_DIR/log_changes_del")
last=$(jget "$ins" last_end_us)
dlast=$(jget "$del" last_end_us)
if [ -n "$dlast" ] && { [ -z "$last" ] || [ "$dlast" -gt "$last" ]; }; then last=$dlast; fi
check=$(applied_check "$last")
c1=$(jget "$check" table_rows)
inserted=$(($(jget "$ins" transactions) * ROWS_PER_TX))	# each committed INSERT adds ROWS_PER_TX rows
deleted=$((c0 + inserted - c1))
secs=$(jget "$ins" seconds)
emit phase=applied insert_clients="$CLIENTS_WRITE" delete_clients="$CLIENTS_DELETE" \
	rows_inserted="$inserted" rows_deleted="$deleted" seconds="$secs" \
	edge_changes_per_s="$(awk -v n=$((inserted + deleted)) -v t="$secs" 'BEGIN { if (t > 0) printf "%.0f", n / t }')" \
	insert_p99_ms="$(jget "$ins" p99_ms)" delete_p99_ms="$(jget "$del" p99_ms)" \
	applied="$(jget "$check" applied)" matched_on_first_check="$(jget "$check" matched_on_first_check)" \
	visible_after_ms="$(jget "$check" visible_after_ms)" check="$check" graph="$(graph_row)"

# ---- predictions while inserts stream in, then at rest right after ----

say "predict: streaming, then rest_after" >&2
log0=$(log_lines)
bench_start stream_ins "$CLIENTS_WRITE" "$CLUSTER_DIR/insert_live_edge.sql"
w_pid=$BENCH_PID
bench_start streaming "$CLIENTS_READ" "$CLUSTER_DIR/predict.sql"
r_pid=$BENCH_PID
bench_wait streaming "$r_pid"
bench_wait stream_ins "$w_pid"
streaming=$(pgbench_stats "$CLUSTER_DIR/log_streaming")
writers=$(pgbench_stats "$CLUSTER_DIR/log_stream_ins")
log1=$(log_lines)
row_before=$(graph_row)
rest_after=$(bench_run rest_after "$CLIENTS_READ" "$CLUSTER_DIR/predict.sql")
log2=$(log_lines)
row_after=$(graph_row)
# The stream's writes checked only now, so that rest_after starts right
# after the stream: no visible_after_ms here.
stream_check=$(applied_check "")
# The same contents as a freshly built, compact graph: refresh it (a new
# build of the tables as they are now), then the same readers.
cluster_psql -At -c "SELECT load_ms FROM gnn_refresh_graph('live')" >&2
rest_compacted=$(bench_run rest_compacted "$CLIENTS_READ" "$CLUSTER_DIR/predict.sql")
any_compact=$(compact_lines 0)
during_stream=$(compact_lines "$log0" "$log1")
during_rest_after=$(compact_lines "$log1" "$log2")
if [ "$any_compact" -eq 0 ]; then
	pending="unknown: the engine logs no compactions"
elif [ "$during_rest_after" -eq 0 ]; then
	pending="yes: no compaction logged from the end of the stream to the end of rest_after"
else
	pending="partly: a compaction was logged during rest_after"
fi
emit phase=predict clients="$CLIENTS_READ" writer_clients="$CLIENTS_WRITE" \
	rest="$rest" streaming="$streaming" rest_after="$rest_after" rest_compacted="$rest_compacted" \
	rest_after_over_compacted_p50="$(ratio "$(jget "$rest_after" p50_ms)" "$(jget "$rest_compacted" p50_ms)")" \
	rest_after_over_compacted_p99="$(ratio "$(jget "$rest_after" p99_ms)" "$(jget "$rest_compacted" p99_ms)")" \
	streaming_over_rest_p50="$(ratio "$(jget "$streaming" p50_ms)" "$(jget "$rest" p50_ms)")" \
	streaming_over_rest_p99="$(ratio "$(jget "$streaming" p99_ms)" "$(jget "$rest" p99_ms)")" \
	rest_after_over_rest_p50="$(ratio "$(jget "$rest_after" p50_ms)" "$(jget "$rest" p50_ms)")" \
	rest_after_over_rest_p99="$(ratio "$(jget "$rest_after" p99_ms)" "$(jget "$rest" p99_ms)")" \
	writer_rows_per_s="$(awk -v n="$(jget "$writers" transactions)" -v k="$ROWS_PER_TX" -v t="$(jget "$writers" seconds)" 'BEGIN { if (t > 0) printf "%.0f", n * k / t }')" \
	compactions_logged_during_stream="$during_stream" compactions_logged_during_rest_after="$during_rest_after" \
	goal="rest_after p99 (pending deltas) within 1.2x of rest_compacted p99 (the same edges, freshly built)" \
	goal_met="$(awk -v r="$(ratio "$(jget "$rest_after" p99_ms)" "$(jget "$rest_compacted" p99_ms)")" 'BEGIN { print (r != "" && r <= 1.2) ? "true" : "false" }')" \
	pending_deltas_at_rest_after="$pending" \
	graph_before_rest_after="$row_before" graph_after_rest_after="$row_after" live_check_after_rest_after="$stream_check"

# ---- compaction: only what the engine logged ----

if [ "$any_compact" -gt 0 ]; then
	grep -i compact "$LOG" | tail -n 50 | $PYTHON -c '
import json, re, sys
lines = [l.rstrip("\n") for l in sys.stdin]
ms = [float(m) for l in lines for m in re.findall(r"(\d+(?:\.\d+)?)\s*ms\b", l)]
print(json.dumps({"phase": "compaction", "logged": int(sys.argv[1]), "lines": lines,
                  "ms_in_lines": ms, "note": "ms_in_lines: every number followed by ms in the lines shown (last 50)"}))' "$any_compact"
else
	emit phase=compaction logged=0 \
		todo="TODO: no server log line mentions 'compact'; compaction time is not measured (the engine does not log its compactions)"
fi
