"""Where does heading go wrong? Point-level diagnosis of a float checkpoint on the val split (issue 16, step 3);
``--split train`` runs it on the training images (no augmentation) to tell overfitting from not learning.

For every positive point of the FCOS3D targets (the points whose predictions become boxes) it measures, per class:
  rot   the regressed local yaw's error modulo pi (what the sin-difference loss trains): |wrap_pi(p - t)|
  dir   the direction classifier's accuracy (which half turn), and the share of label 1 (chance level)
  yaw   the decoded local yaw's error modulo 2 pi (as AOE measures it), and the same with an oracle dir bin
so that a mAOE near pi/2 can be told apart: a good rot with a chance dir gives yaw ~ pi/2, a bad rot gives more.

    OMP_NUM_THREADS=1 .venv/bin/python scripts/diagnose_heading.py --config configs/fcos3d_efficientnetb0_synthetic.py \
        --set data_root=demo_out/nuscenes_lmdb --set ckpt_dir=demo_out/work_dir [--ckpt FILE] [--images 120]
"""

from __future__ import annotations

import argparse
import copy
import json
import math
from pathlib import Path

import numpy as np
import torch

from fcos3d.boxes.decode import decode_yaw
from fcos3d.data.classes import CLASSES
from fcos3d.data.transforms import unbatch_anns
from fcos3d.trainer.config import load_config
from fcos3d.trainer.distributed import DistInfo
from fcos3d.trainer.loop import build_loader
from fcos3d.trainer.stages import load_stage_model

DEPTH_BINS = ((0, 10), (10, 20), (20, 30), (30, 45), (45, 1000))


def _wrap(a, period):
    return np.abs((a + period / 2) % period - period / 2)


@torch.no_grad()
def diagnose(cfg: dict, ckpt=None, images: int = 120, split: str = "val") -> dict:
    model = load_stage_model(cfg, "float", ckpt).eval()
    spec = copy.deepcopy(cfg["val_data_loader"])  # no augmentation, also on the train split
    if split == "train":
        path = spec["dataset"]["data_path"]
        spec["dataset"]["data_path"] = str(Path(path).with_name(Path(path).name.replace("val", "train")))
    loader, _ = build_loader(spec, DistInfo(), shuffle=False, seed=0, drop_last=False)
    dir_offset = model.target.dir_offset
    rows = {k: [] for k in ("label", "rot_p", "rot_t", "dir_p", "dir_t", "ctr", "depth")}
    seen = 0
    for batch in loader:
        grouped = model.group(model(batch["img"]))
        sizes = [tuple(t.shape[-2:]) for t in grouped["cls_score"]]
        t = model.target(sizes, unbatch_anns(batch))
        pos = t["labels"] < model.target.num_classes  # (N, P)

        def flat(h):
            return torch.cat([m.flatten(2).transpose(1, 2) for m in grouped[h]], 1)[pos]

        rows["label"].append(t["labels"][pos].numpy())
        rows["rot_p"].append(flat("rot")[:, 0].numpy())
        rows["rot_t"].append(t["bbox"][pos][:, 6].numpy())
        rows["dir_p"].append(flat("dir_cls").argmax(1).numpy())
        rows["dir_t"].append(t["dir_labels"][pos].numpy())
        rows["ctr"].append(t["centerness"][pos].numpy())
        rows["depth"].append(t["bbox"][pos][:, 2].numpy())
        seen += len(batch["img"])
        if seen >= images:
            break
    r = {k: np.concatenate(v) for k, v in rows.items()}
    # decode as boxes/decode.py does (x = 0, z = 1: the ray angle cancels in a local-yaw comparison)
    zeros, ones = np.zeros(len(r["label"])), np.ones(len(r["label"]))
    yaw_pred = decode_yaw(r["rot_p"], r["dir_p"], zeros, ones, dir_offset)
    yaw_oracle_dir = decode_yaw(r["rot_p"], r["dir_t"], zeros, ones, dir_offset)
    yaw_true = decode_yaw(r["rot_t"], r["dir_t"], zeros, ones, dir_offset)
    out = {"split": split, "images": seen}
    for c in [None, *range(len(CLASSES))]:
        m = np.ones(len(r["label"]), bool) if c is None else r["label"] == c
        if m.sum() == 0:
            continue
        centre = m & (r["ctr"] >= 0.5)
        out["all" if c is None else CLASSES[c]] = {
            "points": int(m.sum()),
            "rot_err_mod_pi": float(np.mean(_wrap(r["rot_p"][m] - r["rot_t"][m], math.pi))),
            "dir_acc": float(np.mean(r["dir_p"][m] == r["dir_t"][m])),
            "dir_label1_share": float(np.mean(r["dir_t"][m])),
            "dir_pred1_share": float(np.mean(r["dir_p"][m])),
            "yaw_err": float(np.mean(_wrap(yaw_pred[m] - yaw_true[m], 2 * math.pi))),
            "yaw_err_oracle_dir": float(np.mean(_wrap(yaw_oracle_dir[m] - yaw_true[m], 2 * math.pi))),
            "target_check": float(np.max(_wrap(yaw_true[m] - r["rot_t"][m], 2 * math.pi))),
            # the points near the box centre (centerness >= 0.5), whose predictions the detections mostly keep
            "centre_points": int(centre.sum()),
            "centre_dir_acc": float(np.mean((r["dir_p"] == r["dir_t"])[centre])) if centre.any() else None,
            "centre_yaw_err": float(np.mean(_wrap(yaw_pred - yaw_true, 2 * math.pi)[centre])) if centre.any() else None,
            # direction accuracy by the object's depth (m): is the cue (head/tail lights) resolvable far away?
            "dir_acc_by_depth": {
                f"{lo}-{hi}": {
                    "points": int(d.sum()),
                    "dir_acc": float(np.mean(r["dir_p"][d] == r["dir_t"][d])) if d.any() else None,
                }
                for lo, hi in DEPTH_BINS
                for d in [m & (r["depth"] >= lo) & (r["depth"] < hi)]
            },
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", required=True)
    ap.add_argument("--set", action="append", default=[])
    ap.add_argument("--ckpt", default=None)
    ap.add_argument("--images", type=int, default=120)
    ap.add_argument(
        "--split", choices=("val", "train"), default="val", help="train: the training images (does it generalise?)"
    )
    a = ap.parse_args()
    torch.set_num_threads(1)
    cfg = load_config(a.config, dict(s.split("=", 1) for s in a.set))
    print(json.dumps(diagnose(cfg, a.ckpt, a.images, a.split), indent=1))


if __name__ == "__main__":
    main()
