"""What `fcos3d train`, `fcos3d predict` and `fcos3d export` do for a stage: build from the config, run, score.

float -> calibration (observers over a few batches) -> qat (fake quant training) -> int_infer (the integer
model); the quantised models come from fcos3d.quant's convert pipeline (the config's converters).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import Fcos3dError
from .checkpoint import (
    activation_counts,
    check_activations,
    checkpoint_metrics,
    checkpoint_path,
    load_checkpoint,
    save_checkpoint,
)
from .config import build
from .distributed import DistInfo
from .loop import Reporter, build_loader, train
from .predict import model_forward, predict_split

PREDICT_STAGES = ("float", "calibration", "qat", "int_infer")
TRAIN_STAGES = ("float", "calibration", "qat")


def _post(cfg: dict):
    return build(cfg["post_process"], "post_process") if "post_process" in cfg else None


def _val_loader(cfg: dict):
    loader, _ = build_loader(cfg["val_data_loader"], DistInfo(), shuffle=False, seed=0, drop_last=False)
    return loader


def work_dir_of(cfg: dict) -> Path:
    return Path(cfg.get("ckpt_dir", f"work_dirs/{cfg.get('task_name', 'fcos3d')}"))


def run_train(
    cfg: dict,
    stage: str,
    *,
    resume: bool = False,
    reporter: Reporter | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Train a stage with validation every val_interval epochs; returns the loop's summary."""
    if stage not in TRAIN_STAGES:
        raise Fcos3dError(f"stage {stage!r} cannot be trained yet: use one of {TRAIN_STAGES}")
    if f"{stage}_trainer" not in cfg:
        raise Fcos3dError(f"{cfg.get('__file__', 'the config')}: no {stage}_trainer dict; add one to train this stage")
    work_dir = work_dir_of(cfg)
    val_loader = None
    if stage == "calibration":
        return run_calibration(cfg, reporter=reporter, progress=progress)

    def validate(model: torch.nn.Module, epoch: int) -> dict:
        nonlocal val_loader
        val_loader = val_loader or _val_loader(cfg)
        device = next(model.parameters()).device
        was_training = model.training
        metrics = predict_split(
            model_forward(model, device),
            val_loader,
            model.strides,
            work_dir / "eval" / f"{stage}-epoch{epoch:03d}",
            _post(cfg),
            progress,
        )
        model.train(was_training)
        return metrics

    return train(
        cfg,
        stage,
        resume=resume,
        work_dir=work_dir,
        reporter=reporter,
        validate=validate if "val_data_loader" in cfg else None,
        build_model=(lambda c, _dist: build(c["model"], "model")) if stage == "float" else _float_model,
    )


def _float_model(cfg: dict, _dist=None) -> torch.nn.Module:
    """The float model of the config, before a stage's converters (LoadStageCheckpoint, Float2Calibration, ...)."""
    return build(cfg["model"], "model")


def _qconfig(cfg: dict, stage: str):
    """The QConfig of the stage's ModelConvertPipeline in the config (defaults if it has none)."""
    from ..quant.convert import ModelConvertPipeline
    from ..quant.observers import QConfig

    for key in (f"{stage}_trainer", "qat_trainer", "calibration_trainer"):
        for conv in (cfg.get(key) or {}).get("converters", ()):
            if isinstance(conv, ModelConvertPipeline):
                return conv.qconfig
    return QConfig()


@dataclass(frozen=True)
class CalibrationConfig:
    """The ``calibration_trainer`` dict: batches to observe, the converters (float checkpoint + Float2Calibration)."""

    num_steps: int
    converters: tuple = ()
    seed: int = 0

    def __post_init__(self):
        if self.num_steps < 1:
            raise Fcos3dError(f"calibration_trainer.num_steps={self.num_steps}: observe at least one batch")
        if not self.converters:
            raise Fcos3dError(
                "calibration_trainer.converters is empty: give a ModelConvertPipeline with "
                "LoadStageCheckpoint(<float best>, 'float') and Float2Calibration()"
            )


@torch.no_grad()
def run_calibration(
    cfg: dict, *, reporter: Reporter | None = None, progress: Callable[[int, int], None] | None = None
) -> dict:
    """Observe ``num_steps`` training batches with the calibration model (no gradients, no fake quant), then
    save calibration-checkpoint-last/-best with the observer state (validated with fake quant when the
    config has a val loader)."""
    from ..quant.qat import set_quant_state
    from .loop import seed_everything

    ccfg = CalibrationConfig(**cfg["calibration_trainer"])
    work_dir = work_dir_of(cfg)
    seed_everything(ccfg.seed, False)
    model = _float_model(cfg)
    for convert in ccfg.converters:
        model = convert(model)
    set_quant_state(model, observe=True, fake_quant=False)
    loader, sampler = build_loader(cfg["data_loader"], DistInfo(), shuffle=True, seed=ccfg.seed, drop_last=False)
    sampler.set_epoch(0)
    reporter = reporter or Reporter()
    if len(loader) == 0:
        raise Fcos3dError("the calibration set is empty: check data_loader.dataset")
    total = ccfg.num_steps  # batches; the loader is cycled when it has fewer
    reporter.on_start(total, 0)
    model.train()  # observers update in training mode (BN is folded: nothing else changes)
    step = 0
    while step < total:
        for batch in loader:
            model(batch["img"])
            step += 1
            reporter.on_step(step, {}, 0.0)
            if step >= total:
                break
        sampler.set_epoch(step)
    set_quant_state(model, observe=False, fake_quant=True)
    model.eval()
    metrics, best = {}, {"NDS": float("-inf")}
    if "val_data_loader" in cfg:
        metrics = predict_split(
            model_forward(model),
            _val_loader(cfg),
            model.strides,
            work_dir / "eval" / "calibration",
            _post(cfg),
            progress,
        )
        reporter.on_validation(0, metrics)
        best = {"NDS": float(metrics["NDS"]), "mAP": float(metrics.get("mAP", 0.0)), "epoch": 0, "step": step}
    state = dict(
        state_dict=model.state_dict(),
        activations=activation_counts(model),
        step=step,
        epoch=0,
        best=best,
        config_file=cfg.get("__file__", ""),
    )
    last = save_checkpoint(checkpoint_path(work_dir, "calibration", "last"), stage="calibration", **state)
    best_path = save_checkpoint(
        checkpoint_path(work_dir, "calibration", "best"),
        stage="calibration",
        metrics=checkpoint_metrics(metrics),
        **state,
    )
    return dict(steps=step, last_losses={}, best=best, last=str(last), best_path=str(best_path), model=model)


def load_stage_model(cfg: dict, stage: str, ckpt: str | Path | None = None) -> torch.nn.Module:
    """The model of a stage with its trained weights (the best checkpoint unless ckpt is given).

    calibration/qat: the quantised model with fake quant (eval mode); int_infer: the integer model from the
    qat checkpoint behind an IntInferModel (float outputs = int32 * scale).
    """
    if stage not in PREDICT_STAGES:
        raise Fcos3dError(f"stage {stage!r} cannot be predicted yet: use one of {PREDICT_STAGES}")
    if stage == "int_infer":
        from ..quant.intmodel import IntInferModel

        return IntInferModel(load_int_model(cfg, ckpt))
    path = Path(ckpt) if ckpt else checkpoint_path(work_dir_of(cfg), stage, "best")
    if ckpt is None and not path.is_file():
        path = checkpoint_path(work_dir_of(cfg), stage, "last")
    state = load_checkpoint(path, expected_stage=stage)
    model = build(cfg["model"], "model")
    if stage in ("calibration", "qat"):
        from ..quant.convert import Float2Calibration, Float2QAT
        from ..quant.qat import set_quant_state

        qconfig = _qconfig(cfg, stage)
        model = Float2Calibration()(model, qconfig) if stage == "calibration" else Float2QAT()(model, qconfig)
        set_quant_state(model, observe=False, fake_quant=True)
    check_activations(state, model, path)
    try:
        model.load_state_dict(state["state_dict"])
    except RuntimeError as e:
        first = str(e).splitlines()[0]
        raise Fcos3dError(
            f"{path}: weights do not fit the config's model ({first}); pass the config it was trained with"
        ) from None
    return model.eval()


def load_int_model(cfg: dict, ckpt: str | Path | None = None):
    """The integer model (fcos3d.quant.intmodel.IntModel) of the qat checkpoint (best unless ckpt is given)."""
    from ..quant.intmodel import QAT2Quantize

    return QAT2Quantize()(load_stage_model(cfg, "qat", ckpt))


def run_export(cfg: dict, *, out: str | Path | None = None, ckpt: str | Path | None = None) -> dict:
    """Write the int8 QDQ ONNX of the qat checkpoint; input shape from ``export_cfg`` (or ``input_size``)."""
    from ..quant.export import export_qdq_onnx

    ecfg = dict(cfg.get("export_cfg") or {})
    if "input_shape" in ecfg:
        shape = tuple(ecfg["input_shape"])
    elif "input_size" in cfg:
        w, h = cfg["input_size"]
        shape = (1, 3, h, w)
    else:
        raise Fcos3dError(f"{cfg.get('__file__', 'the config')}: no export_cfg.input_shape or input_size; add one")
    path = Path(out or ecfg.get("path") or work_dir_of(cfg) / "model_int8.onnx")
    if path.is_dir():  # fail before the model is built, not when it is written
        raise Fcos3dError(f"{path} is a folder: pass the ONNX file to write, e.g. --out {path / 'model_int8.onnx'}")
    int_model = load_int_model(cfg, ckpt)
    model = export_qdq_onnx(int_model, shape, path)
    counts: dict[str, int] = {}
    for n in model.graph.node:
        counts[n.op_type] = counts.get(n.op_type, 0) + 1
    return dict(
        path=str(path),
        input_shape=shape,
        outputs=len(model.graph.output),
        nodes=counts,
        widened_weight_scales=list(int_model.widened_weight_scales),
    )


def run_predict(
    cfg: dict, stage: str, *, ckpt: str | Path | None = None, progress: Callable[[int, int], None] | None = None
) -> dict:
    """Predict the val split with a stage's model and score it; writes the result and metrics JSON."""
    model = load_stage_model(cfg, stage, ckpt)
    loader = _val_loader(cfg)
    out_dir = work_dir_of(cfg) / "predict" / stage
    return predict_split(model_forward(model), loader, model.strides, out_dir, _post(cfg), progress)
