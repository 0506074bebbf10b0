#!/bin/bash
#
# test/bench/reload_bench.sh — do predictions go on while a large graph
# reloads?  gnn_predict latency under pgbench at rest, then while
# gnn_refresh_graph re-reads and rebuilds a LOAD_EDGES-edge graph in
# another session, then while the engine reloads it from the catalog
# (a quiver loader worker reading the rows, as after a standby's replay).
#
#   sudo bash test/bench/reload_bench.sh
#
# Builds and installs quiver, starts a throw-away cluster, makes a
# 1,000,000-node graph "big" with LOAD_EDGES random edges (4 features) and
# a small power-law graph "small" (NODES nodes, DIM features) with a
# 2-layer GraphSAGE "sage" (fanout [10, 5]) on each.  For each phase it
# runs pgbench with CLIENTS clients calling gnn_predict on random ids of
# the model PREDICT_ON ("small" or "big"), with per-transaction logs, and
# prints one JSON line: transactions, median, p99 and max latency in ms,
# the reload's own time and whether it ended within the run.  The phases:
#   rest      nothing else runs (RUN_SECONDS)
#   refresh   SELECT gnn_refresh_graph('big') runs alongside
#   reload    UPDATE quiver_graph ... (a new catalog version): the engine
#             reloads "big" through a quiver loader
# Each phase's pgbench runs RUN_SECONDS; make it longer than a reload.
#
# Environment: LOAD_EDGES (10000000), NODES (100000), DIM (32), CLIENTS (2),
# RUN_SECONDS (40), PREDICT_ON (big), KEEP=1.

set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib.sh"
LOAD_EDGES=${LOAD_EDGES:-10000000}
NODES=${NODES:-100000}
DIM=${DIM:-32}
CLIENTS=${CLIENTS:-2}
RUN_SECONDS=${RUN_SECONDS:-40}
PREDICT_ON=${PREDICT_ON:-big}

[ "$(id -u)" = 0 ] || { echo "run as root: it installs packages and PostgreSQL files" >&2; exit 2; }
install_packages >&2
build_install >&2
trap stop_cluster EXIT
start_cluster <<<"quiver.catalog_poll_interval = 200" >&2
echo "{\"machine\": \"$(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo)\", \"cpu\": \"$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)\", \"commit\": \"$(git -C "$QUIVER_ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)\"}"

cluster_psql <<SQL >&2
CREATE TABLE big_node AS SELECT i::bigint AS id, ARRAY[random(), random(), random(), random()]::real[] AS feat
	FROM generate_series(0, 999999) AS i;
CREATE TABLE big_edge AS SELECT (random() * 999999)::bigint AS src, (random() * 999999)::bigint AS dst
	FROM generate_series(1, $LOAD_EDGES);
SQL
make_graph_tables small "$NODES" 10 "$DIM" >&2
write_sage_weights "$DIM,64,16" "$CLUSTER_DIR/small.st"
write_sage_weights "4,64,16" "$CLUSTER_DIR/big.st"
cluster_psql -At <<SQL >&2
SELECT * FROM gnn_create_graph('big', 'SELECT src, dst FROM big_edge', 'SELECT id, feat FROM big_node');
SELECT * FROM gnn_create_graph('small', 'SELECT src, dst FROM small_edge', 'SELECT id, feat FROM small_node');
SELECT gnn_create_model('big', 'big', 'graphsage', pg_read_binary_file('$CLUSTER_DIR/big.st'), '{"fanout": [10, 5]}');
SELECT gnn_create_model('small', 'small', 'graphsage', pg_read_binary_file('$CLUSTER_DIR/small.st'), '{"fanout": [10, 5]}');
SQL
max_id=$([ "$PREDICT_ON" = big ] && echo 999999 || echo $((NODES - 1)))
cat >"$CLUSTER_DIR/predict.sql" <<SQL
\set id random(0, $max_id)
SELECT gnn_predict('$PREDICT_ON', :id);
SQL
chown postgres: "$CLUSTER_DIR/predict.sql"

# Wait until the engine serves catalog version $1 of graph big.
wait_resident() {
	for _ in $(seq 1 600); do
		[ "$(cluster_psql -At -c "SELECT resident_version >= $1 FROM gnn_graphs WHERE name = 'big'")" = t ] && return 0
		sleep 0.2
	done
	echo "graph big never reached version $1" >&2
	return 1
}

# phase NAME [SQL to run alongside]: pgbench for RUN_SECONDS; the SQL
# starts a second in, and its reload must be done before pgbench ends
# ("reload_in_run").
phase() {
	local name=$1 sql=${2:-} logdir="$CLUSTER_DIR/log_$1" t0 version reload_ms=null in_run=null
	mkdir -p "$logdir" && chown postgres: "$logdir"
	cluster_pgbench -c "$CLIENTS" -j "$CLIENTS" -T "$RUN_SECONDS" -l --log-prefix="$logdir/pgbench_log" \
		-f "$CLUSTER_DIR/predict.sql" >"$logdir/out" 2>&1 &
	local bench=$!
	sleep 1
	t0=$(date +%s%N)
	if [ -n "$sql" ]; then
		cluster_psql -At -c "$sql" >/dev/null
		version=$(cluster_psql -At -c "SELECT version FROM gnn_graphs WHERE name = 'big'")
		wait_resident "$version"
		reload_ms=$(( ($(date +%s%N) - t0) / 1000000 ))
		in_run=$([ $((reload_ms + 1000)) -lt $((RUN_SECONDS * 1000)) ] && echo true || echo false)
	fi
	wait $bench
	# pgbench -l: client_id transaction_no time_us script_no epoch epoch_us
	cat "$logdir"/pgbench_log.* | $PYTHON -c '
import sys, json
lat = sorted(int(line.split()[2]) / 1000.0 for line in sys.stdin if line.strip())
n = len(lat)
q = lambda p: round(lat[min(n - 1, int(p * n))], 3) if n else None
print(json.dumps({"phase": sys.argv[1], "clients": int(sys.argv[2]), "model": sys.argv[3],
                  "transactions": n, "p50_ms": q(0.5), "p99_ms": q(0.99),
                  "max_ms": round(lat[-1], 3) if n else None, "reload_ms": json.loads(sys.argv[4]),
                  "reload_in_run": json.loads(sys.argv[5]), "edges": int(sys.argv[6])}))' \
		"$name" "$CLIENTS" "$PREDICT_ON" "$reload_ms" "$in_run" "$LOAD_EDGES"
}

phase rest
phase refresh "SELECT nodes, edges FROM gnn_refresh_graph('big')"
phase reload "UPDATE quiver_graph SET created_at = now() WHERE name = 'big'"
