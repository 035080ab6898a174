"""OpenVINO's own per-layer times on an int8 QDQ ONNX, by kernel: which layers it runs on which unit.

OpenVINO's CPU plugin reports per executed node (``PERF_COUNT``, ``InferRequest.get_profiling_info()``) the
layer type, the kernel it chose (``exec_type``: ``brgconv_avx512_amx_1x1_i8`` is a 1x1 conv on the AMX tile unit,
``brgconv_avx512_dw_i8`` a depthwise conv on AVX-512) and its time. Prints the time per (layer type, kernel) and
the slowest nodes; ``--ours PROFILE.csv`` (fcos3d.compiler.profile's profile.csv of the same graph) adds the time
per op class of both side by side (OpenVINO's node names are the ONNX node names, "/WithoutBiases" and the like
appended). One thread, latency hint, median per node over ``--runs`` after 2 warm-up runs. Benchmark-only
dependency: pip install '.[bench]'.

    .venv/bin/python benchmarks/openvino_layer_profile.py build/bench_runtimes/512x896/fcos3d_int8.onnx \\
        [--ours build/bench_runtimes/512x896/artifact/profile.csv] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import collections
import csv
import json
import statistics
import sys
import time
from pathlib import Path


def profile(onnx_path: Path, runs: int, threads: int) -> dict:
    import numpy as np
    import openvino as ov

    core = ov.Core()
    config = {"INFERENCE_NUM_THREADS": threads, "NUM_STREAMS": 1, "PERFORMANCE_HINT": "LATENCY", "PERF_COUNT": True}
    compiled = core.compile_model(str(onnx_path), "CPU", config)
    request = compiled.create_infer_request()
    shape = [d.get_length() for d in compiled.inputs[0].get_partial_shape()]
    x = np.random.default_rng(0).integers(-128, 128, size=shape).astype(np.int8)
    per_node, wall = collections.defaultdict(list), []
    for i in range(runs + 2):
        t = time.perf_counter()
        request.infer([x])
        if i < 2:
            continue
        wall.append(time.perf_counter() - t)
        for p in request.get_profiling_info():
            per_node[(p.node_name, p.node_type, p.exec_type)].append(p.real_time.total_seconds() * 1e3)
    nodes = [{"node": n, "type": t, "kernel": e, "ms": statistics.median(v)} for (n, t, e), v in per_node.items()]
    return {
        "openvino": ov.__version__,
        "onnx": str(onnx_path),
        "threads": threads,
        "runs": runs,
        "wall_ms_median": statistics.median(wall) * 1e3,
        "nodes": sorted(nodes, key=lambda r: -r["ms"]),
    }


def by_class(result: dict, ours_csv: Path) -> list[tuple[str, float, float, int]]:
    """(op class, ours ms, OpenVINO ms, layers) per (op, part of the model) of our profile."""
    ov_ms = collections.defaultdict(float)
    for node in result["nodes"]:
        ov_ms[node["node"].split("/")[0]] += node["ms"]
    classes: dict[str, list] = collections.defaultdict(lambda: [0.0, 0.0, 0])
    for row in csv.DictReader(ours_csv.open()):
        key = f"{row['op']} ({row['name'].split('.')[1] if '.' in row['name'] else row['name']})"
        classes[key][0] += float(row["in_module_ms"] or 0)
        classes[key][1] += ov_ms.get(row["name"], 0.0)
        classes[key][2] += 1
    return sorted(((k, *v) for k, v in classes.items()), key=lambda r: -r[1])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("onnx", type=Path, help="an int8 QDQ ONNX (its input int8)")
    ap.add_argument("--ours", type=Path, default=None, help="our profile.csv of the same graph (profile_layers.py)")
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--top", type=int, default=15)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    try:
        result = profile(args.onnx, args.runs, args.threads)
    except ImportError:
        sys.exit("openvino is not installed: .venv/bin/pip install -e '.[bench]' (or: .venv/bin/pip install openvino)")
    kernels = collections.Counter()
    for node in result["nodes"]:
        kernels[(node["type"], node["kernel"])] += node["ms"]
    print(f"OpenVINO {result['openvino']}, {args.threads} thread(s): {result['wall_ms_median']:.2f} ms a run")
    print("\n| layer type | kernel | ms |\n|---|---|---:|")
    for (t, e), ms in kernels.most_common():
        if ms >= 0.005:
            print(f"| {t} | {e} | {ms:.2f} |")
    print(f"\nthe {args.top} slowest nodes:")
    for node in result["nodes"][: args.top]:
        print(f"  {node['ms']:7.3f} ms  {node['type']:16s} {node['kernel']:28s} {node['node'][:70]}")
    if args.ours is not None:
        result["by_class"] = by_class(result, args.ours)
        print("\n| op class | layers | ours ms | OpenVINO ms |\n|---|---:|---:|---:|")
        for key, ours, ov, n in result["by_class"]:
            print(f"| {key} | {n} | {ours:.2f} | {ov:.2f} |")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1) + "\n")
        print(args.json)


if __name__ == "__main__":
    main()
