"""Short instrumented fine-tunes of a float checkpoint: does the direction classifier learn under a loss variant?

Each variant starts from the same checkpoint, sees the same batches (seed 0) for --steps AdamW steps, logs
loss_dir, then scripts/diagnose_heading.py's point-level numbers on the val split (dir accuracy, yaw error).
Variants: control (the config's losses), dirw=K (loss_dir x K), depth=W (depth code weight W, HAT's pretrain 0.2),
dironly (only loss_dir: the upper bound of what the features can learn). Issue 16, step 3.

    OMP_NUM_THREADS=1 .venv/bin/python scripts/heading_finetune.py --config C --set data_root=... \
        --set ckpt_dir=... --variant depth=0.2 --steps 100 --lr 5e-4
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from diagnose_heading import diagnose  # noqa: E402

from fcos3d.data.transforms import unbatch_anns  # noqa: E402
from fcos3d.trainer.config import load_config  # noqa: E402
from fcos3d.trainer.distributed import DistInfo  # noqa: E402
from fcos3d.trainer.loop import build_loader, seed_everything  # noqa: E402
from fcos3d.trainer.stages import load_stage_model  # noqa: E402


def apply_variant(loss_fn, variant: str) -> None:
    if variant == "control":
        return
    name, _, value = variant.partition("=")
    if name == "dirw":
        loss_fn.loss_weights = dict(loss_fn.loss_weights, loss_dir=float(value))
    elif name == "depth":
        cw = list(loss_fn.code_weights)
        cw[2] = float(value)
        loss_fn.code_weights = tuple(cw)
    elif name == "dironly":
        names = ("loss_cls", "loss_offset", "loss_depth", "loss_size", "loss_rot", "loss_velo", "loss_attr")
        loss_fn.loss_weights = {n: 0.0 for n in names} | {"loss_centerness": 0.0}
    else:
        raise SystemExit(f"unknown variant {variant!r}: control, dirw=K, depth=W, dironly")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", required=True)
    ap.add_argument("--set", action="append", default=[])
    ap.add_argument("--ckpt", default=None)
    ap.add_argument("--variant", default="control")
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--grad-clip", type=float, default=35.0)
    ap.add_argument("--val-images", type=int, default=120)
    ap.add_argument("--out", default=None, help="JSON file for the log and the diagnosis")
    a = ap.parse_args()
    torch.set_num_threads(1)
    cfg = load_config(a.config, dict(s.split("=", 1) for s in a.set))
    seed_everything(0, False)
    model = load_stage_model(cfg, "float", a.ckpt)
    apply_variant(model.loss_fn, a.variant)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=0.01)
    loader, sampler = build_loader(cfg["data_loader"], DistInfo(), shuffle=True, seed=0, drop_last=True)
    log, step, t0 = [], 0, time.perf_counter()
    while step < a.steps:
        sampler.set_epoch(step)
        for batch in loader:
            losses = model.loss(model(batch["img"]), unbatch_anns(batch))
            loss = sum(losses.values())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), a.grad_clip))
            opt.step()
            step += 1
            log.append({"step": step, "grad_norm": norm, **{k: float(v.detach()) for k, v in losses.items()}})
            if step % 10 == 0:
                last = log[-10:]
                print(
                    f"{a.variant} step {step} loss_dir {sum(r['loss_dir'] for r in last) / 10:.4f} "
                    f"loss_depth {sum(r['loss_depth'] for r in last) / 10:.3f} ({time.perf_counter() - t0:.0f} s)",
                    flush=True,
                )
            if step >= a.steps:
                break
    diag = diagnose_model(cfg, model, a.val_images)
    result = {"variant": a.variant, "steps": a.steps, "lr": a.lr, "seconds": time.perf_counter() - t0}
    result |= {"log": log, "diagnosis": diag}
    if a.out:
        Path(a.out).write_text(json.dumps(result, indent=1))
    car = diag.get("car", {})
    print(json.dumps({"variant": a.variant, "all": diag["all"], "car": car}, indent=1))


def diagnose_model(cfg, model, images):
    import diagnose_heading

    orig = diagnose_heading.load_stage_model
    diagnose_heading.load_stage_model = lambda *_a, **_k: model
    try:
        return diagnose(cfg, None, images)
    finally:
        diagnose_heading.load_stage_model = orig


if __name__ == "__main__":
    main()
