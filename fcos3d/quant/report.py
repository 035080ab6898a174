"""Per-layer SQNR of the calibration, QAT and integer models against the float model (`fcos3d quant-report`),
and the QAT-vs-int difference of every layer in output steps (LSB): where int8 accuracy is lost, layer by layer.

Layers are the float model's conv/add/resize/pool outputs, matched by module name to the quantised models
(forward hooks) and to the int model's ops (their int tensors dequantised by their scales). Library code:
returns rows and writes JSON/CSV/PNG; printing is the CLI's.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from fcos3d.errors import Fcos3dError
from fcos3d.int8.ops import Add as IntAdd
from fcos3d.int8.ops import Conv as IntConv
from fcos3d.int8.ops import MaxPool as IntMaxPool
from fcos3d.int8.ops import ResizeNearest as IntResize
from fcos3d.io import atomic_write_text, atomic_writer

from .intmodel import IntInferModel, IntModel
from .qat import QAdd, QConv2d, QMaxPool2d, QResizeNearest, QuantFCOS3D, link_sources

__all__ = [
    "STAGES",
    "QuantReport",
    "sqnr_db",
    "layer_names",
    "module_outputs",
    "int_outputs",
    "int_layer_keys",
    "quant_report",
    "qat_int_lsb",
    "write_report",
]

STAGES = ("calibration", "qat", "int")
PREFIX = "model."  # QuantFCOS3D keeps the converted float model under .model: "model.<float name>"
_KINDS = ((QConv2d, "conv"), (QAdd, "add"), (QResizeNearest, "resize"), (QMaxPool2d, "maxpool"))
_INT_KINDS = {IntConv: "conv", IntAdd: "add", IntResize: "resize", IntMaxPool: "maxpool"}


def sqnr_db(ref, x) -> float:
    """``10 * log10(sum(ref**2) / sum((ref - x)**2))`` in float64; inf when equal, -inf for a zero reference."""
    signal, noise = _sums(np.asarray(ref), np.asarray(x))
    return _db(signal, noise)


def _sums(ref: np.ndarray, x: np.ndarray) -> tuple[float, float]:
    if ref.shape != x.shape:
        raise Fcos3dError(f"SQNR of tensors of different shapes {ref.shape} and {x.shape}")
    ref = ref.astype(np.float64, copy=False)
    return float(np.sum(ref * ref)), float(np.sum((ref - x.astype(np.float64, copy=False)) ** 2))


def _db(signal: float, noise: float) -> float:
    if noise == 0.0:
        return math.inf
    if signal == 0.0:
        return -math.inf
    return 10.0 * math.log10(signal / noise)


def _kind(m: nn.Module) -> str | None:
    for cls, kind in _KINDS:
        if isinstance(m, cls):
            return "head" if kind == "conv" and m.int32_output else kind
    return None


def layer_names(model: QuantFCOS3D | IntModel) -> dict[str, str]:
    """{float module name: kind} of every quantised conv/add/resize/pool (kind: conv, head, add, resize, maxpool)."""
    if isinstance(model, IntInferModel):
        model = model.int_model
    if isinstance(model, IntModel):
        return {
            op.name.removeprefix(PREFIX): "head"
            if isinstance(op, IntConv) and op.output_scale is None
            else _INT_KINDS[type(op)]
            for op in model.ops
        }
    if not isinstance(model, QuantFCOS3D):
        raise Fcos3dError(f"layer_names needs a converted QuantFCOS3D or an IntModel, got {type(model).__name__}")
    return {n.removeprefix(PREFIX): k for n, m in model.named_modules() if (k := _kind(m)) is not None}


def _keyed(name: str, seen: dict[str, int]) -> str:
    """``name`` for a module's first call, ``name:k`` for its k-th (the same rule in every model)."""
    seen[name] = seen.get(name, 0) + 1
    return name if seen[name] == 1 else f"{name}:{seen[name]}"


def module_outputs(model: nn.Module, names: Sequence[str], img: torch.Tensor) -> tuple[dict[str, torch.Tensor], tuple]:
    """Run ``model(img)`` with forward hooks on the float-model names ``names``: ({key: output}, raw outputs).

    A float FCOS3D is hooked at ``name``, a QuantFCOS3D at ``model.<name>``; keys are in call order. Runs in
    the caller's grad mode (a QAT model's fake quant takes its exact form without autograd).
    """
    prefix = PREFIX if isinstance(model, QuantFCOS3D) else ""
    if isinstance(model, QuantFCOS3D) and not model.__dict__.get("_sources_linked", False):
        # A freshly loaded model links its ops by one float forward on its first call: run it before the hooks
        # exist, or they would record that float pass as the model's outputs.
        param = next(model.parameters(), None)
        link_sources(model, img.to(param.device) if param is not None else img)
    outs: dict[str, torch.Tensor] = {}
    seen: dict[str, int] = {}
    handles = []
    try:
        for name in names:
            try:
                m = model.get_submodule(prefix + name)
            except AttributeError:
                raise Fcos3dError(
                    f"{type(model).__name__} has no module {prefix + name}: compare models built from the same config"
                ) from None
            # the output itself (no_grad: no graph to drop), so that the raw outputs can be found by identity
            handles.append(m.register_forward_hook(lambda _m, _a, y, n=name: outs.__setitem__(_keyed(n, seen), y)))
        param = next(model.parameters(), None)
        raw = model(img.to(param.device) if param is not None else img)
    finally:
        for h in handles:
            h.remove()
    return outs, tuple(raw)


def int_layer_keys(int_model: IntModel | IntInferModel) -> dict[str, str]:
    """{int op name: its layer key in this report} (``<module>``, ``<module>:k`` for a module's k-th call): how
    the tracer (fcos3d trace) lines its layers up with this report's."""
    if isinstance(int_model, IntInferModel):
        int_model = int_model.int_model
    seen: dict[str, int] = {}
    return {op.name: _keyed(op.name.removeprefix(PREFIX), seen) for op in int_model.ops}


@torch.no_grad()
def int_outputs(int_model: IntModel | IntInferModel, img: torch.Tensor) -> tuple[dict[str, torch.Tensor], dict]:
    """The int model on ``img`` (normalised float) or an int8 image: ({key: float64 dequantised}, {key: raw int}).

    int8 tensors are dequantised by their scale, int32 head outputs by ``s_in * s_w[c]`` per channel.
    """
    if isinstance(int_model, IntInferModel):
        int_model = int_model.int_model
    x = img if img.dtype == torch.int8 else IntInferModel.quantize_input(img.cpu())
    env = int_model.run(x, keep_intermediates=True)
    deq, raw, seen = {}, {}, {}
    for op in int_model.ops:
        key = _keyed(op.name.removeprefix(PREFIX), seen)
        q = env[op.output]
        if isinstance(op, IntConv) and op.output_scale is None:
            scale = torch.from_numpy(op.accumulator_scale).reshape(1, -1, 1, 1)
        else:
            scale = torch.tensor(float(int_model.tensor_scales[op.output]), dtype=torch.float64)
        deq[key], raw[key] = q.double() * scale, q
    return deq, raw


def _head_outputs(outs: dict[str, torch.Tensor], raw: tuple, output_names: Sequence[str]) -> dict[str, str]:
    """{layer key: raw output name} by tensor identity (the head's last convs are the model's outputs)."""
    by_id = {id(t): k for k, t in outs.items()}
    return {by_id[id(t)]: n for t, n in zip(raw, output_names) if id(t) in by_id}


@dataclass
class QuantReport:
    """Rows (one per layer, worst first) with the SQNR in dB of each stage against float, over ``images`` images.

    Row keys: index (execution order in the float model), layer (float module name), kind, output (the raw
    head output a head conv makes, else ""), shape (C, H, W), then one float per stage (inf: equal).
    """

    stages: tuple[str, ...]
    images: int
    rows: list[dict] = field(default_factory=list)
    sort_stage: str = ""

    def by_index(self) -> list[dict]:
        return sorted(self.rows, key=lambda r: r["index"])


def quant_report(
    float_model: nn.Module,
    stages: Mapping[str, nn.Module],
    images: Sequence[torch.Tensor] | torch.Tensor,
    *,
    names: Mapping[str, str] | None = None,
    sort_stage: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> QuantReport:
    """Per-layer SQNR of every model in ``stages`` ({name: QuantFCOS3D, IntModel/IntInferModel or a float model of
    the same config}) against ``float_model`` on ``images`` (normalised (N, 3, H, W), run one image at a time).

    ``names``: {float module name: kind}, by default from the first quantised stage. Rows are sorted by the
    SQNR of ``sort_stage`` (default: "int" if given, else the last stage), lowest first, ties in network order.
    """
    if not stages:
        raise Fcos3dError("quant_report needs at least one stage model to compare with the float model")
    if names is None:
        source = next((m for m in stages.values() if isinstance(m, (QuantFCOS3D, IntModel, IntInferModel))), None)
        if source is None:
            raise Fcos3dError("quant_report: give names= or at least one quantised (QuantFCOS3D / IntModel) stage")
        names = layer_names(source)
    sort_stage = sort_stage or ("int" if "int" in stages else list(stages)[-1])
    batch = images if torch.is_tensor(images) else torch.cat([t.reshape(-1, *t.shape[-3:]) for t in images])
    batch = batch.reshape(-1, *batch.shape[-3:])  # (N, 3, H, W)
    imgs = [batch[i : i + 1] for i in range(len(batch))]
    float_model.eval()
    for m in stages.values():
        m.eval()
    sums: dict[str, dict[str, list[float]]] = {s: {} for s in stages}
    order: list[str] = []
    heads: dict[str, str] = {}
    shapes: dict[str, tuple] = {}
    total, done = len(imgs) * (1 + len(stages)), 0
    for img in imgs:
        with torch.no_grad():
            ref, raw = module_outputs(float_model, list(names), img)
        if not order:
            order = list(ref)
            heads = _head_outputs(ref, raw, getattr(float_model, "output_names", ()))
            shapes = {k: tuple(v.shape[1:]) for k, v in ref.items()}
        done += 1
        if progress:
            progress(done, total)
        for stage, model in stages.items():
            if isinstance(model, (IntModel, IntInferModel)):
                got, _ = int_outputs(model, img)
            else:
                with torch.no_grad():
                    got, _ = module_outputs(model, list(names), img)
            for key, r in ref.items():
                if key not in got:
                    raise Fcos3dError(f"stage {stage}: no output for layer {key}; compare models of the same config")
                s, n = _sums(r.cpu().numpy(), got[key].cpu().numpy())
                acc = sums[stage].setdefault(key, [0.0, 0.0])
                acc[0] += s
                acc[1] += n
            done += 1
            if progress:
                progress(done, total)
    rows = []
    for i, key in enumerate(order):
        base = key.split(":")[0]
        row = dict(index=i, layer=key, kind=names.get(base, ""), output=heads.get(key, ""), shape=list(shapes[key]))
        for stage in stages:
            row[stage] = _db(*sums[stage][key])
        rows.append(row)
    rows.sort(key=lambda r: (r[sort_stage], r["index"]))
    return QuantReport(stages=tuple(stages), images=len(imgs), rows=rows, sort_stage=sort_stage)


# ---------------------------------------------------------------------------------------------------------
# QAT vs int, in output steps.
# ---------------------------------------------------------------------------------------------------------


@torch.no_grad()
def qat_int_lsb(
    qat_model: QuantFCOS3D,
    int_model: IntModel | IntInferModel,
    images,
    *,
    local: bool = False,
    training_form: bool = False,
) -> list[dict]:
    """Per layer (int model order): how far the QAT model's output is from the int model's, in output steps.

    int8 layers: ``round(qat / s) - q_int`` (an integer: the LSB difference); head convs: ``qat / (s_in * s_w)
    - acc_int`` in accumulator steps (float). ``local``: every QAT layer gets the int model's (dequantised)
    inputs, so each row measures that op alone; otherwise the QAT model runs end to end. ``training_form``:
    run the QAT model with autograd on (its training-time float simulation) instead of its exact no-grad form.
    Row keys: layer, kind, elements, max_lsb, differ (count of int8 elements that differ; head: |d| >= 0.5).
    """
    if training_form:
        with torch.enable_grad():
            return qat_int_lsb.__wrapped__(qat_model, int_model, images, local=local)
    if isinstance(int_model, IntInferModel):
        int_model = int_model.int_model
    qat_model.eval()
    imgs = [images] if torch.is_tensor(images) else list(images)
    names = layer_names(int_model)
    stats: dict[str, list] = {}
    kinds: dict[str, str] = {}
    for img in imgs:
        x8 = img if img.dtype == torch.int8 else IntInferModel.quantize_input(img.cpu())
        deq, raw = int_outputs(int_model, x8)
        if local:
            got = _local_outputs(qat_model, int_model, x8, deq)
        else:
            got, _ = module_outputs(qat_model, list(names), x8.float() * int_model.input_scale)
        got = {k: v.detach() for k, v in got.items()}
        seen: dict[str, int] = {}
        for op in int_model.ops:
            key = _keyed(op.name.removeprefix(PREFIX), seen)
            y = got[key].double().cpu()
            if isinstance(op, IntConv) and op.output_scale is None:
                scale = torch.from_numpy(op.accumulator_scale).reshape(1, -1, 1, 1)
                d = y / scale - raw[key].double()
                differ = int((d.abs() >= 0.5).sum())
                kinds[key] = "head"
            else:
                d = torch.round(y / float(int_model.tensor_scales[op.output])) - raw[key].double()
                differ = int((d != 0).sum())
                kinds[key] = names[key.split(":")[0]]
            s = stats.setdefault(key, [0, 0.0, 0])
            s[0] += d.numel()
            s[1] = max(s[1], float(d.abs().max()) if d.numel() else 0.0)
            s[2] += differ
    return [dict(layer=k, kind=kinds[k], elements=v[0], max_lsb=v[1], differ=v[2]) for k, v in stats.items()]


def _local_outputs(qat_model: QuantFCOS3D, int_model: IntModel, x8: torch.Tensor, deq: dict) -> dict[str, torch.Tensor]:
    """Each QAT module run on the int model's dequantised inputs (by the int op's input names)."""
    device = next(qat_model.parameters()).device
    by_output = {int_model.input_name: x8.float() * int_model.input_scale}
    seen: dict[str, int] = {}
    outs = {}
    for op in int_model.ops:
        key = _keyed(op.name.removeprefix(PREFIX), seen)
        module = qat_model.get_submodule(op.name)
        outs[key] = module(*(by_output[t].float().to(device) for t in op.inputs))
        by_output[op.output] = deq[key]
    return outs


# ---------------------------------------------------------------------------------------------------------
# Files: JSON, CSV, PNG.
# ---------------------------------------------------------------------------------------------------------


def _fmt(v: float) -> str:
    return "inf" if v == math.inf else "-inf" if v == -math.inf else f"{v:.2f}"


def write_report(report: QuantReport, out_dir: str | Path, *, annotate: int = 5) -> dict[str, Path]:
    """Write ``quant_report.json`` (inf as the string "inf"), ``quant_report.csv`` and ``quant_report.png``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "quant_report.json", "csv": out / "quant_report.csv", "png": out / "quant_report.png"}

    def plain(v):
        return _fmt(v) if isinstance(v, float) and math.isinf(v) else v

    doc = dict(
        stages=list(report.stages),
        images=report.images,
        sort_stage=report.sort_stage,
        unit="dB, SQNR against the float model: 10*log10(sum(ref^2) / sum((ref - x)^2))",
        layers=[{k: plain(v) for k, v in r.items()} for r in report.rows],
    )
    atomic_write_text(paths["json"], json.dumps(doc, indent=1) + "\n")
    text = io.StringIO(newline="")
    w = csv.writer(text)
    w.writerow(["rank", "index", "layer", "kind", "output", "shape", *report.stages])
    for rank, r in enumerate(report.rows):
        w.writerow(
            [
                rank,
                r["index"],
                r["layer"],
                r["kind"],
                r["output"],
                "x".join(map(str, r["shape"])),
                *[_fmt(r[s]) for s in report.stages],
            ]
        )
    atomic_write_text(paths["csv"], text.getvalue())
    _plot(report, paths["png"], annotate)
    return paths


def _plot(report: QuantReport, path: Path, annotate: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report.by_index()
    finite = [r[s] for r in rows for s in report.stages if math.isfinite(r[s])]
    top = (max(finite) if finite else 0.0) + 5.0  # inf (identical) is drawn here
    bottom = min(finite) - 5.0 - 2.0 * annotate if finite else -5.0  # room for the labels below the worst
    x = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(max(10.0, len(rows) * 0.06), 5.0))
    styles = ["-", "--", ":"]  # equal stages (QAT and int) stay visible on top of each other
    for k, stage in enumerate(report.stages):
        y = np.array([min(max(r[stage], bottom), top) for r in rows])
        ax.plot(x, y, styles[k % 3], marker=".", markersize=3, linewidth=1.6 - 0.3 * (k % 3), label=stage)
    for k, r in enumerate(report.rows[:annotate]):
        v = min(max(r[report.sort_stage], bottom), top)
        ax.annotate(
            r["layer"],
            (r["index"], v),
            xytext=(10, -12 - 11 * k),
            textcoords="offset points",
            fontsize=7,
            arrowprops=dict(arrowstyle="-", linewidth=0.5),
        )
    ax.set_xlabel("layer (network order)")
    ax.set_ylabel("SQNR vs float (dB)")
    ax.set_title(
        f"per-layer SQNR on {report.images} image(s); worst {annotate} by {report.sort_stage} annotated; "
        f"identical drawn at {top:.0f} dB"
    )
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    with atomic_writer(path) as f:
        fig.savefig(f, format="png", dpi=120)
    plt.close(fig)
