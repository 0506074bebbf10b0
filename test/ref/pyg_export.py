#!/usr/bin/python3
"""pyg_export.py — real PyTorch Geometric models and outputs for test/t/012_pyg.pl.

Needs torch, torch_geometric and safetensors (scripts/pyg_setup.sh installs
them for Debian's /usr/bin/python3).  Nothing here is shared with quiver or
with the numpy reference quiver_ref.py: the graph is read back from the CSV
files that the tests COPY into PostgreSQL, and everything is computed by PyG.

  pyg_export.py check
      exit 0 when torch, torch_geometric and safetensors.torch import; prints
      their versions, or the import error

  pyg_export.py export --dir DIR --layers L --hidden H --classes C --seed S
                       [--undirected] [--train-steps N]
      reads DIR/features.csv (id,"{f1,...}") and DIR/edges.csv (src,dst), the
      files written by `quiver_ref.py gen`, and for each architecture
      (torch_geometric.nn.models.GraphSAGE, GCN and GAT, L layers) does what
      README.md ("Exporting weights from PyTorch Geometric") says:

        model = GraphSAGE(dim, H, num_layers=L, out_channels=C)  # seeded init
        ... trained N steps (Adam, random labels) so that no tensor keeps its
            initial value (GCNConv initialises its bias to zeros) ...
        save_file(model.state_dict(), "DIR/pyg_sage.safetensors")

      and writes PyG's own full-graph inference, model.eval() and
      model(x, edge_index), over the same graph, as "id|{y1,...}" lines:
        DIR/pyg_sage.out, DIR/pyg_gcn.out          float32, as PyG serves it
        DIR/pyg_gat.out                            (GAT: 2 heads if they divide H)
        DIR/pyg_sage.f64.out, DIR/pyg_gcn.f64.out  the same weights in float64
                                                   (model.double()), the exact
                                                   value PyG's float32 rounds
      With --undirected the graph is torch_geometric.utils.to_undirected
      (edge_index) first, as gnn_create_graph(..., undirected => true).
      When DIR holds quiver_ref.py's sage.safetensors and gcn.safetensors,
      PyG's output with those weights goes to DIR/pyg_refweights_{sage,gcn}.out
      (so the numpy reference itself is checked against PyG).
      DIR/pyg_meta.json: nodes, edges (edge_index columns PyG uses), dim,
      versions, and PyG's own float32-vs-float64 error.
"""

import argparse
import copy
import csv
import json
import os
import sys


def cmd_check(_a):
    try:
        import torch
        import torch_geometric
        import safetensors
        import safetensors.torch  # noqa: F401
        from torch_geometric.nn.models import GraphSAGE, GCN, GAT  # noqa: F401
    except Exception as e:  # ImportError, or a torch/PyG mismatch
        print("%s: %s" % (type(e).__name__, e))
        return 1
    print("torch %s, torch_geometric %s, safetensors %s" %
          (torch.__version__, torch_geometric.__version__, safetensors.__version__))
    return 0


def read_graph(d):
    """x [n, dim] float32, edge_index [2, m] (row indices), ids in row order."""
    import torch
    ids, rows = [], []
    with open(os.path.join(d, "features.csv"), newline="") as f:
        for rec in csv.reader(f):
            if not rec:
                continue
            ids.append(int(rec[0]))
            rows.append([float(v) for v in rec[1].strip("{}").split(",")])
    pos = {v: i for i, v in enumerate(ids)}
    src, dst = [], []
    with open(os.path.join(d, "edges.csv"), newline="") as f:
        for rec in csv.reader(f):
            if not rec:
                continue
            src.append(pos[int(rec[0])])
            dst.append(pos[int(rec[1])])
    x = torch.tensor(rows, dtype=torch.float32)
    edge_index = torch.tensor([src, dst], dtype=torch.long)
    return ids, x, edge_index


def write_out(path, ids, y):
    """'id|{...}' lines; repr of each value reads back exactly."""
    with open(path, "w") as f:
        for i, row in zip(ids, y.tolist()):
            f.write("%d|{%s}\n" % (i, ",".join(repr(float(v)) for v in row)))


def cmd_export(a):
    import torch
    import torch.nn.functional as F
    import torch_geometric
    import safetensors
    from safetensors.torch import save_file, load_file
    from torch_geometric.nn.models import GraphSAGE, GCN, GAT
    from torch_geometric.utils import to_undirected

    torch.manual_seed(a.seed)
    ids, x, edge_index = read_graph(a.dir)
    n = x.size(0)
    if a.undirected:
        edge_index = to_undirected(edge_index, num_nodes=n)
    meta = {"nodes": n, "edges": int(edge_index.size(1)), "dim": int(x.size(1)),
            "undirected": bool(a.undirected), "layers": a.layers,
            "torch": torch.__version__, "torch_geometric": torch_geometric.__version__,
            "safetensors": safetensors.__version__}

    # GAT: 2 heads when they divide the hidden width (as quiver_ref.py's
    # gat_heads), else 1; the last layer averages its heads
    gat_kw = {"heads": 2 if a.layers == 1 or a.hidden % 2 == 0 else 1}
    for short, cls, kw in (("sage", GraphSAGE, {}), ("gcn", GCN, {}), ("gat", GAT, gat_kw)):
        # README: torch_geometric.nn.models.GraphSAGE(in, hidden, num_layers=L,
        # out_channels=C); defaults: mean aggregation (SAGE), ReLU, jk=None,
        # no norm, dropout 0.
        model = cls(x.size(1), a.hidden, num_layers=a.layers, out_channels=a.classes, **kw)
        if a.train_steps > 0:
            labels = torch.randint(0, a.classes, (n,))
            opt = torch.optim.Adam(model.parameters(), lr=0.02)
            model.train()
            for _ in range(a.train_steps):
                opt.zero_grad()
                F.cross_entropy(model(x, edge_index), labels).backward()
                opt.step()
        model.eval()
        path = os.path.join(a.dir, "pyg_%s.safetensors" % short)
        save_file(model.state_dict(), path)
        with torch.no_grad():
            y32 = model(x, edge_index)
            y64 = copy.deepcopy(model).double()(x.double(), edge_index)
        write_out(os.path.join(a.dir, "pyg_%s.out" % short), ids, y32)
        write_out(os.path.join(a.dir, "pyg_%s.f64.out" % short), ids, y64)
        scale = float(y64.abs().max())
        meta[short] = {
            "tensors": sorted(model.state_dict()),
            "max_abs": scale,
            # PyG's own float32 rounding, max |y32 - y64| / max |y64|
            "f32_vs_f64": float((y32.double() - y64).abs().max()) / max(scale, 1e-30),
        }

        # The numpy reference's weights, loaded into the same PyG class.
        ref_w = os.path.join(a.dir, "%s.safetensors" % short)
        if os.path.exists(ref_w):
            model.load_state_dict(load_file(ref_w), strict=True)
            model.eval()
            with torch.no_grad():
                y = copy.deepcopy(model).double()(x.double(), edge_index)
            write_out(os.path.join(a.dir, "pyg_refweights_%s.out" % short), ids, y)

    with open(os.path.join(a.dir, "pyg_meta.json"), "w") as f:
        json.dump(meta, f, indent=1)
    print("%s: PyG %s (torch %s): %d nodes, %d edges%s, %d layers; "
          "PyG float32 vs float64: sage %.2e, gcn %.2e, gat %.2e" %
          (a.dir, torch_geometric.__version__, torch.__version__, n, meta["edges"],
           " (to_undirected)" if a.undirected else "", a.layers,
           meta["sage"]["f32_vs_f64"], meta["gcn"]["f32_vs_f64"], meta["gat"]["f32_vs_f64"]))
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("check", help="are torch, torch_geometric and safetensors importable?")
    e = sub.add_parser("export", help="PyG models, safetensors weights and outputs")
    e.add_argument("--dir", required=True)
    e.add_argument("--layers", type=int, default=2)
    e.add_argument("--hidden", type=int, default=32)
    e.add_argument("--classes", type=int, default=7)
    e.add_argument("--seed", type=int, default=1)
    e.add_argument("--undirected", action="store_true")
    e.add_argument("--train-steps", type=int, default=3)
    a = p.parse_args()
    sys.exit({"check": cmd_check, "export": cmd_export}[a.cmd](a) or 0)


if __name__ == "__main__":
    main()
