"""The tracer's torch-free core: one input through every integer executor, compared at every layer of the op list.

A *layer* is an op of the int8 op list (fcos3d.int8.layers.Layer; its name is the ONNX node's). Integer
executors give every layer's integers and must agree exactly: the simulator (the spec, ``keep_intermediates``),
a compiled debug artifact (``fcos3d-compile --debug-outputs``: meta.json ``layer_outputs``), the torch int model
(fcos3d.trainer.trace adds it). *Forms* are the float-valued models (float, calibration and QAT fake quant, and
onnxruntime running the QDQ graph in float): they are compared with the integer reference by SQNR and by the
error in output steps (LSB), never for equality.

``trace_integers`` walks the layers in execution order and reports, per executor, the first layer whose
integers differ from the reference's (tensor, C-order index, both values) and whether that layer's inputs were
still equal there (then the fault is in that layer itself). ``write_trace`` writes trace.json / trace.csv /
trace.png. Library code: returns data, prints nothing.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fcos3d.errors import Fcos3dError
from fcos3d.int8.layers import Layer, graph_layers
from fcos3d.io import atomic_write_json, atomic_write_text, atomic_writer, json_plain

__all__ = [
    "SIMULATOR",
    "TraceReport",
    "artifact_layers",
    "simulator_layers",
    "onnxruntime_layers",
    "float_onnx_layers",
    "trace_integers",
    "trace_onnx",
    "float_rows",
    "sqnr_db",
    "write_trace",
]

SIMULATOR = "simulator"
# Cap for an infinite SQNR (equal tensors) where a difference of SQNRs is taken (the drop of a layer).
SQNR_CAP_DB = 120.0

LayerTensors = Mapping[str, np.ndarray]  # {layer (op) name: its output for one input}


# ---------------------------------------------------------------------------------------------------------
# Integer executors: x (int8 NCHW) -> {layer name: integers}.
# ---------------------------------------------------------------------------------------------------------


def simulator_layers(sim, x) -> dict[str, np.ndarray]:
    """Every layer's integers from the numpy simulator (fcos3d.runtime.reference.Simulator)."""
    env = sim.run(x, keep_intermediates=True)
    return {op.name: env[op.output] for op in sim.graph.ops}


def artifact_layers(artifact, x) -> dict[str, np.ndarray]:
    """Every layer's integers from a debug build (meta.json ``layer_outputs``: {op name: output name})."""
    mapping = artifact.meta.get("layer_outputs")
    if not mapping:
        raise Fcos3dError(
            f"{artifact.path / 'meta.json'}: not a debug build (no layer_outputs); compile it with "
            "`fcos3d-compile MODEL.onnx --debug-outputs --target BOARD`"
        )
    out = artifact.run(x)
    return {op: out[name] for op, name in mapping.items()}


def _session(model):
    """An onnxruntime CPU session that runs ``model`` (a ModelProto) as written: no graph optimisation (which would
    fuse away the tensors the tracer reads), one thread."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def onnxruntime_layers(onnx_path, layers: Sequence[Layer], x, inputs: Sequence = ()) -> dict[str, np.ndarray]:
    """onnxruntime running the QDQ ONNX in float, every layer's integers where the ONNX holds them.

    The ONNX gets every layer's tensor as an extra graph output (the QuantizeLinear output the reader named the
    layer's tensor after; a head conv's float output is divided by its accumulator scale and rounded).
    ``x``: the int8 input(s) the simulator takes; ``inputs`` (the IntGraph's GraphInputs) turn them into what the
    ONNX declares (uint8: ``x + 128``; float: ``(x - z) * s``). uint8 tensors are shifted to the int8 form
    (``u8 - 128``). Layers whose tensor is not in the ONNX (ops that
    the front end rewrote, e.g. from QOperator nodes) are left out. Not an integer executor: onnxruntime rounds
    in float32, so it may differ from the simulator by 1 LSB at ties (docs/int8.md); the tracer reports it so.
    """
    import onnx

    model = onnx.load(str(onnx_path))
    produced = {t: n for n in model.graph.node for t in n.output}
    have = {o.name for o in model.graph.output}
    wanted = [ly for ly in layers if ly.tensor in produced]
    for ly in wanted:
        if ly.tensor not in have:
            model.graph.output.append(onnx.ValueInfoProto(name=ly.tensor))
            have.add(ly.tensor)
    session = _session(model)
    given = dict(x) if isinstance(x, Mapping) else {session.get_inputs()[0].name: x}
    specs = {i.name: i for i in inputs}
    feeds = {}
    for i in session.get_inputs():
        v = np.asarray(given[i.name])
        if i.type == "tensor(uint8)":
            v = (v.astype(np.int16) + 128).astype(np.uint8)
        elif i.type == "tensor(float)" and i.name in specs:
            v = ((v.astype(np.float64) - specs[i.name].zero_point) * specs[i.name].scale).astype(np.float32)
        feeds[i.name] = v
    names = [ly.tensor for ly in wanted]
    values = session.run(names, feeds)
    out = {}
    for ly, v in zip(wanted, values, strict=True):
        v = np.asarray(v)
        if v.dtype == np.uint8:
            v = (v.astype(np.int16) - 128).astype(np.int8)
        elif v.dtype.kind == "f" and ly.dtype == "int32":
            v = np.round(v.astype(np.float64) / ly.scales.reshape(1, -1, 1, 1)).astype(np.int64)
        out[ly.name] = v
    return out


def float_onnx_layers(float_onnx, qdq_onnx, layers: Sequence[Layer], x, inputs: Sequence = ()) -> dict[str, np.ndarray]:
    """The float model that a QDQ ONNX was quantised from (onnxruntime's quantize_static keeps its tensor names),
    run in onnxruntime on the dequantised input: {layer name: float tensor} for every layer whose QuantizeLinear
    reads a tensor of the float model (the layer's float value before quantisation)."""
    import onnx

    qdq = onnx.load(str(qdq_onnx), load_external_data=False)
    quantized_from = {n.output[0]: n.input[0] for n in qdq.graph.node if n.op_type == "QuantizeLinear"}
    model = onnx.load(str(float_onnx))
    produced = {t for n in model.graph.node for t in n.output}
    have = {o.name for o in model.graph.output}
    # The tensor each layer's QuantizeLinear reads. QOperator nodes (QLinearConv, ...) name no float tensor: their
    # fused ReLUs leave nothing of the float model to line up with, so such layers get no float value.
    wanted = {ly.name: quantized_from[ly.tensor] for ly in layers if quantized_from.get(ly.tensor) in produced}
    if not wanted:
        return {}
    for t in dict.fromkeys(wanted.values()):
        if t not in have:
            model.graph.output.append(onnx.ValueInfoProto(name=t))
    session = _session(model)
    given = dict(x) if isinstance(x, Mapping) else {session.get_inputs()[0].name: x}
    specs = {i.name: i for i in inputs}
    feeds = {}
    for i in session.get_inputs():
        if i.name not in specs:
            raise Fcos3dError(f"{float_onnx}: input {i.name!r} is not an input of {qdq_onnx}: give its own float model")
        v = np.asarray(given[i.name], dtype=np.float64)
        feeds[i.name] = ((v - specs[i.name].zero_point) * specs[i.name].scale).astype(np.float32)
    names = list(dict.fromkeys(wanted.values()))
    values = dict(zip(names, session.run(names, feeds), strict=True))
    return {layer: np.asarray(values[t], dtype=np.float64) for layer, t in wanted.items()}


# ---------------------------------------------------------------------------------------------------------
# Comparisons.
# ---------------------------------------------------------------------------------------------------------


def sqnr_db(ref: np.ndarray, x: np.ndarray) -> float:
    """``10 log10(sum ref^2 / sum (ref - x)^2)`` in float64 (inf when equal), as fcos3d quant-report computes it."""
    ref = np.asarray(ref, dtype=np.float64)
    x = np.asarray(x, dtype=np.float64)
    if ref.shape != x.shape:
        raise Fcos3dError(f"SQNR of tensors of different shapes {ref.shape} and {x.shape}")
    signal, noise = float(np.sum(ref * ref)), float(np.sum((ref - x) ** 2))
    if noise == 0.0:
        return math.inf
    if signal == 0.0:
        return -math.inf
    return 10.0 * math.log10(signal / noise)


def dequantize(layer: Layer, q: np.ndarray) -> np.ndarray:
    """float64 ``(q - zero_point) * scales`` along axis 1."""
    q = np.asarray(q)
    shape = [1] * q.ndim
    if q.ndim > 1:
        shape[1] = -1
    return (q.astype(np.float64) - layer.zero_point) * layer.scales.reshape(shape if layer.scales.size > 1 else [1])


def _diff(layer: Layer, ref: np.ndarray, got: np.ndarray) -> dict:
    """Exact comparison of one layer: differ count, total, max |diff|, first differing C-order index and values."""
    ref, got = np.asarray(ref), np.asarray(got)
    if ref.shape != got.shape:
        problem = f"shape {got.shape}, the reference has {ref.shape}"
        return dict(differ=int(ref.size), total=int(ref.size), max_abs=None, first=None, problem=problem)
    d = ref.astype(np.int64) != got.astype(np.int64)
    n = int(np.count_nonzero(d))
    if n == 0:
        return dict(differ=0, total=int(ref.size), max_abs=0, first=None, problem=None)
    flat = int(np.flatnonzero(d)[0])
    idx = tuple(int(i) for i in np.unravel_index(flat, ref.shape))
    max_abs = int(np.max(np.abs(ref.astype(np.int64) - got.astype(np.int64))))
    first = dict(index=list(idx), value=int(got[idx]), reference=int(ref[idx]))
    return dict(differ=n, total=int(ref.size), max_abs=max_abs, first=first, problem=None)


@dataclass
class TraceReport:
    """The comparison of every form and executor at every layer, for one input.

    ``rows``: one dict per layer in execution order: index, layer (op name), kind, dtype, shape, ``module`` (the
    float model's module key, where known), ``differ`` {executor: differing elements vs the reference (None:
    the executor lacks the layer)}, ``max_abs`` {executor: max |diff|}, ``sqnr`` {form: dB against float},
    ``max_lsb`` {form: max |form / scale - (q - z)| against the reference integers}, ``drop_db`` (how much the
    int SQNR falls in this layer: the lowest SQNR of its inputs minus its own, capped at 120 dB).
    ``divergences`` {executor: the first layer that differs, or None}; ``approximate``: executors compared in LSB
    but not required to be equal (onnxruntime).
    """

    input: str
    reference: str
    executors: list[str]
    forms: list[str] = field(default_factory=list)
    rows: list[dict] = field(default_factory=list)
    divergences: dict[str, dict | None] = field(default_factory=dict)
    approximate: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def exact(self) -> list[str]:
        """The integer executors that must equal the reference bit for bit."""
        return [e for e in self.executors if e != self.reference and e not in self.approximate]

    @property
    def equal(self) -> bool:
        """Every exact executor equals the reference at every layer."""
        return all(self.divergences.get(e) is None for e in self.exact)

    def worst_drops(self, n: int = 5, form: str = "int") -> list[dict]:
        """The ``n`` layers where the float-to-int SQNR falls most (largest ``drop_db``), worst first."""
        rows = [r for r in self.rows if r.get("drop_db") is not None and form in r.get("sqnr", {})]
        return sorted(rows, key=lambda r: (-r["drop_db"], r["index"]))[:n]

    def verdict(self) -> str:
        """One line per exact executor: equal at every layer, or where it first differs."""
        lines = []
        for e in self.exact:
            d = self.divergences.get(e)
            if d is None:
                lines.append(f"{e} == {self.reference} at all {len(self.rows)} layers")
                continue
            where = (
                "its inputs are equal, so this layer computes differently"
                if d["inputs_equal"]
                else "its inputs already differ"
            )
            lines.append(
                f"{e} != {self.reference}: first at layer {d['index']} {d['layer']} ({d['kind']}), "
                f"tensor {d['tensor']}, index {tuple(d['first']['index'])}: {e} {d['first']['value']}, "
                f"{self.reference} {d['first']['reference']} ({d['differ']} of {d['total']} differ; {where})"
            )
        for e in self.approximate:
            worst = max((r["max_abs"].get(e) or 0 for r in self.rows), default=0)
            layers = sum(1 for r in self.rows if r["differ"].get(e))
            lines.append(f"{e} vs {self.reference}: {layers} layers differ, at most {worst} LSB (float rounding)")
        return "\n".join(lines)


def trace_integers(
    layers: Sequence[Layer],
    tensors: Mapping[str, LayerTensors],
    reference: str,
    *,
    approximate: Sequence[str] = (),
    input_tensors: Sequence[str] = (),
    input_name: str = "",
) -> TraceReport:
    """Compare every executor's layers with ``reference``'s ({executor: {layer name: integers}}).

    ``input_tensors``: the graph's input tensor names (a layer fed only by them has equal inputs).
    """
    if reference not in tensors:
        raise Fcos3dError(f"trace: no reference executor {reference!r} among {list(tensors)}")
    ref = tensors[reference]
    report = TraceReport(input_name, reference, list(tensors), approximate=list(approximate))
    producer = {ly.tensor: ly.name for ly in layers}
    differing: dict[str, set[str]] = {e: set() for e in tensors}
    for ly in layers:
        row = dict(
            index=ly.index,
            layer=ly.name,
            kind=ly.kind,
            dtype=ly.dtype,
            tensor=ly.tensor,
            shape=list(np.shape(ref[ly.name])) if ly.name in ref else None,
            differ={},
            max_abs={},
            sqnr={},
            max_lsb={},
            drop_db=None,
        )
        for e, got in tensors.items():
            if e == reference:
                continue
            if ly.name not in got or ly.name not in ref:
                row["differ"][e] = row["max_abs"][e] = None
                continue
            d = _diff(ly, ref[ly.name], got[ly.name])
            row["differ"][e], row["max_abs"][e] = d["differ"], d["max_abs"]
            if d["differ"]:
                differing[e].add(ly.name)
                if e not in report.divergences or report.divergences[e] is None:
                    feeding = [producer[t] for t in ly.inputs if t in producer]
                    report.divergences[e] = dict(
                        index=ly.index,
                        layer=ly.name,
                        kind=ly.kind,
                        tensor=ly.tensor,
                        differ=d["differ"],
                        total=d["total"],
                        max_abs=d["max_abs"],
                        first=d["first"],
                        problem=d["problem"],
                        inputs=feeding,
                        inputs_equal=not any(f in differing[e] for f in feeding),
                    )
            else:
                report.divergences.setdefault(e, None)
        report.rows.append(row)
    for e in tensors:
        if e != reference:
            report.divergences.setdefault(e, None)
    return report


def executor_name(artifact) -> str:
    """How a compiled artifact is named in a trace: ``compiled (<board>)``, ``@HOST:PORT`` when it runs remotely,
    ``TOSA reference model (<board>)`` for an Ethos-U artifact (the NPU's integer spec, no hardware)."""
    if artifact.meta.get("backend") == "tosa":
        return f"TOSA reference model ({artifact.meta.get('board', '?')})"
    where = "" if artifact.device == "local" else f" @{artifact.device}"
    return f"compiled ({artifact.meta.get('board', '?')}{where})"


def trace_onnx(
    onnx_path,
    x,
    *,
    artifact=None,
    onnxruntime: bool = True,
    simulator=None,
    input_name: str = "",
    float_onnx=None,
) -> TraceReport:
    """Any int8 ONNX the compiler takes: the simulator (reference), a debug ``artifact`` or a list of them
    (load_artifact of ``--debug-outputs`` builds: TVM modules, TOSA on the reference model) and onnxruntime (compared in LSB), every layer, for the int8 input(s) ``x``.
    ``float_onnx``: the float model it was quantised from; then every layer also gets the SQNR against float of
    the simulator's integers ("int") and of onnxruntime's ("onnxruntime"), and their error in output steps."""
    from .reference.simulator import Simulator

    sim = simulator if simulator is not None else Simulator(onnx_path)
    layers = graph_layers(sim.graph)
    tensors = {SIMULATOR: simulator_layers(sim, x)}
    for art in [] if artifact is None else artifact if isinstance(artifact, (list, tuple)) else [artifact]:
        tensors[executor_name(art)] = artifact_layers(art, x)
    approximate = []
    if onnxruntime:
        tensors["onnxruntime"] = onnxruntime_layers(onnx_path, layers, x, sim.graph.inputs)
        approximate.append("onnxruntime")
    inputs = [i.tensor for i in sim.graph.inputs]
    report = trace_integers(
        layers, tensors, SIMULATOR, approximate=approximate, input_tensors=inputs, input_name=input_name
    )
    if float_onnx is not None:
        by_name = {ly.name: ly for ly in layers}
        forms = {"float": float_onnx_layers(float_onnx, onnx_path, layers, x, sim.graph.inputs)}
        if not forms["float"]:
            report.notes.append(
                f"{float_onnx}: no layer of {onnx_path} is a QuantizeLinear of one of its tensors (QOperator form?): "
                "no SQNR against float"
            )
        if "onnxruntime" in tensors:
            forms["onnxruntime"] = {k: dequantize(by_name[k], v) for k, v in tensors["onnxruntime"].items()}
        float_rows(report, layers, tensors[SIMULATOR], forms)
    return report


def float_rows(
    report: TraceReport,
    layers: Sequence[Layer],
    reference_ints: LayerTensors,
    float_forms: Mapping[str, LayerTensors],
    *,
    float_name: str = "float",
    input_sqnr: float = math.inf,
) -> None:
    """Add the float forms to ``report``'s rows: SQNR against ``float_name`` of every other form and of the
    dequantised reference integers (key "int"), and each form's max error in output steps against them.

    ``float_forms``: {form: {layer name: float tensor}} (``float_name`` among them for SQNRs). ``input_sqnr``:
    the graph input's int8 SQNR (inf when the input is exactly representable, as FCOS3D's YUV bytes are).
    """
    by_name = {r["layer"]: r for r in report.rows}
    producer = {ly.tensor: ly.name for ly in layers}
    ref_float = float_forms.get(float_name, {})
    for form in float_forms:
        if form not in report.forms:
            report.forms.append(form)
    for ly in layers:
        row = by_name.get(ly.name)
        q = reference_ints.get(ly.name)
        if row is None or q is None:
            continue
        deq = dequantize(ly, q)
        if ly.name in ref_float:
            f = np.asarray(ref_float[ly.name], dtype=np.float64)
            for form, tensors in float_forms.items():
                if form != float_name and ly.name in tensors:
                    row["sqnr"][form] = sqnr_db(f, tensors[ly.name])
            row["sqnr"]["int"] = sqnr_db(f, deq)
        for form, tensors in float_forms.items():
            if ly.name in tensors:
                y = np.asarray(tensors[ly.name], dtype=np.float64)
                shape = [1] * y.ndim
                if y.ndim > 1:
                    shape[1] = -1
                steps = y / ly.scales.reshape(shape if ly.scales.size > 1 else [1])
                row["max_lsb"][form] = float(np.max(np.abs(steps - (np.asarray(q, np.float64) - ly.zero_point))))
        if "int" in row["sqnr"]:
            ins = [by_name[producer[t]]["sqnr"].get("int") for t in ly.inputs if t in producer]
            ins = [v for v in ins if v is not None] or [input_sqnr]
            cap = lambda v: min(v, SQNR_CAP_DB)
            row["drop_db"] = cap(min(ins)) - cap(row["sqnr"]["int"])
    if "int" not in report.forms and any("int" in r["sqnr"] for r in report.rows):
        report.forms.append("int")


# ---------------------------------------------------------------------------------------------------------
# Files.
# ---------------------------------------------------------------------------------------------------------


def report_json(report: TraceReport) -> dict:
    return json_plain(
        dict(
            input=report.input,
            reference=report.reference,
            executors=report.executors,
            approximate=report.approximate,
            forms=report.forms,
            equal=report.equal,
            verdict=report.verdict(),
            divergences=report.divergences,
            worst_drops=[dict(index=r["index"], layer=r["layer"], drop_db=r["drop_db"]) for r in report.worst_drops()],
            notes=report.notes,
            rows=report.rows,
        ),
        inf_as_text=True,
    )


def write_trace(report: TraceReport, out_dir: str | Path) -> dict[str, Path]:
    """trace.json (inf as "inf"), trace.csv (one row per layer) and trace.png (SQNR by depth, divergences)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "trace.json", "csv": out / "trace.csv", "png": out / "trace.png"}
    atomic_write_json(paths["json"], report_json(report), indent=2)
    others = [e for e in report.executors if e != report.reference]
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(
        ["index", "layer", "kind", "dtype", "shape"]
        + [f"differ[{e}]" for e in others]
        + [f"sqnr_db[{f}]" for f in report.forms if f != "float"]
        + [f"max_lsb[{f}]" for f in report.forms if f != "int"]
        + ["drop_db"]
    )
    fmt = lambda v: "" if v is None else ("inf" if v == math.inf else f"{v:.4f}" if isinstance(v, float) else v)
    for r in report.rows:
        w.writerow(
            [r["index"], r["layer"], r["kind"], r["dtype"], "x".join(map(str, r["shape"] or []))]
            + [fmt(r["differ"].get(e)) for e in others]
            + [fmt(r["sqnr"].get(f)) for f in report.forms if f != "float"]
            + [fmt(r["max_lsb"].get(f)) for f in report.forms if f != "int"]
            + [fmt(r["drop_db"])]
        )
    atomic_write_text(paths["csv"], buf.getvalue())
    _plot(report, paths["png"])
    return paths


def _plot(report: TraceReport, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, bx) = plt.subplots(
        2, 1, figsize=(12, 6), sharex=True, gridspec_kw={"height_ratios": [3, 1.3]}, layout="constrained"
    )
    x = [r["index"] for r in report.rows]
    finite = [v for r in report.rows for v in r["sqnr"].values() if math.isfinite(v)]
    # Above ~90 dB two tensors differ by float rounding only: such values (and inf, equal) sit on the top line.
    top = min(max(finite) if finite else 60.0, 90.0) + 5.0
    for form in [f for f in report.forms if f != "float"]:
        ys = [r["sqnr"].get(form, math.nan) for r in report.rows]
        (line,) = ax.plot(x, [min(v, top) for v in ys], marker=".", markersize=3, linewidth=1, label=f"{form} vs float")
        hi = [(i, top) for i, v in zip(x, ys, strict=True) if v > top]
        if hi:
            ax.plot(*zip(*hi, strict=True), "^", color=line.get_color(), markersize=4)
    ax.axhline(top, color="grey", linewidth=0.5)
    ax.text(x[0] if x else 0, top, f" >= {top:.0f} dB (equal up to float rounding)", fontsize=7, va="bottom")
    for r in report.worst_drops(3):
        ax.annotate(
            r["layer"].removeprefix("model."), (r["index"], min(r["sqnr"]["int"], top)), fontsize=7, rotation=20
        )
    colors = iter(["red", "purple", "brown", "black"])
    for e, d in report.divergences.items():
        if d is not None and e not in report.approximate:
            ax.axvline(d["index"], color=next(colors, "red"), linestyle="--", label=f"{e} first differs: {d['layer']}")
    if not report.forms or not finite:
        ax.text(0.5, 0.5, "no float forms: integer executors only", transform=ax.transAxes, ha="center")
    ax.set_ylabel("SQNR against float (dB)")
    ax.set_title(f"fcos3d trace: {report.input}" + ("" if report.equal else "  (integer executors DIFFER)"))
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, loc="lower left")
    # Below: elements that differ from the reference, per executor and layer (0: a flat line at the bottom).
    for e in [e for e in report.executors if e != report.reference]:
        counts = [r["differ"].get(e) for r in report.rows]
        style = ":" if e in report.approximate else "-"
        bx.plot(x, [math.nan if c is None else c for c in counts], style, marker=".", markersize=3, label=e)
    bx.set_yscale("symlog", linthresh=1)
    bx.set_ylabel(f"elements != {report.reference}")
    bx.set_xlabel("layer (execution order of the int8 op list)")
    bx.grid(alpha=0.3)
    if bx.get_legend_handles_labels()[0]:
        bx.legend(fontsize=8, loc="upper left")
    with atomic_writer(path) as f:
        fig.savefig(f, format="png", dpi=110)
    plt.close(fig)
