#!/usr/bin/env python3
"""Turn a quiver-bench dataset folder into PostgreSQL binary COPY files.

    gpu_sql_data.py --data DIR --out DIR [--directed] [--rows N --seed S]

DIR holds rowptr.npy, col.npy and feat.npy (docs/bench.md, "Dataset
folder"); row v of the CSR lists the in-neighbours u of v (edges u -> v).
Writes, in PostgreSQL's binary COPY format (COPY ... FROM 'file' (FORMAT
binary)):

  edges.bin  (src int4, dst int4).  By default only the entries with
             src <= dst: loaded with gnn_create_graph(..., undirected =>
             true), they give the CSR made undirected the way PyG's
             to_undirected does (a repeated pair or self loop appears once).
             --directed writes every entry, for undirected => false (the
             exact CSR, twice the rows).
  nodes.bin  (id int4, feat real[]): node v has id v.
  ids.bin    (id int4): --rows ids drawn uniformly from the nodes (seed S),
             the table of SELECT gnn_predict(...) FROM t.

Prints one JSON line with the counts, sizes and seconds.  Needs numpy only;
works in bounded memory (chunks of rows).
"""
import argparse
import json
import os
import time

import numpy as np

SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"
TRAILER = b"\xff\xff"
FLOAT4OID = 700
CHUNK = 1 << 18                 # rows of the CSR or of the features per write


def edge_rows(src, dst):
    """Binary COPY tuples of (src int4, dst int4)."""
    t = np.empty(len(src), dtype=[("n", ">i2"), ("l1", ">i4"), ("s", ">i4"),
                                  ("l2", ">i4"), ("d", ">i4")])
    t["n"], t["l1"], t["l2"] = 2, 4, 4
    t["s"], t["d"] = src, dst
    return t.tobytes()


def node_rows(first, feat):
    """Binary COPY tuples of (id int4, feat real[]) for ids first, first+1..."""
    n, dim = feat.shape
    t = np.empty(n, dtype=[("n", ">i2"), ("l1", ">i4"), ("id", ">i4"), ("l2", ">i4"),
                           ("ndim", ">i4"), ("nulls", ">i4"), ("oid", ">i4"),
                           ("dim", ">i4"), ("lb", ">i4"),
                           ("e", [("l", ">i4"), ("v", ">f4")], (dim,))])
    t["n"], t["l1"], t["l2"] = 2, 4, 20 + 8 * dim
    t["id"] = np.arange(first, first + n, dtype=np.int64)
    t["ndim"], t["nulls"], t["oid"], t["dim"], t["lb"] = 1, 0, FLOAT4OID, dim, 1
    t["e"]["l"] = 4
    t["e"]["v"] = feat
    return t.tobytes()


def id_rows(ids):
    t = np.empty(len(ids), dtype=[("n", ">i2"), ("l1", ">i4"), ("id", ">i4")])
    t["n"], t["l1"], t["id"] = 1, 4, ids
    return t.tobytes()


def write_edges(path, rowptr, col, directed):
    n = len(rowptr) - 1
    count = 0
    with open(path, "wb") as f:
        f.write(SIGNATURE)
        for a in range(0, n, CHUNK):
            b = min(n, a + CHUNK)
            deg = np.diff(rowptr[a:b + 1])
            dst = np.repeat(np.arange(a, b, dtype=np.int32), deg)
            src = np.asarray(col[rowptr[a]:rowptr[b]], dtype=np.int32)
            if not directed:
                keep = src <= dst
                src, dst = src[keep], dst[keep]
            f.write(edge_rows(src, dst))
            count += len(src)
        f.write(TRAILER)
    return count


def write_nodes(path, feat):
    with open(path, "wb") as f:
        f.write(SIGNATURE)
        for a in range(0, feat.shape[0], CHUNK):
            f.write(node_rows(a, np.asarray(feat[a:a + CHUNK], dtype=np.float32)))
        f.write(TRAILER)


def write_ids(path, n_nodes, rows, seed):
    rng = np.random.default_rng(seed)
    with open(path, "wb") as f:
        f.write(SIGNATURE)
        for a in range(0, rows, CHUNK):
            f.write(id_rows(rng.integers(0, n_nodes, min(CHUNK, rows - a))))
        f.write(TRAILER)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--directed", action="store_true")
    p.add_argument("--rows", type=int, default=1000000)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    t0 = time.time()
    rowptr = np.load(os.path.join(a.data, "rowptr.npy"), mmap_mode="r").astype(np.int64)
    col = np.load(os.path.join(a.data, "col.npy"), mmap_mode="r")
    feat = np.load(os.path.join(a.data, "feat.npy"), mmap_mode="r")
    n = len(rowptr) - 1
    if feat.ndim != 2 or feat.shape[0] != n or rowptr[-1] != len(col):
        raise SystemExit("gpu_sql_data.py: %s: rowptr, col and feat do not agree" % a.data)
    os.makedirs(a.out, exist_ok=True)
    edges = write_edges(os.path.join(a.out, "edges.bin"), rowptr, col, a.directed)
    write_nodes(os.path.join(a.out, "nodes.bin"), feat)
    write_ids(os.path.join(a.out, "ids.bin"), n, a.rows, a.seed)
    size = lambda f: os.path.getsize(os.path.join(a.out, f))
    print(json.dumps({"sql_data": a.out, "nodes": n, "dim": int(feat.shape[1]),
                      "csr_entries": int(len(col)), "edge_rows": edges,
                      "directed": a.directed, "id_rows": a.rows,
                      "edge_bytes": size("edges.bin"), "node_bytes": size("nodes.bin"),
                      "convert_s": round(time.time() - t0, 2)}), flush=True)


if __name__ == "__main__":
    main()
