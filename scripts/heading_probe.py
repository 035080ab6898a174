"""Is front/back (the direction bin) readable from the network's features? A linear probe (issue 16, step 3).

Runs a float checkpoint over train and val images, keeps the features at the positive points of the FCOS3D
targets (the neck output, the shared regression tower's output that feeds the direction branch, and the class
tower's output that feeds the attribute branch), fits a logistic regression of the direction bin on the train
points and reports its val accuracy per feature, for all classes and for cars. If the class tower carries
front/back and the regression tower does not, the direction classifier sits on the wrong feature for this data.

    OMP_NUM_THREADS=1 .venv/bin/python scripts/heading_probe.py --config C --set data_root=... --set ckpt_dir=... \
        [--train-images 240] [--val-images 120]
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from fcos3d.data.classes import CLASSES
from fcos3d.data.transforms import unbatch_anns
from fcos3d.model.checkpoint import RGBInputToYUV
from fcos3d.trainer.config import build, load_config
from fcos3d.trainer.distributed import DistInfo
from fcos3d.trainer.loop import build_loader
from fcos3d.trainer.stages import load_stage_model

FEATURES = ("backbone", "neck", "reg_tower", "cls_tower")


@torch.no_grad()
def collect(model, loader, images: int) -> dict:
    levels = model.head.levels
    cache: dict = {f: [None] * len(levels) for f in FEATURES}
    hooks = [model.backbone.register_forward_hook(lambda m, a, o: cache.__setitem__("backbone_maps", o))]
    for i, lv in enumerate(levels):
        hooks.append(lv.register_forward_pre_hook(lambda m, a, i=i: cache["neck"].__setitem__(i, a[0])))
        hooks.append(lv.reg_convs.register_forward_hook(lambda m, a, o, i=i: cache["reg_tower"].__setitem__(i, o)))
        hooks.append(lv.cls_convs.register_forward_hook(lambda m, a, o, i=i: cache["cls_tower"].__setitem__(i, o)))
    out = {f: [] for f in FEATURES} | {"dir": [], "label": []}
    seen = 0
    try:
        for batch in loader:
            grouped = model.group(model(batch["img"]))
            sizes = [tuple(t.shape[-2:]) for t in grouped["cls_score"]]
            t = model.target(sizes, unbatch_anns(batch))
            pos = t["labels"] < model.target.num_classes  # (N, P)
            for f in FEATURES[1:]:
                flat = torch.cat([m.flatten(2).transpose(1, 2) for m in cache[f]], 1)  # (N, P, C)
                out[f].append(flat[pos].numpy())
            # the backbone's stride 8, 16 and 32 maps (40 + 112 + 320 channels) at each positive point's pixel
            points, _, _ = model.target.points(sizes)  # (P, 2) [x, y]
            n_idx, p_idx = pos.nonzero(as_tuple=True)
            cols = []
            for fmap, stride in zip(cache["backbone_maps"][2:], (8, 16, 32)):
                H, W = fmap.shape[-2:]
                x = (points[p_idx, 0] / stride).long().clamp(0, W - 1)
                y = (points[p_idx, 1] / stride).long().clamp(0, H - 1)
                cols.append(fmap[n_idx, :, y, x])  # (num_pos, C)
            out["backbone"].append(torch.cat(cols, 1).numpy())
            out["dir"].append(t["dir_labels"][pos].numpy())
            out["label"].append(t["labels"][pos].numpy())
            seen += len(batch["img"])
            if seen >= images:
                break
    finally:
        for h in hooks:
            h.remove()
    return {k: np.concatenate(v) for k, v in out.items()}


def main() -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", required=True)
    ap.add_argument("--set", action="append", default=[])
    ap.add_argument("--ckpt", default=None)
    ap.add_argument("--train-images", type=int, default=240)
    ap.add_argument("--val-images", type=int, default=120)
    ap.add_argument("--init", action="store_true", help="probe the ImageNet start (float_trainer's converters)")
    ap.add_argument("--yuv-stem", action="store_true", help="with --init: also fold YUV->RGB into the stem conv")
    a = ap.parse_args()
    torch.set_num_threads(1)
    cfg = load_config(a.config, dict(s.split("=", 1) for s in a.set))
    if a.init:
        torch.manual_seed(0)
        model = build(cfg["model"], "model")
        for convert in cfg["float_trainer"].get("converters", ()):
            model = convert(model)
        if a.yuv_stem:
            model = RGBInputToYUV()(model)
        model.eval()
    else:
        model = load_stage_model(cfg, "float", a.ckpt).eval()
    tr_loader, sampler = build_loader(cfg["data_loader"], DistInfo(), shuffle=True, seed=0, drop_last=False)
    sampler.set_epoch(0)
    va_loader, _ = build_loader(cfg["val_data_loader"], DistInfo(), shuffle=False, seed=0, drop_last=False)
    tr, va = collect(model, tr_loader, a.train_images), collect(model, va_loader, a.val_images)
    car = CLASSES.index("car")
    res = {"train_points": len(tr["dir"]), "val_points": len(va["dir"]), "val_label1_share": float(va["dir"].mean())}
    for f in FEATURES:
        scaler = StandardScaler().fit(tr[f])
        clf = LogisticRegression(max_iter=2000, C=0.1).fit(scaler.transform(tr[f]), tr["dir"])
        pred = clf.predict(scaler.transform(va[f]))
        m = va["label"] == car
        res[f] = {
            "val_acc": float((pred == va["dir"]).mean()),
            "val_acc_car": float((pred[m] == va["dir"][m]).mean()),
            "train_acc": float(clf.score(scaler.transform(tr[f]), tr["dir"])),
        }
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
