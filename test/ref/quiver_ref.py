#!/usr/bin/python3
"""quiver_ref.py — independent float64 reference for quiver's GNN inference.

Needs only Debian's python3 and numpy (no torch).  It never shares code with
the engine: graphs are kept as plain edge lists and every layer is computed
with np.add.at over those edges, the way PyTorch Geometric's message passing
defines it (flow src -> dst, a node aggregates over its in-edges).

  gen      write a test case to a folder:
             features.csv       id,"{f1,...}"       (COPY ... (FORMAT csv))
             edges.csv          src,dst             (COPY ... (FORMAT csv))
             sage.safetensors   GraphSAGE weights, PyG names, F32
             gcn.safetensors    GCN weights, PyG names, F32
             gat.safetensors    GAT weights (2 heads if they divide the hidden
                                width, else 1), F32
             ref_sage.out       id|{y1,...}         float64 reference outputs
             ref_gcn.out        id|{y1,...}
             ref_gat.out        id|{y1,...}
             meta.json          sizes and notable node ids (hub, isolated, ...)
  weights  write random weights for one architecture to a safetensors file
  ref      recompute reference outputs for a folder with other weights
  embed    reference outputs of hidden layer K (1 .. L-1, after its ReLU) for
           a folder and a weights file, in the same id|{...} format: what
           gnn_embed(model, id, K) returns with every fanout -1
  compare  compare a psql output file (id|{...}) with a reference file
  selftest check the reference against an independent dense formulation and
           show the error a float32 engine makes under the compare metric;
           hidden layers by hand, against the dense formulation and through
           the embed command
  pygcheck the GAT reference against torch_geometric.nn.models.GAT itself
           (full graph, float64, predictions and hidden layers, state_dict
           names and shapes); prints "pygcheck: SKIPPED (...)" and exits 77
           when torch_geometric cannot be imported

Semantics (DESIGN.md 1.1, 1.2):
  GraphSAGE layer: h'_v = W_l mean_{(u,v) in E} h_u + b_l + W_r h_v; the mean
    counts duplicate edges and self loops as given; no in-edges -> mean = 0.
  GCN layer (GCNConv defaults, add_remaining_self_loops + symmetric norm):
    existing self loops are removed and one self loop per node is added;
    d_v = in-degree without self loops + 1 (duplicates counted);
    h'_v = sum_{(u,v) in E, u != v} W h_u / sqrt(d_u d_v) + W h_v / d_v + b.
  GAT layer (torch_geometric.nn.models.GAT, GATConv v2 = False): existing
    self loops are removed and one self loop per node is added; x' = W h
    (lin, no bias), per head k: e_uv = LeakyReLU_0.2(att_src_k . x'_u +
    att_dst_k . x'_v), softmax over v's in-edges (duplicates counted apart),
    h'_v,k = sum_u softmax(e)_uv x'_u,k; hidden layers concatenate the heads,
    the last averages them (PyG's GAT with out_channels); + bias.  Heads and
    channels come from att_src [1, H, C].
  ReLU between layers, none after the last.
  Hidden layer K (gnn_embed, DESIGN.md 1.5): the output of convs[K-1] after
    its ReLU (PyG act='relu', jk=None), K = 1 .. L-1.
  undirected: torch_geometric.utils.to_undirected — add every reverse edge,
    then coalesce (remove duplicates, one copy of each self loop).
"""

import argparse
import json
import math
import os
import struct
import sys

import numpy as np


# ---------------------------------------------------------------- safetensors

def safetensors_bytes(tensors):
    """Serialise {name: float32 ndarray} in the safetensors format.

    8-byte little-endian header length, JSON header padded with spaces to a
    multiple of 8 (as the safetensors library does), then the raw data."""
    header = {}
    chunks = []
    offset = 0
    for name in sorted(tensors):
        arr = np.ascontiguousarray(tensors[name], dtype='<f4')
        raw = arr.tobytes()
        header[name] = {"dtype": "F32", "shape": list(arr.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    header["__metadata__"] = {"format": "pt"}
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(chunks)


def safetensors_read(path):
    """Read an F32 safetensors file into {name: float32 ndarray}."""
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n])
    base = 8 + n
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        if t["dtype"] != "F32":
            raise SystemExit("%s: tensor %s has dtype %s, only F32 is read here"
                             % (path, name, t["dtype"]))
        b, e = t["data_offsets"]
        out[name] = np.frombuffer(blob[base + b:base + e], dtype="<f4").reshape(t["shape"])
    return out


# -------------------------------------------------------------------- weights

def gat_heads(dims, heads=2):
    """Heads of every layer of a GAT of random_weights, as PyG's GAT(...,
    heads=H) has one H for all: `heads` when they divide every hidden
    width, else 1."""
    return heads if all(d % heads == 0 for d in dims[1:-1]) else 1


def random_weights(arch, dims, rng, heads=2):
    """PyG state_dict of a GraphSAGE, GCN or GAT model with layer sizes
    dims (GAT: heads as gat_heads says)."""
    t = {}
    for i in range(len(dims) - 1):
        fan_in, fan_out = dims[i], dims[i + 1]
        scale = 1.0 / math.sqrt(fan_in)
        w = lambda: rng.uniform(-scale, scale, (fan_out, fan_in)).astype(np.float32)
        b = lambda: rng.uniform(-0.5, 0.5, fan_out).astype(np.float32)
        if arch == "graphsage":
            t["convs.%d.lin_l.weight" % i] = w()
            t["convs.%d.lin_l.bias" % i] = b()
            t["convs.%d.lin_r.weight" % i] = w()
        elif arch == "gcn":
            t["convs.%d.lin.weight" % i] = w()
            t["convs.%d.bias" % i] = b()
        elif arch == "gat":
            last = i == len(dims) - 2
            H = gat_heads(dims, heads)
            C = fan_out if last else fan_out // H
            t["convs.%d.lin.weight" % i] = \
                rng.uniform(-scale, scale, (H * C, fan_in)).astype(np.float32)
            t["convs.%d.att_src" % i] = rng.uniform(-1.0, 1.0, (1, H, C)).astype(np.float32)
            t["convs.%d.att_dst" % i] = rng.uniform(-1.0, 1.0, (1, H, C)).astype(np.float32)
            t["convs.%d.bias" % i] = b()
        else:
            raise SystemExit("unknown arch %s" % arch)
    return t


def n_layers(weights, arch):
    key = "convs.%d.lin_l.weight" if arch == "graphsage" else "convs.%d.lin.weight"
    n = 0
    while (key % n) in weights:
        n += 1
    return n


# ------------------------------------------------------------------ reference

def to_undirected(src, dst):
    """to_undirected: both directions, duplicates removed, sorted like coalesce."""
    s = np.concatenate([src, dst])
    d = np.concatenate([dst, src])
    pairs = np.unique(np.stack([s, d], axis=1), axis=0)
    return pairs[:, 0].copy(), pairs[:, 1].copy()


def check_layers(L, layers):
    """Layers to run: all L (None), or K = 1 .. L-1 for hidden layer K."""
    if layers is None:
        return L
    if L < 2:
        raise SystemExit("layer %d does not exist: a %d-layer model has no hidden layer"
                         % (layers, L))
    if not 1 <= layers <= L - 1:
        raise SystemExit("layer %d is not a hidden layer: the model has %d layers, "
                         "so it must be between 1 and %d" % (layers, L, L - 1))
    return layers


def sage_forward(x, src, dst, weights, layers=None):
    """GraphSAGE (mean) over the edge list in float64; with layers = K, the
    output of hidden layer K (after its ReLU) instead of the last layer's."""
    n = x.shape[0]
    h = x.astype(np.float64)
    cnt = np.bincount(dst, minlength=n).astype(np.float64)
    L = n_layers(weights, "graphsage")
    for i in range(check_layers(L, layers)):
        wl = weights["convs.%d.lin_l.weight" % i].astype(np.float64)
        bl = weights["convs.%d.lin_l.bias" % i].astype(np.float64)
        wr = weights["convs.%d.lin_r.weight" % i].astype(np.float64)
        agg = np.zeros_like(h)
        np.add.at(agg, dst, h[src])
        agg /= np.maximum(cnt, 1.0)[:, None]
        h = agg @ wl.T + bl + h @ wr.T
        if "convs.%d.lin_r.bias" % i in weights:
            h += weights["convs.%d.lin_r.bias" % i].astype(np.float64)
        if i < L - 1:
            h = np.maximum(h, 0.0)
    return h


def gcn_forward(x, src, dst, weights, layers=None):
    """GCN (GCNConv defaults) over the edge list in float64; layers as in
    sage_forward."""
    n = x.shape[0]
    h = x.astype(np.float64)
    keep = src != dst
    s, d = src[keep], dst[keep]
    deg = np.bincount(d, minlength=n).astype(np.float64) + 1.0
    norm = 1.0 / np.sqrt(deg[s] * deg[d])
    L = n_layers(weights, "gcn")
    for i in range(check_layers(L, layers)):
        w = weights["convs.%d.lin.weight" % i].astype(np.float64)
        xw = h @ w.T
        out = xw / deg[:, None]
        np.add.at(out, d, xw[s] * norm[:, None])
        if "convs.%d.bias" % i in weights:
            out += weights["convs.%d.bias" % i].astype(np.float64)
        h = out if i == L - 1 else np.maximum(out, 0.0)
    return h


def gat_layer(h, s, d, weights, i, last, dt=np.float64):
    """GATConv (v2 = False) over the edge list s -> d, self loops already
    replaced by one per node, in dtype dt (float64; float32 for selftest's
    float32 evaluation)."""
    n = h.shape[0]
    w = weights["convs.%d.lin.weight" % i].astype(dt)
    att_s = weights["convs.%d.att_src" % i].astype(dt)[0]
    att_d = weights["convs.%d.att_dst" % i].astype(dt)[0]
    H, C = att_s.shape
    xw = (h @ w.T).reshape(n, H, C)
    e = (xw * att_s).sum(-1)[s] + (xw * att_d).sum(-1)[d]
    e = np.where(e > 0, e, dt(0.2) * e)
    mx = np.full((n, H), -np.inf, dtype=dt)
    np.maximum.at(mx, d, e)
    p = np.exp(e - mx[d])
    den = np.zeros((n, H), dtype=dt)
    np.add.at(den, d, p)
    out = np.zeros((n, H, C), dtype=dt)
    np.add.at(out, d, (p / den[d])[:, :, None] * xw[s])
    out = out.mean(axis=1) if last else out.reshape(n, H * C)
    if "convs.%d.bias" % i in weights:
        out = out + weights["convs.%d.bias" % i].astype(dt)
    return out


def gat_forward(x, src, dst, weights, layers=None, dt=np.float64):
    """GAT (PyG's GAT model) over the edge list in float64; layers as in
    sage_forward.  Hidden layers concatenate their heads, the model's last
    layer averages them."""
    n = x.shape[0]
    h = x.astype(dt)
    keep = src != dst
    s = np.concatenate([src[keep], np.arange(n)])
    d = np.concatenate([dst[keep], np.arange(n)])
    L = n_layers(weights, "gat")
    for i in range(check_layers(L, layers)):
        h = gat_layer(h, s, d, weights, i, i == L - 1, dt)
        if i < L - 1:
            h = np.maximum(h, dt(0.0))
    return h


def gat_dense(x, src, dst, weights, layers=None):
    """GAT through dense matrices: an edge-count matrix A (self loops
    replaced by one per node) and per head a dense score matrix, softmax
    over each row's nonzeros weighted by A."""
    n = x.shape[0]
    A = np.zeros((n, n))
    for s, d in zip(src, dst):
        if s != d:
            A[d, s] += 1.0
    A += np.eye(n)
    h = x.astype(np.float64)
    L = n_layers(weights, "gat")
    for i in range(L if layers is None else layers):
        w = weights["convs.%d.lin.weight" % i].astype(np.float64)
        att_s = weights["convs.%d.att_src" % i].astype(np.float64)[0]
        att_d = weights["convs.%d.att_dst" % i].astype(np.float64)[0]
        H, C = att_s.shape
        xw = h @ w.T
        heads = []
        for k in range(H):
            xk = xw[:, k * C:(k + 1) * C]
            E = (xk @ att_d[k])[:, None] + (xk @ att_s[k])[None, :]
            E = np.where(E > 0, E, 0.2 * E)
            E = np.where(A > 0, E, -np.inf)
            P = A * np.exp(E - E.max(axis=1, keepdims=True))
            heads.append((P / P.sum(axis=1, keepdims=True)) @ xk)
        h = np.mean(heads, axis=0) if i == L - 1 else np.concatenate(heads, axis=1)
        h = h + weights["convs.%d.bias" % i]
        if i < L - 1:
            h = np.maximum(h, 0.0)
    return h


def forward(arch, x, src, dst, weights, layers=None):
    if arch == "gat":
        return gat_forward(x, src, dst, weights, layers)
    return sage_forward(x, src, dst, weights, layers) if arch == "graphsage" \
        else gcn_forward(x, src, dst, weights, layers)


# ---------------------------------------------------------------- graph maker

def make_graph(rng, n, m, isolated, id_range=1 << 40):
    """A graph with sparse (partly negative) ids, a hub, duplicate edges,
    self loops (some doubled) and isolated nodes.

    Returns ids (row order of the feature file), src and dst as dense indices
    into ids, and a dict of notable dense indices."""
    # Unique sparse ids in [-id_range, id_range), about half negative, in
    # random row order.
    if 2 * id_range < 2 * n:
        raise SystemExit("id range %d is too small for %d nodes" % (id_range, n))
    ids = set()
    while len(ids) < n:
        ids.update(int(v) for v in rng.integers(-id_range, id_range, n - len(ids)))
    ids = np.array(sorted(ids), dtype=np.int64)
    rng.shuffle(ids)

    perm = rng.permutation(n)
    iso = perm[:isolated]               # no edge at all
    active = perm[isolated:]
    hub = active[0]
    na = len(active)

    # Power-law-ish endpoints: index = floor(na * u^2) over the active nodes.
    def pick(k):
        return active[np.minimum((na * rng.random(k) ** 2).astype(np.int64), na - 1)]

    src = pick(m)
    dst = pick(m)
    # The hub receives from a third of the nodes and sends to a tenth.
    hs = rng.choice(active, max(1, na // 3), replace=False)
    hd = rng.choice(active, max(1, na // 10), replace=False)
    src = np.concatenate([src, hs, np.full(len(hd), hub)])
    dst = np.concatenate([dst, np.full(len(hs), hub), hd])
    # Duplicates: repeat some edges once or twice more.
    dup = rng.choice(len(src), max(1, len(src) // 20), replace=False)
    src = np.concatenate([src, src[dup], src[dup[: len(dup) // 3]]])
    dst = np.concatenate([dst, dst[dup], dst[dup[: len(dup) // 3]]])
    # Self loops: some nodes once, some twice.
    loops = rng.choice(active, max(2, na // 15), replace=False)
    twice = loops[: len(loops) // 3]
    src = np.concatenate([src, loops, twice])
    dst = np.concatenate([dst, loops, twice])
    order = rng.permutation(len(src))
    src, dst = src[order].astype(np.int64), dst[order].astype(np.int64)

    in_deg = np.bincount(dst, minlength=n)
    notable = {
        "hub": int(hub),
        "isolated": [int(v) for v in iso],
        "self_loop": [int(v) for v in loops],
        "double_self_loop": [int(v) for v in twice],
        "no_in_edges": [int(v) for v in np.flatnonzero(in_deg == 0)],
    }
    return ids, src, dst, notable


# ---------------------------------------------------------------------- I/O

def fmt32(v):
    """Shortest decimal that reads back as the same float32."""
    return np.format_float_positional(np.float32(v), unique=True, trim="0")


def fmt64(v):
    return repr(float(v))


def write_features(path, ids, x):
    with open(path, "w") as f:
        for i in range(len(ids)):
            f.write('%d,"{%s}"\n' % (ids[i], ",".join(fmt32(v) for v in x[i])))


def write_edges(path, ids, src, dst):
    with open(path, "w") as f:
        for s, d in zip(ids[src], ids[dst]):
            f.write("%d,%d\n" % (s, d))


def write_ref(path, ids, y):
    with open(path, "w") as f:
        for i in range(len(ids)):
            f.write("%d|{%s}\n" % (ids[i], ",".join(fmt64(v) for v in y[i])))


def read_features(path):
    ids, rows = [], []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            head, arr = line.split(",", 1)
            ids.append(int(head))
            rows.append([float(v) for v in arr.strip('"{}').split(",")])
    return np.array(ids, dtype=np.int64), np.array(rows, dtype=np.float32)


def read_edges(path):
    data = np.loadtxt(path, delimiter=",", dtype=np.int64, ndmin=2)
    return data[:, 0].copy(), data[:, 1].copy()


def read_rows(path):
    """Read 'id|{v1,...}' lines (psql -At output or a reference file).

    Returns {id: list of floats or None for NULL} and a list of problems."""
    rows, problems = {}, []
    with open(path) as f:
        for no, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if not line.strip():
                continue
            if "|" not in line:
                problems.append("%s:%d: not id|array: %r" % (path, no, line[:80]))
                continue
            head, arr = line.split("|", 1)
            try:
                key = int(head)
            except ValueError:
                problems.append("%s:%d: bad id %r" % (path, no, head))
                continue
            if key in rows:
                problems.append("%s:%d: id %d appears twice" % (path, no, key))
            arr = arr.strip()
            if arr == "":
                rows[key] = None
                continue
            if not (arr.startswith("{") and arr.endswith("}")):
                problems.append("%s:%d: not an array: %r" % (path, no, arr[:80]))
                continue
            try:
                rows[key] = [float(v) for v in arr[1:-1].split(",")] if arr != "{}" else []
            except ValueError:
                problems.append("%s:%d: bad number in %r" % (path, no, arr[:80]))
    return rows, problems


def index_of(ids):
    return {int(v): i for i, v in enumerate(ids)}


# ------------------------------------------------------------------ commands

def cmd_gen(a):
    rng = np.random.default_rng(a.seed)
    ids, src, dst, notable = make_graph(rng, a.nodes, a.edges, a.isolated, a.id_range)
    x = rng.uniform(-1.0, 1.0, (a.nodes, a.dim)).astype(np.float32)
    os.makedirs(a.out, exist_ok=True)
    write_features(os.path.join(a.out, "features.csv"), ids, x)
    write_edges(os.path.join(a.out, "edges.csv"), ids, src, dst)

    dims = [a.dim] + [a.hidden] * (a.layers - 1) + [a.classes]
    fs, fd = (to_undirected(src, dst) if a.undirected else (src, dst))
    meta = {
        "seed": a.seed, "nodes": a.nodes, "edges_given": int(len(src)),
        "edges": int(len(fs)), "dim": a.dim, "layers": a.layers,
        "dims": dims, "undirected": bool(a.undirected),
        "max_in_degree": int(np.bincount(fd, minlength=a.nodes).max()),
    }
    for k, v in notable.items():
        meta[k] = int(ids[v]) if isinstance(v, int) else [int(ids[i]) for i in v]
    for arch, short in (("graphsage", "sage"), ("gcn", "gcn"), ("gat", "gat")):
        w = random_weights(arch, dims, rng)
        with open(os.path.join(a.out, short + ".safetensors"), "wb") as f:
            f.write(safetensors_bytes(w))
        y = forward(arch, x, fs, fd, w)
        write_ref(os.path.join(a.out, "ref_%s.out" % short), ids, y)
    with open(os.path.join(a.out, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1)
    print("%s: %d nodes, %d edges (%d given), dims %s, %s" %
          (a.out, a.nodes, len(fs), len(src), dims,
           "undirected" if a.undirected else "directed"))


def cmd_weights(a):
    dims = [int(v) for v in a.dims.split(",")]
    w = random_weights(a.arch, dims, np.random.default_rng(a.seed))
    with open(a.out, "wb") as f:
        f.write(safetensors_bytes(w))


def read_case(a):
    """Features and edges of folder a.dir (dense src, dst; undirected if asked)."""
    ids, x = read_features(os.path.join(a.dir, "features.csv"))
    esrc, edst = read_edges(os.path.join(a.dir, "edges.csv"))
    pos = index_of(ids)
    src = np.array([pos[int(v)] for v in esrc], dtype=np.int64)
    dst = np.array([pos[int(v)] for v in edst], dtype=np.int64)
    if a.undirected:
        src, dst = to_undirected(src, dst)
    return ids, x, src, dst


def cmd_ref(a):
    ids, x, src, dst = read_case(a)
    y = forward(a.arch, x, src, dst, safetensors_read(a.weights))
    write_ref(a.out, ids, y)


def cmd_embed(a):
    ids, x, src, dst = read_case(a)
    w = safetensors_read(a.weights)
    layer = a.layer if a.layer is not None else n_layers(w, a.arch) - 1
    y = forward(a.arch, x, src, dst, w, layer)
    write_ref(a.out, ids, y)


def cmd_classify(a):
    """gnn_classify's reference from a reference output file: per node
    'id|{label,probability}', the argmax (lowest index on ties, as
    torch.argmax) and its softmax probability, in float64."""
    rows, problems = read_rows(a.ref)
    if problems:
        print("\n".join(problems))
        return 1
    with open(a.out, "w") as f:
        for k, v in rows.items():
            y = np.array(v, dtype=np.float64)
            label = int(np.argmax(y))
            p = 1.0 / np.exp(y - y[label]).sum()
            f.write("%d|{%d,%s}\n" % (k, label, fmt64(p)))
    return 0


def relative_errors(got, ref, floor):
    """|got - ref| / max(|ref|, floor), elementwise.

    A plain relative error is meaningless for outputs that happen to be close
    to zero: a float32 engine computes every output from terms of the size of
    the largest outputs (sums over hundreds of neighbours, dot products over
    the hidden dimension), so its absolute error scales with those and not
    with the output itself.  The denominator is therefore never below
    `floor`, which compare sets to FLOOR_FRACTION * max |reference| over the
    whole output: large outputs are held to a true relative error, outputs
    that cancel to near zero to an absolute error of tol * floor.

    Why 0.1 and not 1e-3: `selftest` evaluates the same models in float32
    (sequential np.add.at sums, as an engine may do) and measures, with
    tol 1e-5, up to 3e-4 at floor 1e-3 and 3e-5 at 1e-2 on 10k-node graphs
    with a 3k-in-edge hub, but 3e-6 at 0.1.  A semantic slip (a dropped
    duplicate edge, a wrong degree, a missing self loop) moves an output by
    about 1/degree, orders of magnitude above tol * floor."""
    return np.abs(got - ref) / np.maximum(np.abs(ref), floor)


FLOOR_FRACTION = 0.1


def cmd_compare(a):
    ref, p1 = read_rows(a.ref)
    got, p2 = read_rows(a.got)
    problems = p1 + p2
    keys = list(ref) if not a.subset else [k for k in ref if k in got]
    if a.subset and not keys:
        problems.append("no id of %s is in %s" % (a.got, a.ref))
    for k in keys:
        if k not in got:
            problems.append("id %d: missing from %s" % (k, a.got))
        elif got[k] is None:
            problems.append("id %d: NULL prediction" % k)
        elif ref[k] is None or len(got[k]) != len(ref[k]):
            problems.append("id %d: %d values, reference has %d" %
                            (k, len(got[k]), len(ref[k] or [])))
    for k in got:
        if k not in ref:
            problems.append("id %d: not in the reference" % k)
    if problems:
        for p in problems[:20]:
            print("compare: " + p)
        print("compare: FAIL (%d problems)" % len(problems))
        return 1
    R = np.array([ref[k] for k in keys], dtype=np.float64)
    G = np.array([got[k] for k in keys], dtype=np.float64)
    # the scale of the whole reference, also when only some ids are compared
    scale = max((max(abs(v) for v in row) for row in ref.values() if row), default=0.0)
    floor = max(a.floor * scale, 1e-30)
    err = relative_errors(G, R, floor)
    if not np.all(np.isfinite(G)):
        worst = int(np.argwhere(~np.isfinite(G))[0][0])
        print("compare: FAIL id %d has a non-finite value" % keys[worst])
        return 1
    i, j = np.unravel_index(int(np.argmax(err)), err.shape) if err.size else (0, 0)
    maxerr = float(err.max()) if err.size else 0.0
    verdict = "ok" if maxerr < a.tol else "FAIL"
    print("compare: %s: %d rows x %d, max relative error %.3g (id %d, column %d: "
          "got %r, reference %r; floor %.3g) %s %.0e" %
          (verdict, len(keys), R.shape[1] if R.ndim == 2 else 0, maxerr,
           keys[i] if keys else 0, j, G[i, j] if err.size else 0.0,
           R[i, j] if err.size else 0.0, floor, "<" if verdict == "ok" else ">=",
           a.tol))
    return 0 if verdict == "ok" else 1


def dense_forward(arch, x, src, dst, weights, layers=None):
    """Same models through dense adjacency matrices: an independent check of
    the edge-list reference (small graphs only); layers as in sage_forward."""
    if arch == "gat":
        return gat_dense(x, src, dst, weights, layers)
    n = x.shape[0]
    A = np.zeros((n, n))
    for s, d in zip(src, dst):
        A[d, s] += 1.0                  # row = receiver
    h = x.astype(np.float64)
    L = n_layers(weights, arch)
    if arch == "gcn":
        np.fill_diagonal(A, 0.0)
        A += np.eye(n)
        dinv = 1.0 / np.sqrt(A.sum(axis=1))
        A = dinv[:, None] * A * dinv[None, :]
    else:
        A = A / np.maximum(A.sum(axis=1), 1.0)[:, None]
    for i in range(L if layers is None else layers):
        if arch == "gcn":
            h = A @ (h @ weights["convs.%d.lin.weight" % i].T) + weights["convs.%d.bias" % i]
        else:
            h = (A @ h) @ weights["convs.%d.lin_l.weight" % i].T \
                + weights["convs.%d.lin_l.bias" % i] + h @ weights["convs.%d.lin_r.weight" % i].T
        if i < L - 1:
            h = np.maximum(h, 0.0)
    return h


def float32_forward(arch, x, src, dst, weights):
    """The reference evaluated in float32 throughout: what an exact-semantics
    float32 engine can be expected to produce."""
    if arch == "gat":
        return gat_forward(x, src, dst, weights, None, np.float32)
    h = x.astype(np.float32)
    n = x.shape[0]
    L = n_layers(weights, arch)
    if arch == "gcn":
        keep = src != dst
        s, d = src[keep], dst[keep]
        deg = (np.bincount(d, minlength=n) + 1).astype(np.float32)
        norm = (1.0 / np.sqrt(deg[s] * deg[d])).astype(np.float32)
    cnt = np.maximum(np.bincount(dst, minlength=n), 1).astype(np.float32)
    for i in range(L):
        if arch == "gcn":
            xw = h @ weights["convs.%d.lin.weight" % i].T
            out = xw / deg[:, None]
            np.add.at(out, d, xw[s] * norm[:, None])
            h = out + weights["convs.%d.bias" % i]
        else:
            agg = np.zeros_like(h)
            np.add.at(agg, dst, h[src])
            agg /= cnt[:, None]
            h = agg @ weights["convs.%d.lin_l.weight" % i].T \
                + weights["convs.%d.lin_l.bias" % i] + h @ weights["convs.%d.lin_r.weight" % i].T
        if i < L - 1:
            h = np.maximum(h, np.float32(0.0))
    return h


def truncated(weights, arch, k):
    """The first k layers of a state_dict, as a k-layer model."""
    keep = tuple("convs.%d." % i for i in range(k))
    return {name: t for name, t in weights.items() if name.startswith(keep)}


def embed_hand_checks():
    """Hidden layers worked out by hand on the graph of hand_checks: layer 0
    1 -> 2 with W = [1; -1] (SAGE: lin_l, lin_r = [0; 1]), bias [-1, 0.5];
    layer 1 2 -> 1 (never read by layer 1's output)."""
    x = np.array([[1.0], [2.0], [4.0]], dtype=np.float32)
    src = np.array([0, 0, 1, 2])
    dst = np.array([2, 2, 2, 2])
    w0 = np.array([[1.0], [-1.0]], np.float32)
    b0 = np.array([-1.0, 0.5], np.float32)
    w1 = np.array([[0.5, -2.0]], np.float32)
    b1 = np.array([0.25], np.float32)
    sage = {"convs.0.lin_l.weight": w0, "convs.0.lin_l.bias": b0,
            "convs.0.lin_r.weight": np.array([[0.0], [1.0]], np.float32),
            "convs.1.lin_l.weight": w1, "convs.1.lin_l.bias": b1,
            "convs.1.lin_r.weight": np.ones((1, 2), np.float32)}
    gcn = {"convs.0.lin.weight": w0, "convs.0.bias": b0,
           "convs.1.lin.weight": w1, "convs.1.bias": b1}
    cases = [
        # mean(c) = 2, a and b none: relu(mean - 1, -mean + x + 0.5)
        ("sage layer 1", sage_forward(x, src, dst, sage, 1), [[0, 1.5], [0, 2.5], [1, 2.5]]),
        # a = (1, 2, 3) (hand_checks' gcn directed): relu(a - 1, -a + 0.5)
        ("gcn layer 1", gcn_forward(x, src, dst, gcn, 1), [[0, 0], [1, 0], [2, 0]]),
    ]
    ok = True
    for name, got, want in cases:
        good = np.allclose(got, want, rtol=1e-12, atol=1e-12)
        ok &= good
        print("hand-computed %-16s %s" % (name, "ok" if good else "FAIL %s != %s" % (got, want)))
    for arch, w in (("graphsage", sage), ("gcn", gcn)):
        for bad in (0, 2):
            try:
                forward(arch, x, src, dst, w, bad)
                good = False
            except SystemExit as e:
                good = ("layer %d is not a hidden layer: the model has 2 layers" % bad) in str(e)
            ok &= good
            print("embed %-9s layer %d refused %s" % (arch, bad, "ok" if good else "FAIL"))
    try:
        forward("gcn", x, src, dst, truncated(gcn, "gcn", 1), 1)
        good = False
    except SystemExit as e:
        good = "a 1-layer model has no hidden layer" in str(e)
    ok &= good
    print("embed of a 1-layer model refused %s" % ("ok" if good else "FAIL"))
    return ok


def embed_checks(arch, x, src, dst, w, L, dense_ok):
    """Hidden layers: against the dense formulation, and against the
    truncated model (its first K layers as a K-layer model) with a ReLU."""
    ok = True
    for k in range(1, L):
        e = forward(arch, x, src, dst, w, k)
        err_t = 0.0
        if arch != "gat":   # a truncated GAT's last layer averages its heads
            t = np.maximum(forward(arch, x, src, dst, truncated(w, arch, k)), 0.0)
            err_t = float(np.abs(e - t).max() / max(np.abs(e).max(), 1e-300))
        err_d = 0.0
        if dense_ok:
            d = dense_forward(arch, x, src, dst, w, k)
            err_d = float(np.abs(e - d).max() / np.abs(e).max())
        good = err_t < 1e-12 and err_d < 1e-12 and (e >= 0).all() and np.abs(e).max() > 0
        ok &= good
        print("      embed layer %d of %d: vs truncated %.1e, vs dense %s %s" %
              (k, L, err_t, "%.1e" % err_d if dense_ok else "(too big)",
               "ok" if good else "FAIL"))
    return ok


def hand_checks():
    """Tiny cases worked out by hand: nodes a, b, c with features 1, 2, 4;
    edges a->c twice, b->c, c->c; 1x1 weights 1, biases 0 (SAGE's lin_r 0)."""
    x = np.array([[1.0], [2.0], [4.0]], dtype=np.float32)
    src = np.array([0, 0, 1, 2])
    dst = np.array([2, 2, 2, 2])
    one, zero = np.ones((1, 1), np.float32), np.zeros(1, np.float32)
    sage = {"convs.0.lin_l.weight": one, "convs.0.lin_l.bias": zero,
            "convs.0.lin_r.weight": np.zeros((1, 1), np.float32)}
    gcn = {"convs.0.lin.weight": one, "convs.0.bias": zero}
    us, ud = to_undirected(src, dst)
    cases = [
        # mean over a, a, b, c = (1 + 1 + 2 + 4) / 4; a and b have no in-edges
        ("sage directed", sage_forward(x, src, dst, sage)[:, 0], [0.0, 0.0, 2.0]),
        # d = (1, 1, 3 + 1): c = 2 * 1/sqrt(1*4) + 2/sqrt(1*4) + 4/4
        ("gcn directed", gcn_forward(x, src, dst, gcn)[:, 0], [1.0, 2.0, 3.0]),
        # undirected: a-c, b-c, c-c once each; a = mean(c), c = mean(a, b, c)
        ("sage undirected", sage_forward(x, us, ud, sage)[:, 0], [4.0, 4.0, 7.0 / 3.0]),
        # d = (2, 2, 3): a = 1/2 + 4/sqrt(6), c = 1/sqrt(6) + 2/sqrt(6) + 4/3
        ("gcn undirected", gcn_forward(x, us, ud, gcn)[:, 0],
         [0.5 + 4 / math.sqrt(6), 1.0 + 4 / math.sqrt(6), 3 / math.sqrt(6) + 4.0 / 3.0]),
    ]
    ok = True
    for name, got, want in cases:
        good = np.allclose(got, want, rtol=1e-12, atol=1e-12)
        ok &= good
        print("hand-computed %-16s %s" % (name, "ok" if good else "FAIL %s != %s" % (got, want)))
    return ok


def compare_checks(tmp, floor, tol):
    """compare accepts float32 rounding and rejects a wrong value or row."""
    ids = np.array([-5, 3, 7])
    y = np.array([[1.0, -2.0], [0.5, 1e-9], [3.0, 0.25]])
    ref, got = os.path.join(tmp, "ref.out"), os.path.join(tmp, "got.out")
    write_ref(ref, ids, y)
    ok = True
    for name, rows, want in (
            ("float32 rounding passes", y.astype(np.float32), 0),
            ("1e-4 relative error fails", y * np.array([[1.0, 1.0], [1.0, 1.0], [1.0, 1.0001]]), 1),
            ("absolute 1e-5 near zero fails", y + np.array([[0, 0], [0, 1e-5], [0, 0]]), 1)):
        write_ref(got, ids, rows)
        args = argparse.Namespace(ref=ref, got=got, tol=tol, floor=floor, subset=False)
        rc = cmd_compare(args)
        ok &= rc == want
        print("compare: %-30s %s" % (name, "ok" if rc == want else "FAIL"))
    with open(got, "w") as f:
        f.write("-5|{1,-2}\n3|{0.5,0}\n")
    rc = cmd_compare(argparse.Namespace(ref=ref, got=got, tol=tol, floor=floor, subset=False))
    ok &= rc == 1
    print("compare: %-30s %s" % ("a missing row fails", "ok" if rc == 1 else "FAIL"))
    return ok


def embed_cli_check(tmp):
    """gen, then the embed command: its file holds every id, and the rows
    are forward(..., layer) of the folder's graph; the default layer is L-1."""
    case = os.path.join(tmp, "case")
    ok = True
    sys.stdout.flush()
    main_args = ["gen", "--out", case, "--nodes", "60", "--edges", "200", "--layers", "3",
                 "--dim", "4", "--hidden", "6", "--classes", "3", "--seed", "5"]
    cmd_gen(parse(main_args))
    ids, x = read_features(os.path.join(case, "features.csv"))
    esrc, edst = read_edges(os.path.join(case, "edges.csv"))
    pos = index_of(ids)
    src = np.array([pos[int(v)] for v in esrc])
    dst = np.array([pos[int(v)] for v in edst])
    for arch, short in (("graphsage", "sage"), ("gcn", "gcn")):
        w = safetensors_read(os.path.join(case, short + ".safetensors"))
        for layer, flag in ((1, ["--layer", "1"]), (2, [])):
            out = os.path.join(tmp, "emb_%s_%d.out" % (short, layer))
            cmd_embed(parse(["embed", "--dir", case, "--arch", arch, "--weights",
                             os.path.join(case, short + ".safetensors"), "--out", out] + flag))
            rows, problems = read_rows(out)
            want = forward(arch, x, src, dst, w, layer)
            good = not problems and len(rows) == len(ids) and all(
                len(rows[int(ids[i])]) == 6 and
                np.allclose(rows[int(ids[i])], want[i], rtol=1e-15, atol=0)
                for i in range(len(ids)))
            ok &= good
            print("embed command %-9s layer %d %s" % (arch, layer, "ok" if good else "FAIL"))
    return ok


def cmd_selftest(a):
    import tempfile
    rng = np.random.default_rng(a.seed)
    ok = hand_checks()
    ok &= embed_hand_checks()
    with tempfile.TemporaryDirectory() as tmp:
        ok &= compare_checks(tmp, a.floor, a.tol)
        ok &= embed_cli_check(tmp)
    # n, random edges, dim, hidden; the small graph is also checked densely
    for n, m, dim, hid in ((300, 1500, 12, 16), (4000, 30000, 32, 64)):
        for undirected in (False, True):
            ids, src, dst, notable = make_graph(rng, n, m, 10)
            if undirected:
                src, dst = to_undirected(src, dst)
            x = rng.uniform(-1.0, 1.0, (n, dim)).astype(np.float32)
            for arch in ("graphsage", "gcn", "gat"):
                for L in (1, 2, 3):
                    w = random_weights(arch, [dim] + [hid] * (L - 1) + [5], rng)
                    y = forward(arch, x, src, dst, w)
                    dense_err, dense_txt = 0.0, "(too big)"
                    if n <= 1000:
                        yd = dense_forward(arch, x, src, dst, w)
                        dense_err = float(np.abs(y - yd).max() / np.abs(y).max())
                        dense_txt = "%.1e" % dense_err
                    y32 = float32_forward(arch, x, src, dst, w)
                    floor = a.floor * np.abs(y).max()
                    e32 = float(relative_errors(y32.astype(np.float64), y, floor).max())
                    # margin: a float32 engine must pass with room to spare
                    good = dense_err < 1e-12 and e32 < a.tol / 2
                    ok &= good
                    print("%5d nodes %-9s L=%d %-10s edge-list vs dense %s, "
                          "float32 evaluation %.2e %s" %
                          (n, arch, L, "undirected" if undirected else "directed",
                           dense_txt, e32, "ok" if good else "FAIL"))
                    ok &= embed_checks(arch, x, src, dst, w, L, n <= 1000)
            # Structural promises of the generator.
            deg = np.bincount(dst, minlength=n)
            dups = len(src) - len(set(zip(src.tolist(), dst.tolist())))
            checks = {
                "ids negative and positive": (ids < 0).any() and (ids > 0).any(),
                "hub has the largest in-degree": deg[notable["hub"]] == deg.max(),
                "isolated nodes have no edges":
                    not np.isin(notable["isolated"], np.concatenate([src, dst])).any(),
                "self loops present": bool((src == dst).any()),
                "duplicate edges %s" % ("absent" if undirected else "present"):
                    (dups == 0) if undirected else dups > 0,
            }
            for k, v in checks.items():
                ok &= bool(v)
                print("  %-40s %s" % (k, "ok" if v else "FAIL"))
    print("selftest: %s" % ("PASS" if ok else "FAIL"))
    return 0 if ok else 1


PYG_SKIP = 77     # pygcheck's exit status when torch_geometric is missing


def pyg_gat_outputs(torch, GAT, x, src, dst, w, hidden, L, out, heads):
    """PyG's own GAT(dim, hidden, L, out, heads=heads) with the weights w,
    in float64 on the full graph: (state_dict shapes, the prediction, the
    hidden layers' outputs after their ReLU)."""
    torch.manual_seed(0)
    model = GAT(x.shape[1], hidden, L, out, heads=heads).double().eval()
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    model.load_state_dict({k: torch.from_numpy(v.astype(np.float64)) for k, v in w.items()})
    xt = torch.from_numpy(x.astype(np.float64))
    ei = torch.from_numpy(np.stack([src, dst]).astype(np.int64))
    with torch.no_grad():
        y = model(xt, ei).numpy()
        hidden_out, h = [], xt
        for conv in model.convs[:-1]:
            h = torch.relu(conv(h, ei))
            hidden_out.append(h.numpy())
    return shapes, y, hidden_out


def cmd_pygcheck(a):
    """gat_forward against torch_geometric.nn.models.GAT on awkward graphs."""
    try:
        import torch
        import torch_geometric
        from torch_geometric.nn.models import GAT
    except Exception as e:  # ImportError, or a torch/PyG mismatch
        print("pygcheck: SKIPPED (torch_geometric is not importable: %s: %s)" %
              (type(e).__name__, e))
        return PYG_SKIP
    print("pygcheck: torch %s, torch_geometric %s" % (torch.__version__, torch_geometric.__version__))
    rng = np.random.default_rng(a.seed)
    ok = True
    for n, m in ((60, 240), (300, 1500)):
        for undirected in (False, True):
            ids, src, dst, _ = make_graph(rng, n, m, 5)
            if undirected:
                src, dst = to_undirected(src, dst)
            x = rng.uniform(-1.0, 1.0, (n, 7)).astype(np.float32)
            for L in (1, 2, 3):
                for heads in (1, 2, 3):
                    hidden, out = 4 * heads, 5
                    dims = [7] + [hidden] * (L - 1) + [out]
                    w = random_weights("gat", dims, rng, heads)
                    shapes, y, hid = pyg_gat_outputs(torch, GAT, x, src, dst, w, hidden, L,
                                                     out, heads)
                    names = shapes == {k: v.shape for k, v in w.items()}
                    ref = gat_forward(x, src, dst, w)
                    err = float(np.abs(ref - y).max() / np.abs(y).max())
                    errs = [float(np.abs(gat_forward(x, src, dst, w, k + 1) - hk).max() /
                                  max(np.abs(hk).max(), 1e-300)) for k, hk in enumerate(hid)]
                    good = names and err < 1e-10 and all(e < 1e-10 for e in errs)
                    ok &= good
                    print("pygcheck: %3d nodes %-10s L=%d heads=%d: state_dict %s, "
                          "prediction %.1e, hidden layers %s %s" %
                          (n, "undirected" if undirected else "directed", L, heads,
                           "same" if names else "DIFFERS %s" % shapes,
                           err, " ".join("%.1e" % e for e in errs) or "-",
                           "ok" if good else "FAIL"))
    print("pygcheck: %s" % ("PASS" if ok else "FAIL"))
    return 0 if ok else 1


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)

    g = sub.add_parser("gen", help="write a test case to a folder")
    g.add_argument("--out", required=True)
    g.add_argument("--seed", type=int, default=1)
    g.add_argument("--nodes", type=int, default=500)
    g.add_argument("--edges", type=int, default=2500, help="random edges before hub, duplicates, loops")
    g.add_argument("--isolated", type=int, default=8)
    g.add_argument("--id-range", type=int, default=1 << 40,
                   help="ids are drawn from [-id_range, id_range)")
    g.add_argument("--dim", type=int, default=16)
    g.add_argument("--hidden", type=int, default=32)
    g.add_argument("--classes", type=int, default=7)
    g.add_argument("--layers", type=int, default=2)
    g.add_argument("--undirected", action="store_true",
                   help="reference as to_undirected (the graph must be created with undirected => true)")

    w = sub.add_parser("weights", help="random weights to a safetensors file")
    w.add_argument("--arch", choices=("graphsage", "gcn", "gat"), required=True)
    w.add_argument("--dims", required=True, help="e.g. 64,128,16")
    w.add_argument("--seed", type=int, default=1)
    w.add_argument("--out", required=True)

    r = sub.add_parser("ref", help="reference outputs for a folder and a weights file")
    r.add_argument("--dir", required=True)
    r.add_argument("--arch", choices=("graphsage", "gcn", "gat"), required=True)
    r.add_argument("--weights", required=True)
    r.add_argument("--undirected", action="store_true")
    r.add_argument("--out", required=True)

    e = sub.add_parser("embed", help="reference hidden-layer outputs (gnn_embed, full neighbourhoods)")
    e.add_argument("--dir", required=True)
    e.add_argument("--arch", choices=("graphsage", "gcn", "gat"), required=True)
    e.add_argument("--weights", required=True)
    e.add_argument("--layer", type=int, default=None,
                   help="hidden layer 1 .. L-1 (default L-1, as gnn_embed's NULL)")
    e.add_argument("--undirected", action="store_true")
    e.add_argument("--out", required=True)

    k = sub.add_parser("classify", help="gnn_classify's reference from a reference output file")
    k.add_argument("--ref", required=True)
    k.add_argument("--out", required=True)

    c = sub.add_parser("compare", help="compare psql output with a reference")
    c.add_argument("ref")
    c.add_argument("got")
    c.add_argument("--tol", type=float, default=1e-5)
    c.add_argument("--floor", type=float, default=FLOOR_FRACTION,
                   help="denominator floor as a fraction of max |reference|")
    c.add_argument("--subset", action="store_true",
                   help="got may hold only some of the reference's ids")

    q = sub.add_parser("pygcheck", help="the GAT reference against PyG's GAT (exit 77: no PyG)")
    q.add_argument("--seed", type=int, default=11)

    s = sub.add_parser("selftest", help="check the reference itself")
    s.add_argument("--seed", type=int, default=7)
    s.add_argument("--tol", type=float, default=1e-5)
    s.add_argument("--floor", type=float, default=FLOOR_FRACTION)

    return p.parse_args(argv)


def main():
    a = parse()
    rc = {"gen": cmd_gen, "weights": cmd_weights, "ref": cmd_ref, "embed": cmd_embed,
          "classify": cmd_classify, "compare": cmd_compare, "selftest": cmd_selftest,
          "pygcheck": cmd_pygcheck}[a.cmd](a)
    sys.exit(rc or 0)


if __name__ == "__main__":
    main()
