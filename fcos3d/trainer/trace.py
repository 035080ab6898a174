"""`fcos3d trace`: one image through every form of a config's model, lined up at every layer of the int8 op list.

Forms that exist for the config: the float, calibration and QAT checkpoints (best, else last), the torch int
model made from the QAT one, the exported ONNX in the numpy simulator, and its compiled debug build
(``fcos3d-compile --debug-outputs``, made on first use, run here or on a board over TVM RPC). The integer
executors (torch int, simulator, compiled) must agree exactly at every layer; the float forms are measured
against them by SQNR and by their error in output steps, as fcos3d quant-report measures them (the same
layers, the same hooks, the same sums: its "int" SQNR and this one are equal numbers).

A layer is an op of the int8 op list; its name is the exported ONNX node's (``model.<module>``, ``_2`` for a
head conv's second level), its ``module`` key quant-report's (``<module>``, ``:2``). Orchestration: returns
data and prints nothing.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from fcos3d.errors import Fcos3dError
from fcos3d.int8.layers import Layer, graph_layers
from fcos3d.runtime.trace import (
    SIMULATOR,
    artifact_layers,
    executor_name,
    float_rows,
    onnxruntime_layers,
    simulator_layers,
    trace_integers,
    write_trace,
)

from .checkpoint import checkpoint_path
from .config import build
from .stages import load_stage_model, work_dir_of

__all__ = ["TORCH_INT", "TRACE_DIR", "trace_input", "run_trace"]

TORCH_INT = "torch int"
TRACE_DIR = "trace"


def _checkpoint(cfg: dict, stage: str) -> Path | None:
    work_dir = work_dir_of(cfg)
    for which in ("best", "last"):
        p = checkpoint_path(work_dir, stage, which)
        if p.is_file():
            return p
    return None


def trace_input(cfg: dict, image: int | str | Path, size: tuple[int, int] | None = None) -> tuple[torch.Tensor, str]:
    """(normalised float image (1, 3, H, W), a label) for ``image``: an index into the config's val split, or a
    JPEG file prepared the on-board way (fcos3d.runtime.preprocess) at ``size`` = (W, H), else at the val split's
    size. Both give exactly the int8 bytes that the board sees (YUV byte - 128, scale 1/128)."""
    from fcos3d.quant.observers import INPUT_SCALE

    if isinstance(image, int) or (isinstance(image, str) and image.isdigit()):
        index = int(image)
        dataset = _val_dataset(cfg)
        if not 0 <= index < len(dataset):
            raise Fcos3dError(f"--image {index}: the val split has {len(dataset)} images (0..{len(dataset) - 1})")
        item = dataset[index]
        name = item.get("file_name") or ""
        return item["img"][None].float(), f"val[{index}]" + (f" {name}" if name else "")
    from fcos3d.runtime.preprocess import prepare_jpeg

    path = Path(image)
    if not path.is_file():
        raise Fcos3dError(f"--image {path}: no such file; give a JPEG or an index into the val split")
    if size is None:
        h, w = _val_dataset(cfg)[0]["img"].shape[-2:]
        size = (int(w), int(h))
    try:
        prepared = prepare_jpeg(path.read_bytes(), np.eye(3), size)
    except Fcos3dError:
        raise Fcos3dError(f"--image {path}: not a readable image; give a JPEG file or a val index") from None
    return torch.from_numpy(prepared.x.astype(np.float32) * INPUT_SCALE), str(path)


def _val_dataset(cfg: dict):
    if "val_data_loader" not in cfg:
        raise Fcos3dError(f"{cfg.get('__file__', 'the config')}: no val_data_loader; give --image JPEG instead")
    return build(cfg["val_data_loader"]["dataset"], "val_data_loader.dataset")


def _align(int_layers: list[Layer], onnx_layers: list[Layer], onnx_path: Path) -> dict[str, str]:
    """{torch int layer name: ONNX layer name}: the same op list in the same order (the export writes the int
    model's ops one node each), checked op by op."""
    if len(int_layers) != len(onnx_layers):
        raise Fcos3dError(
            f"{onnx_path}: {len(onnx_layers)} layers, the config's int model has {len(int_layers)}: export the ONNX "
            "from this config's QAT checkpoint (`fcos3d export --config C`) or pass --onnx"
        )
    out = {}
    for a, b in zip(int_layers, onnx_layers, strict=True):
        if a.kind != b.kind or not (b.name == a.name or b.name.startswith(a.name + "_")):
            raise Fcos3dError(
                f"{onnx_path}: layer {b.index} is {b.kind} {b.name!r}, the int model's is {a.kind} {a.name!r}: "
                "export the ONNX from this config's QAT checkpoint (`fcos3d export --config C`)"
            )
        out[a.name] = b.name
    return out


@torch.no_grad()
def run_trace(
    cfg: dict,
    *,
    image: int | str | Path = 0,
    onnx_path: str | Path | None = None,
    compiled: bool = True,
    board: str | Sequence[str] = "host",
    artifact_dir: str | Path | None = None,
    device: str | None = None,
    onnxruntime: bool = False,
    out: str | Path | None = None,
    echo: Callable[[str], None] = lambda m: None,
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Trace ``image`` through every form the config has; returns dict(report=TraceReport, paths, forms).

    ``onnx_path``: the int8 ONNX (default: the config's export, when it exists). ``compiled``: also run the debug
    build for ``board`` (one name or several; ``artifact_dir`` instead: a debug build to use; default
    <ckpt_dir>/artifact-<board>-debug, compiled when missing or stale; ``device`` HOST:PORT runs the first board's
    over TVM RPC; an Ethos-U board's runs on the TOSA reference model). ``onnxruntime``: also run the ONNX in
    onnxruntime (compared in LSB, not for equality). Files: ``out`` (default <ckpt_dir>/trace).
    """
    from fcos3d.quant.intmodel import IntInferModel, QAT2Quantize
    from fcos3d.quant.report import int_layer_keys, layer_names, module_outputs

    work_dir = work_dir_of(cfg)
    notes: list[str] = []
    steps = 7
    done = 0

    def step() -> None:
        nonlocal done
        done += 1
        if progress:
            progress(done, steps)

    # The ONNX (the simulator's and the compiler's model), when there is one.
    if onnx_path is None:
        default = Path((cfg.get("export_cfg") or {}).get("path") or work_dir / "model_int8.onnx")
        onnx_path = default if default.is_file() else None
        if onnx_path is None:
            notes.append(f"no exported ONNX ({default}): simulator and compiled module left out; run `fcos3d export`")
    elif not Path(onnx_path).is_file():
        raise Fcos3dError(f"--onnx {onnx_path}: no such file; export it with `fcos3d export --config C`")
    sim = None
    size = None
    if onnx_path is not None:
        from fcos3d.runtime.reference.simulator import Simulator

        onnx_path = Path(onnx_path)
        sim = Simulator(onnx_path)
        shape = sim.graph.inputs[0].shape
        size = (int(shape[3]), int(shape[2]))
    img, label = trace_input(cfg, image, size)
    x8 = IntInferModel.quantize_input(img)
    step()

    # The torch models: float, calibration, qat (fake quant), and the int model of the qat one.
    models = {}
    for stage in ("float", "calibration", "qat"):
        ckpt = _checkpoint(cfg, stage)
        if ckpt is None:
            notes.append(f"no {stage} checkpoint: `fcos3d train --stage {stage} --config C` adds it")
            continue
        models[stage] = load_stage_model(cfg, stage, ckpt)
    int_model = QAT2Quantize(tuple(img.shape))(models["qat"]) if "qat" in models else None
    step()

    tensors: dict[str, dict[str, np.ndarray]] = {}
    if int_model is not None:
        int_layers = graph_layers(int_model.graph)
        env = int_model.run(x8, keep_intermediates=True)
        tensors[TORCH_INT] = {ly.name: env[ly.tensor].cpu().numpy() for ly in int_layers}
    if sim is not None:
        layers = graph_layers(sim.graph)
        tensors[SIMULATOR] = simulator_layers(sim, x8.numpy())
        if int_model is not None:
            rename = _align(int_layers, layers, onnx_path)
            tensors[TORCH_INT] = {rename[k]: v for k, v in tensors[TORCH_INT].items()}
    elif int_model is not None:
        layers, rename = int_layers, {ly.name: ly.name for ly in int_layers}
    else:
        raise Fcos3dError(
            "nothing to trace: no qat checkpoint and no exported ONNX; train the stages (fcos3d train) and export"
        )
    step()

    if compiled and sim is not None:
        from fcos3d.runtime.execute import load_artifact

        boards = [board] if isinstance(board, str) else list(board)
        if artifact_dir is not None:
            artifact = load_artifact(artifact_dir, device=device, onnx_path=onnx_path)
            tensors[executor_name(artifact)] = artifact_layers(artifact, x8.numpy())
        for b in boards if artifact_dir is None else []:
            from fcos3d.compiler.build import debug_build

            art_dir = debug_build(onnx_path, b, work_dir / f"artifact-{b}-debug", echo)
            artifact = load_artifact(art_dir, device=device if b == boards[0] else None, onnx_path=onnx_path)
            tensors[executor_name(artifact)] = artifact_layers(artifact, x8.numpy())
    step()
    approximate = []
    if onnxruntime and onnx_path is not None:
        tensors["onnxruntime"] = onnxruntime_layers(onnx_path, layers, x8.numpy(), sim.graph.inputs)
        approximate.append("onnxruntime")
    if len(tensors) < 2:
        raise Fcos3dError(
            f"only {next(iter(tensors))} ran: nothing to compare; export the ONNX (`fcos3d export`) or drop --no-compiled"
        )
    reference = SIMULATOR if SIMULATOR in tensors else TORCH_INT
    report = trace_integers(
        layers,
        tensors,
        reference,
        approximate=approximate,
        input_tensors=[sim.graph.inputs[0].tensor] if sim is not None else [int_model.input_name],
        input_name=label,
    )
    report.notes.extend(notes)
    step()

    # Float forms, by quant-report's module keys, onto the layers.
    if int_model is not None and models:
        keys = int_layer_keys(int_model)  # int op name -> module key
        by_key = {keys[name]: onnx_name for name, onnx_name in rename.items()}
        names = layer_names(int_model)
        forms = {}
        for stage, model in models.items():
            outs, _ = module_outputs(model, list(names), img)
            forms[stage] = {by_key[k]: v.detach().double().cpu().numpy() for k, v in outs.items() if k in by_key}
        input_sqnr = _input_sqnr(img, x8, int_model.input_scale)
        float_rows(report, layers, tensors[reference], forms, input_sqnr=input_sqnr)
        module_of = {onnx_name: k for k, onnx_name in by_key.items()}
        for row in report.rows:
            row["module"] = module_of.get(row["layer"], "")
    elif int_model is None:
        report.notes.append("no qat checkpoint: the float forms cannot be lined up with the ONNX's layers")
    step()
    paths = write_trace(report, Path(out) if out is not None else work_dir / TRACE_DIR)
    step()
    return dict(report=report, paths=paths, forms=list(models), executors=list(tensors))


def _input_sqnr(img: torch.Tensor, x8: torch.Tensor, scale: float) -> float:
    from fcos3d.runtime.trace import sqnr_db

    deq = x8.double().numpy() * scale
    v = sqnr_db(img.double().numpy(), deq)
    return v if not math.isnan(v) else math.inf
