"""How much of each loss's gradient reaches the direction classifier's path (issue 16, step 3).

For a few training batches at a float checkpoint (or at the ImageNet start), each named loss is backpropagated
alone and its gradient norm measured on parameter groups: the direction branch itself (dir_prev, dir_out), the
shared regression tower (reg_convs, which feeds dir, depth, rot, offset, size, velo, centerness), the neck and
the backbone. Also the total gradient norm against the config's grad_clip: above it every gradient, the
direction branch's included, is scaled down by clip / norm.

    OMP_NUM_THREADS=1 .venv/bin/python scripts/heading_grads.py --config C --set data_root=... --set ckpt_dir=... \
        [--ckpt FILE | --init] [--batches 3] [--set-code-depth 0.2]
"""

from __future__ import annotations

import argparse
import json

import torch

from fcos3d.data.transforms import unbatch_anns
from fcos3d.trainer.config import build, load_config
from fcos3d.trainer.distributed import DistInfo
from fcos3d.trainer.loop import build_loader
from fcos3d.trainer.stages import load_stage_model

GROUPS = {
    "dir_branch": (".dir_prev", ".dir_out"),
    "reg_tower": (".reg_convs",),
    "neck": ("neck.",),
    "backbone": ("backbone.",),
}


def _group_of(name: str) -> str | None:
    for g, keys in GROUPS.items():
        if any(k in name for k in keys):
            return g
    return None


def measure(cfg: dict, ckpt=None, init: bool = False, batches: int = 3) -> dict:
    if init:
        model = build(cfg["model"], "model")
        for conv in cfg["float_trainer"].get("converters", ()):
            model = conv(model)
    else:
        model = load_stage_model(cfg, "float", ckpt)
    model.train()
    loader, sampler = build_loader(cfg["data_loader"], DistInfo(), shuffle=True, seed=0, drop_last=True)
    sampler.set_epoch(0)
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    out: dict = {}
    for b, batch in enumerate(loader):
        if b >= batches:
            break
        losses = model.loss(model(batch["img"]), unbatch_anns(batch))
        names = list(losses) + ["total"]
        for ln in names:
            loss = sum(losses.values()) if ln == "total" else losses[ln]
            grads = torch.autograd.grad(loss, [p for _, p in params], retain_graph=True, allow_unused=True)
            sq: dict[str, float] = {g: 0.0 for g in [*GROUPS, "all"]}
            for (n, _), g in zip(params, grads):
                if g is None:
                    continue
                s = float((g * g).sum())
                sq["all"] += s
                grp = _group_of(n)
                if grp:
                    sq[grp] += s
            row = out.setdefault(ln, {g: [] for g in sq} | {"value": []})
            for g, s in sq.items():
                row[g].append(s**0.5)
            row["value"].append(float(loss.detach()))
    return {ln: {g: sum(v) / len(v) for g, v in row.items()} for ln, row in out.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", required=True)
    ap.add_argument("--set", action="append", default=[])
    ap.add_argument("--ckpt", default=None)
    ap.add_argument("--init", action="store_true", help="measure at the ImageNet start instead of a checkpoint")
    ap.add_argument("--batches", type=int, default=3)
    a = ap.parse_args()
    torch.set_num_threads(1)
    cfg = load_config(a.config, dict(s.split("=", 1) for s in a.set))
    res = measure(cfg, a.ckpt, a.init, a.batches)
    print(json.dumps({"grad_clip": cfg["float_trainer"].get("grad_clip"), "losses": res}, indent=1))


if __name__ == "__main__":
    main()
