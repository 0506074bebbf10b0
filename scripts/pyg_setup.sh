#!/bin/bash
#
# scripts/pyg_setup.sh — make real PyTorch Geometric importable by Debian's
# /usr/bin/python3 (for test/t/012_pyg.pl), on Debian 12, as root.
#
#   sudo bash scripts/pyg_setup.sh
#
# Idempotent: it installs only what is missing and prints what it installed.
# Exits 0 when `import torch, torch_geometric, safetensors.torch` works with
# /usr/bin/python3 at the end, non-zero otherwise.
#
# How, and why this way:
#   - torch comes from Debian (python3-torch, 1.13), never from PyPI: the PyPI
#     wheel is ~800 MB with its CUDA libraries, and a second torch beside
#     Debian's would shadow it.
#   - Everything torch_geometric and safetensors need at import time that
#     Debian ships (numpy, aiohttp, fsspec, jinja2, psutil, pyparsing,
#     requests, tqdm, xxhash) also comes from Debian, with apt-get.
#   - Only the two distributions Debian 12 lacks come from PyPI, with
#     `pip install --no-deps`, pinned, binary wheels only: pip resolves no
#     dependency, so it can neither pull torch nor replace a Debian package.
#     torch_geometric is pure Python; safetensors is one abi3 wheel with no
#     dependencies.  torch_geometric 2.6.1 is the last release that still
#     supports PyTorch 1.x (later ones import too, but drop 1.x code paths).
#   - They go to /usr/local/lib/python3.X/dist-packages, which Debian's
#     /usr/bin/python3 searches and dpkg never touches (Debian's pip installs
#     there as root).  Debian's pip refuses any install into the system
#     interpreter (PEP 668, "externally-managed-environment") unless told
#     --break-system-packages; with --no-deps the flag is safe here, as
#     nothing under /usr/lib/python3 is modified.  A venv with
#     --system-site-packages would work as well, but then only the venv's
#     python would see PyG, not /usr/bin/python3 that the tests use.
#
# Environment: PYG_VERSION, SAFETENSORS_VERSION override the pins.

set -u -o pipefail

PYTHON=/usr/bin/python3
PYG_VERSION=${PYG_VERSION:-2.6.1}
SAFETENSORS_VERSION=${SAFETENSORS_VERSION:-0.8.0}
DEB_PACKAGES=(python3 python3-pip python3-numpy python3-torch
	python3-aiohttp python3-fsspec python3-jinja2 python3-psutil
	python3-pyparsing python3-requests python3-tqdm python3-xxhash)

say() { printf 'pyg_setup: %s\n' "$*"; }
die() { say "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root: it installs Debian packages and Python packages under /usr/local"

T0=$(date +%s)
INSTALLED=()
umask 022	# the tests import these as the user postgres

# ---- Debian packages --------------------------------------------------------
missing=()
for p in "${DEB_PACKAGES[@]}"; do
	dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$' || missing+=("$p")
done
if [ ${#missing[@]} = 0 ]; then
	say "Debian packages all present: ${DEB_PACKAGES[*]}"
else
	say "apt-get install ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -q >/dev/null || die "apt-get update failed"
	apt-get install -y -q --no-install-recommends "${missing[@]}" </dev/null >/tmp/pyg_setup.apt.log 2>&1 \
		|| { tail -n 20 /tmp/pyg_setup.apt.log >&2; die "apt-get install failed (log: /tmp/pyg_setup.apt.log)"; }
	INSTALLED+=("Debian: ${missing[*]}")
fi

# ---- PyPI: torch_geometric and safetensors, no dependencies -----------------
# The version of an installed distribution, or nothing.
dist_version() {
	"$PYTHON" -c 'import sys, importlib.metadata as m
try: print(m.version(sys.argv[1]))
except m.PackageNotFoundError: pass' "$1" 2>/dev/null
}

want=()
for spec in "torch_geometric==$PYG_VERSION" "safetensors==$SAFETENSORS_VERSION"; do
	name=${spec%%==*}
	have=$(dist_version "$name")
	if [ "$have" = "${spec##*==}" ]; then
		say "$name $have already installed"
	else
		want+=("$spec")
	fi
done
if [ ${#want[@]} != 0 ]; then
	say "pip install --no-deps ${want[*]}"
	"$PYTHON" -m pip install --quiet --no-deps --only-binary=:all: --no-cache-dir \
		--break-system-packages --root-user-action=ignore --disable-pip-version-check \
		"${want[@]}" </dev/null || die "pip install failed"
	INSTALLED+=("PyPI (--no-deps, into /usr/local): ${want[*]}")
fi

# ---- check ------------------------------------------------------------------
versions=$("$PYTHON" - <<'PY' 2>&1
import torch, torch_geometric, safetensors, safetensors.torch
from torch_geometric.nn.models import GraphSAGE, GCN
print("torch %s (%s), torch_geometric %s (%s), safetensors %s" % (
    torch.__version__, torch.__file__.rsplit("/", 2)[0],
    torch_geometric.__version__, torch_geometric.__file__.rsplit("/", 2)[0],
    safetensors.__version__))
PY
) || die "import failed with $PYTHON: $versions"

if [ ${#INSTALLED[@]} = 0 ]; then
	say "installed: nothing (all present)"
else
	for l in "${INSTALLED[@]}"; do say "installed: $l"; done
fi
say "$PYTHON: $versions"
say "done in $(($(date +%s) - T0)) s"
