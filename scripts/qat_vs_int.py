"""How far the QAT model's fake quant is from the integer model, layer by layer, in output steps (LSB).

    .venv/bin/python scripts/qat_vs_int.py --tiny                       # the tests' tiny seeded model
    .venv/bin/python scripts/qat_vs_int.py --config configs/fcos3d_efficientnetb0_synthetic.py \
        --set data_root=demo_out/nuscenes_lmdb --set ckpt_dir=demo_out/work_dir --images 4

Per layer (fcos3d.quant.report.qat_int_lsb): end to end (the QAT model runs on its own, so differences
propagate) and local (each QAT op gets the int model's inputs: the op's own mismatch), for both forms of the
QAT model's fake quant: "exact" (no autograd: predict, validation) and "training" (autograd on). int8
layers: |round(qat / s) - q_int|; head convs: |qat / (s_in * s_w) - acc_int| in accumulator steps.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def tiny_models(n_images: int):
    sys.path.insert(0, str(ROOT / "tests" / "quant"))
    from quant_fixtures import INPUT_SHAPE, images, tiny_float_model

    from fcos3d.quant.convert import Float2Calibration, Float2QAT
    from fcos3d.quant.intmodel import QAT2Quantize

    q = Float2Calibration()(tiny_float_model())
    q.train()
    with torch.no_grad():
        for i in range(3):  # as tests/quant/conftest.py
            q(images(2, seed=100 + i))
    qat = Float2QAT()(q).eval()
    return qat, QAT2Quantize(INPUT_SHAPE)(qat), images(n_images, seed=11)


def config_models(config: str, sets: list[str], n_images: int):
    from fcos3d.cli.console import overrides
    from fcos3d.quant.intmodel import QAT2Quantize
    from fcos3d.trainer.config import load_config
    from fcos3d.trainer.quant_report import val_images
    from fcos3d.trainer.stages import load_stage_model

    cfg = load_config(config, overrides(tuple(sets)))
    qat = load_stage_model(cfg, "qat")
    imgs = val_images(cfg, n_images)
    return qat, QAT2Quantize((1, *imgs.shape[1:]))(qat), imgs


def summarise(rows: list[dict]) -> dict:
    int8 = [r for r in rows if r["kind"] != "head"]
    heads = [r for r in rows if r["kind"] == "head"]
    n = sum(r["elements"] for r in int8)
    differ = sum(r["differ"] for r in int8)
    return dict(
        layers=len(rows),
        int8_elements=n,
        int8_differ=differ,
        int8_equal_pct=100.0 * (1 - differ / max(n, 1)),
        int8_max_lsb=max((r["max_lsb"] for r in int8), default=0.0),
        layers_with_diff=sum(r["differ"] > 0 for r in int8),
        layers_over_1lsb=sum(r["max_lsb"] > 1 for r in int8),
        head_max_acc_steps=max((r["max_lsb"] for r in heads), default=0.0),
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tiny", action="store_true", help="the tests' tiny model (no checkpoint needed)")
    ap.add_argument("--config", help="experiment config with qat checkpoints in its ckpt_dir")
    ap.add_argument("--set", dest="sets", action="append", default=[], help="NAME=VALUE config override")
    ap.add_argument("--images", type=int, default=2)
    ap.add_argument("--device", default="cpu", help="where the QAT model runs (the int model runs on the CPU)")
    ap.add_argument("--rows", type=int, default=15, help="print the N layers with most differing elements")
    ap.add_argument("--json", type=Path, help="write every row and the summaries here")
    args = ap.parse_args()
    if args.tiny == bool(args.config):
        ap.error("give --tiny or --config")
    from fcos3d.quant.report import qat_int_lsb

    qat, int_model, imgs = tiny_models(args.images) if args.tiny else config_models(args.config, args.sets, args.images)
    qat.to(args.device)
    out = {}
    for form in ("exact", "training"):  # the QAT model without autograd (predict), and with it (training)
        for how in ("end_to_end", "local"):
            t0 = time.perf_counter()
            rows = qat_int_lsb(
                qat,
                int_model,
                [imgs[i : i + 1] for i in range(len(imgs))],
                local=how == "local",
                training_form=form == "training",
            )
            out[f"{form} {how}"] = dict(summary=summarise(rows), rows=rows, seconds=round(time.perf_counter() - t0, 1))
    print(
        f"QAT on {args.device}; images: {len(imgs)} of {tuple(imgs.shape[1:])}; "
        f"widened weight scales: {int_model.widened_weight_scales}"
    )
    for mode, res in out.items():
        print(f"\n{mode} ({res['seconds']} s): {json.dumps(res['summary'])}")
        worst = sorted(res["rows"], key=lambda r: (-r["differ"], -r["max_lsb"]))[: args.rows]
        print(f"  {'layer':60s} {'kind':8s} {'max':>8s} {'differ':>9s} {'of':>10s}")
        for r in worst:
            print(f"  {r['layer']:60s} {r['kind']:8s} {r['max_lsb']:8.3f} {r['differ']:9d} {r['elements']:10d}")
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
