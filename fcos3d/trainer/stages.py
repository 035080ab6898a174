"""What `fcos3d train` and `fcos3d predict` do for a stage: build from the config, run, score.

Float today; calibration and QAT plug in their model builders here when the quant room lands.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch

from ..errors import Fcos3dError
from .checkpoint import checkpoint_path, load_checkpoint
from .config import build
from .distributed import DistInfo
from .loop import Reporter, build_loader, train
from .predict import model_forward, predict_split

PREDICT_STAGES = ("float",)
TRAIN_STAGES = ("float",)


def _post(cfg: dict):
    return build(cfg["post_process"], "post_process") if "post_process" in cfg else None


def _val_loader(cfg: dict):
    loader, _ = build_loader(cfg["val_data_loader"], DistInfo(), shuffle=False, seed=0, drop_last=False)
    return loader


def work_dir_of(cfg: dict) -> Path:
    return Path(cfg.get("ckpt_dir", f"work_dirs/{cfg.get('task_name', 'fcos3d')}"))


def run_train(cfg: dict, stage: str, *, resume: bool = False, reporter: Reporter | None = None,
              progress: Callable[[int, int], None] | None = None) -> dict:
    """Train a stage with validation every val_interval epochs; returns the loop's summary."""
    if stage not in TRAIN_STAGES:
        raise Fcos3dError(f"stage {stage!r} cannot be trained yet: use one of {TRAIN_STAGES}")
    if f"{stage}_trainer" not in cfg:
        raise Fcos3dError(f"{cfg.get('__file__', 'the config')}: no {stage}_trainer dict; add one to train this stage")
    work_dir = work_dir_of(cfg)
    val_loader = None

    def validate(model: torch.nn.Module, epoch: int) -> dict:
        nonlocal val_loader
        val_loader = val_loader or _val_loader(cfg)
        device = next(model.parameters()).device
        was_training = model.training
        metrics = predict_split(model_forward(model, device), val_loader, model.strides,
                                work_dir / "eval" / f"{stage}-epoch{epoch:03d}", _post(cfg), progress)
        model.train(was_training)
        return metrics

    return train(cfg, stage, resume=resume, work_dir=work_dir, reporter=reporter,
                 validate=validate if "val_data_loader" in cfg else None)


def load_stage_model(cfg: dict, stage: str, ckpt: str | Path | None = None) -> torch.nn.Module:
    """The model of a stage with its trained weights (the best checkpoint unless ckpt is given)."""
    if stage not in PREDICT_STAGES:
        raise Fcos3dError(f"stage {stage!r} cannot be predicted yet: use one of {PREDICT_STAGES}")
    path = Path(ckpt) if ckpt else checkpoint_path(work_dir_of(cfg), stage, "best")
    if ckpt is None and not path.is_file():
        path = checkpoint_path(work_dir_of(cfg), stage, "last")
    state = load_checkpoint(path, expected_stage=stage)
    model = build(cfg["model"], "model")
    try:
        model.load_state_dict(state["state_dict"])
    except RuntimeError as e:
        first = str(e).splitlines()[0]
        raise Fcos3dError(f"{path}: weights do not fit the config's model ({first}); pass the config it was trained with") from None
    return model.eval()


def run_predict(cfg: dict, stage: str, *, ckpt: str | Path | None = None,
                progress: Callable[[int, int], None] | None = None) -> dict:
    """Predict the val split with a stage's model and score it; writes the result and metrics JSON."""
    model = load_stage_model(cfg, stage, ckpt)
    loader = _val_loader(cfg)
    out_dir = work_dir_of(cfg) / "predict" / stage
    return predict_split(model_forward(model), loader, model.strides, out_dir, _post(cfg), progress)
