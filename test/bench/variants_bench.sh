#!/bin/bash
#
# test/bench/variants_bench.sh — latency targets and model variants under
# load (DESIGN 1.7, MOSEL; issue 13).
#
#   sudo bash test/bench/variants_bench.sh
#   sudo NODES=20000 RUN_SECONDS=5 bash test/bench/variants_bench.sh   # quick
#
# Builds and installs quiver, starts a throw-away cluster and makes a
# power-law graph of NODES nodes (scripts/lib.sh make_graph_tables, DIM
# features, average degree DEGREE, undirected) with a GraphSAGE model "m"
# (DIM -> HIDDEN -> 16, fanout FANOUT) whose config lists VARIANTS.  Two
# roles call it: "fixed" (no target: the model's own configuration, variant
# 0) and "targeted" (ALTER ROLE ... SET quiver.latency_target = TARGET_MS,
# quiver.min_agreement = FLOOR).  pgbench clients call
# SELECT gnn_predict('m', :id) on uniform random ids.
#
#  1. saturation: the fixed role, CLIENTS clients, unthrottled: the
#     throughput X of variant 0 alone.
#  2. for k in 1, 2, 4: pgbench --rate k X (CLIENTS_RATE clients), once as
#     the fixed role and once as the targeted one: p50/p99 of the latency
#     including pgbench's schedule lag (what a client waits when requests
#     arrive at that rate), throughput, and for the targeted run the
#     batches per variant, the mean agreement of the batches with variant 0
#     (gnn_variants' agreement, weighted by batches), misses and late
#     requests.
#  3. mixed load: BIG_SESSIONS sessions run gnn_predict('m', <BIG_IDS ids>)
#     in a loop while one client calls row by row; p50/p99 of the small
#     calls with quiver.slice_size 0 (whole requests), with slices of 256,
#     with slices of 256 and the latency target, and with slices of 32 and
#     the target (a small call waits for at most one slice of other work).
#
# Output: one JSON line per run and summaries.
#
# Environment: NODES (50000), DEGREE (50), DIM (512), HIDDEN (512), FANOUT ([25, 25]),
# VARIANTS ([{"fanout": [5, 5]}, {"fanout": [2, 2]}]), TARGET_MS (5),
# FLOOR (0), CLIENTS (8),
# CLIENTS_RATE (64), LOADS ("1 2 4"; "" skips step 2), BIG_SESSIONS (4),
# BIG_IDS (100000), RUN_SECONDS (15),
# JOBS (pgbench threads, at most nproc).

set -euo pipefail
shopt -s inherit_errexit
# shellcheck source=SCRIPTDIR/../../scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib.sh"
# shellcheck source=SCRIPTDIR/bench_lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/bench_lib.sh"
NODES=${NODES:-50000}
DEGREE=${DEGREE:-50}
DIM=${DIM:-512}
HIDDEN=${HIDDEN:-512}
FANOUT=${FANOUT:-[25, 25]}
[ -n "${VARIANTS:-}" ] || VARIANTS='[{"fanout": [5, 5]}, {"fanout": [2, 2]}]'
FLOOR=${FLOOR:-0}
TARGET_MS=${TARGET_MS:-5}
CLIENTS=${CLIENTS:-8}
CLIENTS_RATE=${CLIENTS_RATE:-64}
BIG_SESSIONS=${BIG_SESSIONS:-4}
BIG_IDS=${BIG_IDS:-100000}
RUN_SECONDS=${RUN_SECONDS:-15}
JOBS=${JOBS:-$(nproc)}

bench_cluster </dev/null

make_graph_tables g "$NODES" "$DEGREE" "$DIM" >&2
write_sage_weights "$DIM,$HIDDEN,16" "$CLUSTER_DIR/m.st" >&2
CONFIG="{\"fanout\": $FANOUT, \"seed\": 1, \"variants\": $VARIANTS}"
cluster_psql >&2 <<SQL
SELECT nodes, edges FROM gnn_create_graph('g', 'SELECT src, dst FROM g_edge', 'SELECT id, feat FROM g_node', true);
SELECT gnn_create_model('m', 'g', 'graphsage', pg_read_binary_file('$CLUSTER_DIR/m.st'), '$CONFIG');
CREATE ROLE fixed LOGIN;
CREATE ROLE targeted LOGIN;
ALTER ROLE targeted SET quiver.latency_target = '${TARGET_MS}ms';
ALTER ROLE targeted SET quiver.min_agreement = $FLOOR;
SQL
variants=$(cluster_psql -At -c "SELECT json_agg(v ORDER BY variant) FROM gnn_variants('m') v")
emit phase=profile "variants=$variants"
SCRIPT=$CLUSTER_DIR/predict.sql
printf '\\set id random(0, %d)\nSELECT gnn_predict(%s, :id);\n' $((NODES - 1)) "'m'" >"$SCRIPT"
chown postgres: "$SCRIPT"

# run NAME ROLE CLIENTS [RATE]: pgbench as ROLE; prints pgbench_stats
# (the latency counts the schedule lag under --rate).
run() {
	local name=$1 role=$2 clients=$3 rate=${4:-} logdir="$CLUSTER_DIR/log_$1"
	rm -rf "$logdir" && mkdir -p "$logdir" && chown postgres: "$logdir"
	cluster_pgbench -U "$role" -c "$clients" -j $((clients < JOBS ? clients : JOBS)) -T "$RUN_SECONDS" \
		${rate:+-R "$rate"} -l --log-prefix="$logdir/pgbench_log" -f "$SCRIPT" >"$logdir/out" 2>&1 ||
		{ echo "pgbench $name failed:" >&2; cat "$logdir/out" >&2; exit 1; }
	pgbench_stats "$logdir"
}

# The engine's counters of m: batches per variant, misses, late requests,
# and the mean agreement of the batches.
counters() {
	cluster_psql -At -c "
		SELECT json_build_object('variant_batches', s.variant_batches, 'target_misses', s.target_misses,
		                         'late_requests', s.late_requests,
		                         'mean_agreement', (SELECT round((sum(v.batches * v.agreement) / nullif(sum(v.batches), 0))::numeric, 4)
		                                            FROM gnn_variants('m') v))
		FROM gnn_stats() s WHERE s.model = 'm'"
}
reset_counters() {		# a replace restarts the model's statistics
	cluster_psql -q -c "SELECT gnn_create_model('m', 'g', 'graphsage', pg_read_binary_file('$CLUSTER_DIR/m.st'), '$CONFIG')" >/dev/null
}

sat=$(run saturation fixed "$CLIENTS")
X=$(jget "$sat" tps)
emit phase=saturation role=fixed clients="$CLIENTS" "stats=$sat"

for k in ${LOADS-1 2 4}; do
	rate=$(awk -v x="$X" -v k="$k" 'BEGIN { printf "%d", x * k }')
	fixed=$(run "fixed_$k" fixed "$CLIENTS_RATE" "$rate")
	reset_counters
	targeted=$(run "targeted_$k" targeted "$CLIENTS_RATE" "$rate")
	emit phase=load load="${k}x" rate="$rate" target_ms="$TARGET_MS" "fixed=$fixed" "targeted=$targeted" \
		"targeted_counters=$(counters)" \
		"tps_targeted_over_fixed=$(ratio "$(jget "$targeted" tps)" "$(jget "$fixed" tps)")"
done

# mixed load: small calls beside large batch calls
BIG="SELECT count(*) FROM gnn_predict('m', (SELECT array_agg((random() * $((NODES - 1)))::bigint) FROM generate_series(1, $BIG_IDS)))"
mixed() {
	local name=$1 role=$2 slice=$3 pids=() out
	cluster_psql -q -c "ALTER SYSTEM SET quiver.slice_size = $slice" -c "SELECT pg_reload_conf()" >/dev/null
	sleep 1
	for _ in $(seq 1 "$BIG_SESSIONS"); do
		as_pg $PGBIN/psql -X -q -h "$CLUSTER_DIR" -p "$CLUSTER_PORT" -d postgres \
			-c "DO \$\$ BEGIN LOOP PERFORM ($BIG); END LOOP; END \$\$" >/dev/null 2>&1 &
		pids+=($!)
	done
	sleep 2
	out=$(run "$name" "$role" 1)
	cluster_psql -q -c "SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE query LIKE 'DO %LOOP PERFORM%' AND pid <> pg_backend_pid()" >/dev/null
	wait "${pids[@]}" 2>/dev/null || true
	echo "$out"
}
whole=$(mixed mixed_whole fixed 0)
sliced=$(mixed mixed_sliced fixed 256)
sliced_target=$(mixed mixed_sliced_target targeted 256)
small_target=$(mixed mixed_small_slices_target targeted 32)
emit phase=mixed big_sessions="$BIG_SESSIONS" big_ids="$BIG_IDS" "whole_requests=$whole" "slices_256=$sliced" \
	"slices_256_with_target=$sliced_target" "slices_32_with_target=$small_target" \
	"p99_whole_over_sliced=$(ratio "$(jget "$whole" p99_ms)" "$(jget "$sliced" p99_ms)")"
emit summary=variants nodes="$NODES" dim="$DIM" hidden="$HIDDEN" "config=$CONFIG" target_ms="$TARGET_MS" \
	floor="$FLOOR" saturation_tps="$X" seconds="$RUN_SECONDS" \
	goal="at 2x overload: targeted p99 <= target at agreement >= floor, throughput >= 2x fixed at the same p99"
