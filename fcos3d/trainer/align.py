"""align-bpu from a config (HAT's align_bpu_validator): the config's ONNX, its artifact (compiled for this host
on first use), its val split and post-process, handed to fcos3d.runtime.validate.align_bpu.

Orchestration for `fcos3d-validate --align-bpu` and `fcos3d demo`; returns data and prints nothing (``echo``
receives the one line said when an artifact is compiled).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from fcos3d.artifact import compiled_from
from fcos3d.errors import Fcos3dError

from .config import build
from .stages import PREDICT_STAGES, work_dir_of

__all__ = [
    "ARTIFACT_DIR",
    "REPORT_DIR",
    "onnx_of",
    "default_artifact",
    "limited_stage_metrics",
    "stage_metrics",
    "run_align_bpu",
    "trace_first_mismatch",
]

ARTIFACT_DIR = "artifact-host"
REPORT_DIR = "align_bpu"


def onnx_of(cfg: dict) -> Path:
    """The config's exported int8 ONNX (export_cfg.path, else <ckpt_dir>/model_int8.onnx); it must exist."""
    path = Path((cfg.get("export_cfg") or {}).get("path") or work_dir_of(cfg) / "model_int8.onnx")
    if not path.is_file():
        config = cfg.get("__file__", "CONFIG")
        raise Fcos3dError(f"{path}: no int8 ONNX (export_cfg.path of {config}); run `fcos3d export --config {config}`")
    return path


def default_artifact(
    onnx_path: Path, work_dir: Path, echo: Callable[[str], None] = lambda m: None, board: str = "host"
) -> Path:
    """<ckpt_dir>/artifact-<board>, compiled for ``board`` when missing, compiled from another ONNX or for another
    board (an Ethos-U board's is model.tosa + Vela's output, run on the TOSA reference model)."""
    from fcos3d.artifact import read_meta
    from fcos3d.compiler.build import compile_onnx

    out = work_dir / (ARTIFACT_DIR if board == "host" else f"artifact-{board}")
    if compiled_from(out, onnx_path) and read_meta(out)[0].get("board") == board:
        return out
    if (out / "meta.json").is_file():
        echo(f"{out} was compiled from another ONNX: recompiling {onnx_path} for {board}")
    else:
        echo(f"compiling {onnx_path} for {board} into {out} (once)")
    compile_onnx(onnx_path, board, out)
    return out


def stage_metrics(work_dir: Path) -> dict[str, dict | None]:
    """NDS/mAP that `fcos3d predict --stage S` wrote (<ckpt_dir>/predict/<stage>/metrics.json), None where absent."""
    out = {}
    for stage in PREDICT_STAGES:
        path = work_dir / "predict" / stage / "metrics.json"
        try:
            out[stage] = json.loads(path.read_text())
        except (OSError, ValueError):
            out[stage] = None
    return out


def limited_stage_metrics(work_dir: Path, split_meta: dict, sample_tokens: list[str]) -> dict[str, dict | None]:
    """Every predict stage's NDS/mAP/... on the samples ``sample_tokens`` alone (what align-bpu --limit scores the
    board on), from <ckpt_dir>/predict/<stage>/results_nusc.json; None for a stage without a result file, or when
    no sample is covered. A result file that does not cover the split is an error naming it."""
    from fcos3d.eval.nuscenes_metric import RESULT_FILE, evaluate_on_samples

    files = {s: work_dir / "predict" / s / RESULT_FILE for s in PREDICT_STAGES}
    present = {s: path for s, path in files.items() if path.is_file()}
    out: dict[str, dict | None] = {s: None for s in PREDICT_STAGES}
    if not sample_tokens or not present:
        return out
    try:  # one call: the ground truth is loaded and matched once for every stage
        scored = evaluate_on_samples(
            present, split_meta["dataroot"], split_meta["version"], split_meta["devkit_split"], sample_tokens
        )
    except Fcos3dError as e:
        raise Fcos3dError(f"{e}; re-run `fcos3d predict --stage S` for that stage on this config's val split") from None
    return out | scored


def run_align_bpu(
    cfg: dict,
    *,
    artifact_dir: str | Path | None = None,
    onnx_path: str | Path | None = None,
    device: str | None = None,
    limit: int | None = None,
    out_dir: str | Path | None = None,
    progress: Callable[[int, int], None] | None = None,
    echo: Callable[[str], None] = lambda m: None,
    rpc_timeout: float | None = None,
    trace: bool = True,
    board: str = "host",
) -> dict:
    """Board vs simulator over the config's val JPEGs (fcos3d.runtime.validate.align_bpu's report, plus
    ``out_dir``; ``board``: the board whose artifact <ckpt_dir>/artifact-<board> is compiled on first use when no
    ``artifact_dir`` is given; with ``trace``, on a mismatch, ``trace``: the tracer's verdict on the first mismatching image,
    see trace_first_mismatch). ``onnx_path`` defaults to the config's export, ``artifact_dir`` to <ckpt_dir>/artifact-host
    (compiled on first use), ``out_dir`` to <ckpt_dir>/align_bpu."""
    from fcos3d.io import atomic_write_json, json_plain
    from fcos3d.runtime.execute import parse_device
    from fcos3d.runtime.validate import REPORT_FILE, align_bpu

    parse_device(device)  # a malformed HOST:PORT fails before anything is compiled
    work_dir = work_dir_of(cfg)
    onnx_path = Path(onnx_path) if onnx_path is not None else onnx_of(cfg)
    if "val_data_loader" not in cfg:
        raise Fcos3dError(
            f"{cfg.get('__file__', 'the config')}: no val_data_loader; add one "
            "(its LMDB's meta names the nuScenes root)"
        )
    split_meta = build(cfg["val_data_loader"]["dataset"], "val_data_loader.dataset").meta
    post = build(cfg["post_process"], "post_process") if "post_process" in cfg else None
    if artifact_dir is None:
        artifact_dir = default_artifact(onnx_path, work_dir, echo, board)
    out_dir = Path(out_dir) if out_dir is not None else work_dir / REPORT_DIR
    report = align_bpu(
        artifact_dir,
        onnx_path,
        split_meta["dataroot"],
        split_meta["version"],
        split=split_meta.get("split", "val"),
        device=device,
        limit=limit,
        out_dir=out_dir,
        progress=progress,
        post=post,
        rpc_timeout=rpc_timeout,
    )
    report = report | {"out_dir": str(out_dir)}
    scope = report.get("scope")
    if scope is not None:
        report["stage_metrics"] = json_plain(limited_stage_metrics(work_dir, split_meta, scope["sample_tokens"]))
        atomic_write_json(out_dir / REPORT_FILE, report, indent=2, allow_nan=False)
    if trace and not report["equal"]:
        report["trace"] = trace_first_mismatch(
            report, onnx_path, Path(artifact_dir), out_dir, device=device, echo=echo, rpc_timeout=rpc_timeout
        )
        atomic_write_json(out_dir / REPORT_FILE, report, indent=2, allow_nan=False)  # the report with its trace
    return report


def trace_first_mismatch(
    report: dict,
    onnx_path: Path,
    artifact_dir: Path,
    out_dir: Path,
    *,
    device: str | None = None,
    echo: Callable[[str], None] = lambda m: None,
    rpc_timeout: float | None = None,
) -> dict:
    """Which layer made align-bpu's first mismatching image differ: that image through a debug build of the same
    ONNX for the same board (every layer an output, compiled into <out_dir>/debug-<board>, run on the same device)
    and the simulator, compared layer by layer (fcos3d.runtime.trace). Files in <out_dir>/trace.

    Returns {image, file_name, equal, verdict, divergences, paths} or {error} when the trace itself fails (the
    align-bpu result stands either way). When the debug build equals the simulator at every layer, the verdict
    says so: the difference is then outside the layers' integers (a fusion across layers in the normal build, or
    the transfer of the outputs).
    """
    from fcos3d.artifact import read_meta
    from fcos3d.compiler.build import debug_build
    from fcos3d.runtime.execute import DEFAULT_RPC_TIMEOUT, load_artifact
    from fcos3d.runtime.preprocess import input_size_from_meta, prepare_jpeg
    from fcos3d.runtime.trace import trace_onnx, write_trace

    firsts = [o["first"] for o in report["outputs"] if o.get("first")]
    if not firsts:
        return {"error": "no element-wise mismatch to trace (an output could not be compared: see its problem)"}
    first = min(firsts, key=lambda f: f["image"])
    try:
        meta, _ = read_meta(artifact_dir)
        board = meta["board"]
        path = Path(report["dataroot"]) / first["file_name"]
        x = prepare_jpeg(path.read_bytes(), np.eye(3), input_size_from_meta(meta)).x
        debug_dir = debug_build(onnx_path, board, out_dir / f"debug-{board}", echo)
        timeout = DEFAULT_RPC_TIMEOUT if rpc_timeout is None else rpc_timeout
        art = load_artifact(debug_dir, device=device, onnx_path=onnx_path, timeout=timeout)
        traced = trace_onnx(onnx_path, x, artifact=art, onnxruntime=False, input_name=first["file_name"])
        paths = write_trace(traced, out_dir / "trace")
    except (Fcos3dError, OSError, ValueError) as exc:
        return {"image": first["image"], "file_name": first["file_name"], "error": str(exc).splitlines()[0]}
    verdict = traced.verdict()
    if traced.equal:
        verdict += (
            "; the debug build reproduces no difference: the mismatch is outside the layers' integers (a fusion "
            "across layers in the normal build, or the transfer of the outputs)"
        )
    return {
        "image": first["image"],
        "file_name": first["file_name"],
        "equal": traced.equal,
        "verdict": verdict,
        "divergences": traced.divergences,
        "paths": {k: str(v) for k, v in paths.items()},
    }
