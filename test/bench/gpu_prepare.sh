#!/bin/bash
#
# test/bench/gpu_prepare.sh — build, on this machine, everything the GPU
# session (test/bench/gpu_session.sh) needs on a GPU machine that has CUDA,
# PyTorch and PyG but no PostgreSQL, no build dependencies and no network,
# into .gpukit/:
#
#   bin/quiver-bench       the bench (GPU-capable: it dlopens the module)
#   bin/test_gpu           the GPU unit tests, built to load the module from
#   bin/test_gpu_infer     the unpacked kit (/tmp/qv-pgkit/...)
#   pgkit.tar.xz           PostgreSQL 15 (/work/shared/tools/pg-runtime-kit.sh)
#                          with quiver installed (quiver.so, quiver_cuda.so,
#                          the extension's SQL), the libraries the carried
#                          binaries link (OpenBLAS, hwloc, jansson, cmocka, ...)
#                          and, in usr/lib/quiver-fallback, every library
#                          PostgreSQL's programs link, for a machine that
#                          lacks some
#   torch_baseline.py      the PyG anchor (../shared does not travel)
#   MANIFEST               what was built, from what, and sizes
#
# The products-scale dataset is not carried (1.5 GB): the session generates
# it there with quiver-bench --save-dataset.
#
#   sudo bash test/bench/gpu_prepare.sh
#
# Needs root (apt-get download for the kit), nvcc, PostgreSQL 15's server
# headers and the build dependencies of `make`.  Prints the device `run`
# command and carry list last.  SHARED (default ../shared beside the
# checkout) locates tools/pg-runtime-kit.sh and bench/torch_baseline.py.

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
KIT=$ROOT/.gpukit
SHARED=${SHARED:-$(cd "$ROOT/.." && pwd)/shared}
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
DEVKIT=/tmp/qv-pgkit			# gpu_session.sh unpacks the kit here
TREE_LIMIT=$((64 * 1024 * 1024))	# what a device run may carry in all

say() { printf '\n=== %s\n' "$*" >&2; }

# The Makefile's CORE_LIBS, so the unit tests link as `make unit` does.
core_libs() {
	local libs
	libs=$(make -s --no-print-directory -C "$ROOT" -pn PG_CONFIG="$PG_CONFIG" 2>/dev/null |
		sed -n 's/^CORE_LIBS = //p' | head -n 1)
	echo "${libs:--ljansson -lopenblas -lhwloc -lpthread -ldl -lm}"
}

build() {
	say "building quiver, the CUDA module, the bench and the fake module"
	make -C "$ROOT" -j"$(nproc)" USE_CUDA=1 PG_CONFIG="$PG_CONFIG" >&2
	make -C "$ROOT" USE_CUDA=1 PG_CONFIG="$PG_CONFIG" bench fake-gpu >&2
}

# The GPU unit tests, loading the module from where the session unpacks it.
build_unit_tests() {
	local t libs
	libs=$(core_libs)
	for t in test_gpu test_gpu_infer; do
		say "building $t for $DEVKIT"
		# shellcheck disable=SC2086
		(cd "$ROOT" && ${CC:-cc} -std=gnu11 -O2 -g -Wall -Isrc/core -Icuda \
			-DQV_TEST_CUDA_LIB="\"$DEVKIT/usr/lib/postgresql/15/lib/quiver_cuda.so\"" \
			-o "$KIT/bin/$t" "test/unit/$t.c" src/core/*.c -lcmocka $libs)
	done
}

# Whether library $1 stays out of the kit: the C and C++ runtimes every
# system has, CUDA's (the GPU machine's own), and the glob patterns $2...
skip_lib() {
	local name=$1 p
	shift
	for p in 'linux-vdso*' 'ld-linux*' 'libc.so*' 'libm.so*' 'libdl.so*' 'libpthread.so*' \
		'librt.so*' 'libresolv.so*' 'libnsl.so*' 'libutil.so*' 'libanl.so*' 'libgcc_s.so*' \
		'libstdc++.so*' 'libcuda.so*' 'libcudart.so*' 'libcublas*' "$@"; do
		# shellcheck disable=SC2053
		[[ $name == $p ]] && return 0
	done
	return 1
}

# Copy the shared libraries that ELF files $3... need into $1, except those
# skip_lib keeps out, given the space-separated patterns $2.
bundle_libs() {
	local dest=$1 skip=$2 name path
	shift 2
	mkdir -p "$dest"
	ldd "$@" 2>/dev/null | awk '$2 == "=>" && $3 ~ /^\// {print $1, $3}' | sort -u |
		while read -r name path; do
			# shellcheck disable=SC2086
			skip_lib "$name" $skip && continue
			cp -L "$path" "$dest/$name"
			echo "  $name <- $(readlink -f "$path")" >&2
		done
}

# make install into a DESTDIR, plus the libraries, packed with PostgreSQL.
build_pgkit() {
	local tmp dest
	tmp=$(mktemp -d)
	dest=$tmp/dest
	say "make install DESTDIR (quiver and its GPU module)"
	make -C "$ROOT" install USE_CUDA=1 PG_CONFIG="$PG_CONFIG" DESTDIR="$dest" >&2
	rm -rf "$dest/usr/lib/postgresql/15/lib/bitcode"
	say "libraries the binaries link"
	bundle_libs "$dest/usr/lib/x86_64-linux-gnu" '' "$KIT"/bin/* "$dest/usr/lib/postgresql/15/lib/quiver.so"
	# every other library PostgreSQL's programs link (the kit has ICU, LDAP
	# and libpq), for a GPU machine that lacks some: gpu_session.sh puts this
	# folder on the path only then
	say "fallback libraries of PostgreSQL's programs"
	bundle_libs "$dest/usr/lib/quiver-fallback" 'libicu* libldap* liblber* libpq.so*' \
		"$("$PG_CONFIG" --bindir)"/{postgres,psql,pgbench,initdb,pg_ctl}
	say "PostgreSQL runtime kit ($SHARED/tools/pg-runtime-kit.sh)"
	bash "$SHARED/tools/pg-runtime-kit.sh" "$KIT/pgkit.tar.xz" "$dest" >&2
	rm -rf "$tmp"
	case $(tar -tJf "$KIT/pgkit.tar.xz") in
		*lib/postgresql/15/lib/quiver_cuda.so*) ;;
		*) echo "gpu_prepare.sh: the kit lacks quiver_cuda.so" >&2; exit 1 ;;
	esac
}

# Bytes of the checkout a device run sends without carry: files git does
# not ignore (approximated by the .gitignore patterns of this project).
tree_bytes() {
	(cd "$ROOT" && find . -path ./.git -prune -o -path ./.gpukit -prune -o -type f \
		! -name '*.o' ! -name '*.bc' ! -name '*.so' ! -path './test/unit/bin/*' \
		! -path ./test/bench/quiver-bench ! -path './tmp_check/*' ! -path './tmp_regress/*' \
		! -path './results/*' ! -path './log/*' ! -path './.kit/*' -printf '%s\n' |
		awk '{s += $1} END {print s + 0}')
}

manifest() {
	local nvcc

	nvcc=$(ls /usr/local/cuda/bin/nvcc 2>/dev/null || command -v nvcc)
	{
		echo "quiver GPU kit, built $(date -u +%FT%TZ) on $(hostname) ($(uname -srm))"
		echo "cc: $(${CC:-cc} --version | head -n 1)"
		echo "nvcc: $nvcc, $("$nvcc" --version | tail -n 2 | head -n 1)"
		echo "PostgreSQL: $("$PG_CONFIG" --version)"
		echo
		(cd "$KIT" && find . -type f ! -name MANIFEST -printf '%s %p\n' | sort -k2)
		echo
		(cd "$KIT" && find . -type f ! -name MANIFEST -exec sha256sum {} + | sort -k2)
	} >"$KIT/MANIFEST"
}

print_plan() {
	local kit_b tree_b
	kit_b=$(du -sb "$KIT" | cut -f1)
	tree_b=$(tree_bytes)
	cat <<EOF

=== .gpukit: $(numfmt --to=iec-i --suffix=B "$kit_b") ($kit_b bytes); pgkit.tar.xz $(du -h "$KIT/pgkit.tar.xz" | cut -f1)
=== the rest of the tree that travels: about $(numfmt --to=iec-i --suffix=B "$tree_b"); together $(numfmt --to=iec-i --suffix=B $((kit_b + tree_b))) of the 64 MiB a run may carry
EOF
	if [ $((kit_b + tree_b)) -ge "$TREE_LIMIT" ]; then
		echo "gpu_prepare.sh: too large for a device run (64 MiB)" >&2
		exit 1
	fi
	cat <<'EOF'

Once, so that git ignores the kit (this script does not touch .git):
    echo /.gpukit/ >> .git/info/exclude

One device call (all stages, about 10 minutes; the SQL stage gets what is left):
    run  command:  bash test/bench/gpu_session.sh
         carry:    [".gpukit"]
         timeout_s: 600

Or two calls, the second with the whole budget for SQL at products scale
(a fresh machine regenerates the dataset first, about 30 s):
    run  command:  bash test/bench/gpu_session.sh --stages unit,bench,torch
         carry:    [".gpukit"]   timeout_s: 600
    run  command:  bash test/bench/gpu_session.sh --stages sql
         carry:    [".gpukit"]   timeout_s: 600

Results come back under files_at: summary.jsonl, report.txt, session.log,
logs.tar.gz (docs/bench.md, "The GPU session").
EOF
}

main() {
	[ "$(id -u)" = 0 ] || { echo "gpu_prepare.sh: run as root (apt-get download, make install)" >&2; exit 2; }
	[ -f "$SHARED/tools/pg-runtime-kit.sh" ] || { echo "gpu_prepare.sh: no $SHARED/tools/pg-runtime-kit.sh (set SHARED)" >&2; exit 2; }
	build
	rm -rf "$KIT"
	mkdir -p "$KIT/bin"
	build_unit_tests
	cp "$ROOT/test/bench/quiver-bench" "$KIT/bin/"
	cp "$SHARED/bench/torch_baseline.py" "$KIT/"
	build_pgkit
	manifest
	print_plan
}

main "$@"
