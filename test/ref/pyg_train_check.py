#!/usr/bin/python3
"""pyg_train_check.py — quiver's trained models against PyTorch Geometric.

Needs torch, torch_geometric and safetensors (scripts/pyg_setup.sh); prints
"SKIPPED (...)" and exits 77 when they do not import.  test/unit/test_train
writes the files and prints the commands to run (it does not run them: the
unit tests need no Python):

  pyg_train_check.py load ARCH FILE IN HIDDEN OUT LAYERS [HEADS]
      FILE, a blob of qv_model_save_safetensors, loads into
      torch_geometric.nn.models.GraphSAGE / GCN / GAT (IN, HIDDEN,
      num_layers=LAYERS, out_channels=OUT, GAT: heads=HEADS, default 1) with
      load_state_dict(strict=True): the same names, shapes and dtype (F32)
      as model.state_dict().

  pyg_train_check.py step ARCH DIR
      DIR/graph.json (ids, features, edges, labelled nodes, lr, weight_decay),
      DIR/init.safetensors (the weights before) and DIR/step.safetensors (after
      quiver's one epoch of one full batch, every neighbour, no dropout, SGD):
      PyG's model loaded from init, F.cross_entropy over the labelled nodes of
      the full-graph forward, one torch.optim.SGD step; every tensor must
      equal quiver's to 1e-5 (float32 rounding).  GAT's heads come from
      convs.0.att_src's shape.
"""
import json
import os
import sys


def imports():
    try:
        import torch  # noqa: F401
        import torch_geometric  # noqa: F401
        from safetensors.torch import load_file  # noqa: F401
    except Exception as e:  # pragma: no cover - depends on the machine
        print("pyg_train_check: SKIPPED (%s)" % e)
        sys.exit(77)


def model_of(arch, dim, hidden, out, layers, heads=1):
    from torch_geometric.nn.models import GAT, GCN, GraphSAGE
    if arch == "gat":
        return GAT(dim, hidden, num_layers=layers, out_channels=out, heads=heads)
    cls = {"graphsage": GraphSAGE, "gcn": GCN}[arch]
    return cls(dim, hidden, num_layers=layers, out_channels=out)


def load(arch, path, dim, hidden, out, layers, heads=1):
    from safetensors.torch import load_file
    model = model_of(arch, dim, hidden, out, layers, heads)
    sd = load_file(path)
    model.load_state_dict(sd, strict=True)
    for name, t in sd.items():
        assert str(t.dtype) == "torch.float32", (name, t.dtype)
    print("pyg_train_check load %s: %d tensors load strictly into %s" %
          (arch, len(sd), type(model).__name__))


def step(arch, folder):
    import torch
    import torch.nn.functional as F
    from safetensors.torch import load_file
    with open(os.path.join(folder, "graph.json")) as f:
        g = json.load(f)
    index = {v: i for i, v in enumerate(g["ids"])}
    x = torch.tensor(g["features"], dtype=torch.float32)
    ei = torch.tensor([[index[s] for s in g["src"]], [index[d] for d in g["dst"]]],
                      dtype=torch.long)
    init = load_file(os.path.join(folder, "init.safetensors"))
    want = load_file(os.path.join(folder, "step.safetensors"))
    layers = 1 + max(int(k.split(".")[1]) for k in init)
    hidden = init["convs.0.lin_l.weight" if arch == "graphsage" else "convs.0.lin.weight"].shape[0]
    heads = init["convs.0.att_src"].shape[1] if arch == "gat" else 1
    model = model_of(arch, x.shape[1], hidden, g["classes"], layers, heads)
    model.load_state_dict(init, strict=True)
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=g["lr"], weight_decay=g["weight_decay"])
    nodes = torch.tensor([index[v] for v in g["labelled"]], dtype=torch.long)
    loss = F.cross_entropy(model(x, ei)[nodes], torch.tensor(g["labels"], dtype=torch.long))
    opt.zero_grad()
    loss.backward()
    opt.step()
    worst = 0.0
    for name, t in model.state_dict().items():
        d = (t - want[name]).abs().max().item()
        worst = max(worst, d)
        if d > 1e-5 * max(1.0, t.abs().max().item()):
            print("pyg_train_check step %s: %s differs by %g" % (arch, name, d))
            sys.exit(1)
    print("pyg_train_check step %s: loss %.6f, every tensor within %.2g of PyG's step" %
          (arch, loss.item(), worst))


def main():
    imports()
    if len(sys.argv) in (8, 9) and sys.argv[1] == "load":
        load(sys.argv[2], sys.argv[3], *map(int, sys.argv[4:]))
    elif len(sys.argv) == 4 and sys.argv[1] == "step":
        step(sys.argv[2], sys.argv[3])
    else:
        print(__doc__)
        sys.exit(2)


if __name__ == "__main__":
    main()
