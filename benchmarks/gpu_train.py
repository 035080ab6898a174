"""Float-training throughput and peak memory of a config on CUDA (AMP as the config says).

Runs the real trainer (the same `train()` that `fcos3d train --stage float` runs, DDP + SyncBN under
torchrun) for --steps steps and reports images/s per GPU over the steps after --warmup, and the peak
CUDA memory. Example (one H100, the published 512x896 recipe on the synthetic LMDB):

    torchrun --nproc_per_node 1 benchmarks/gpu_train.py --config configs/fcos3d_efficientnetb0_nuscenes.py \
        --steps 300 --set data_root=demo_out/nuscenes_lmdb --json gpu_train.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from fcos3d.cli.console import overrides
from fcos3d.trainer.config import load_config
from fcos3d.trainer.loop import Reporter, train


class Timer(Reporter):
    def __init__(self):
        self.stamps: list[float] = []
        self.losses: list[float] = []

    def on_step(self, step: int, losses: dict, lr: float) -> None:
        self.stamps.append(time.perf_counter())
        self.losses.append(sum(losses.values()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--warmup", type=int, default=30, help="steps left out of the rate (cudnn autotune, workers)")
    ap.add_argument("--set", dest="sets", action="append", default=[])
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    torch.backends.cudnn.benchmark = True
    cfg = load_config(args.config, overrides(args.sets) | {"max_steps": args.steps})
    cfg["float_trainer"]["deterministic"] = False
    timer = Timer()
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    summary = train(cfg, "float", reporter=timer)
    world = torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1
    if torch.distributed.is_initialized() and torch.distributed.get_rank() != 0:
        return
    batch = cfg["data_loader"]["batch_size"]
    timed = timer.stamps[args.warmup :]
    rate = (len(timed) - 1) * batch / (timed[-1] - timed[0])
    res = {
        "config": args.config,
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
        "torch": torch.__version__,
        "gpus": world,
        "batch_per_gpu": batch,
        "amp": bool(cfg["float_trainer"].get("amp")),
        "steps": summary["steps"],
        "timed_steps": len(timed) - 1,
        "images_per_s_per_gpu": round(rate, 1),
        "s_per_step": round((timed[-1] - timed[0]) / (len(timed) - 1), 4),
        "peak_mem_allocated_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2)
        if torch.cuda.is_available()
        else None,
        "peak_mem_reserved_gib": round(torch.cuda.max_memory_reserved() / 2**30, 2)
        if torch.cuda.is_available()
        else None,
        "loss_first10": round(sum(timer.losses[:10]) / 10, 3),
        "loss_last10": round(sum(timer.losses[-10:]) / 10, 3),
    }
    print(json.dumps(res, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
