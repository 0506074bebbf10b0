# scripts/lib.sh — what demo.sh, test.sh and test/bench/sql_bench.sh share:
# Debian packages, build and install, a throw-away cluster, a generated graph.
# Source it; it defines functions and a few variables, and runs nothing.

PGBIN=/usr/lib/postgresql/15/bin
PG_CONFIG=$PGBIN/pg_config
PYTHON=/usr/bin/python3			# Debian's, with python3-numpy
QUIVER_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# what building, testing and running quiver need on Debian 12
QUIVER_PACKAGES=(build-essential pkg-config perl python3 python3-numpy
	postgresql-15 postgresql-client-15 postgresql-server-dev-15
	libopenblas-dev libhwloc-dev libjansson-dev libcmocka-dev libipc-run-perl
	sqlsmith clang libclang-rt-14-dev)

say() { printf '\n=== %s\n' "$*"; }

# Install the packages of QUIVER_PACKAGES that are missing; non-zero on failure.
install_packages() {
	local p missing=""
	for p in "${QUIVER_PACKAGES[@]}"; do
		dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$' || missing="$missing $p"
	done
	if [ -z "$missing" ]; then
		echo "all present: ${QUIVER_PACKAGES[*]}"
		return 0
	fi
	echo "installing:$missing"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -q || return 1
	# shellcheck disable=SC2086
	apt-get install -y -q --no-install-recommends $missing </dev/null
}

# make and make install (USE_CUDA as in the environment); non-zero on failure.
build_install() {
	make -C "$QUIVER_ROOT" -j"$(nproc)" PG_CONFIG="$PG_CONFIG" ${USE_CUDA:+USE_CUDA=$USE_CUDA} 2>&1 | tail -n 25
	[ "${PIPESTATUS[0]}" = 0 ] || return 1
	make -C "$QUIVER_ROOT" install PG_CONFIG="$PG_CONFIG" ${USE_CUDA:+USE_CUDA=$USE_CUDA} >/dev/null || return 1
	echo "quiver installed into $("$PG_CONFIG" --pkglibdir)"
}

# Run as postgres, in the cluster's directory (or /): the caller's directory,
# /root say, may be closed to postgres.  pgbench -f reads scripts from there.
as_pg() { (cd "${CLUSTER_DIR:-/}" 2>/dev/null || cd /; runuser -u postgres -- "$@"); }

# Start a throw-away cluster with quiver preloaded in a new directory; sets
# CLUSTER_DIR and CLUSTER_PORT.  Extra postgresql.conf lines on stdin.
start_cluster() {
	CLUSTER_DIR=$(mktemp -d /tmp/quiver-cluster.XXXXXX)
	chmod 755 "$CLUSTER_DIR"
	chown postgres: "$CLUSTER_DIR"
	CLUSTER_PORT=$($PYTHON -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
	as_pg $PGBIN/initdb -D "$CLUSTER_DIR/data" -A trust -E UTF8 --no-locale >/dev/null
	cat >>"$CLUSTER_DIR/data/postgresql.conf" <<CONF
port = $CLUSTER_PORT
listen_addresses = ''
unix_socket_directories = '$CLUSTER_DIR'
shared_preload_libraries = 'quiver'
quiver.database = 'postgres'
max_parallel_workers_per_gather = 0
CONF
	cat >>"$CLUSTER_DIR/data/postgresql.conf"
	as_pg $PGBIN/pg_ctl -D "$CLUSTER_DIR/data" -l "$CLUSTER_DIR/server.log" -w start >/dev/null
	cluster_psql -c 'CREATE EXTENSION quiver'
}

# Stop the cluster and remove its directory (KEEP=1 keeps it).
stop_cluster() {
	[ -n "${CLUSTER_DIR:-}" ] || return 0
	if [ -f "$CLUSTER_DIR/data/postmaster.pid" ]; then
		as_pg $PGBIN/pg_ctl -D "$CLUSTER_DIR/data" -m fast stop >/dev/null 2>&1 || true
		echo "cluster stopped"
	fi
	if [ "${KEEP:-0}" = 1 ]; then echo "kept $CLUSTER_DIR"; else rm -rf "$CLUSTER_DIR"; fi
}

cluster_psql() { as_pg $PGBIN/psql -X -q -v ON_ERROR_STOP=1 -h "$CLUSTER_DIR" -p "$CLUSTER_PORT" -d postgres "$@"; }
cluster_pgbench() { as_pg $PGBIN/pgbench -n -h "$CLUSTER_DIR" -p "$CLUSTER_PORT" "$@" postgres; }

# Tables <prefix>_node(id, feat real[]) and <prefix>_edge(src, dst): a
# Chung-Lu style power-law graph, both ends drawn with P(i) ~ i^(-1/2)
# (i = floor(N u^2); node 0 is the biggest hub), deterministic by setseed.
make_graph_tables() {
	local prefix=$1 nodes=$2 avg_degree=$3 dim=$4
	cluster_psql <<SQL
SELECT setseed(0.42);
CREATE TABLE ${prefix}_node AS
	SELECT i::bigint AS id,
		   ARRAY(SELECT (2 * random() - 1)::real FROM generate_series(1, $dim) WHERE i >= 0) AS feat
	FROM generate_series(0, $nodes - 1) AS i;
CREATE TABLE ${prefix}_edge AS
	SELECT floor($nodes * random() ^ 2)::bigint AS src, floor($nodes * random() ^ 2)::bigint AS dst
	FROM generate_series(1, $nodes * $avg_degree / 2);
SQL
}

# Random GraphSAGE weights (dims "in,hidden,...,out") as a safetensors file
# the server can read.
write_sage_weights() {
	local dims=$1 out=$2
	$PYTHON "$QUIVER_ROOT/test/ref/quiver_ref.py" weights --arch graphsage --dims "$dims" --seed 1 --out "$out"
	chown postgres: "$out"
}
