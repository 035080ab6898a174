"""Fit the host latency profile: time every layer of the given int8 ONNX models compiled for this CPU, fit the
host's figures (fcos3d.compiler.latency.fit), print the per-model errors and the [[figures]] for host.toml.

    .venv/bin/python scripts/calibrate_host.py MODEL.onnx [MODEL.onnx ...]

Measured times are kept beside each model (MODEL.host-times.json) so the fit can be redone without
re-measuring; delete that file to measure again. Run it on a quiet machine (PERFORMANCE.md, "Latency model").
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

from fcos3d.boards import Figure, load_board
from fcos3d.compiler.check import check_onnx
from fcos3d.compiler.latency.estimate import estimate, layer_estimates
from fcos3d.compiler.latency.fit import calibrated_board, fit_host, measure_layers
from fcos3d.compiler.latency.report import write_report


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


def main(argv: list[str] | None = None) -> int:
    """Measure each model given, fit the host profile on all their layers, print errors and the TOML."""
    paths = list(sys.argv[1:] if argv is None else argv)
    if not paths:
        print("usage: scripts/calibrate_host.py MODEL.onnx [MODEL.onnx ...]", file=sys.stderr)
        return 2
    host = load_board("host")
    unit_blocks = {f: 1.0 for f in ("block_oc", "block_ic", "block_h", "block_w")}
    if any(host.accelerator[k] != v for k, v in unit_blocks.items()):
        print("host.toml: the fit assumes block sizes of 1 (untuned loops pad nothing)", file=sys.stderr)
        return 2
    graphs = [check_onnx(p).graph for p in paths]
    runs = [_measure(p, g, host) for p, g in zip(paths, graphs, strict=True)]
    clock = host.accelerator["clock_hz"]
    layers = [layer for g in graphs for layer in layer_estimates(g, host.accelerator)]
    fitted = fit_host(layers, [s for m in runs for s in m["layers_s"]], clock)
    command = "python scripts/calibrate_host.py " + " ".join(paths)
    board = calibrated_board(host, fitted, f"calibrated {time.strftime('%Y-%m-%d')}: `{command}` (fit_host)")
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
