"""Per-layer profile of a compiled host artifact: measured time per kernel and per int8 layer beside the estimate.

``profile_artifact(folder)`` writes ``profile.json`` and ``profile.csv`` beside ``perf.json``. Two measurements:
  kernels   the artifact's own ``model.so``, its ``main`` run with a Relax VM instrument (``vm.set_instrument``:
            TVM 0.27 has no VM profiler) that times every call in order: the kernels as the module runs them
            (fused across layers where FuseOps fused them), plus the VM's builtins (allocations, checks)
  layers    every op of the int8 op list compiled alone (latency/fit.py's single-op graphs, the estimator's
            layers one for one), each timed whole (what perf.json estimates) and per kernel
The module's kernels are attributed to layers by their kind (pad_split, im2col, conv2d_int8, depthwise_int8, ...)
and output shape, matched with the layers' own kernels (the module may run independent layers in another order than
the op list): a layer whose work FuseOps folded into another layer's kernel (an add after a depthwise conv) shows 0
in the module and names the layer before it that has time. Data only, prints nothing; never imports torch or fcos3d.runtime.
"""

from __future__ import annotations

import json
import re
import statistics
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from fcos3d.artifact import check_files, library_path, read_meta
from fcos3d.boards import Board, load_board
from fcos3d.int8.ops import IntGraph
from fcos3d.io import atomic_write_text

from .latency.report import layers_csv

__all__ = ["PROFILE_FORMAT", "CSV_COLUMNS", "kernel_kind", "profile_artifact", "profile_graph", "write_profile"]

PROFILE_FORMAT = 1
CSV_COLUMNS = (
    "index",
    "name",
    "op",
    "output_shape",
    "macs",
    "estimate_ms",
    "measured_ms",
    "in_module_ms",
    "fused_into",
    "roofline_ms",
    "x_roofline",
    "share_of_module",
    "kernels",
)
# Kernel names (PrimFunc symbols, FuseOps' "fused_" prefix and numeric suffixes removed) start with one of these.
_KINDS = (
    "pad_split",
    "im2col",
    "conv2d_int8",
    "depthwise_int8",
    "max_pool2d",
    "max_pool_split",
    "pool_sum",
    "concatenate",
    "take",
    "upsample_nearest",
    "conv2d",
    "matmul",
    "requantize",
)


def kernel_kind(symbol: str) -> str:
    """The kind of a called function: ``vm_builtin`` for the VM's own, else the kernel's leading op name."""
    if symbol.startswith("vm.") or "." in symbol:
        return "vm_builtin"
    name = symbol[len("fused_") :] if symbol.startswith("fused_") else symbol
    for kind in _KINDS:
        if name.startswith(kind):
            return kind
    return re.sub(r"\d+$", "", name.split("_")[0]) or name


def _timed_calls(vm, function: str, args: list, runs: int) -> tuple[list[str], list[float], list[tuple]]:
    """Every call ``function`` makes, in order: (symbols, median seconds per call over ``runs`` runs, the shape of
    each call's last argument: a kernel's output). The instrument times from just before a call to just after it
    (the callback's own microsecond or two included: _instrument_overhead)."""
    from tvm.runtime.vm import VMInstrumentReturnKind

    starts: list[float] = []
    calls: list[tuple[str, float]] = []
    shapes: list[tuple] = []

    def instrument(func, symbol, before_run, ret_value, *call_args):
        if before_run:
            starts.append(time.perf_counter())
        else:
            calls.append((str(symbol), time.perf_counter() - starts.pop()))
            last = call_args[-1] if call_args else None
            shapes.append(tuple(int(d) for d in last.shape) if hasattr(last, "shape") else ())
        return VMInstrumentReturnKind.NO_OP

    vm.set_instrument(instrument)
    per_run = []
    for _ in range(runs):
        calls.clear()
        shapes.clear()
        vm[function](*args)
        per_run.append(list(calls))
    symbols = [s for s, _ in per_run[0]]
    if any([s for s, _ in r] != symbols for r in per_run):
        raise RuntimeError(f"{function}: the VM called different functions from one run to the next")
    return symbols, [statistics.median(r[i][1] for r in per_run) for i in range(len(symbols))], list(shapes)


def _instrument_overhead(symbols: Sequence[str], seconds: Sequence[float]) -> float:
    """Seconds the instrument itself adds to each timed call: the median time of the VM's ``null_value``
    builtin, which does nothing (the fastest call when the module has none). Subtracted from every call."""
    empty = [t for s, t in zip(symbols, seconds, strict=True) if s == "vm.builtin.null_value"]
    return statistics.median(empty) if empty else min(seconds, default=0.0)


def _whole_seconds(vm, dev, function: str, args: list, runs: int) -> float:
    """Median seconds of one uninstrumented call of ``function`` (the VM's time_evaluator)."""
    vm.save_function(function, function + "_profiled", *args)
    result = vm.time_evaluator(function + "_profiled", dev, number=1, repeat=runs)()
    return float(statistics.median(result.results))


def _attribute(module_tokens: Sequence[tuple], layer_tokens: Sequence[tuple[int, tuple]]) -> list[int]:
    """For each kernel of the module, the layer it belongs to. A token is (kind, output shape); each module kernel
    takes the first layer kernel with its token not yet taken (the module may run independent layers in another
    order than the op list, so the match is by token, not by position). A kernel FuseOps fused across layers keeps
    its anchor's token (a depthwise conv with the add after it: kind depthwise_int8, the add's shape = the conv's).
    A module kernel with no such partner goes to the layer of the module kernel before it (or the first layer)."""
    free: dict[tuple, list[int]] = {}
    for layer, token in layer_tokens:
        free.setdefault(token, []).append(layer)
    owner, last = [], layer_tokens[0][0] if layer_tokens else 0
    for token in module_tokens:
        candidates = free.get(token)
        last = candidates.pop(0) if candidates else last
        owner.append(last)
    return owner


def profile_graph(
    graph: IntGraph,
    vm_module,
    board: Board | str = "host",
    runs: int = 5,
    peak_gmacs_per_core: float | None = None,
    layers: bool = True,
    seed: int = 0,
) -> dict:
    """The profile of ``graph`` as compiled into ``vm_module`` (a loaded model.so whose ``main`` is ``graph``).
    ``peak_gmacs_per_core``: the core's int8 peak (benchmarks/peak_probe.py) for the roofline columns (None: none).
    ``layers``: also compile and time every op alone (as long again as the compile); False: module kernels only."""
    import tvm
    from tvm import relax

    from .build import board_target, build_executable
    from .latency.estimate import estimate
    from .latency.fit import single_op_graphs
    from .pipeline import run_pipeline

    board = load_board(board) if isinstance(board, str) else board
    if board.cross_compiler is not None:
        raise ValueError(f"a profile runs the module on this machine: compile for board 'host', not {board.name!r}")
    dev = tvm.cpu()
    threads = int(tvm.get_global_func("runtime.NumThreads")())
    rng = np.random.default_rng(seed)

    def args_of(g: IntGraph) -> list:
        return [tvm.runtime.tensor(rng.integers(-128, 128, size=i.shape, dtype=np.int8), dev) for i in g.inputs]

    main_args = args_of(graph)
    module_s = _whole_seconds(relax.VirtualMachine(vm_module, dev), dev, "main", main_args, runs)
    symbols, seconds, out_shapes = _timed_calls(relax.VirtualMachine(vm_module, dev), "main", main_args, runs)
    overhead = _instrument_overhead(symbols, seconds)
    seconds = [max(t - overhead, 0.0) for t in seconds]
    kinds = [kernel_kind(s) for s in symbols]

    est = estimate(graph, board)
    rows = []
    for i, (op, layer) in enumerate(zip(graph.ops, est.layers, strict=True)):
        roofline = layer.macs / (peak_gmacs_per_core * 1e9 * threads) if peak_gmacs_per_core and layer.macs else None
        rows.append(
            {
                "index": i,
                "name": op.name,
                "op": layer.op,
                "output_shape": list(layer.output_shape),
                "macs": layer.macs,
                "estimate_ms": layer.cycles / est.clock_hz * 1e3,
                "measured_ms": None,
                "in_module_ms": 0.0,
                "fused_into": None,
                "roofline_ms": None if roofline is None else roofline * 1e3,
                "kernels": [],
            }
        )

    if layers:
        graphs = single_op_graphs(graph)
        target = board_target(board)
        lib = build_executable(run_pipeline(graphs, target).mod, target)
        plain, instrumented = relax.VirtualMachine(lib, dev), relax.VirtualMachine(lib, dev)
        layer_tokens: list[tuple[int, tuple]] = []
        for i, (name, g) in enumerate(graphs.items()):
            a = args_of(g)
            rows[i]["measured_ms"] = _whole_seconds(plain, dev, name, a, runs) * 1e3
            layer_symbols, layer_seconds, layer_shapes = _timed_calls(instrumented, name, a, runs)
            layer_seconds = [max(t - overhead, 0.0) for t in layer_seconds]
            for s, t, shape in zip(layer_symbols, layer_seconds, layer_shapes, strict=True):
                if kernel_kind(s) != "vm_builtin":
                    rows[i]["kernels"].append({"kernel": s, "kind": kernel_kind(s), "ms": t * 1e3})
                    layer_tokens.append((i, (kernel_kind(s), shape)))
        kernel_index = [k for k, kind in enumerate(kinds) if kind != "vm_builtin"]
        owners = _attribute([(kinds[k], out_shapes[k]) for k in kernel_index], layer_tokens)
    else:  # no layer kernels to align with: every kernel goes to the layer of the op list it falls in, by order
        kernel_index, owners = [], []
    owner_of = dict(zip(kernel_index, owners, strict=True))
    kernels = []
    for k, (symbol, s) in enumerate(zip(symbols, seconds, strict=True)):
        layer = owner_of.get(k)
        if layer is not None:
            rows[layer]["in_module_ms"] += s * 1e3
        kernels.append(
            {
                "index": k,
                "kernel": symbol,
                "kind": kinds[k],
                "ms": s * 1e3,
                "output_shape": list(out_shapes[k]),
                "layer": None if layer is None else rows[layer]["name"],
            }
        )
    if layers:
        last = None
        for r in rows:  # a layer with no kernel in the module went into the kernel of the layer before it
            if r["in_module_ms"] == 0.0 and r["kernels"] and last is not None:
                r["fused_into"] = last
            elif r["in_module_ms"] > 0.0:
                last = r["name"]
    for r in rows:
        time_ms = r["in_module_ms"] if layers else None
        r["x_roofline"] = time_ms / r["roofline_ms"] if r["roofline_ms"] and time_ms else None
        r["share_of_module"] = time_ms / (module_s * 1e3) if time_ms is not None else None

    by_kind: dict[str, float] = {}
    for k in kernels:
        by_kind[k["kind"]] = by_kind.get(k["kind"], 0.0) + k["ms"]
    roofline_ms = est.macs / (peak_gmacs_per_core * 1e9 * threads) * 1e3 if peak_gmacs_per_core else None
    totals = {
        "module_ms": module_s * 1e3,
        "kernels_sum_ms": sum(k["ms"] for k in kernels if k["kind"] != "vm_builtin"),
        "vm_builtins_ms": by_kind.get("vm_builtin", 0.0),
        "instrument_overhead_us_per_call": overhead * 1e6,
        "layers_alone_sum_ms": sum(r["measured_ms"] for r in rows) if layers else None,
        "estimate_ms": est.seconds * 1e3,
        "macs": est.macs,
        "roofline_ms": roofline_ms,
        "x_roofline": module_s * 1e3 / roofline_ms if roofline_ms else None,
    }
    return {
        "format": PROFILE_FORMAT,
        "board": board.name,
        "threads": threads,
        "runs": runs,
        "peak_gmacs_per_core": peak_gmacs_per_core,
        "totals": totals,
        "by_kind_ms": dict(sorted(by_kind.items(), key=lambda kv: -kv[1])),
        "layers": rows,
        "kernels": kernels,
    }


def _csv_text(profile: Mapping) -> str:
    kernels = lambda r: ";".join(f"{k['kind']}:{k['ms']:.4f}" for k in r["kernels"])
    return layers_csv(profile["layers"], CSV_COLUMNS, kernels=kernels)


def write_profile(profile: Mapping, out_dir: str | Path, stem: str = "profile") -> dict[str, Path]:
    """``profile.json`` and ``profile.csv`` (one row per layer) into ``out_dir``, each written atomically."""
    out_dir = Path(out_dir)
    paths = {"json": out_dir / f"{stem}.json", "csv": out_dir / f"{stem}.csv"}
    atomic_write_text(paths["json"], json.dumps(profile, indent=1) + "\n")
    atomic_write_text(paths["csv"], _csv_text(profile))
    return paths


def profile_artifact(
    artifact_dir: str | Path,
    onnx_path: str | Path | None = None,
    runs: int = 5,
    peak_gmacs_per_core: float | None = None,
    layers: bool = True,
    write: bool = True,
) -> dict:
    """Profile a host artifact folder (fcos3d-compile --target host) on this machine; with ``write``, save
    profile.json / profile.csv beside its perf.json. ``onnx_path``: the model compiled (default: meta.json's),
    which must have the sha256 meta.json records. Threads: TVM's pool as this process has it (TVM_NUM_THREADS)."""
    import tvm

    from .check import check_onnx

    folder = Path(artifact_dir)
    meta, meta_path = read_meta(folder)
    check_files(meta, meta_path)
    onnx_path = Path(onnx_path or (meta.get("onnx") or {}).get("path") or "")
    if not onnx_path.is_file():
        raise FileNotFoundError(f"{meta_path}: the compiled ONNX {str(onnx_path)!r} is not there; pass onnx_path")
    shapes = {i["name"]: i["shape"] for i in meta["inputs"]}
    checked = check_onnx(onnx_path, input_shapes=shapes if any(d is None for d in _dims(onnx_path)) else None)
    if checked.sha256 != meta["onnx"]["sha256"]:
        raise ValueError(f"{onnx_path} is not the model {folder} was compiled from (sha256 differs)")
    graph = checked.graph
    if meta.get("layer_outputs"):
        from fcos3d.int8.layers import with_layer_outputs

        graph, _ = with_layer_outputs(graph)
    lib = tvm.runtime.load_module(str(library_path(meta, meta_path)))
    profile = profile_graph(graph, lib, meta["board"], runs, peak_gmacs_per_core, layers)
    profile["artifact"] = str(folder)
    profile["onnx"] = str(onnx_path)
    if write:
        profile["files"] = {k: str(v) for k, v in write_profile(profile, folder).items()}
    return profile


def _dims(onnx_path: Path) -> list:
    """Every input dim of the ONNX graph, None where symbolic (then meta.json's shapes are passed to the check)."""
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    inits = {i.name for i in model.graph.initializer}
    return [
        d.dim_value if d.HasField("dim_value") else None
        for i in model.graph.input
        if i.name not in inits
        for d in i.type.tensor_type.shape.dim
    ]
