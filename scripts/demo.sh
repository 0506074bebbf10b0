#!/bin/bash
#
# scripts/demo.sh — quiver end to end, on Debian 12, as root:
#
#   sudo bash scripts/demo.sh
#
# Installs what is missing, builds and installs quiver, starts a throw-away
# PostgreSQL 15 cluster (user postgres, a temporary directory, a free port)
# with quiver preloaded, generates a power-law graph in SQL (100,000 nodes,
# 64 random features each), writes random GraphSAGE weights with python3 as a
# safetensors file, creates the graph and the model (fanout [10, 5]), asks
# for predictions (single calls, a batch over a table) and prints them with
# timings: load time, single-call latency (median, p99), batch throughput.
# The cluster is stopped and removed at the end.
#
# Environment: NODES (100000), AVG_DEGREE (10), DIM (64), HIDDEN (128),
# CLASSES (16), USE_CUDA (auto), KEEP=1 keeps the cluster's directory.

set -euo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
NODES=${NODES:-100000}
AVG_DEGREE=${AVG_DEGREE:-10}
DIM=${DIM:-64}
HIDDEN=${HIDDEN:-128}
CLASSES=${CLASSES:-16}
FANOUT='[10, 5]'

die() { printf 'demo.sh: %s\n' "$*" >&2; exit 2; }

[ "$(id -u)" = 0 ] || die "run as root (sudo bash scripts/demo.sh): it installs packages and PostgreSQL files"

say "packages"
install_packages || die "could not install packages"
say "build and install"
build_install >/dev/null || die "build failed (run make to see why)"

trap stop_cluster EXIT
start_cluster </dev/null
WORK=$CLUSTER_DIR
psql_demo() { cluster_psql "$@"; }
pgb() { cluster_pgbench "$@"; }
say "cluster in $WORK, port $CLUSTER_PORT"
psql_demo -At -c "SELECT 'engine: pid ' || pid FROM pg_stat_activity WHERE backend_type = 'quiver engine'"

# ---- the graph, in SQL ------------------------------------------------------
say "generating $NODES nodes, $((NODES * AVG_DEGREE / 2)) edge rows (undirected), $DIM features"
make_graph_tables demo "$NODES" "$AVG_DEGREE" "$DIM"

say "random GraphSAGE weights ($DIM -> $HIDDEN -> $CLASSES), written by python3 as safetensors"
write_sage_weights "$DIM,$HIDDEN,$CLASSES" "$WORK/sage.safetensors"
ls -l "$WORK/sage.safetensors"

# ---- create the graph and the model -----------------------------------------
say "gnn_create_graph and gnn_create_model"
t0=$(date +%s.%N)
psql_demo -c "SELECT nodes, edges, feature_dim, round(load_ms) AS engine_load_ms
	FROM gnn_create_graph('demo', 'SELECT src, dst FROM demo_edge', 'SELECT id, feat FROM demo_node',
						  undirected => true)" | tee "$WORK/load.txt"
t1=$(date +%s.%N)
psql_demo -c "SELECT gnn_create_model('sage', 'demo', 'graphsage',
	pg_read_binary_file('$WORK/sage.safetensors'), '{\"fanout\": $FANOUT}')" >/dev/null
t2=$(date +%s.%N)
LOAD_S=$($PYTHON -c "print(round($t1 - $t0, 3))")
MODEL_S=$($PYTHON -c "print(round($t2 - $t1, 3))")
psql_demo -c "SELECT name, state, nodes, edges, feature_dim, pg_size_pretty(bytes) AS resident FROM gnn_graphs"
psql_demo -c "SELECT name, graph, arch, layers, out_dim, fanout, state FROM gnn_models"

# ---- predictions ------------------------------------------------------------
say "single predictions (logits; class = argmax)"
psql_demo <<EOF
SELECT id,
	   (SELECT count(*) FROM demo_edge WHERE dst = id OR src = id) AS degree,
	   (SELECT i - 1 FROM unnest(p) WITH ORDINALITY AS u(v, i) ORDER BY v DESC LIMIT 1) AS class,
	   (SELECT array_agg(round(v::numeric, 3)) FROM unnest(p[1:4]) AS v) AS first_logits
	FROM (SELECT id, gnn_predict('sage', id) AS p FROM demo_node WHERE id IN (0, 1, 10, $((NODES / 100)), $((NODES - 1)))) AS s
	ORDER BY id;
EOF

say "a batch over a table: every 10th node, classes counted"
psql_demo <<'EOF'
\timing on
SELECT class, count(*) AS nodes
	FROM (SELECT (SELECT i - 1 FROM unnest(prediction) WITH ORDINALITY AS u(v, i) ORDER BY v DESC LIMIT 1) AS class
		  FROM gnn_predict('sage', (SELECT array_agg(id) FROM demo_node WHERE id % 10 = 0))) AS b
	GROUP BY class ORDER BY nodes DESC LIMIT 5;
\timing off
EOF

say "the whole table, one gnn_predict per row: QuiverPrefetch batches the calls"
psql_demo -c "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF)
	SELECT id, gnn_predict('sage', id) FROM demo_node"
# seconds a statement takes, with quiver.prefetch_rows = $1
scan_seconds() {
	local t0 t1
	t0=$(date +%s.%N)
	psql_demo -c "SET quiver.prefetch_rows = $1" -c "$2" >/dev/null
	t1=$(date +%s.%N)
	$PYTHON -c "print($t1 - $t0)"
}
SCAN_ROWS=$NODES
SCAN_S=$(scan_seconds 1024 "SELECT count(p) FROM (SELECT id, gnn_predict('sage', id) AS p FROM demo_node) s")
UNBATCHED_ROWS=$((NODES / 10))
UNBATCHED_S=$(scan_seconds 0 "SELECT count(p) FROM (SELECT id, gnn_predict('sage', id) AS p FROM demo_node WHERE id < $UNBATCHED_ROWS) s")

# ---- timings ----------------------------------------------------------------
say "single-call latency: pgbench, 1 client, 2000 calls on random nodes"
echo "\\set id random(0, $((NODES - 1)))
SELECT gnn_predict('sage', :id);" >"$WORK/one.sql"
echo "SELECT count(*) FROM gnn_predict('sage', (SELECT array_agg(floor(random() * $NODES)::bigint) FROM generate_series(1, 4096)));" >"$WORK/batch.sql"
chown postgres: "$WORK"/*.sql
(cd "$WORK" && pgb -c 1 -t 2000 -f one.sql -l --log-prefix="$WORK/lat" >/dev/null)
read -r P50 P99 N <<<"$(cat "$WORK"/lat* | awk '{print $3}' | sort -n |
	awk '{v[NR] = $1} END {print v[int(NR * 0.5) + 1] / 1000, v[int(NR * 0.99) + 1] / 1000, NR}')"

say "batch throughput: pgbench, 1 client, 20 batches of 4096 random nodes"
BATCH_TPS=$(pgb -c 1 -t 20 -f "$WORK/batch.sql" | awk '/^tps = / {print $3}')

say "single calls from 8 clients: pgbench -c 8 -j 2 for 10 s"
CONC_TPS=$(pgb -c 8 -j 2 -T 10 -f "$WORK/one.sql" | awk '/^tps = / {print $3}')

say "gnn_stats()"
psql_demo -c "SELECT model, requests, batches, seeds, cpu_batches, gpu_batches,
	round(p50_ms::numeric, 3) AS p50_ms, round(p99_ms::numeric, 3) AS p99_ms FROM gnn_stats()"

say "results"
read -r G_NODES G_EDGES G_DIM G_MS <<<"$(sed -n 3p "$WORK/load.txt" | tr -d '|' )"
printf 'graph            %s nodes, %s edges (undirected), %s features\n' "$G_NODES" "$G_EDGES" "$G_DIM"
printf 'load             %s ms in the engine; %.2f s for the SQL call (reading the tables included)\n' "$G_MS" "$LOAD_S"
printf 'model            GraphSAGE %s -> %s -> %s, fanout %s, created in %s s\n' "$DIM" "$HIDDEN" "$CLASSES" "$FANOUT" "$MODEL_S"
printf 'single call      median %.3f ms, p99 %.3f ms (%s calls, SQL round trip, 1 client)\n' "$P50" "$P99" "$N"
printf 'batch of 4096    %.0f seeds/s (%.1f batches/s, 1 client)\n' "$($PYTHON -c "print($BATCH_TPS * 4096)")" "$BATCH_TPS"
printf '8 clients        %.0f single calls/s\n' "$CONC_TPS"
printf 'table scan       %.0f rows/s: SELECT id, gnn_predict(...) FROM demo_node, %s rows batched by QuiverPrefetch (%.0f rows/s with one request per row)\n' \
	"$($PYTHON -c "print($SCAN_ROWS / $SCAN_S)")" "$SCAN_ROWS" "$($PYTHON -c "print($UNBATCHED_ROWS / $UNBATCHED_S)")"
GPUS=$(psql_demo -At -c "SELECT coalesce(string_agg(format('GPU %s %s (%s)', device, name,
	CASE WHEN usable THEN 'serving' ELSE detail END), '; '), 'none: every batch ran on the CPU threads')
	FROM gnn_gpus()")
printf 'GPUs             %s\n' "$GPUS"
