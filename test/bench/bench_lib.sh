# test/bench/bench_lib.sh — what the SQL benchmarks share: JSON lines and
# pgbench runs with per-transaction logs (percentiles over every
# transaction).  Sourced after scripts/lib.sh; needs JOBS, RUN_SECONDS and
# CLUSTER_DIR.

# emit key=value ...: one JSON object.  A value is parsed as JSON when it
# is JSON (numbers, true, objects from row_to_json ...), else kept as a
# string; an empty value is null.
emit() {
	$PYTHON - "$@" <<'PY'
import json, sys
def val(v):
    if v == "":
        return None
    try:
        return json.loads(v)
    except ValueError:
        return v
print(json.dumps({k: val(v) for k, v in (a.split("=", 1) for a in sys.argv[1:])}))
PY
}

# jget JSON KEY: one field of a JSON object: a string as it is, "" for
# null, anything else as JSON (true, 12.5, {...}).
jget() {
	$PYTHON -c 'import json, sys
v = json.loads(sys.argv[1]).get(sys.argv[2])
print("" if v is None else v if isinstance(v, str) else json.dumps(v))' "$1" "$2"
}

# ratio A B: A / B to 3 places, or "" (null) when either is missing or B is 0.
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a != "" && b != "" && b + 0 != 0) printf "%.3f", a / b }'; }

# Latency and span of the pgbench run logged in directory $1 (pgbench -l:
# client_id transaction_no time_us script_no epoch epoch_us [schedule_lag_us];
# the epoch is the transaction's end; with --rate the latency counts the
# schedule lag, the time the transaction waited to start).  Percentiles
# over every transaction, as in reload_bench.sh.
pgbench_stats() {
	{ cat "$1"/pgbench_log* 2>/dev/null || true; } | $PYTHON -c '
import json, sys
lat, first, last = [], None, None
for line in sys.stdin:
    p = line.split()
    if len(p) < 6 or not p[2].isdigit():
        continue                        # "failed" / "skipped" transactions
    us = int(p[2]) + (int(p[6]) if len(p) > 6 and p[6].isdigit() else 0)
    end = int(p[4]) * 1000000 + int(p[5])
    lat.append(us / 1000.0)
    first = end - us if first is None else min(first, end - us)
    last = end if last is None else max(last, end)
lat.sort()
n = len(lat)
q = lambda f: round(lat[min(n - 1, int(f * n))], 3) if n else None
span = (last - first) / 1e6 if n else None
print(json.dumps({"transactions": n, "seconds": round(span, 3) if n else None,
                  "tps": round(n / span, 1) if n and span > 0 else None,
                  "p50_ms": q(0.5), "p99_ms": q(0.99), "max_ms": round(lat[-1], 3) if n else None,
                  "last_end_us": last}))'
}

# bench_start NAME CLIENTS SCRIPT: pgbench in the background for
# RUN_SECONDS, logs in $CLUSTER_DIR/log_NAME; the pid goes to BENCH_PID.
bench_start() {
	local clients=$2 script=$3 logdir="$CLUSTER_DIR/log_$1"
	rm -rf "$logdir" && mkdir -p "$logdir" && chown postgres: "$logdir"
	cluster_pgbench -c "$clients" -j $((clients < JOBS ? clients : JOBS)) -T "$RUN_SECONDS" \
		-l --log-prefix="$logdir/pgbench_log" -f "$script" >"$logdir/out" 2>&1 &
	BENCH_PID=$!
}

# bench_wait NAME PID: wait for that pgbench; on failure show its output and stop.
bench_wait() {
	wait "$2" && return 0
	{ echo "pgbench run $1 failed:"; cat "$CLUSTER_DIR/log_$1/out"; } >&2
	exit 1
}

# Run NAME with CLIENTS and SCRIPT in the foreground; prints its stats.
bench_run() {
	bench_start "$1" "$2" "$3"
	bench_wait "$1" "$BENCH_PID"
	pgbench_stats "$CLUSTER_DIR/log_$1"
}

# As root: install what is missing, build and install quiver, and start a
# throw-away cluster (extra postgresql.conf lines on stdin), stopped when
# the script exits.  Says everything on stderr: stdout is JSON lines only.
bench_cluster() {
	[ "$(id -u)" = 0 ] || { echo "run as root: it installs packages and PostgreSQL files" >&2; exit 2; }
	install_packages >&2
	build_install >&2
	trap 'stop_cluster >&2' EXIT
	start_cluster >&2
}
