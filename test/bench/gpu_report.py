#!/usr/bin/env python3
"""A readable table of a GPU session's summary.jsonl (test/bench/gpu_session.sh).

    gpu_report.py OUT/summary.jsonl

Sets the engine's figures beside the PyG anchor's and issue 4's targets
(batch 1 median <= 0.1 ms, batch 4096 >= 12 million seeds/s, gathers at
>= 70 % of the copy bandwidth).  Standard library only.
"""
import json
import sys

TARGET_B1_US = 100.0
TARGET_B4096_SPS = 12e6
TARGET_GATHER = 0.70


def load(path):
    rows = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line.startswith("{"):
                try:
                    rows.append(json.loads(line))
                except ValueError:
                    pass
    return rows


def verdict(ok):
    return "met" if ok else "NOT met"


def section_stages(rows, out):
    out.append("stages:")
    for r in rows:
        if r.get("event") == "end":
            out.append("  %-9s %-8s %s s%s" % (r["stage"], r["status"], r.get("seconds", "-"),
                                              "  (%s)" % r["reason"] if "reason" in r else ""))


def section_unit(rows, out):
    for r in rows:
        if "unit" in r:
            out.append("unit %-15s rc %d: %d passed, %d skipped %s, %d failed" % (
                r["unit"], r["rc"], r["passed"], r["skipped"], r["skipped_tests"], r["failed"]))
        if "sanitize" in r:
            out.append("compute-sanitizer memcheck of %s: rc %d, %d errors" % (
                r["sanitize"], r["rc"], r["errors"]))


def section_engine(rows, out, fake):
    gpu = next((r for r in rows if "gpu" in r and "store_rows" in r), None)
    if gpu:
        out.append("GPU: %s (cc %s), driver %s, module %s" % (gpu["gpu"], gpu["cc"], gpu["driver"],
                                                             gpu["build"]))
        out.append("  store: %d rows on the device, %d on the host, CSR %s, %.1f s to set up" % (
            gpu["store_rows"], gpu["host_rows"], "on the device" if gpu["csr_on_device"] else "on the host",
            gpu["setup_s"]))
    for r in rows:
        if "check" in r:
            out.append("check: %d seeds, fanout -1, max rel err %.3g (tolerance %g): %s" % (
                r["check"], r["max_rel_err"], r["tolerance"], "ok" if r["ok"] else "FAILED"))
        if "gather_gbps" in r:
            out.append("gather: %d rows of %d B, 16 per output row: %.1f GB/s; copy %.1f GB/s (traffic: read + write); ratio %.3f (target %.2f: %s)" % (
                r["gather_rows"], r["row_bytes"], r["gather_gbps"], r["copy_gbps"], r["ratio"],
                TARGET_GATHER, verdict(r["ratio"] >= TARGET_GATHER)))
        if "error" in r and "stage" in r:
            out.append("quiver-bench error (%s): %s" % (r["stage"], r["error"]))
    batches = [r for r in rows if r.get("device") == "gpu" and "batch" in r]
    if batches:
        out.append("engine, quiver-bench --device gpu%s:" % (" (FAKE module: CPU)" if fake else ""))
        out.append("  %6s %11s %11s %13s %12s  target" % ("batch", "median_us", "p99_us", "seeds/s",
                                                           "device_us"))
        for r in batches:
            t = ""
            if r["batch"] == 1:
                t = "median <= %.0f us: %s" % (TARGET_B1_US, verdict(r["median_us"] <= TARGET_B1_US))
            elif r["batch"] == 4096:
                t = ">= 12M seeds/s: %s" % verdict(r["seeds_per_s"] >= TARGET_B4096_SPS)
            out.append("  %6d %11.1f %11.1f %13.0f %12.1f  %s" % (r["batch"], r["median_us"], r["p99_us"],
                                                                   r["seeds_per_s"], r["device_us_median"], t))
    return {r["batch"]: r for r in batches}


def section_torch(rows, out, engine):
    anchor = [r for r in rows if "path" in r and "median_ms" in r]
    env = next((r for r in rows if "torch" in r and "device" in r), None)
    skipped = next((r for r in rows if r.get("torch") == "skipped"), None)
    if skipped:
        out.append("PyG anchor: skipped (%s)" % skipped["reason"])
    if env:
        out.append("PyG anchor: torch %s on %s (%s), %s" % (env["torch"], env["device"], env.get("gpu"),
                                                          env.get("layer")))
    if anchor:
        out.append("  %-26s %6s %10s %10s %12s %14s" % ("path", "batch", "median_ms", "p99_ms", "seeds/s",
                                                        "engine faster"))
        for r in anchor:
            e = engine.get(r["batch"])
            x = "%.1fx" % (r["median_ms"] * 1e3 / e["median_us"]) if e and e["median_us"] > 0 else "-"
            out.append("  %-26s %6d %10.3f %10.3f %12d %14s" % (r["path"], r["batch"], r["median_ms"],
                                                                r["p99_ms"], r["seeds_per_s"], x))
    for r in rows:
        if "copy_GBps" in r:
            out.append("  torch anchors: copy %s GB/s (read + write), row gather %s GB/s" % (
                r["copy_GBps"], r["row_gather_GBps"]))


def section_sql(rows, out):
    for r in rows:
        kind = r.get("sql")
        if kind == "server":
            out.append("SQL: PostgreSQL %s, quiver.gpu_module = %s" % (r["version"], r["gpu_module"]))
        elif kind == "graph":
            out.append("  graph: %d nodes, %d edges (undirected), dim %d, gnn_create_graph %.0f ms" % (
                r["nodes"], r["edges"], r["dim"], r["load_ms"]))
        elif kind == "copy":
            out.append("  COPY: edges %.1f s, nodes %.1f s" % (r["edges_s"], r["nodes_s"]))
        elif kind == "model":
            out.append("  model: graphsage %s fanout %s, created in %.2f s" % (r["dims"], r["fanout"],
                                                                              r["create_s"]))
        elif kind == "pgbench":
            out.append("  pgbench %-12s %2d clients: %8.0f tps, p50 %s ms, p99 %s ms" % (
                r["query"], r["clients"], r["tps"], r["p50_ms"], r["p99_ms"]))
        elif kind in ("scan", "array"):
            what = "SELECT gnn_predict('m', id) FROM t" if kind == "scan" else "gnn_predict('m', ARRAY[...])"
            if "prefetch_rows" in r:
                what += " (prefetch_rows %d)" % r["prefetch_rows"]
            out.append("  %-58s %-28s %8d rows: %.2f s, %.0f rows/s" % (
                what, r.get("what", ""), r["rows"], r["seconds"], r["rows_per_s"]))
        elif "gnn_stats" in r:
            out.append("  gnn_stats: %s" % json.dumps(r["gnn_stats"]))
        elif "gnn_gpus" in r:
            out.append("  gnn_gpus: %s" % json.dumps(r["gnn_gpus"]))


def main():
    rows = load(sys.argv[1])
    head = next((r for r in rows if "session" in r), {})
    fake = head.get("fake", False)
    out = ["quiver GPU session %s on %s, %s CPUs, stages %s" % (
        head.get("date", "?"), head.get("session", "?"), head.get("cpus", "?"), head.get("stages", "?"))]
    if fake:
        out.append("*** FAKE GPU MODULE (a CPU test double): nothing below was measured on a GPU ***")
    section_stages(rows, out)
    section_unit(rows, out)
    engine = section_engine(rows, out, fake)
    section_torch(rows, out, engine)
    section_sql(rows, out)
    print("\n".join(out))


if __name__ == "__main__":
    main()
