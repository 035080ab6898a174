"""Training checkpoints: a dict of tensors and plain metadata, written atomically, read with weights_only.

Names follow HAT: ``<stage>-checkpoint-best.pth.tar`` and ``<stage>-checkpoint-last.pth.tar``.
LoadStageCheckpoint is the converter that loads one into a stage's ModelConvertPipeline (configs).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import Fcos3dError
from ..io import atomic_write_bytes
from ..model.checkpoint import torch_load_error

FORMAT = "fcos3d-checkpoint"
FORMAT_VERSION = 1
STAGES = ("float", "calibration", "qat")


def checkpoint_path(work_dir: str | Path, stage: str, which: str) -> Path:
    """``work_dir/<stage>-checkpoint-<which>.pth.tar`` with which in {best, last}."""
    return Path(work_dir) / f"{stage}-checkpoint-{which}.pth.tar"


def save_checkpoint(path: str | Path, *, stage: str, state_dict: dict, **extra: Any) -> Path:
    """Atomically write a checkpoint (temp file in the same folder, fsync, rename).

    Serialised in memory first: a full disk is then an OSError naming the file (torch's own writer reports it as
    a RuntimeError without the file), and a kill or a full disk leaves the previous checkpoint as it was."""
    path = Path(path)
    payload = dict(format=FORMAT, format_version=FORMAT_VERSION, stage=stage, state_dict=state_dict, **extra)
    buf = io.BytesIO()
    torch.save(payload, buf)
    atomic_write_bytes(path, buf.getbuffer())
    return path


def activation_counts(model: torch.nn.Module) -> dict[str, int]:
    """How many layers end in each activation kind ("relu", "relu6"), the same for a float model (its conv
    blocks' ``act`` modules) and its quantised forms (``QConv2d.act``). Weights do not tell ReLU from ReLU6,
    so checkpoints record this and loading compares it (check_activations)."""
    counts: dict[str, int] = {}
    for m in model.modules():
        act = getattr(m, "act", None)
        kind = act if isinstance(act, str) else {torch.nn.ReLU6: "relu6", torch.nn.ReLU: "relu"}.get(type(act))
        if kind is not None:
            counts[kind] = counts.get(kind, 0) + 1
    return dict(sorted(counts.items()))


def check_activations(ckpt: dict, model: torch.nn.Module, path: str | Path) -> None:
    """Refuse a checkpoint whose recorded activations (activation_counts) differ from the model's: the weights
    would load and the model would silently compute something else. Checkpoints without the record pass."""
    saved = ckpt.get("activations")
    if saved is not None and dict(saved) != activation_counts(model):
        raise Fcos3dError(
            f"{path}: trained with activations {dict(saved)} but the config builds "
            f"{activation_counts(model)}; build the model it was trained with "
            "(e.g. --set backbone_activation=relu for a ReLU backbone)"
        )


def load_checkpoint(path: str | Path, expected_stage: str | None = None) -> dict:
    """Read a checkpoint with ``weights_only=True``; refuse files that are not ours or of another stage."""
    path = Path(path)
    if not path.is_file():
        raise Fcos3dError(f"{path}: checkpoint not found; train that stage first or pass the right path")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise torch_load_error(path, e, "pass a file written by `fcos3d train`") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise Fcos3dError(
            f"{path}: not an fcos3d checkpoint (no '{FORMAT}' marker); pass a file written by `fcos3d train`"
        )
    if expected_stage is not None and ckpt.get("stage") != expected_stage:
        raise Fcos3dError(
            f"{path}: a {ckpt.get('stage')!r}-stage checkpoint where a {expected_stage!r} one is needed; "
            f"pass {expected_stage}-checkpoint-best.pth.tar"
        )
    weights = ckpt.get("state_dict")
    if not isinstance(weights, dict) or not any(isinstance(v, torch.Tensor) for v in weights.values()):
        raise Fcos3dError(
            f"{path}: an fcos3d checkpoint without weights (its state_dict is missing or holds no tensor); "
            "pass a file written by `fcos3d train`"
        )
    return ckpt


def checkpoint_metrics(metrics: dict) -> dict:
    """Metrics with only JSON-like values (what weights_only checkpoints may hold)."""
    out = {}
    for k, v in metrics.items():
        if isinstance(v, (int, float, str, bool)):
            out[k] = v
        elif isinstance(v, dict):
            out[k] = checkpoint_metrics(v)
    return out


class LoadStageCheckpoint:
    """Load a checkpoint written by ``fcos3d train --stage <stage>`` into the model (all keys must fit)."""

    def __init__(self, checkpoint_path: str | Path, stage: str):
        self.checkpoint_path = Path(checkpoint_path)
        self.stage = stage

    def __call__(self, model: nn.Module) -> nn.Module:
        ckpt = load_checkpoint(self.checkpoint_path, expected_stage=self.stage)
        check_activations(ckpt, model, self.checkpoint_path)
        try:
            model.load_state_dict(ckpt["state_dict"])
        except RuntimeError as e:
            lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
            first = "; ".join(lines[1:2] or lines[:1])[:300]  # torch's first line is only a header
            raise Fcos3dError(
                f"{self.checkpoint_path}: the {self.stage} weights do not fit this model ({first}); "
                "check the converters order and the config the checkpoint was trained with"
            ) from None
        return model
