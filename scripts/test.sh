#!/bin/bash
#
# scripts/test.sh — build quiver and run every test suite, on Debian 12, as root.
#
#   sudo bash scripts/test.sh
#
# 1. installs the Debian packages that are missing (apt-get), and PyTorch
#    Geometric for test/t/012_pyg.pl (scripts/pyg_setup.sh: Debian's
#    python3-torch, torch_geometric and safetensors from PyPI);
# 2. builds quiver (CUDA module too when nvcc is found; USE_CUDA=0 forces a
#    CPU-only build) and installs it into PostgreSQL 15;
# 3. copies the tree to a temporary directory owned by the user postgres
#    (initdb refuses to run as root) and runs there, as postgres:
#      - the reference's self-test   python3 test/ref/quiver_ref.py selftest
#      - the GAT reference vs PyG    python3 test/ref/quiver_ref.py pygcheck
#      - the unit tests (cmocka)     make unit
#      - libFuzzer for 60 s          scripts/fuzz.sh
#      - the glue's module order     scripts/module_order.sh (nm on the build)
#      - pg_regress                  make installcheck TAP_TESTS=
#      - the TAP tests               make installcheck REGRESS=
#      - sqlsmith for 60 s         scripts/sqlsmith.sh (as root)
# 4. prints each runner's summary line and, last, "N passed, N failed"
#    counting tests: cmocka test cases, pg_regress tests, TAP test files and
#    the self-test (a runner that fails before reporting counts as 1 failed).
#
# Exits 0 only when everything passed.  The temporary tree (logs, diffs) is
# kept when something failed.  Environment: USE_CUDA, QUIVER_TEST_SEED (repeat
# a TAP run), QUIVER_KEEP=1 (keep the temporary tree), JOBS (make -j).

set -u -o pipefail

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
ROOT=$QUIVER_ROOT
JOBS=${JOBS:-$(nproc)}
RUN_USER=postgres

die() { printf 'test.sh: %s\n' "$*" >&2; exit 2; }
# A step before the suites failed: report it as one failed runner.
fail_early() {
	printf 'test.sh: %s\n' "$*" >&2
	say "summary"
	echo "setup: $*"
	echo "0 passed, 1 failed"
	exit 1
}

[ "$(id -u)" = 0 ] || die "run as root (sudo bash scripts/test.sh): it installs packages and PostgreSQL files"

# ---- 1. packages ------------------------------------------------------------
say "packages"
install_packages || fail_early "apt-get failed"
bash "$ROOT/scripts/pyg_setup.sh" || fail_early "scripts/pyg_setup.sh failed (PyTorch Geometric for test/t/012_pyg.pl)"
export PATH="/usr/lib/postgresql/15/bin:$PATH"
[ -x "$PG_CONFIG" ] || fail_early "no $PG_CONFIG"
id "$RUN_USER" >/dev/null 2>&1 || fail_early "no user $RUN_USER (the postgresql-15 package creates it)"

# ---- 2. build and install ---------------------------------------------------
say "build and install${USE_CUDA:+ (USE_CUDA=$USE_CUDA)}"
build_install || fail_early "make or make install failed"

# ---- 3. the suites, as postgres, in a copy of the tree ----------------------
WORK=$(mktemp -d /tmp/quiver-test.XXXXXX)
chmod 755 "$WORK"
tar -C "$ROOT" --exclude=./.git --exclude=./tmp_check --exclude=./tmp_regress \
	--exclude=./results -cf - . | tar -C "$WORK" -xf -
chown -R "$RUN_USER": "$WORK"

PASSED=0
FAILED=0
SUMMARY=()

# run NAME TIMEOUT COMMAND: runs COMMAND as postgres in the copy, output in
# $WORK/NAME.log (and on the terminal).
run() {
	local name=$1 limit=$2
	shift 2
	say "$name: $*"
	su -s /bin/bash "$RUN_USER" -c "cd '$WORK' && export PATH='$PATH' && timeout $limit $*" \
		</dev/null 2>&1 | tee "$WORK/$name.log"
	return "${PIPESTATUS[0]}"
}

count() { PASSED=$((PASSED + $1)); FAILED=$((FAILED + $2)); }
SKIPPED=0

# The reference's self-test: one test.
run selftest 300 /usr/bin/python3 test/ref/quiver_ref.py selftest
rc=$?
line=$(grep -E '^selftest: ' "$WORK/selftest.log" | tail -n 1)
if [ $rc = 0 ]; then count 1 0; else count 0 1; fi
SUMMARY+=("reference selftest: ${line:-no summary (exit $rc)}")

# cmocka: one "[  PASSED  ] n test(s)." (and "[  FAILED  ] n test(s)") per binary.
run unit 900 make unit PG_CONFIG="$PG_CONFIG" ${USE_CUDA:+USE_CUDA=$USE_CUDA}
rc=$?
p=$(grep -E '^\[  PASSED  \] [0-9]+ test' "$WORK/unit.log" | awk '{s += $4} END {print s + 0}')
f=$(grep -E '^\[  FAILED  \] [0-9]+ test' "$WORK/unit.log" | awk '{s += $4} END {print s + 0}')
[ $rc != 0 ] && [ "$f" = 0 ] && f=1		# failed before cmocka could say so
count "$p" "$f"
# skipped tests (the GPU ones without a GPU) are counted apart, never as passed
SKIPPED=$(grep -E '^\[  SKIPPED \] [0-9]+ test' "$WORK/unit.log" | awk '{s += $4} END {print s + 0}')
lines=$(grep -E '^== |^\[  (PASSED|FAILED|SKIPPED)  ?\] [0-9]|^SKIPPED: ' "$WORK/unit.log" | sed 's/^== .*\//== /' | uniq)
[ -n "$lines" ] || lines="no summary (exit $rc)"
while read -r l; do SUMMARY+=("unit: $l"); done <<<"$lines"

# The GAT reference against PyTorch Geometric's GAT: one test, skipped (not
# passed) when torch_geometric is not importable (exit 77).
run pygcheck 300 /usr/bin/python3 test/ref/quiver_ref.py pygcheck
rc=$?
line=$(grep -E '^pygcheck: (PASS|FAIL|SKIPPED)' "$WORK/pygcheck.log" | tail -n 1)
if [ $rc = 0 ]; then count 1 0; elif [ $rc = 77 ]; then SKIPPED=$((SKIPPED + 1)); else count 0 1; fi
SUMMARY+=("reference vs PyG GAT: ${line:-no summary (exit $rc)}")

# libFuzzer on the safetensors reader and the model loader, FUZZ_SECONDS
# (60): "fuzz: 1 passed, 0 failed" or "fuzz: 0 passed, 1 failed".
run fuzz 600 env FUZZ_SECONDS="${FUZZ_SECONDS:-60}" bash scripts/fuzz.sh
rc=$?
line=$(grep -E '^fuzz: [0-9]+ passed, [0-9]+ failed$' "$WORK/fuzz.log" | tail -n 1)
if [[ $line =~ ([0-9]+)\ passed,\ ([0-9]+)\ failed ]]; then
	count "${BASH_REMATCH[1]}" "${BASH_REMATCH[2]}"
else
	count 0 1
fi
SUMMARY+=("${line:-fuzz: no summary (exit $rc)}")

# The glue's files call each other only downwards (docs/architecture.md),
# checked with nm on the objects built above: "module_order: 1 passed, 0
# failed" or "module_order: 0 passed, 1 failed".
run module_order 120 bash scripts/module_order.sh
rc=$?
line=$(grep -E '^module_order: [0-9]+ passed, [0-9]+ failed$' "$WORK/module_order.log" | tail -n 1)
if [[ $line =~ ([0-9]+)\ passed,\ ([0-9]+)\ failed ]]; then
	count "${BASH_REMATCH[1]}" "${BASH_REMATCH[2]}"
else
	count 0 1
fi
SUMMARY+=("${line:-module_order: no summary (exit $rc)}")

# pg_regress: "All n tests passed." or "m of n tests failed."
run regress 900 make installcheck TAP_TESTS= PG_CONFIG="$PG_CONFIG"
rc=$?
line=$(grep -E 'tests? (passed|failed)' "$WORK/regress.log" | tail -n 1 | sed 's/^ *//; s/ *$//')
if [[ $line =~ All\ ([0-9]+)\ tests?\ passed ]]; then
	count "${BASH_REMATCH[1]}" 0
elif [[ $line =~ ([0-9]+)\ of\ ([0-9]+)\ tests?\ failed ]]; then
	count $((BASH_REMATCH[2] - BASH_REMATCH[1])) "${BASH_REMATCH[1]}"
else
	count 0 1
fi
[ $rc = 0 ] || { [ -f "$WORK/regression.diffs" ] && head -n 80 "$WORK/regression.diffs"; }
SUMMARY+=("pg_regress: ${line:-no summary (exit $rc)}")

# TAP: prove prints "file .. ok" per file, then "Result: PASS" or "FAIL".
run tap 1500 make installcheck REGRESS= PG_CONFIG="$PG_CONFIG"
rc=$?
p=$(grep -cE '^test/t/[^ ]+\.pl \.+ ok' "$WORK/tap.log")
total=$(ls "$WORK"/test/t/*.pl | wc -l)
f=$((total - p))
[ $rc != 0 ] && [ $f = 0 ] && f=1
count "$p" "$f"
line=$(grep -E '^Result: ' "$WORK/tap.log" | tail -n 1)
files=$(grep -E '^Files=' "$WORK/tap.log" | tail -n 1 | cut -d'(' -f1)
if [ $rc != 0 ]; then
	# the end of the log of every test file that did not pass
	for t in "$WORK"/test/t/*.pl; do
		t=$(basename "$t" .pl)
		grep -qE "^test/t/$t\.pl \.+ ok" "$WORK/tap.log" && continue
		log="$WORK/tmp_check/log/regress_log_$t"
		echo "--- $t did not pass: $log"
		[ -f "$log" ] && grep -vE 'issuing query|results query' "$log" | tail -n 30
	done
fi
SUMMARY+=("TAP: ${line:-no summary (exit $rc)} ${files}")

# sqlsmith: random SQL against a cluster holding quiver objects for
# SQLSMITH_SECONDS (60); fails on any server crash.  Runs as root (it starts
# its own cluster as postgres).  SQLSMITH=0 skips it.
if [ "${SQLSMITH:-1}" = 1 ]; then
	say "sqlsmith: scripts/sqlsmith.sh"
	SQLSMITH_SECONDS=${SQLSMITH_SECONDS:-60} timeout 600 bash "$ROOT/scripts/sqlsmith.sh" </dev/null 2>&1 |
		tee "$WORK/sqlsmith.log"
	line=$(grep -E '^sqlsmith: [0-9]+ passed, [0-9]+ failed$' "$WORK/sqlsmith.log" | tail -n 1)
	if [[ $line =~ ([0-9]+)\ passed,\ ([0-9]+)\ failed ]]; then
		count "${BASH_REMATCH[1]}" "${BASH_REMATCH[2]}"
	else
		count 0 1
	fi
	SUMMARY+=("${line:-sqlsmith: no summary}")
fi

# ---- 4. summary -------------------------------------------------------------
say "summary"
printf '%s\n' "${SUMMARY[@]}"
if [ "$FAILED" = 0 ] && [ "${QUIVER_KEEP:-0}" != 1 ]; then
	rm -rf "$WORK"
else
	echo "logs kept in $WORK"
fi
if [ "$SKIPPED" -gt 0 ]; then
	echo "$PASSED passed, $FAILED failed, $SKIPPED skipped"
else
	echo "$PASSED passed, $FAILED failed"
fi
[ "$FAILED" = 0 ]
