#!/usr/bin/python3
"""Write the seed corpus of test/fuzz/fuzz_safetensors.c to test/fuzz/corpus/.

Each seed is one fuzzer input: a byte (bit 0 the architecture, 0 graphsage
and 1 gcn; bits 1..7 the feature dimension - 1), the config length as two
bytes little-endian, the config JSON, then a safetensors blob with PyG's
tensor names, as quiver_ref.py writes them (header padded to 8 bytes,
"__metadata__" last).  Python's standard library only, deterministic:

    python3 test/fuzz/make_corpus.py [OUT_DIR]
"""
import json
import os
import struct
import sys

GRAPHSAGE, GCN = 0, 1


def f32(v):
    return struct.pack("<f", v)


def f16(v):
    return struct.pack("<e", v)


def bf16(v):
    return struct.pack("<f", v)[2:]


PACK = {"F32": (f32, 4), "F16": (f16, 2), "BF16": (bf16, 2)}


def values(k, n):
    """Element j of tensor k: k + j/4 - 1, exact in every float dtype used."""
    return [k + j / 4.0 - 1.0 for j in range(n)]


def blob(tensors, dtype="F32", metadata=True):
    """tensors: [(name, shape)] -> safetensors bytes, every tensor of dtype."""
    header, chunks, off = {}, [], 0
    for k, (name, shape) in enumerate(tensors):
        n = 1
        for d in shape:
            n *= d
        pack, size = PACK[dtype]
        raw = b"".join(pack(v) for v in values(k, n))
        header[name] = {"dtype": dtype, "shape": list(shape),
                        "data_offsets": [off, off + len(raw)]}
        chunks.append(raw)
        off += len(raw)
    if metadata:
        header["__metadata__"] = {"format": "pt"}
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(chunks)


def sage(dims, rbias=False):
    t = []
    for i in range(len(dims) - 1):
        t += [("convs.%d.lin_l.weight" % i, (dims[i + 1], dims[i])),
              ("convs.%d.lin_l.bias" % i, (dims[i + 1],)),
              ("convs.%d.lin_r.weight" % i, (dims[i + 1], dims[i]))]
        if rbias:
            t.append(("convs.%d.lin_r.bias" % i, (dims[i + 1],)))
    return t


def gcn(dims, bias=True):
    t = []
    for i in range(len(dims) - 1):
        t.append(("convs.%d.lin.weight" % i, (dims[i + 1], dims[i])))
        if bias:
            t.append(("convs.%d.bias" % i, (dims[i + 1],)))
    return t


def seed(arch, feature_dim, config, weights):
    assert 1 <= feature_dim <= 128
    cfg = config.encode()
    return bytes([arch | (feature_dim - 1) << 1]) + struct.pack("<H", len(cfg)) + cfg + weights


SEEDS = {
    "sage_f32_4_3_2": seed(GRAPHSAGE, 4, '{"fanout": [2, -1], "seed": 7}', blob(sage([4, 3, 2]))),
    "gcn_f32_4_3_2": seed(GCN, 4, "{}", blob(gcn([4, 3, 2]))),
    "sage_bf16_rbias_3_2": seed(GRAPHSAGE, 3, "", blob(sage([3, 2], rbias=True), "BF16")),
    "gcn_f16_nobias_2_3_1": seed(GCN, 2, '{"fanout": [-1, 3]}',
                                 blob(gcn([2, 3, 1], bias=False), "F16", metadata=False)),
    "gcn_f32_3layers_1_2_2_1": seed(GCN, 1, '{"fanout": [1, 2, 3]}', blob(gcn([1, 2, 2, 1]))),
    "gcn_f32_8layers_1": seed(GCN, 1, '{"fanout": [1, 1, 1, 1, 1, 1, 2, -1]}',
                              blob(gcn([1] * 9, bias=False))),
    # refusals: weights for 4 features and a graph with 5; a fanout per layer
    # missing; an empty bias; a 3-d weight; a seed beyond 64 bits
    "sage_f32_wrong_dim": seed(GRAPHSAGE, 5, "{}", blob(sage([4, 2]))),
    "sage_f32_fanout_mismatch": seed(GRAPHSAGE, 2, '{"fanout": [3]}', blob(sage([2, 2, 1]))),
    "gcn_f32_empty_bias": seed(GCN, 2, "", blob([("convs.0.lin.weight", (1, 2)),
                                                 ("convs.0.bias", (0,))])),
    "gcn_f32_3d_weight": seed(GCN, 2, "", blob([("convs.0.lin.weight", (1, 2, 1))])),
    "gcn_f32_big_seed": seed(GCN, 1, '{"seed": 123456789012345678901}',
                             blob([("convs.0.lin.weight", (1, 1))])),
}


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "corpus")
    os.makedirs(out, exist_ok=True)
    for name, data in sorted(SEEDS.items()):
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)
    print("%d seeds, %d bytes, in %s" % (len(SEEDS), sum(map(len, SEEDS.values())), out))


if __name__ == "__main__":
    main()
