#!/bin/bash
#
# test/bench/train_serve_bench.sh — serving while the engine trains
# (DESIGN 1.6: "Serving goes on during training"; issue 12: predictions
# during training within 2x their p99 at rest).
#
#   sudo bash test/bench/train_serve_bench.sh
#   sudo NODES=20000 RUN_SECONDS=5 bash test/bench/train_serve_bench.sh   # quick
#
# Builds and installs quiver, starts a throw-away cluster and makes a
# power-law graph of NODES nodes (scripts/lib.sh make_graph_tables, DIM
# features, average degree 10, undirected) with a GraphSAGE model "m"
# (DIM -> 64 -> 16, fanout [10, 5]) and labels (id % 16).  Then
# CLIENTS_READ pgbench clients call SELECT gnn_predict('m', :id) on uniform
# random ids for RUN_SECONDS:
#   rest      nothing else runs
#   training  while gnn_train trains "t" on the graph in another session
#             (GraphSAGE, hidden 64, fanout [10, 5], batch 256, many epochs:
#             it outlasts the run and is cancelled after it)
#   rest_after  nothing else runs again
# Output: one JSON line per phase (p50/p99/max ms, tps) and a summary with
# training / rest p99 (goal <= 2) and the epochs the training finished.
#
# Environment: NODES (200000), DIM (32), CLIENTS_READ (4), RUN_SECONDS (20),
# JOBS (pgbench threads, at most nproc).

set -euo pipefail
shopt -s inherit_errexit
# shellcheck source=SCRIPTDIR/../../scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib.sh"
# shellcheck source=SCRIPTDIR/bench_lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/bench_lib.sh"
NODES=${NODES:-200000}
DIM=${DIM:-32}
CLIENTS_READ=${CLIENTS_READ:-4}
RUN_SECONDS=${RUN_SECONDS:-20}
JOBS=${JOBS:-$(nproc)}

bench_cluster </dev/null

make_graph_tables g "$NODES" 10 "$DIM" >&2
write_sage_weights "$DIM,64,16" "$CLUSTER_DIR/m.st" >&2
cluster_psql >&2 <<SQL
SELECT nodes, edges FROM gnn_create_graph('g', 'SELECT src, dst FROM g_edge', 'SELECT id, feat FROM g_node', true);
SELECT gnn_create_model('m', 'g', 'graphsage', pg_read_binary_file('$CLUSTER_DIR/m.st'), '{"fanout": [10, 5]}');
CREATE TABLE g_label AS SELECT id, (id % 16)::int AS label FROM g_node;
SQL
SCRIPT=$CLUSTER_DIR/predict.sql
printf '\\set id random(0, %d)\nSELECT gnn_predict(%s, :id);\n' $((NODES - 1)) "'m'" >"$SCRIPT"
chown postgres: "$SCRIPT"

rest=$(bench_run rest "$CLIENTS_READ" "$SCRIPT")
emit phase=rest "stats=$rest"

# a training that outlasts the run, started first and cancelled after it
as_pg "$PGBIN/psql" -X -q -h "$CLUSTER_DIR" -p "$CLUSTER_PORT" -d postgres -c \
	"SET client_min_messages = warning; SELECT count(*) FROM gnn_train('t', 'g', 'graphsage', 'SELECT id, label FROM g_label', '{\"hidden\": 64, \"fanout\": [10, 5], \"batch_size\": 256, \"epochs\": 1000}')" \
	>"$CLUSTER_DIR/train.out" 2>&1 &
TRAIN_PID=$!
for _ in $(seq 1 100); do
	[ "$(cluster_psql -At -c "SELECT phase FROM gnn_progress")" = training ] && break
	sleep 0.1
done
training=$(bench_run training "$CLIENTS_READ" "$SCRIPT")
progress=$(cluster_psql -At -c "SELECT row_to_json(p) FROM gnn_progress p")
emit phase=training "stats=$training" "progress=$progress"
cluster_psql -At -c "SELECT pg_cancel_backend(pid) FROM gnn_progress" >/dev/null
wait "$TRAIN_PID" || true

rest_after=$(bench_run rest_after "$CLIENTS_READ" "$SCRIPT")
emit phase=rest_after "stats=$rest_after"
emit summary=serving_during_training nodes="$NODES" clients="$CLIENTS_READ" seconds="$RUN_SECONDS" \
	"training_over_rest_p99=$(ratio "$(jget "$training" p99_ms)" "$(jget "$rest" p99_ms)")" \
	"training_over_rest_p50=$(ratio "$(jget "$training" p50_ms)" "$(jget "$rest" p50_ms)")" \
	"epochs_during_run=$(jget "$progress" epoch)" goal="training p99 within 2x of rest p99"
