"""quant-report from a config (`fcos3d quant-report`): the float, calibration and qat checkpoints of `fcos3d train`
and a few val images, handed to fcos3d.quant.report (per-layer SQNR, written as JSON/CSV/PNG).

Orchestration: returns data and prints nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from fcos3d.errors import Fcos3dError
from fcos3d.quant.intmodel import QAT2Quantize
from fcos3d.quant.report import quant_report, write_report

from .checkpoint import checkpoint_path
from .config import build
from .stages import load_stage_model, work_dir_of

__all__ = ["stage_checkpoints", "val_images", "run_quant_report"]


def stage_checkpoints(cfg: dict) -> dict[str, Path]:
    """{stage: best (else last) checkpoint} of float, calibration and qat; a missing one is an Fcos3dError naming
    the file and the command that makes it."""
    work_dir = work_dir_of(cfg)
    config = cfg.get("__file__", "CONFIG")
    found = {}
    for stage in ("float", "calibration", "qat"):
        best, last = checkpoint_path(work_dir, stage, "best"), checkpoint_path(work_dir, stage, "last")
        if not best.is_file() and not last.is_file():
            raise Fcos3dError(
                f"{best}: not found (nor {last.name}); make it with `fcos3d train --stage {stage} --config {config}`"
            )
        found[stage] = best if best.is_file() else last
    return found


def val_images(cfg: dict, n: int) -> torch.Tensor:
    if "val_data_loader" not in cfg:
        raise Fcos3dError(f"{cfg.get('__file__', 'the config')}: no val_data_loader; the report runs on val images")
    dataset = build(cfg["val_data_loader"]["dataset"], "val_data_loader.dataset")
    if len(dataset) == 0:
        raise Fcos3dError("the val split is empty: check val_data_loader.dataset")
    return torch.stack([dataset[i]["img"] for i in range(min(n, len(dataset)))])  # (N, 3, H, W)


def run_quant_report(
    cfg: dict, *, images: int = 4, out: str | Path | None = None, progress: Callable[[int, int], None] | None = None
) -> dict:
    """The report of the config's float, calibration and qat checkpoints (best, else last) and the int model
    made from the qat one, on the first ``images`` val images; files in ``out`` (default <ckpt_dir>/quant_report).

    Returns dict(report=QuantReport, paths={json, csv, png}, checkpoints={stage: path}).
    """
    if images < 1:
        raise Fcos3dError(f"--images {images}: use at least 1")
    ckpts = stage_checkpoints(cfg)
    models = {stage: load_stage_model(cfg, stage, ckpts[stage]) for stage in ckpts}
    imgs = val_images(cfg, images)
    stages = {
        "calibration": models["calibration"],
        "qat": models["qat"],
        "int": QAT2Quantize((1, *imgs.shape[1:]))(models["qat"]),
    }
    report = quant_report(models["float"], stages, imgs, progress=progress)
    paths = write_report(report, Path(out) if out else work_dir_of(cfg) / "quant_report")
    return dict(report=report, paths=paths, checkpoints=ckpts)
