"""Host profile fit: time every layer of a graph compiled for this CPU and fit the host's figures to the times.

Data only, prints nothing; ``scripts/calibrate_host.py MODEL.onnx [...]`` runs it and prints the [[figures]]
to paste into fcos3d/boards/host.toml (that command is the figures' source).
"""

from __future__ import annotations

import math
import time
from dataclasses import replace
from types import MappingProxyType

import numpy as np

from fcos3d.boards import ACCELERATOR_FIGURES, OPTIONAL_FIGURES, Accelerator, Board, Figure, load_board
from fcos3d.int8.ops import Conv, GraphInput, GraphOutput, IntGraph

from .estimate import tensor_shapes

__all__ = [
    "single_op_graphs",
    "measure_layers",
    "time_library",
    "measure_bandwidth",
    "fit_host",
    "fit_context",
    "calibrated_board",
]

# Batches of single calls for a whole module's time (measure_layers' total, time_library): the fit and the
# benchmark that judges it time a module the same way.
TOTAL_BATCHES = 10


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


def _time(vm, dev, name: str, args: list, repeat: int, batches: int = 1, pause: float = 0.2) -> float:
    """Fastest of ``batches`` x ``repeat`` single calls, seconds, after one warm-up call, the batches ``pause``
    seconds apart: on a machine shared with other jobs a single call of up to a few ms is often not preempted,
    and the minimum is that call (a mean over a window of 20 ms, as before 2026-12-05, always includes the other
    jobs' time slices). Several batches spread the calls over time: on this KVM guest the fastest call of one
    batch of 30 moved by 5-10% from one batch to the next (2026-12-06)."""
    vm.save_function(name, name + "_timed", *args)
    vm[name + "_timed"]()  # warm-up: first-touch allocations, code and data into the caches
    timer = vm.time_evaluator(name + "_timed", dev, number=1, repeat=repeat, min_repeat_ms=0)
    best = float("inf")
    for b in range(batches):
        if b:
            time.sleep(pause)
        best = min(best, *timer().results)
    return float(best)


def time_library(library, graph: IntGraph, repeat: int = 30, batches: int = TOTAL_BATCHES, seed: int = 0) -> float:
    """Fastest single call (seconds) of a compiled artifact's ``main`` (model.so) on random int8 inputs, timed
    as measure_layers times a whole module."""
    import tvm
    from tvm import relax

    dev = tvm.cpu()
    vm = relax.VirtualMachine(tvm.runtime.load_module(str(library)), dev)
    rng = np.random.default_rng(seed)
    args = [tvm.runtime.tensor(rng.integers(-128, 128, size=i.shape, dtype=np.int8), dev) for i in graph.inputs]
    return _time(vm, dev, "main", args, repeat, batches)


def measure_layers(
    graph: IntGraph, board: Board | str = "host", repeat: int = 30, seed: int = 0, passes: int = 2
) -> dict:
    """Compile the whole graph (``main``) and every op alone (``layer_<i>``) in one module for this CPU; time
    each with the VM's time_evaluator on random int8 inputs, the fastest of ``repeat`` single calls, in
    ``passes`` passes over the module (main, then every layer), keeping each one's fastest: this KVM guest's
    speed drifts by up to 10% over minutes (2026-12-06), and a layer timed in a slow minute would be fitted
    against a total timed in a fast one. Returns ``{"layers_s": [...], "total_s": s}``. Run it with
    TVM_NUM_THREADS=1 for the one-thread profile.

    Per-op modules see no fusion across ops (there is none today: fuse.py fuses within an op), and each call
    includes the VM's call overhead, which the fitted per-op overhead absorbs. A layer alone runs with its
    input, output and weights in the caches, which it may not find inside the whole graph."""
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

    inputs = {name: args_of(g) for name, g in graphs.items()}
    total, layers = math.inf, [math.inf] * (len(graphs) - 1)
    for _ in range(passes):
        total = min(total, _time(vm, dev, "main", inputs["main"], repeat, batches=TOTAL_BATCHES))
        times = [_time(vm, dev, name, args, repeat) for name, args in inputs.items() if name != "main"]
        layers = [min(a, b) for a, b in zip(layers, times, strict=True)]
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


# Fitted coefficients: figure name -> the op kinds whose work it divides (estimate.throughput, KIND_FIGURE). The
# kinds of no column (Clip, Reshape, Transpose, ...) divide elementwise_per_cycle, as estimate.throughput does.
FIT_COLUMNS: dict[str, tuple[str, ...]] = {
    "macs_per_cycle": ("Conv", "GroupConv", "HeadConv"),
    "depthwise_macs_per_cycle": ("DepthwiseConv",),
    "add_per_cycle": ("Add",),
    "resize_per_cycle": ("Resize",),
    "maxpool_per_cycle": ("MaxPool",),
    "concat_per_cycle": ("Concat",),
    "lut_per_cycle": ("Lut",),
    "mul_per_cycle": ("Mul",),
    "avgpool_per_cycle": ("AveragePool",),
    "matmul_macs_per_cycle": ("MatMul",),
    "convtranspose_per_cycle": ("ConvTranspose",),
    "resize_linear_per_cycle": ("ResizeLinear",),
    "softmax_per_cycle": ("Softmax",),
    "lut_avgpool_per_cycle": ("LutAveragePool",),
}
# A kind whose fitted cost is 0 (its layers are all overhead) gets this throughput instead of infinity.
FREE = 1e12


def _column(kind: str) -> str:
    for name, kinds in FIT_COLUMNS.items():
        if kind in kinds:
            return name
    return "elementwise_per_cycle"


def fit_host(
    layers: list,
    measured_s: list[float],
    clock_hz: float,
    counts: list[dict] | None = None,
    row_weights: list[float] | None = None,
) -> dict[str, float]:
    """Non-negative least squares (scipy.optimize.nnls) of measured cycles ``y = sum_kind work_kind /
    throughput_kind + sum_term units_term / figure_term + overhead``, each row weighted by 1 / sqrt(y): between
    absolute error (which fits the big layers and leaves the small ones wrong by 5x) and relative error (which
    fits the many small layers and underestimates the big ones); chosen on the measured graphs of PERFORMANCE.md.
    ``layers``: LayerEstimates made with unit block sizes (so work = real work, or the dot instructions' MAC
    slots with ``dot_lanes``). ``counts``: per layer, estimate.host_counts (the host's per-conv terms: output
    elements, im2col words, pad bytes, default-conv MACs), each a column of its own. Returns the fitted figures
    (only columns present in ``layers``), ``elementwise_per_cycle`` (its own column's when kinds without a
    figure are present, else the slowest element-op kind: the fallback) and ``rms_rel_error``."""
    from scipy.optimize import nnls

    from .estimate import HOST_TERMS

    y = np.array(measured_s, dtype=np.float64) * clock_hz
    counts = counts if counts is not None else [{} for _ in layers]
    kinds = [_column(layer.op) for layer in layers]
    names = [n for n in (*FIT_COLUMNS, "elementwise_per_cycle") if n in kinds]
    terms = [t for t in HOST_TERMS if any(c.get(t) for c in counts)]
    cols = [
        np.array([layer.work if k == n else 0 for layer, k in zip(layers, kinds, strict=True)], dtype=np.float64)
        for n in names
    ]
    cols += [np.array([c.get(t, 0) for c in counts], dtype=np.float64) for t in terms]
    # Kernels an op launches beyond its first (estimate.host_extra_kernels: pad_split, im2col, a zero-point pad):
    # each is a call with its own thread-pool launch and workspace.
    launches = np.array([c.get("extra_kernels", 0) for c in counts], dtype=np.float64)
    launch_column = bool(launches.any())
    cols += [launches] if launch_column else []
    w = 1.0 / np.sqrt(y)
    if row_weights is not None:
        w = w * np.asarray(row_weights, dtype=np.float64)
    a = np.stack(cols + [np.ones_like(y)], axis=1)
    scale = a.max(axis=0)  # columns of 1 .. 1e9: scaled to 1 for the solver, unscaled after
    coef, _ = nnls(a / scale * w[:, None], y * w, maxiter=50 * a.shape[1])
    coef = coef / scale
    rms = float(np.sqrt(np.mean(((a @ coef - y) / y) ** 2)))  # relative, for the report
    n_named = len(names) + len(terms)
    out = {n: (1.0 / c if c > 0 else FREE) for n, c in zip(names + terms, coef[:n_named], strict=True)}
    out["op_overhead_cycles"] = max(float(coef[-1]), 1.0)  # board figures must be > 0: 1 cycle when the fit gives 0
    if launch_column:
        out["kernel_launch_cycles"] = max(float(coef[n_named]), 1.0)
    element = [out[n] for n in names if n not in ("macs_per_cycle", "depthwise_macs_per_cycle")]
    if element and "elementwise_per_cycle" not in out:
        out["elementwise_per_cycle"] = min(element)
    out["rms_rel_error"] = rms
    return out


def fit_context(graphs: list[tuple[int, int, int, float]], op_overhead_cycles: float) -> dict[str, float]:
    """The whole-graph correction of a per-layer fit: ``graphs`` as (estimated cycles of the layers alone, ops,
    activation bytes summed over the ops, measured cycles of the whole module). Least squares in relative error
    of ``measured - estimated = c + d x ops + activation bytes / context_bytes_per_cycle``: ``c`` is the cost of one
    call of the module (the VM's entry into ``main``: a model of three small layers feels it), ``d`` moves the
    per-op overhead (a call inside the VM's main costs less than a function called alone), the byte term is what
    a layer pays for not finding its tensors in the caches as it does when timed alone. Returns
    ``op_overhead_cycles`` (moved by d, at least 1), ``call_overhead_cycles`` and ``context_bytes_per_cycle``;
    a term whose fitted cost is <= 0 is dropped and the rest refitted (absent from the result)."""
    est, ops, nbytes, measured = (np.array(c, dtype=np.float64) for c in zip(*graphs, strict=True))
    columns = {"call": np.ones_like(ops), "ops": ops, "bytes": nbytes}
    b = (measured - est) / measured
    while True:
        a = np.stack(list(columns.values()), axis=1) / measured[:, None]
        coef = dict(zip(columns, np.linalg.lstsq(a, b, rcond=None)[0], strict=True))
        dropped = [k for k in ("call", "bytes") if k in coef and coef[k] <= 0]
        if not dropped:
            break
        del columns[dropped[0]]
    out = {"op_overhead_cycles": max(op_overhead_cycles + float(coef["ops"]), 1.0)}
    if "call" in coef:
        out["call_overhead_cycles"] = float(coef["call"])
    if "bytes" in coef:
        out["context_bytes_per_cycle"] = 1.0 / float(coef["bytes"])
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
