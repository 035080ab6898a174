"""Host profile fit: time every layer of a graph compiled for this CPU and fit the host's figures to the times.

Data only, prints nothing; ``scripts/calibrate_host.py MODEL.onnx [...]`` runs it and prints the [[figures]]
to paste into fcos3d/boards/host.toml (that command is the figures' source).
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import replace
from types import MappingProxyType

import numpy as np

from fcos3d.boards import ACCELERATOR_FIGURES, OPTIONAL_FIGURES, Accelerator, Board, Figure, load_board
from fcos3d.int8.ops import Conv, GraphInput, GraphOutput, IntGraph

from .estimate import tensor_shapes

__all__ = ["single_op_graphs", "measure_layers", "measure_bandwidth", "fit_host", "calibrated_board"]


def single_op_graphs(graph: IntGraph) -> dict[str, IntGraph]:
    """One IntGraph per op (``layer_<i>``), reading its inputs as int8 graph inputs of their real shapes."""
    shapes = tensor_shapes(graph)
    out = {}
    for i, op in enumerate(graph.ops):
        inputs = tuple(GraphInput(t, t, graph.tensor_scales[t], False, shapes[t]) for t in dict.fromkeys(op.inputs))
        if isinstance(op, Conv) and op.int32_output:
            output = GraphOutput(op.output, op.output, "int32", op.accumulator_scale)
        else:
            output = GraphOutput(op.output, op.output, "int8", np.array([graph.tensor_scales[op.output]]))
        out[f"layer_{i}"] = IntGraph(inputs, (op,), (output,), graph.tensor_scales)
    return out


def _time(vm, dev, name: str, args: list, min_repeat_ms: int, repeat: int) -> float:
    """Fastest of ``repeat`` means, seconds: the minimum is the least disturbed by other jobs on the machine."""
    vm.save_function(name, name + "_timed", *args)
    result = vm.time_evaluator(name + "_timed", dev, number=1, repeat=repeat, min_repeat_ms=min_repeat_ms)()
    return float(min(result.results))


def measure_layers(
    graph: IntGraph, board: Board | str = "host", min_repeat_ms: int = 20, repeat: int = 5, seed: int = 0
) -> dict:
    """Compile the whole graph (``main``) and every op alone (``layer_<i>``) in one module for this CPU; time
    each with the VM's time_evaluator on random int8 inputs. Returns ``{"layers_s": [...], "total_s": s}``.

    Per-op modules see no fusion across ops (there is none today: fuse.py fuses within an op), and each call
    includes the VM's call overhead, which the fitted per-op overhead absorbs."""
    import tvm
    from tvm import relax

    from ..build import board_target, build_executable
    from ..pipeline import run_pipeline

    board = load_board(board) if isinstance(board, str) else board
    target = board_target(board)
    graphs = {"main": graph, **single_op_graphs(graph)}
    vm = relax.VirtualMachine(build_executable(run_pipeline(graphs, target).mod, target), tvm.cpu())
    dev = tvm.cpu()
    rng = np.random.default_rng(seed)

    def args_of(g: IntGraph) -> list:
        return [tvm.runtime.tensor(rng.integers(-128, 128, size=i.shape, dtype=np.int8), dev) for i in g.inputs]

    total = _time(vm, dev, "main", args_of(graph), min_repeat_ms, repeat)
    layers = [_time(vm, dev, name, args_of(g), min_repeat_ms, repeat) for name, g in graphs.items() if name != "main"]
    return {"layers_s": layers, "total_s": total}


def measure_bandwidth(nbytes: int, seconds: float = 0.3) -> float:
    """Copy bandwidth of this machine, bytes/s, counting read + write: ``2 x nbytes / time`` of np.copyto,
    fastest of repeated copies. A buffer of L2 size gives the on-chip figure, a large one the DRAM figure."""
    src = np.ones(nbytes // 8, dtype=np.float64)
    dst = np.empty_like(src)
    best, end = math.inf, time.perf_counter() + seconds
    while time.perf_counter() < end:
        t = time.perf_counter()
        np.copyto(dst, src)
        best = min(best, time.perf_counter() - t)
    return 2 * src.nbytes / best


# Fitted coefficients: figure name -> the op kinds whose padded work it divides (estimate.throughput).
FIT_COLUMNS: dict[str, tuple[str, ...]] = {
    "macs_per_cycle": ("Conv", "GroupConv", "HeadConv"),
    "depthwise_macs_per_cycle": ("DepthwiseConv",),
    "add_per_cycle": ("Add",),
    "resize_per_cycle": ("Resize",),
    "maxpool_per_cycle": ("MaxPool",),
    "concat_per_cycle": ("Concat",),
}
# A kind whose fitted cost is 0 (its layers are all overhead) gets this throughput instead of infinity.
FREE = 1e12


def fit_host(layers: list, measured_s: list[float], clock_hz: float) -> dict[str, float]:
    """Least-squares fit of measured cycles ``y = sum_kind work_kind / throughput_kind + overhead`` with
    non-negative coefficients, each row weighted by 1 / sqrt(y): between absolute error (which fits the big
    layers and leaves the small ones wrong by 5x) and relative error (which fits the many small layers and
    underestimates the big ones); chosen on the measured graphs of PERFORMANCE.md. ``layers``: LayerEstimates made with unit block sizes (so work = real work). Solved over
    every subset of active coefficients (at most 7 unknowns: 127 small solves), keeping the best feasible one
    (a brute-force non-negative least squares, enough at this size). Returns the fitted figures (only kinds
    present in ``layers``), ``elementwise_per_cycle`` (the slowest element-op kind: the fallback) and
    ``rms_rel_error``."""
    y = np.array(measured_s, dtype=np.float64) * clock_hz
    names = [n for n, kinds in FIT_COLUMNS.items() if any(layer.op in kinds for layer in layers)]
    cols = [
        np.array([layer.work if layer.op in FIT_COLUMNS[n] else 0 for layer in layers], dtype=np.float64) for n in names
    ]
    w = 1.0 / np.sqrt(y)
    a = np.stack(cols + [np.ones_like(y)], axis=1) * w[:, None]
    b = y * w
    best = None
    for k in range(1, a.shape[1] + 1):
        for active in itertools.combinations(range(a.shape[1]), k):
            coef, *_ = np.linalg.lstsq(a[:, active], b, rcond=None)
            if (coef < 0).any():
                continue
            full = np.zeros(a.shape[1])
            full[list(active)] = coef
            rms = float(np.sqrt(np.mean(((a @ full - b) / b) ** 2)))  # relative, for the report
            if best is None or rms < best[1]:
                best = (full, rms)
    coef, rms = best
    out = {n: (1.0 / c if c > 0 else FREE) for n, c in zip(names, coef[:-1], strict=True)}
    out["op_overhead_cycles"] = max(float(coef[-1]), 1.0)  # board figures must be > 0: 1 cycle when the fit gives 0
    element = [out[n] for n in names if n not in ("macs_per_cycle", "depthwise_macs_per_cycle")]
    if element:
        out["elementwise_per_cycle"] = min(element)
    out["rms_rel_error"] = rms
    return out


def calibrated_board(board: Board, fitted: dict[str, float], source: str) -> Board:
    """``board`` with the fitted figures set (the source of each: the command that made them)."""
    figures = dict(board.accelerator.figures)
    for name, value in fitted.items():
        if name == "rms_rel_error":
            continue
        unit = ACCELERATOR_FIGURES.get(name) or OPTIONAL_FIGURES[name]
        figures[name] = Figure(name, float(value), unit, source)
    acc = Accelerator(board.accelerator.name, MappingProxyType(figures), board.accelerator.note)
    return replace(board, accelerator=acc, figures=tuple(figures.values()))
