#!/bin/bash
#
# test/bench/sql_bench.sh — SQL round trips under pgbench: gnn_predict beside
# SELECT 1, at several client counts, with request batching off and on.
#
#   sudo bash test/bench/sql_bench.sh
#
# Builds and installs quiver, starts a throw-away cluster, generates a
# power-law graph (NODES nodes, DIM features) and a 2-layer GraphSAGE
# (DIM -> HIDDEN -> CLASSES, fanout [10, 5]), then for every value of
# quiver.batch_wait_us in WAITS and every client count in CLIENTS runs
# `SELECT 1` and `SELECT gnn_predict('sage', random id)` for RUN_SECONDS each and
# prints one JSON line: both rates, their ratio, gnn_predict's median and p99
# latency and the requests the engine merged per batch.
#
# First it times gnn_create_graph on a LOAD_EDGES-edge table (1,000,000
# nodes, 4 features) and prints the rate and the resident bytes against the
# documented size of CSR + features + id map.
#
# Last it times `SELECT count(*), sum(array_length(gnn_predict('sage', id),
# 1)) FROM t` over a table of SCAN_ROWS random ids: with the calls batched by
# QuiverPrefetch, with each call its own request (quiver.prefetch_rows = 0,
# over SCAN_ROWS_UNBATCHED rows: the rate is what counts), and as one array
# call, gnn_predict('sage', ARRAY(SELECT id FROM t)).
#
# Environment: NODES (100000), AVG_DEGREE (10), DIM (32), HIDDEN (64),
# CLASSES (16), CLIENTS ("1 8 32 64"; "" skips), WAITS ("0 200"), RUN_SECONDS (10),
# LOAD_EDGES (10000000; 0 skips the load test), SCAN_ROWS (1000000; 0 skips
# the scans), SCAN_ROWS_UNBATCHED (100000), KEEP=1.

set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib.sh"
NODES=${NODES:-100000}
AVG_DEGREE=${AVG_DEGREE:-10}
DIM=${DIM:-32}
HIDDEN=${HIDDEN:-64}
CLASSES=${CLASSES:-16}
CLIENTS=${CLIENTS-"1 8 32 64"}
WAITS=${WAITS-"0 200"}
SECONDS_EACH=${RUN_SECONDS:-10}
LOAD_EDGES=${LOAD_EDGES:-10000000}
SCAN_ROWS=${SCAN_ROWS:-1000000}
SCAN_ROWS_UNBATCHED=${SCAN_ROWS_UNBATCHED:-100000}

[ "$(id -u)" = 0 ] || { echo "run as root: it installs packages and PostgreSQL files" >&2; exit 2; }
install_packages >&2
build_install >&2
trap stop_cluster EXIT
start_cluster <<<"max_connections = 100" >&2
echo "{\"machine\": \"$(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo)\", \"cpu\": \"$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)\"}"

if [ "$LOAD_EDGES" -gt 0 ]; then
	cluster_psql <<SQL >&2
CREATE TABLE load_node AS SELECT i::bigint AS id, ARRAY[random(), random(), random(), random()]::real[] AS feat
	FROM generate_series(0, 999999) AS i;
CREATE TABLE load_edge AS SELECT (random() * 999999)::bigint AS src, (random() * 999999)::bigint AS dst
	FROM generate_series(1, $LOAD_EDGES);
SQL
	cluster_psql -At -F ' ' -c "SELECT nodes, edges, load_ms FROM gnn_create_graph('load',
		'SELECT src, dst FROM load_edge', 'SELECT id, feat FROM load_node')" | {
		read -r n e ms
		bytes=$(cluster_psql -At -c "SELECT bytes FROM gnn_graphs WHERE name = 'load'")
		# CSR (rowptr + col) + features + id map (ids + hash of capacity 2^21)
		base=$((8 * (n + 1) + 4 * e + 4 * 4 * n + 8 * n + 12 * 2097152))
		printf '{"load_edges": %d, "load_nodes": %d, "load_ms": %.0f, "edges_per_s": %.0f, "resident_bytes": %d, "csr_feat_idmap_bytes": %d, "ratio": %.3f}\n' \
			"$e" "$n" "$ms" "$(awk -v e="$e" -v ms="$ms" 'BEGIN {print e / ms * 1000}')" "$bytes" "$base" \
			"$(awk -v a="$bytes" -v b="$base" 'BEGIN {print a / b}')"
	}
	cluster_psql -c "SELECT gnn_drop_graph('load')" -c "DROP TABLE load_node, load_edge" >/dev/null
fi

make_graph_tables bench "$NODES" "$AVG_DEGREE" "$DIM" >&2
write_sage_weights "$DIM,$HIDDEN,$CLASSES" "$CLUSTER_DIR/sage.safetensors" >&2
cluster_psql -c "SELECT nodes, edges FROM gnn_create_graph('bench', 'SELECT src, dst FROM bench_edge',
	'SELECT id, feat FROM bench_node', undirected => true)" >&2
cluster_psql -c "SELECT gnn_create_model('sage', 'bench', 'graphsage',
	pg_read_binary_file('$CLUSTER_DIR/sage.safetensors'), '{\"fanout\": [10, 5]}')" >&2

echo "SELECT 1;" >"$CLUSTER_DIR/select1.sql"
printf '\\set id random(0, %d)\nSELECT gnn_predict('"'sage'"', :id);\n' $((NODES - 1)) >"$CLUSTER_DIR/predict.sql"
chown postgres: "$CLUSTER_DIR"/*.sql

# tps of a pgbench run of script $1 with $2 clients; latencies to $3 if given
run_pgbench() {
	local script=$1 clients=$2 log=${3:-} jobs
	jobs=$((clients < 2 ? 1 : 2))
	(cd "$CLUSTER_DIR" && cluster_pgbench -c "$clients" -j "$jobs" -T "$SECONDS_EACH" -f "$script" \
		${log:+-l --log-prefix="$log"}) | awk '/^tps = / {print $3}'
}

stat() { cluster_psql -At -c "SELECT $1 FROM gnn_stats() WHERE model = 'sage'"; }

echo "{\"nodes\": $NODES, \"dim\": $DIM, \"model\": \"graphsage $DIM-$HIDDEN-$CLASSES fanout [10,5]\", \"seconds\": $SECONDS_EACH}"
for wait in $WAITS; do
	cluster_psql -c "ALTER SYSTEM SET quiver.batch_wait_us = $wait" -c "SELECT pg_reload_conf()" >/dev/null
	sleep 1
	for c in $CLIENTS; do
		rm -f "$CLUSTER_DIR"/lat*
		s1=$(run_pgbench select1.sql "$c")
		req0=$(stat requests)
		bat0=$(stat batches)
		pr=$(run_pgbench predict.sql "$c" "$CLUSTER_DIR/lat")
		req1=$(stat requests)
		bat1=$(stat batches)
		read -r p50 p99 <<<"$(cat "$CLUSTER_DIR"/lat* | awk '{print $3}' | sort -n |
			awk '{v[NR] = $1} END {printf "%.3f %.3f", v[int(NR * 0.5) + 1] / 1000, v[int(NR * 0.99) + 1] / 1000}')"
		printf '{"batch_wait_us": %d, "clients": %d, "select1_tps": %.0f, "predict_tps": %.0f, "ratio": %.3f, "predict_p50_ms": %s, "predict_p99_ms": %s, "requests_per_batch": %.2f}\n' \
			"$wait" "$c" "$s1" "$pr" "$(awk -v a="$pr" -v b="$s1" 'BEGIN {print a / b}')" "$p50" "$p99" \
			"$(awk -v r=$((req1 - req0)) -v b=$((bat1 - bat0)) 'BEGIN {print (b > 0 ? r / b : 0)}')"
	done
done

# Seconds a statement takes (psql -c $2, with the settings in $1).
timed_sql() {
	local t0 t1
	t0=$(date +%s.%N)
	cluster_psql -c "$1" -c "$2" >/dev/null
	t1=$(date +%s.%N)
	awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.3f", b - a}'
}

# One JSON line: a scan's rows, seconds and rate.
scan_line() {
	printf '{"scan": "%s", "rows": %d, "seconds": %s, "rows_per_s": %.0f}\n' "$1" "$2" "$3" \
		"$(awk -v r="$2" -v t="$3" 'BEGIN {print r / t}')"
}

if [ "$SCAN_ROWS" -gt 0 ]; then
	cluster_psql -c "CREATE UNLOGGED TABLE scan_t AS SELECT (random() * $((NODES - 1)))::bigint AS id
		FROM generate_series(1, $SCAN_ROWS)" -c "VACUUM ANALYZE scan_t" \
		-c "CREATE UNLOGGED TABLE scan_u AS SELECT id FROM scan_t LIMIT $SCAN_ROWS_UNBATCHED" >&2
	agg="SELECT count(*), sum(array_length(gnn_predict('sage', id), 1))"
	scan_line "batched (QuiverPrefetch)" "$SCAN_ROWS" "$(timed_sql 'SET quiver.prefetch_rows = 1024' "$agg FROM scan_t")"
	scan_line "one request per row" "$SCAN_ROWS_UNBATCHED" "$(timed_sql 'SET quiver.prefetch_rows = 0' "$agg FROM scan_u")"
	scan_line "array call" "$SCAN_ROWS" "$(timed_sql 'SET quiver.prefetch_rows = 1024' \
		"SELECT count(*) FROM gnn_predict('sage', ARRAY(SELECT id FROM scan_t))")"
fi
