"""Fit the host latency profile: time every layer of the given int8 ONNX models compiled for this CPU, fit the
host's figures (fcos3d.compiler.latency.fit), print the per-model errors and the [[figures]] for host.toml.

    TVM_NUM_THREADS=1 .venv/bin/python scripts/calibrate_host.py MODEL.onnx [MODEL.onnx ...] [--totals RESULTS.json]

Two stages: fit_host on every layer timed alone (per-kind throughputs, the host's per-conv terms, the per-op
overhead), then fit_context on the whole modules' times (the cost of one call of the module, the per-op overhead
inside the graph and the cost per activation byte of a layer that does not find its tensors in the caches). Measured times are kept beside each
model (MODEL.host-times.json) so the fit can be redone without re-measuring; delete that file to measure again.
``--totals benchmarks/results/host_estimate_vs_measured.json``: stage 2 takes the whole-module times that
benchmark measured (each model in fresh processes, the median) instead of the module timed beside its layers.
Run it on a quiet machine (PERFORMANCE.md, "Latency model"), with one TVM thread (the profile is one thread).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType

os.environ.setdefault("TVM_NUM_THREADS", "1")  # before TVM is imported: the profile describes one thread
os.environ.setdefault("TVM_BIND_THREADS", "0")  # as benchmarks/host_estimate_vs_measured.py times the modules

from fcos3d.boards import Accelerator, Figure, load_board  # noqa: E402
from fcos3d.compiler.check import check_onnx  # noqa: E402
from fcos3d.compiler.latency.estimate import (  # noqa: E402
    estimate,
    host_counts,
    host_extra_kernels,
    layer_estimates,
    tensor_shapes,
)
from fcos3d.compiler.latency.fit import calibrated_board, fit_context, fit_host, measure_layers  # noqa: E402
from fcos3d.compiler.latency.report import write_report  # noqa: E402

# Stage 1's row weight per model: 1 / (its layers) ** WEIGHT_POWER, on top of fit_host's 1 / sqrt(cycles). 1: each
# model weighs the same whatever its number of layers (FCOS3D has 378, a zoo model 8-45); PERFORMANCE.md
# "Estimator re-fit on a quiet machine" gives the sensitivity to 0 and 0.5.
WEIGHT_POWER = 1.0


def _toml(figures: list[Figure]) -> str:
    return "\n".join(
        f'[[figures]]\nname = "{f.name}"\nvalue = {f.value:.6g}\nunit = "{f.unit}"\nsource = "{f.source}"\n'
        for f in figures
    )


def _measure(path: str, graph, host) -> dict:
    cache = Path(path).with_suffix(".host-times.json")
    if cache.is_file():
        return json.loads(cache.read_text())
    t = time.perf_counter()
    m = measure_layers(graph, host)
    print(f"{path}: {len(graph.ops)} layers measured in {time.perf_counter() - t:.0f} s", file=sys.stderr)
    cache.write_text(json.dumps(m) + "\n")
    return m


def _with_totals(paths: list[str], runs: list[dict], totals_file: Path) -> list[dict]:
    """``runs`` with each model's whole-module time replaced by the one benchmarks/host_estimate_vs_measured.py
    measured (the median over fresh processes, each loading the artifact alone as a user's does) where that file
    has the model (``<name>.onnx`` or ``<name>_int8.onnx`` -> row ``<name>``); the layers keep their own times."""
    rows = {r["model"]: r["measured_ms"] / 1e3 for r in json.loads(totals_file.read_text())["rows"]}
    out = []
    for p, m in zip(paths, runs, strict=True):
        name = Path(p).stem.removesuffix("_int8")
        out.append({**m, "total_s": rows[name]} if name in rows else m)
    return out


def layer_counts(graph, acc) -> list[dict]:
    """estimate.host_counts of every op of ``graph`` (the fit's extra columns)."""
    shapes = tensor_shapes(graph)
    return [
        {**host_counts(op, shapes[op.inputs[0]], shapes[op.output], acc), "extra_kernels": host_extra_kernels(op, acc)}
        for op in graph.ops
    ]


def fit(graphs: list, runs: list[dict], host, source: str):
    """(fitted figures, calibrated board): fit_host on the layers, then fit_context on the whole modules."""
    acc = host.accelerator
    clock = acc["clock_hz"]
    # The first stage without the whole-graph terms (a board file that has them would add them to every layer and
    # to every model's total).
    figures = {k: v for k, v in acc.figures.items() if k not in ("context_bytes_per_cycle", "call_overhead_cycles")}
    host = replace(host, accelerator=Accelerator(acc.name, MappingProxyType(figures), acc.note))
    layers = [layer for g in graphs for layer in layer_estimates(g, host.accelerator)]
    counts = [c for g in graphs for c in layer_counts(g, host.accelerator)]
    weights = [len(g.ops) ** -WEIGHT_POWER for g in graphs for _ in g.ops]
    fitted = fit_host(layers, [s for m in runs for s in m["layers_s"]], clock, counts, weights)
    alone = calibrated_board(host, fitted, source)
    rows = []
    for g, m in zip(graphs, runs, strict=True):
        est = layer_estimates(g, alone.accelerator)
        rows.append((sum(x.cycles for x in est), len(est), sum(x.activation_bytes for x in est), m["total_s"] * clock))
    fitted.update(fit_context(rows, fitted["op_overhead_cycles"]))
    return fitted, calibrated_board(host, fitted, source)


def main(argv: list[str] | None = None) -> int:
    """Measure each model given, fit the host profile on all their layers, print errors and the TOML."""
    ap = argparse.ArgumentParser(
        prog="scripts/calibrate_host.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("models", nargs="+", metavar="MODEL.onnx")
    ap.add_argument("--totals", type=Path, metavar="RESULTS.json", help="benchmarks/host_estimate_vs_measured.py's")
    args = ap.parse_args(sys.argv[1:] if argv is None else argv)
    paths, totals_file = args.models, args.totals
    if totals_file is not None and not totals_file.is_file():
        print(f"{totals_file}: no such file; run benchmarks/host_estimate_vs_measured.py first", file=sys.stderr)
        return 2
    host = load_board("host")
    unit_blocks = {f: 1.0 for f in ("block_oc", "block_ic", "block_h", "block_w")}
    if any(host.accelerator[k] != v for k, v in unit_blocks.items()):
        print("host.toml: the fit assumes block sizes of 1 (untuned loops pad nothing)", file=sys.stderr)
        return 2
    missing = [p for p in paths if not Path(p).is_file()]
    if missing:
        print(
            f"{missing[0]}: no such file; write the fit set first (benchmarks/perf_graphs.py OUT_DIR for perf_mix.onnx, "
            "benchmarks/host_estimate_vs_measured.py --models-only for the zoo and FCOS3D)",
            file=sys.stderr,
        )
        return 2
    graphs = [check_onnx(p).graph for p in paths]
    runs = [_measure(p, g, host) for p, g in zip(paths, graphs, strict=True)]
    if totals_file is not None:
        runs = _with_totals(paths, runs, totals_file)
    clock = host.accelerator["clock_hz"]
    command = "TVM_NUM_THREADS=1 python scripts/calibrate_host.py " + " ".join(paths)
    if totals_file is not None:
        command += f" --totals {totals_file}"
    source = f"calibrated {time.strftime('%Y-%m-%d')} on this machine: `{command}` (fit_host + fit_context)"
    fitted, board = fit(graphs, runs, host, source)
    print("fit: " + ", ".join(f"{k} {v:.4g}" for k, v in fitted.items()))
    for p, g, m in zip(paths, graphs, runs, strict=True):
        est = estimate(g, board)
        # perf.json/csv/html with measured columns and errors, beside the model
        write_report(est, Path(p).with_suffix(".host-perf"), measured=m)
        per_layer = [layer.cycles / clock / s - 1 for layer, s in zip(est.layers, m["layers_s"], strict=True)]
        print(
            f"{p}: estimate {est.seconds * 1e3:.3f} ms, measured {m['total_s'] * 1e3:.3f} ms "
            f"(sum of layers {sum(m['layers_s']) * 1e3:.3f} ms): total error {est.seconds / m['total_s'] - 1:+.1%}, "
            f"median |layer error| {statistics.median(abs(e) for e in per_layer):.1%}"
        )
    print(_toml([board.accelerator.figures[k] for k in fitted if k != "rms_rel_error"]))
    for k in ("call_overhead_cycles", "context_bytes_per_cycle"):
        if k not in fitted:  # fit_context dropped it (fitted <= 0): an older value must not stay in host.toml
            print(f"# {k}: fitted <= 0 and dropped; delete its [[figures]] entry from host.toml")
    return 0


if __name__ == "__main__":
    sys.exit(main())
