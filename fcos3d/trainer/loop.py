"""The training loop of the float and qat stages: one function, read top to bottom (calibration, which only
runs the observers, has its own short loop in stages.py).

Single process or torchrun/DDP (SyncBN), seeded, resumable mid-epoch to the same weights, atomic
checkpoints (last every N steps, best by NDS), TensorBoard scalars, AMP on CUDA, NaN guard.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler
from torch.utils.data.distributed import DistributedSampler

from ..data.transforms import collate_fn, unbatch_anns
from ..errors import Fcos3dError
from ..model.losses import distill_loss
from .checkpoint import (
    activation_counts,
    check_activations,
    checkpoint_metrics,
    checkpoint_path,
    load_checkpoint,
    save_checkpoint,
)
from .config import build
from .distributed import DistInfo, convert_sync_batchnorm, init_distributed
from .schedule import LrSchedule


@dataclass(frozen=True)
class TrainerConfig:
    """What a ``<stage>_trainer`` dict of a config holds (validated on creation)."""

    epochs: int
    optimizer: dict
    lr_schedule: dict = field(default_factory=dict)  # LrSchedule fields except base_lr/total_steps
    grad_clip: float | None = 35.0
    val_interval: int = 1  # epochs; 0 = never
    log_interval: int = 10  # steps between TensorBoard points
    checkpoint_interval: int = 50  # steps between "last" checkpoints (and at each epoch end)
    amp: bool = True  # only on CUDA
    sync_bn: bool = True  # only when distributed
    seed: int = 0
    deterministic: bool = False
    converters: tuple = ()  # callables model -> model applied after building (pretrained weights, ...)
    max_steps: int | None = None  # stop after this many steps in total (tests, smoke runs)
    # Knowledge distillation (QAT): dict(teacher=(converters...), weight=w) builds the config's model, applies
    # the converters (LoadStageCheckpoint of the float best) and adds w * distill_loss(student, teacher) to the
    # losses as "loss_distill". None or weight 0: off.
    distill: dict | None = None

    def __post_init__(self):
        if self.epochs < 1:
            raise Fcos3dError(f"trainer.epochs={self.epochs}: train at least one epoch")
        if not isinstance(self.optimizer, dict) or not callable(self.optimizer.get("type")):
            raise Fcos3dError("trainer.optimizer must be a dict with type=AdamW or SGD from fcos3d.trainer.optim")
        if self.checkpoint_interval < 1:
            raise Fcos3dError(f"trainer.checkpoint_interval={self.checkpoint_interval}: use a positive number of steps")
        if self.distill is not None and (
            not isinstance(self.distill, dict) or set(self.distill) != {"teacher", "weight"}
        ):
            raise Fcos3dError(
                "trainer.distill must be dict(teacher=(LoadStageCheckpoint(<float best>, 'float'),), weight=w)"
            )


class _ResumeSampler(Sampler):
    """Wrap a sampler: its order for this epoch, less the first ``skip`` indices already trained on."""

    def __init__(self, inner: Sampler, skip: int):
        self.inner, self.skip = inner, skip

    def __iter__(self):
        return iter(list(self.inner)[self.skip :])

    def __len__(self) -> int:
        return max(0, len(self.inner) - self.skip)


class Reporter:
    """What the loop tells the outside world; the CLI draws it with rich. The default is silent."""

    def on_start(self, total_steps: int, start_step: int) -> None: ...
    def on_step(self, step: int, losses: dict[str, float], lr: float) -> None: ...
    def on_validation(self, epoch: int, metrics: dict) -> None: ...


def seed_everything(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


def build_loader(
    spec: dict, dist_info: DistInfo, *, shuffle: bool, seed: int, drop_last: bool
) -> tuple[DataLoader, DistributedSampler]:
    """A DataLoader from a config dict (dataset, batch_size, num_workers) with a DistributedSampler.

    The sampler is used in one process too (num_replicas=1): the epoch's order then depends only on
    (seed, epoch), which is what makes a resumed run see the same batches.
    """
    spec = dict(spec)
    dataset = build(spec.pop("dataset"), "data_loader.dataset")
    batch_size = spec.pop("batch_size", 1)
    num_workers = spec.pop("num_workers", 0)
    if spec:
        raise Fcos3dError(f"data loader config has unknown keys {sorted(spec)}: use dataset, batch_size, num_workers")
    # DataLoader's own ValueErrors do not say which setting; these name it and the --set that changes it.
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise Fcos3dError(f"batch_size={batch_size!r}: use a positive integer (e.g. --set batch_size=8)")
    if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
        raise Fcos3dError(
            f"num_workers={num_workers!r}: use 0 (load in this process) or a positive number of loader processes "
            "(e.g. --set num_workers=2)"
        )
    sampler = DistributedSampler(
        dataset, num_replicas=dist_info.world_size, rank=dist_info.rank, shuffle=shuffle, seed=seed, drop_last=drop_last
    )
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        collate_fn=collate_fn,
        drop_last=drop_last,
        persistent_workers=False,
    )
    return loader, sampler


def _build_teacher(cfg: dict, distill: dict | None, device: torch.device) -> torch.nn.Module | None:
    """The frozen teacher of knowledge distillation (eval mode, no gradients), or None when it is off."""
    if not distill or not float(distill["weight"]):
        return None
    teacher = build(cfg["model"], "model")
    for convert in distill["teacher"]:
        teacher = convert(teacher)
    teacher.eval().requires_grad_(False)
    return teacher.to(device)


def train(
    cfg: dict,
    stage: str = "float",
    *,
    resume: bool = False,
    work_dir: str | Path | None = None,
    reporter: Reporter | None = None,
    validate: Callable[[torch.nn.Module, int], dict] | None = None,
    build_model: Callable[[dict, DistInfo], torch.nn.Module] | None = None,
) -> dict[str, Any]:
    """Train ``stage`` as the config says; return a summary (steps, last losses, best metric, paths).

    validate(model, epoch) -> metrics (with "NDS") is called every ``val_interval`` epochs on the
    main process; build_model(cfg, dist_info) lets QAT build its converted model.
    """
    reporter = reporter or Reporter()
    tcfg = TrainerConfig(**cfg[f"{stage}_trainer"])
    work_dir = Path(work_dir or cfg.get("ckpt_dir", "work_dirs/default"))

    # 1. processes, device, seeds
    dist_info = init_distributed(cfg.get("device"))
    seed_everything(tcfg.seed + dist_info.rank, tcfg.deterministic)
    device = dist_info.device

    # 2. the model, with its converters (pretrained weights, the previous stage), SyncBN under DDP
    model = build_model(cfg, dist_info) if build_model else build(cfg["model"], "model")
    for convert in tcfg.converters:
        model = convert(model)
    if dist_info.enabled and tcfg.sync_bn:
        model = convert_sync_batchnorm(model, device)
    teacher = _build_teacher(cfg, tcfg.distill, device)
    model.to(device)
    net = model
    if dist_info.enabled:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )

    # 3. data
    loader, sampler = build_loader(cfg["data_loader"], dist_info, shuffle=True, seed=tcfg.seed, drop_last=True)
    steps_per_epoch = len(loader)
    if steps_per_epoch == 0:
        raise Fcos3dError("the training set has fewer images than one batch: lower data_loader.batch_size")
    total_steps = tcfg.epochs * steps_per_epoch
    if tcfg.max_steps is not None:
        total_steps = min(total_steps, tcfg.max_steps)

    # 4. optimiser, schedule, AMP
    opt_spec = dict(tcfg.optimizer)
    optimizer = opt_spec.pop("type")(model, **opt_spec)
    sched_spec = dict(tcfg.lr_schedule)
    if "milestone_epochs" in sched_spec:  # epochs are what users think in; the schedule counts steps
        sched_spec["milestones"] = tuple(int(e * steps_per_epoch) for e in sched_spec.pop("milestone_epochs"))
    schedule = LrSchedule(base_lr=opt_spec["lr"], total_steps=tcfg.epochs * steps_per_epoch, **sched_spec)
    use_amp = tcfg.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)

    # 5. resume from the last checkpoint of this stage
    step, best = 0, {"NDS": -math.inf}
    last_path = checkpoint_path(work_dir, stage, "last")
    if resume and last_path.is_file():
        ck = load_checkpoint(last_path, expected_stage=stage)
        check_activations(ck, model, last_path)
        model.load_state_dict(ck["state_dict"])
        optimizer.load_state_dict(ck["optimizer"])
        scaler.load_state_dict(ck["scaler"]) if ck.get("scaler") else None
        step, best = int(ck["step"]), dict(ck.get("best", best))
        torch.set_rng_state(ck["rng_cpu"])
        if device.type == "cuda" and ck.get("rng_cuda") is not None:
            torch.cuda.set_rng_state(ck["rng_cuda"], device)

    def save(path: Path, **extra) -> None:
        if dist_info.is_main:
            save_checkpoint(
                path,
                stage=stage,
                state_dict=model.state_dict(),
                activations=activation_counts(model),
                optimizer=optimizer.state_dict(),
                scaler=scaler.state_dict() if use_amp else {},
                step=step,
                epoch=step // steps_per_epoch,
                best=best,
                rng_cpu=torch.get_rng_state(),
                rng_cuda=torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
                config_file=cfg.get("__file__", ""),
                **extra,
            )

    writer = None
    if dist_info.is_main:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(log_dir=str(work_dir / "tensorboard" / stage), purge_step=step)
    reporter.on_start(total_steps, step)

    # 6. epochs
    losses_f: dict[str, float] = {}
    while step < total_steps:
        epoch, in_epoch = divmod(step, steps_per_epoch)
        sampler.set_epoch(epoch)
        loader.batch_sampler.sampler = _ResumeSampler(sampler, in_epoch * loader.batch_size)
        net.train()
        for batch in loader:
            lr = schedule(step)
            for g in optimizer.param_groups:
                g["lr"] = lr
            img = batch["img"].to(device, non_blocking=True)
            with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=use_amp):
                raw = net(img)
                losses = model.loss(raw, unbatch_anns(batch))
                if teacher is not None:
                    with torch.no_grad():
                        taught = teacher(img)
                    losses["loss_distill"] = tcfg.distill["weight"] * distill_loss(
                        model.group(raw), model.group(taught)
                    )
            loss = sum(losses.values())
            losses_f = {k: float(v.detach()) for k, v in losses.items()}
            if not math.isfinite(float(loss.detach())):
                raise Fcos3dError(
                    f"the loss became {float(loss)} at step {step} ({losses_f}); the last good checkpoint "
                    f"{last_path} is kept: lower the lr or enable grad_clip, then run again with --resume"
                )
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if tcfg.grad_clip:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(model.parameters(), tcfg.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            step += 1
            reporter.on_step(step, losses_f, lr)
            if writer is not None and (step % tcfg.log_interval == 0 or step == total_steps):
                writer.add_scalar("train/loss", sum(losses_f.values()), step)
                for k, v in losses_f.items():
                    writer.add_scalar(f"train/{k}", v, step)
                writer.add_scalar("train/lr", lr, step)
            if step % tcfg.checkpoint_interval == 0 or step % steps_per_epoch == 0 or step == total_steps:
                save(last_path)
            if step >= total_steps:
                break

        # 7. end of an epoch: validate, keep the best
        epoch_done = step // steps_per_epoch
        at_epoch_end = step % steps_per_epoch == 0
        if (
            validate is not None
            and dist_info.is_main
            and ((at_epoch_end and tcfg.val_interval and epoch_done % tcfg.val_interval == 0) or step == total_steps)
        ):
            metrics = validate(model, epoch_done)
            reporter.on_validation(epoch_done, metrics)
            if writer is not None:
                for k, v in metrics.items():
                    if isinstance(v, (int, float)):
                        writer.add_scalar(f"val/{k}", v, step)
            if metrics.get("NDS", -math.inf) > best["NDS"]:
                best = {
                    "NDS": float(metrics["NDS"]),
                    "mAP": float(metrics.get("mAP", 0.0)),
                    "epoch": epoch_done,
                    "step": step,
                }
                save(checkpoint_path(work_dir, stage, "best"), metrics=checkpoint_metrics(metrics))
            save(last_path)

    if writer is not None:
        writer.close()
    if dist_info.enabled:
        torch.distributed.barrier()
    return dict(
        steps=step,
        last_losses=losses_f,
        best=best,
        last=str(last_path),
        best_path=str(checkpoint_path(work_dir, stage, "best")),
        model=model,
    )
