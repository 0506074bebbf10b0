#!/bin/bash
#
# scripts/fuzz.sh — build the libFuzzer harness of the safetensors reader and
# the model loader (test/fuzz/fuzz_safetensors.c, `make fuzz`) and run it.
#
#   bash scripts/fuzz.sh                  60 seconds
#   FUZZ_SECONDS=600 bash scripts/fuzz.sh
#
# Installs nothing: it needs clang with the fuzzer and sanitizer runtimes
# (Debian 12: clang and libclang-rt-14-dev) besides what `make` needs.  Any
# user may run it, in a built tree or a clean one.  The fuzzer starts from
# the seeds in test/fuzz/corpus/ and the inputs of bugs already fixed in
# test/fuzz/regressions/ (both read-only to it), with the dictionary
# test/fuzz/safetensors.dict, for FUZZ_SECONDS (-max_total_time), under
# AddressSanitizer, UBSan (any report aborts) and LeakSanitizer.
#
# Last line, always: "fuzz: 1 passed, 0 failed" when it ran its time without
# a crash, leak, timeout or out-of-memory; "fuzz: 0 passed, 1 failed" (and a
# non-zero exit) otherwise, build failures included.  On a failure the end
# of the fuzzer's log is shown, the input that failed is kept in
# FUZZ_ARTIFACTS (default test/fuzz/artifacts/), and
#     test/fuzz/bin/fuzz_safetensors FILE
# replays it (FUZZ_SAFETENSORS_VERBOSE=1 says what the loader made of it).
#
# Environment: FUZZ_SECONDS (60), FUZZ_MAX_LEN (16384, largest input in
# bytes), FUZZ_CORPUS (a directory to keep the grown corpus in across runs;
# default a temporary one), FUZZ_ARTIFACTS, FUZZ_ARGS (more libFuzzer flags),
# FUZZ_VERBOSE=1 (the whole fuzzer log), PG_CONFIG.

set -u -o pipefail

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
ROOT=$QUIVER_ROOT
FUZZ_SECONDS=${FUZZ_SECONDS:-60}
FUZZ_MAX_LEN=${FUZZ_MAX_LEN:-16384}
ARTIFACTS=${FUZZ_ARTIFACTS:-$ROOT/test/fuzz/artifacts}
BIN=$ROOT/test/fuzz/bin/fuzz_safetensors
[ -x "$PG_CONFIG" ] || PG_CONFIG=$(command -v pg_config || echo pg_config)

WORK=
fail() {
	printf 'fuzz.sh: %s\n' "$*" >&2
	[ -n "$WORK" ] && echo "fuzz.sh: logs kept in $WORK"
	echo "fuzz: 0 passed, 1 failed"
	exit 1
}

[[ $FUZZ_SECONDS =~ ^[1-9][0-9]*$ ]] || fail "FUZZ_SECONDS=$FUZZ_SECONDS is not a positive number of seconds"
[[ $FUZZ_MAX_LEN =~ ^[1-9][0-9]*$ ]] || fail "FUZZ_MAX_LEN=$FUZZ_MAX_LEN is not a positive number of bytes"
command -v "${FUZZ_CC:-clang}" >/dev/null ||
	fail "${FUZZ_CC:-clang} not found (Debian 12: apt-get install clang libclang-rt-14-dev)"

WORK=$(mktemp -d /tmp/quiver-fuzz.XXXXXX) || fail "mktemp failed"

# ---- build ------------------------------------------------------------------
say "make fuzz"
if ! make -C "$ROOT" fuzz PG_CONFIG="$PG_CONFIG" >"$WORK/build.log" 2>&1; then
	tail -n 25 "$WORK/build.log"
	grep -q 'libclang_rt.fuzzer\|fsanitize=fuzzer' "$WORK/build.log" &&
		echo "fuzz.sh: the fuzzer runtime is missing? (Debian 12: libclang-rt-14-dev)" >&2
	fail "make fuzz failed"
fi
echo "built ${BIN#"$ROOT/"}"

# ---- run ----------------------------------------------------------------------
CORPUS=${FUZZ_CORPUS:-$WORK/corpus}
mkdir -p "$CORPUS" "$ARTIFACTS" || fail "cannot create $CORPUS or $ARTIFACTS"
SEEDS=("$ROOT/test/fuzz/corpus")
[ -d "$ROOT/test/fuzz/regressions" ] && SEEDS+=("$ROOT/test/fuzz/regressions")

say "fuzz_safetensors for ${FUZZ_SECONDS}s (max_len $FUZZ_MAX_LEN), seeds: ${SEEDS[*]#"$ROOT/"}"
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
start=$(date +%s)
# -timeout: seconds for one input; the outer timeout only guards a stuck run
# shellcheck disable=SC2086
timeout -k 10 $((FUZZ_SECONDS + 300)) "$BIN" \
	-max_total_time="$FUZZ_SECONDS" -max_len="$FUZZ_MAX_LEN" -timeout=10 \
	-rss_limit_mb=2048 -dict="$ROOT/test/fuzz/safetensors.dict" \
	-artifact_prefix="$ARTIFACTS/" -print_final_stats=1 ${FUZZ_ARGS:-} \
	"$CORPUS" "${SEEDS[@]}" >"$WORK/fuzz.log" 2>&1
rc=$?
elapsed=$(($(date +%s) - start))

[ "${FUZZ_VERBOSE:-0}" = 1 ] && cat "$WORK/fuzz.log"
done_line=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$WORK/fuzz.log" | tail -n 1)
runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$WORK/fuzz.log" | tail -n 1)
echo "fuzz.sh: ${runs:-?} inputs in ${elapsed}s; ${done_line:-no DONE line} (exit $rc)"

if [ $rc != 0 ]; then
	echo "--- end of the fuzzer's log ($WORK/fuzz.log)"
	grep -vE '^#[0-9]+[[:space:]]+(NEW|REDUCE|pulse)' "$WORK/fuzz.log" | tail -n 60
	grep -E 'Test unit written to|^artifact_prefix' "$WORK/fuzz.log" | sed 's/^/fuzz.sh: /'
	[ $rc = 124 ] || [ $rc = 137 ] && echo "fuzz.sh: the run did not end $((FUZZ_SECONDS + 300))s after it started"
	echo "fuzz.sh: replay with: $BIN FILE"
	fail "the fuzzer failed (exit $rc)"
fi
rm -rf "$WORK"
echo "fuzz: 1 passed, 0 failed"
