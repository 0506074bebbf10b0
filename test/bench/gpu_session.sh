#!/bin/bash
#
# test/bench/gpu_session.sh — issue 4's measurements on a GPU machine, in one
# device `run` call (or two: --stages), from a kit built here beforehand by
# test/bench/gpu_prepare.sh into .gpukit/ (see docs/bench.md, "The GPU
# session").
#
#   bash test/bench/gpu_session.sh [--stages LIST] [--budget S] [--fake]
#
# Stages, run in this order, each under its own time limit:
#   unit      the carried unit tests test_gpu and test_gpu_infer against the
#             real module: every GPU test must be OK (test_gpu_peers may skip:
#             it needs two GPUs; test_entry_points_without_driver skips on
#             any GPU host)
#   sanitize  (not by default) test_gpu_infer under compute-sanitizer memcheck
#   bench     quiver-bench --device gpu --check 2000 at products scale, batches
#             1,16,256,4096, writing the dataset with --save-dataset (or
#             reading it when an earlier run left it complete)
#   torch     ../shared/bench/torch_baseline.py --data on the same dataset
#   sql       PostgreSQL 15 from the kit, quiver preloaded, the dataset loaded
#             through SQL (binary COPY), a GraphSAGE model, then pgbench's p50
#             of one gnn_predict, the rate of SELECT gnn_predict(...) over a
#             table of SQL_ROWS ids and of the batched array form, gnn_stats()
#             and gnn_gpus()
# Default: unit,bench,torch,sql.
#
# Everything lands in $OUT (default /tmp/qv-session-out), updated after
# every stage, in four files (a device run returns at most 8):
#   summary.jsonl  every JSON line of every stage, between
#                  {"stage":..,"event":"start"} and {"stage":..,"event":"end",
#                  "status":"ok|failed|timeout|skipped",...} lines
#   session.log    the progress log
#   report.txt     the table gpu_report.py makes of summary.jsonl
#   logs.tar.gz    each stage's full output (/tmp/qv-session)
#
# --budget S: the whole session ends S seconds after it starts (default 570,
# for a 600 s run); a stage gets min(its cap, what is left - 15 s) and is
# skipped when that is under its minimum.  --fake runs on this machine with
# the fake GPU module (test/fake_gpu, a CPU test double) at a small scale, to
# test the session itself; it needs `make fake-gpu`.
#
# Environment: DATA (/tmp/qv-products), NODES (2449029; fake 20000), CHECK
# (2000; fake 200), SQL_NODES (the dataset's; set it to load a smaller
# generated graph), SQL_ROWS (1000000; fake 20000), PGBENCH_SECONDS (10; fake
# 3), PG_OS_USER (postgres if it exists, else qvbench, created), KEEP=1 keeps
# the cluster's directory.
#
# Runs as root (the device runs commands as root); PostgreSQL runs as
# PG_OS_USER.

set -uo pipefail

SELF=$(readlink -f "${BASH_SOURCE[0]}")
ROOT=$(cd "$(dirname "$SELF")/../.." && pwd)
KIT=$ROOT/.gpukit
PGKIT=/tmp/qv-pgkit				# where the kit unpacks (the unit tests are built for it)
PGLIB=$PGKIT/usr/lib/postgresql/15/lib
PGBIN=$PGKIT/usr/lib/postgresql/15/bin
WORK=/tmp/qv-session
PGDIR=/tmp/qv-pg

now() { date +%s; }

# ---- options, settings ------------------------------------------------------

parse_args() {
	FAKE=0
	STAGES=unit,bench,torch,sql
	BUDGET=570
	while [ $# -gt 0 ]; do
		case $1 in
			--fake) FAKE=1 ;;
			--stages) STAGES=$2; shift ;;
			--budget) BUDGET=$2; shift ;;
			--run-stage) RUN_STAGE=$2; shift ;;
			*) echo "gpu_session.sh: unknown argument $1" >&2; exit 2 ;;
		esac
		shift
	done
}

settings() {
	FAKE_ARG=$([ "$FAKE" = 1 ] && echo --fake)
	export FAKE ROOT KIT WORK PGKIT PGLIB PGBIN PGDIR
	export OUT=${OUT:-/tmp/qv-session-out}
	export DATA=${DATA:-/tmp/qv-products}
	if [ "$FAKE" = 1 ]; then
		export GPU_MODULE=$ROOT/test/fake_gpu/quiver_fake_cuda.so
		export NODES=${NODES:-20000} CHECK=${CHECK:-200} SQL_ROWS=${SQL_ROWS:-20000}
		export PGBENCH_SECONDS=${PGBENCH_SECONDS:-3} BENCH_EXTRA="--reps 5 --max-seconds 2"
	else
		export GPU_MODULE=$PGLIB/quiver_cuda.so
		export NODES=${NODES:-2449029} CHECK=${CHECK:-2000} SQL_ROWS=${SQL_ROWS:-1000000}
		export PGBENCH_SECONDS=${PGBENCH_SECONDS:-10} BENCH_EXTRA=""
	fi
	export SQL_NODES=${SQL_NODES:-}
	if [ -z "${PG_OS_USER:-}" ]; then
		if id postgres >/dev/null 2>&1; then PG_OS_USER=postgres; else PG_OS_USER=qvbench; fi
	fi
	export PG_OS_USER
}

# ---- logging and results ------------------------------------------------------

log() { echo "[$(( $(now) - START ))s] $*" | tee -a "$OUT/session.log" >&2; }

# Append one JSON line to the summary.
emit() { echo "$1" >>"$OUT/summary.jsonl"; }

# Re-pack every stage's output (a run killed at its limit keeps the last).
pack() { tar -C "$(dirname "$WORK")" -czf "$OUT/logs.tar.gz" "$(basename "$WORK")" 2>/dev/null; }

# A python3 that has numpy: the device's default one, else Debian's.
pick_python() {
	local p
	for p in python3 /usr/bin/python3; do
		if command -v "$p" >/dev/null && "$p" -c 'import numpy' 2>/dev/null; then
			echo "$p"
			return 0
		fi
	done
	return 1
}

# ---- the kit and the libraries ------------------------------------------------

# Unpack the PostgreSQL kit (it also holds quiver, its GPU module and the
# libraries the carried binaries link).
unpack_kit() {
	[ -f "$KIT/pgkit.tar.xz" ] || { log "no $KIT/pgkit.tar.xz: run test/bench/gpu_prepare.sh first"; return 1; }
	rm -rf "$PGKIT" && mkdir -p "$PGKIT" || return 1
	if command -v xz >/dev/null; then
		tar -C "$PGKIT" -xJf "$KIT/pgkit.tar.xz" || return 1
	else
		# no xz(1): Python's tarfile reads .xz itself
		python3 -c 'import sys, tarfile
kw = {"filter": "fully_trusted"} if hasattr(tarfile, "fully_trusted_filter") else {}
tarfile.open(sys.argv[1]).extractall(sys.argv[2], **kw)' \
			"$KIT/pgkit.tar.xz" "$PGKIT" || return 1
	fi
	chmod -R a+rX "$PGKIT" || return 1
	log "kit unpacked into $PGKIT ($(du -sh "$PGKIT" | cut -f1))"
}

# Directories holding lib$1 when the module's runpath does not find it.
find_lib_dirs() {
	local name=$1 d
	for d in /usr/local/cuda/lib64 /usr/local/cuda-*/lib64 /usr/local/cuda/targets/x86_64-linux/lib \
		/usr/lib/x86_64-linux-gnu; do
		[ -e "$d/$name" ] && { echo "$d"; return 0; }
	done
	d=$(timeout 60 find / -xdev -name "$name" -path '*nvidia*' 2>/dev/null | head -n 1)
	[ -n "$d" ] && dirname "$d"
}

# Libraries that the kit's programs and the carried binaries cannot find
# with LD_LIBRARY_PATH $1, one per line.
missing_libs() {
	LD_LIBRARY_PATH=$1 ldd "$PGBIN"/{postgres,psql,pgbench,initdb,pg_ctl} "$PGLIB/quiver.so" \
		"$KIT"/bin/* 2>/dev/null | awk '/not found/ {print $1}' | sort -u
}

# LD_LIBRARY_PATH for the carried binaries and the server: the kit's
# libraries, its fallback copies when the machine lacks some, plus CUDA's
# when the module's runpath lacks them.
library_path() {
	local ldp=$PGKIT/usr/lib/x86_64-linux-gnu:$PGLIB lib dir missing
	missing=$(missing_libs "$ldp" | paste -sd, -)
	if [ -n "$missing" ]; then
		ldp=$ldp:$PGKIT/usr/lib/quiver-fallback
		log "libraries missing here: $missing; adding the kit's fallback copies"
		log "still missing: $(missing_libs "$ldp" | paste -sd, -)"
	fi
	emit "{\"glibc\":\"$(ldd --version 2>&1 | head -n 1)\",\"missing\":\"$missing\",\"still_missing\":\"$(missing_libs "$ldp" | paste -sd, -)\"}"
	if [ "$FAKE" = 0 ]; then
		for lib in libcudart.so.13 libcublas.so.13; do
			if ! LD_LIBRARY_PATH=$ldp ldd "$GPU_MODULE" 2>/dev/null | grep -q "$lib => /" &&
				! [ -e "/usr/local/cuda/lib64/$lib" ]; then
				dir=$(find_lib_dirs "$lib")
				[ -n "$dir" ] && ldp=$ldp:$dir && log "$lib from $dir"
			fi
		done
	fi
	echo "$ldp"
}

# ---- stages ---------------------------------------------------------------------

# cmocka's summary counts of a log: "passed skipped failed".
cmocka_counts() {
	local f=$1 p s x
	p=$(sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' "$f" | tail -n 1)
	s=$(sed -n 's/^\[  SKIPPED \] \([0-9]*\) test(s), listed below:/\1/p' "$f" | tail -n 1)
	x=$(sed -n 's/^\[  FAILED  \] \([0-9]*\) test(s), listed below:/\1/p' "$f" | tail -n 1)
	echo "${p:-0} ${s:-0} ${x:-0}"
}

stage_unit() {
	local t rc p s x skipped bad=0
	for t in test_gpu test_gpu_infer; do
		timeout -k 5 120 env LD_LIBRARY_PATH="$LDP" "$KIT/bin/$t" >"$WORK/unit_$t.log" 2>&1
		rc=$?
		read -r p s x <<<"$(cmocka_counts "$WORK/unit_$t.log")"
		skipped=$(sed -n 's/^\[  SKIPPED \] \(test_[a-z0-9_]*\)$/"\1"/p' "$WORK/unit_$t.log" | sort -u | paste -sd, -)
		emit "{\"unit\":\"$t\",\"rc\":$rc,\"passed\":$p,\"skipped\":$s,\"failed\":$x,\"skipped_tests\":[${skipped}]}"
		grep -E '^(GPU|device|SAGE|GCN|SKIPPED)' "$WORK/unit_$t.log" | head -n 40 >&2
		[ "$rc" = 0 ] || bad=1
		# on a GPU only the two-GPU test may skip
		# on a GPU host two tests may skip: the peer test (one GPU) and the
		# test of a host without a driver
		skipped=$(tr ',' '\n' <<<"$skipped" | grep -v -e '"test_gpu_peers"' -e '"test_entry_points_without_driver"' | paste -sd, -)
		if [ "$FAKE" = 0 ] && [ -n "$skipped" ]; then bad=1; fi
	done
	return $bad
}

stage_sanitize() {
	command -v compute-sanitizer >/dev/null || { log "compute-sanitizer is not installed"; return 1; }
	compute-sanitizer --tool memcheck --error-exitcode 9 env LD_LIBRARY_PATH="$LDP" \
		"$KIT/bin/test_gpu_infer" >"$WORK/sanitize.log" 2>&1
	local rc=$?
	emit "{\"sanitize\":\"test_gpu_infer\",\"tool\":\"memcheck\",\"rc\":$rc,\"errors\":$(grep -c '^========= Invalid\|^========= Program hit' "$WORK/sanitize.log")}"
	return $rc
}

# Whether DATA holds a complete dataset of NODES nodes from an earlier run.
dataset_ready() {
	[ -f "$DATA/.complete" ] && [ "$(cat "$DATA/.complete")" = "$NODES" ]
}

stage_bench() {
	local args=(--device gpu --gpu-module "$GPU_MODULE" --check "$CHECK" --batch 1,16,256,4096)
	local rc
	if dataset_ready; then
		args+=(--dataset "$DATA")
	else
		rm -rf "$DATA"
		args+=(--nodes "$NODES" --save-dataset "$DATA")
	fi
	# shellcheck disable=SC2086
	env LD_LIBRARY_PATH="$LDP" "$KIT/bin/quiver-bench" "${args[@]}" $BENCH_EXTRA \
		2>"$WORK/bench.err" | tee "$WORK/bench.jsonl" >>"$OUT/summary.jsonl"
	rc=${PIPESTATUS[0]}
	cat "$WORK/bench.err" >&2
	# the dataset is complete once the statistics line (printed after saving) is out
	if ! dataset_ready && grep -q '"save_s"' "$WORK/bench.jsonl"; then echo "$NODES" >"$DATA/.complete"; fi
	return "$rc"
}

stage_torch() {
	local rc
	if ! python3 -c 'import torch' 2>/dev/null; then
		log "torch is not installed here: the PyG anchor is skipped"
		emit '{"torch":"skipped","reason":"python3 cannot import torch"}'
		return 0
	fi
	dataset_ready || { log "no complete dataset in $DATA (the bench stage writes it)"; return 1; }
	# a clean environment: the kit's libraries must not shadow torch's
	env -u LD_LIBRARY_PATH OUT="$WORK" PYTHONUNBUFFERED=1 \
		python3 "$KIT/torch_baseline.py" --data "$DATA" 2>"$WORK/torch.err" |
		tee "$WORK/torch.log" | grep --line-buffered '^{' >>"$OUT/summary.jsonl"
	rc=${PIPESTATUS[0]}
	tail -n 12 "$WORK/torch.log" >&2
	tail -n 5 "$WORK/torch.err" >&2
	return "$rc"
}

# ---- the SQL stage -------------------------------------------------------------------

# Run a command as PG_OS_USER, with the kit's libraries.
as_pg() {
	if command -v runuser >/dev/null; then
		runuser -u "$PG_OS_USER" -- env LD_LIBRARY_PATH="$LDP" "$@"
	elif command -v setpriv >/dev/null; then
		setpriv --reuid="$PG_OS_USER" --regid="$(id -g "$PG_OS_USER")" --init-groups \
			env LD_LIBRARY_PATH="$LDP" "$@"
	else
		su -s /bin/sh "$PG_OS_USER" -c "$(printf '%q ' env LD_LIBRARY_PATH="$LDP" "$@")"
	fi
}

psql_q() {
	env LD_LIBRARY_PATH="$LDP" "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$PGDIR" -p "$PGPORT" \
		-U "$PG_OS_USER" -d postgres "$@"
}

# Seconds (3 decimals) that a psql command takes.
timed_psql() {
	local t0=$EPOCHREALTIME
	psql_q "$@" >>"$WORK/sql.log" 2>&1 || return 1
	awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN {printf "%.3f", b - a}'
}

# A free TCP port number (only its number is used: the server listens on a
# socket in PGDIR).
free_port() {
	local p
	for p in $(seq 54320 54400); do
		[ -e "$PGDIR/.s.PGSQL.$p" ] || { echo "$p"; return; }
	done
}

sql_start() {
	local shm_kb conf module=$GPU_MODULE
	if ! id "$PG_OS_USER" >/dev/null 2>&1 &&
		! useradd --system --no-create-home --shell /bin/sh "$PG_OS_USER"; then
		log "cannot create user $PG_OS_USER: PostgreSQL runs as nobody"
		PG_OS_USER=nobody
	fi
	rm -rf "$PGDIR" && install -d -o "$PG_OS_USER" -m 755 "$PGDIR" || return 1
	# the server's user may not read the checkout: give it its own copy
	if [ "$FAKE" = 1 ]; then
		install -m 755 "$GPU_MODULE" "$PGDIR/quiver_fake_cuda.so" || return 1
		module=$PGDIR/quiver_fake_cuda.so
	fi
	PGPORT=$(free_port)
	as_pg "$PGBIN/initdb" -D "$PGDIR/data" -A trust -E UTF8 --no-locale >"$WORK/initdb.log" 2>&1 ||
		{ tail -n 20 "$WORK/initdb.log" >&2; return 1; }
	shm_kb=$(df -Pk /dev/shm 2>/dev/null | awk 'NR == 2 {print $4}')
	conf=$PGDIR/data/postgresql.conf
	cat >>"$conf" <<CONF
port = $PGPORT
listen_addresses = ''
unix_socket_directories = '$PGDIR'
shared_preload_libraries = 'quiver'
quiver.database = 'postgres'
quiver.gpu_module = '$module'
max_parallel_workers_per_gather = 0
shared_buffers = '1GB'
fsync = off
synchronous_commit = off
full_page_writes = off
wal_level = minimal
max_wal_senders = 0
max_wal_size = '32GB'
checkpoint_timeout = '30min'
CONF
	# posix DSM lives in /dev/shm: when that is small, use files instead
	if [ "${shm_kb:-0}" -lt $((8 * 1024 * 1024)) ]; then
		echo "dynamic_shared_memory_type = mmap" >>"$conf"
		log "/dev/shm has ${shm_kb:-?} kB free: dynamic_shared_memory_type = mmap"
	fi
	as_pg "$PGBIN/pg_ctl" -D "$PGDIR/data" -l "$PGDIR/server.log" -w -t 120 start >>"$WORK/sql.log" 2>&1 ||
		{ tail -n 30 "$PGDIR/server.log" >&2; return 1; }
	psql_q -c 'CREATE EXTENSION quiver' || return 1
	emit "{\"sql\":\"server\",\"version\":\"$(psql_q -At -c 'SHOW server_version')\",\"port\":$PGPORT,\"os_user\":\"$PG_OS_USER\",\"gpu_module\":\"$module\"}"
}

# The dataset the SQL graph comes from: DATA, or a smaller generated one.
sql_dataset() {
	local dir
	if [ -z "$SQL_NODES" ] || [ "$SQL_NODES" = "$NODES" ]; then
		dataset_ready && { echo "$DATA"; return 0; }
		dir=$DATA
		SQL_NODES=$NODES
	else
		dir=/tmp/qv-sql-$SQL_NODES
	fi
	if [ ! -f "$dir/.complete" ]; then
		rm -rf "$dir"
		env LD_LIBRARY_PATH="$LDP" "$KIT/bin/quiver-bench" --device cpu --nodes "$SQL_NODES" \
			--save-dataset "$dir" --save-only >>"$WORK/sql.log" 2>&1 || return 1
		echo "$SQL_NODES" >"$dir/.complete"
	fi
	echo "$dir"
}

# Binary COPY files from the dataset, loaded into tables, then the graph.
sql_load() {
	local data copy py t_conv t_e t_n t_ids line
	py=$(pick_python) || { log "no python3 with numpy"; return 1; }
	data=$(sql_dataset) || { log "could not make the SQL dataset"; return 1; }
	copy=$PGDIR/copy
	mkdir -p "$copy" || return 1
	t_conv=$EPOCHREALTIME
	line=$("$py" "$ROOT/test/bench/gpu_sql_data.py" --data "$data" --out "$copy" --rows "$SQL_ROWS") || return 1
	emit "$line"
	chmod -R a+rX "$copy"
	log "COPY files written in $(awk -v a="$t_conv" -v b="$EPOCHREALTIME" 'BEGIN {printf "%.1f", b - a}') s"
	psql_q -c 'CREATE UNLOGGED TABLE qv_edge (src int4, dst int4)' \
		-c 'CREATE UNLOGGED TABLE qv_node (id int4, feat real[])' \
		-c 'CREATE UNLOGGED TABLE qv_ids (id int4)' || return 1
	t_e=$(timed_psql -c "COPY qv_edge FROM '$copy/edges.bin' (FORMAT binary)") || return 1
	t_n=$(timed_psql -c "COPY qv_node FROM '$copy/nodes.bin' (FORMAT binary)") || return 1
	t_ids=$(timed_psql -c "COPY qv_ids FROM '$copy/ids.bin' (FORMAT binary)") || return 1
	rm -rf "$copy"
	emit "{\"sql\":\"copy\",\"edges_s\":$t_e,\"nodes_s\":$t_n,\"ids_s\":$t_ids}"
	log "COPY: edges $t_e s, nodes $t_n s"
	line=$(psql_q -At -F ' ' -c "SELECT nodes, edges, feature_dim, load_ms FROM gnn_create_graph('g',
		'SELECT src, dst FROM qv_edge', 'SELECT id, feat FROM qv_node', undirected => true)") || return 1
	read -r SQL_GRAPH_NODES e d ms <<<"$line"
	emit "{\"sql\":\"graph\",\"dataset\":\"$data\",\"nodes\":$SQL_GRAPH_NODES,\"edges\":$e,\"dim\":$d,\"load_ms\":$ms,\"undirected\":true}"
	log "graph: $SQL_GRAPH_NODES nodes, $e edges, loaded in $ms ms"
	SQL_DIM=$d
}

# GraphSAGE dim -> 256 -> 47, fanout [15, 10], random weights.
sql_model() {
	local py t
	py=$(pick_python) || return 1
	"$py" "$ROOT/test/ref/quiver_ref.py" weights --arch graphsage --dims "$SQL_DIM,256,47" --seed 1 \
		--out "$PGDIR/sage.safetensors" || return 1
	chmod a+r "$PGDIR/sage.safetensors"
	t=$(timed_psql -c "SELECT gnn_create_model('m', 'g', 'graphsage',
		pg_read_binary_file('$PGDIR/sage.safetensors'), '{\"fanout\": [15, 10]}')") || return 1
	emit "{\"sql\":\"model\",\"arch\":\"graphsage\",\"dims\":[$SQL_DIM,256,47],\"fanout\":[15,10],\"create_s\":$t}"
}

# p50/p99 (ms) and tps of pgbench running script $1 with $2 clients.
pgbench_run() {
	local script=$1 clients=$2 name=$3 tps p50 p99
	rm -f "$WORK"/lat.*
	tps=$(cd "$WORK" && env LD_LIBRARY_PATH="$LDP" "$PGBIN/pgbench" -n -h "$PGDIR" -p "$PGPORT" \
		-U "$PG_OS_USER" -c "$clients" -j "$(( clients < 4 ? clients : 4 ))" -T "$PGBENCH_SECONDS" \
		-f "$script" -l --log-prefix=lat postgres 2>>"$WORK/sql.log" | awk '/^tps = / {print $3}')
	read -r p50 p99 <<<"$(cat "$WORK"/lat.* 2>/dev/null | awk '{print $3}' | sort -n |
		awk '{v[NR] = $1} END {if (NR) printf "%.4f %.4f", v[int(NR * 0.5) + 1] / 1000, v[int(NR * 0.99) + 1] / 1000}')"
	rm -f "$WORK"/lat.*
	emit "{\"sql\":\"pgbench\",\"query\":\"$name\",\"clients\":$clients,\"seconds\":$PGBENCH_SECONDS,\"tps\":${tps:-0},\"p50_ms\":${p50:-null},\"p99_ms\":${p99:-null}}"
	log "pgbench $name, $clients clients: ${tps:-?} tps, p50 ${p50:-?} ms, p99 ${p99:-?} ms"
}

sql_latency() {
	echo 'SELECT 1;' >"$WORK/select1.sql"
	printf '\\set id random(0, %d)\nSELECT gnn_predict('"'m'"', :id);\n' $((SQL_GRAPH_NODES - 1)) >"$WORK/predict.sql"
	pgbench_run "$WORK/select1.sql" 1 "SELECT 1"
	pgbench_run "$WORK/predict.sql" 1 "gnn_predict"
	pgbench_run "$WORK/predict.sql" 16 "gnn_predict"
}

# Rate of SELECT gnn_predict('m', id) FROM t over the first $1 rows of qv_ids,
# with quiver.prefetch_rows = $3 (0: every call its own request).
scan_rate() {
	local rows=$1 what=$2 prefetch=$3 t
	psql_q -c "DROP TABLE IF EXISTS qv_t" -c "CREATE UNLOGGED TABLE qv_t AS SELECT id FROM qv_ids LIMIT $rows" \
		-c "VACUUM ANALYZE qv_t" >>"$WORK/sql.log" 2>&1 || return 1
	t=$(timed_psql -c "SET quiver.prefetch_rows = $prefetch" \
		-c "SELECT count(*), sum(array_length(gnn_predict('m', id), 1)) FROM qv_t") || return 1
	emit "{\"sql\":\"scan\",\"what\":\"$what\",\"prefetch_rows\":$prefetch,\"rows\":$rows,\"seconds\":$t,\"rows_per_s\":$(awk -v r="$rows" -v t="$t" 'BEGIN {printf "%.0f", r / t}')}"
	log "SELECT gnn_predict over $rows rows ($what, prefetch_rows $prefetch): $t s"
	echo "$t"
}

# The 1M-row scan batched by QuiverPrefetch, after a 1% probe tells whether
# it fits in the time left; the same probe with one request per row.
sql_scan() {
	local probe t_probe left est rows
	probe=$(( SQL_ROWS / 100 > 1000 ? SQL_ROWS / 100 : 1000 ))
	scan_rate "$probe" "probe, one request per row" 0 >/dev/null || return 1
	t_probe=$(scan_rate "$probe" probe 1024) || return 1
	left=$(( STAGE_DEADLINE - $(now) - 60 ))
	est=$(awk -v t="$t_probe" -v p="$probe" -v r="$SQL_ROWS" 'BEGIN {printf "%.0f", t * r / p}')
	rows=$SQL_ROWS
	if [ "$est" -gt "$left" ]; then
		rows=$(awk -v l="$left" -v t="$t_probe" -v p="$probe" 'BEGIN {n = int(l / 2 * p / t); print (n < 1000 ? 1000 : n)}')
		log "the full scan would take about $est s, $left s are left: $rows rows instead"
	fi
	scan_rate "$rows" full 1024 >/dev/null || return 1
	t=$(timed_psql -c "SELECT count(*) FROM gnn_predict('m', ARRAY(SELECT id::bigint FROM qv_t))") || return 1
	emit "{\"sql\":\"array\",\"rows\":$rows,\"seconds\":$t,\"rows_per_s\":$(awk -v r="$rows" -v t="$t" 'BEGIN {printf "%.0f", r / t}')}"
	log "gnn_predict('m', ARRAY[...]) of $rows ids: $t s"
}

# gnn_stats() and gnn_gpus() as JSON lines.
sql_stats() {
	psql_q -At -c "SELECT json_build_object('gnn_stats', row_to_json(s)) FROM gnn_stats() s" >>"$OUT/summary.jsonl"
	psql_q -At -c "SELECT json_build_object('gnn_gpus', row_to_json(g)) FROM gnn_gpus() g" >>"$OUT/summary.jsonl"
	psql_q -c 'SELECT * FROM gnn_stats()' -c 'SELECT * FROM gnn_gpus()' -c 'SELECT * FROM gnn_graphs' >"$WORK/sql_stats.txt" 2>&1
	cat "$WORK/sql_stats.txt" >&2
}

sql_stop() {
	# as the data directory's owner (the stage may have fallen back to nobody)
	[ -f "$PGDIR/data/postmaster.pid" ] &&
		PG_OS_USER=$(stat -c %U "$PGDIR/data") as_pg "$PGBIN/pg_ctl" -D "$PGDIR/data" -m fast -t 60 stop \
			>/dev/null 2>&1
	[ -f "$PGDIR/server.log" ] && tail -n 300 "$PGDIR/server.log" >"$WORK/server.log"
	if [ "${KEEP:-0}" != 1 ]; then rm -rf "$PGDIR"; fi
}

stage_sql() {
	sql_start && sql_load && sql_model && sql_stats && sql_latency && sql_scan && sql_stats
	local rc=$?
	return $rc
}

# ---- the driver ---------------------------------------------------------------------

# Seconds a stage may take: min(cap, time left - 15).
stage_limit() {
	local cap=$1 left=$(( DEADLINE - $(now) - 15 ))
	echo $(( cap < left ? cap : left ))
}

run_stage() {
	local name=$1 cap=$2 min=$3 limit rc status t0
	limit=$(stage_limit "$cap")
	if [ "$limit" -lt "$min" ]; then
		log "stage $name skipped: $limit s left, it needs $min"
		emit "{\"stage\":\"$name\",\"event\":\"end\",\"status\":\"skipped\",\"reason\":\"$limit s left\"}"
		return
	fi
	log "stage $name: up to $limit s"
	emit "{\"stage\":\"$name\",\"event\":\"start\",\"limit_s\":$limit,\"at_s\":$(( $(now) - START ))}"
	t0=$(now)
	STAGE_DEADLINE=$(( t0 + limit )) timeout -k 10 "$limit" bash "$SELF" $FAKE_ARG --run-stage "$name" \
		2>&1 | tee "$WORK/stage_$name.log" >&2
	rc=${PIPESTATUS[0]}
	[ "$name" = sql ] && sql_stop
	case $rc in
		0) status=ok ;;
		124|137) status=timeout ;;
		*) status=failed ;;
	esac
	emit "{\"stage\":\"$name\",\"event\":\"end\",\"status\":\"$status\",\"rc\":$rc,\"seconds\":$(( $(now) - t0 ))}"
	log "stage $name: $status (rc $rc) in $(( $(now) - t0 )) s"
	pack
}

# The table of report.txt, printed last.
report() {
	local py
	py=$(pick_python) || py=python3
	"$py" "$ROOT/test/bench/gpu_report.py" "$OUT/summary.jsonl" >"$OUT/report.txt" 2>&1
	cat "$OUT/report.txt"
}

main() {
	parse_args "$@"
	settings
	if [ -n "${RUN_STAGE:-}" ]; then
		export LDP
		"stage_$RUN_STAGE"
		exit $?
	fi
	[ "$(id -u)" = 0 ] || { echo "gpu_session.sh: run as root (it creates a user for PostgreSQL)" >&2; exit 2; }
	START=$(now)
	DEADLINE=$(( START + BUDGET ))
	export START DEADLINE
	mkdir -p "$OUT" && rm -f "$OUT/summary.jsonl" "$OUT/session.log" "$OUT/report.txt" "$OUT/logs.tar.gz"
	rm -rf "$WORK" && mkdir -p "$WORK"
	trap 'sql_stop; pack' EXIT
	emit "{\"session\":\"$(cat /proc/sys/kernel/hostname)\",\"tmp_free_kb\":$(df -Pk /tmp | awk 'NR == 2 {print $4}'),\"fake\":$([ "$FAKE" = 1 ] && echo true || echo false),\"stages\":\"$STAGES\",\"budget_s\":$BUDGET,\"date\":\"$(date -u +%FT%TZ)\",\"cpus\":$(nproc),\"mem_kb\":$(awk '/MemTotal/ {print $2}' /proc/meminfo)}"
	[ -f "$KIT/MANIFEST" ] && cp "$KIT/MANIFEST" "$WORK/"
	command -v nvidia-smi >/dev/null && nvidia-smi >"$WORK/nvidia-smi.txt" 2>&1
	unpack_kit || { emit '{"error":"the kit could not be unpacked"}'; pack; exit 1; }
	LDP=$(library_path)
	export LDP
	log "LD_LIBRARY_PATH for quiver: $LDP"
	local s
	for s in ${STAGES//,/ }; do
		case $s in
			unit) run_stage unit 150 30 ;;
			sanitize) run_stage sanitize 300 60 ;;
			bench) run_stage bench 260 90 ;;
			torch) run_stage torch 200 60 ;;
			sql) run_stage sql 600 120 ;;
			*) log "unknown stage $s" ;;
		esac
	done
	pack
	report
}

main "$@"
