"""Training curve of a run from its TensorBoard events: a PNG (loss, val NDS/mAP) and a JSON of the points.

    python scripts/training_curve.py work_dirs/float20/tensorboard/float --out benchmarks/results/float_cpu_7epochs

Wall times come from the event records, so the JSON also says how long the run trained and validated.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def read_scalars(logdir: Path) -> dict[str, list[tuple[float, int, float]]]:
    """tag -> [(wall_time, step, value)] over every event file under logdir, sorted by wall time."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    files = sorted(logdir.rglob("events.out.tfevents.*"))
    if not files:
        raise SystemExit(f"error: {logdir}: no TensorBoard event files; pass the run's <ckpt_dir>/tensorboard folder")
    out: dict[str, list] = {}
    for f in files:
        acc = EventAccumulator(str(f), size_guidance={"scalars": 0})
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            out.setdefault(tag, []).extend((e.wall_time, e.step, e.value) for e in acc.Scalars(tag))
    return {k: sorted(v) for k, v in out.items()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("logdir", type=Path, help="one stage of the run: <ckpt_dir>/tensorboard/<stage>")
    ap.add_argument("--out", type=Path, required=True, help="output path without suffix: writes OUT.json and OUT.png")
    args = ap.parse_args(argv)
    s = read_scalars(args.logdir)
    loss = s.get("train/loss", [])
    nds, map_ = s.get("val/NDS", []), s.get("val/mAP", [])
    if not loss:
        raise SystemExit(f"error: {args.logdir}: no train/loss scalars")
    t0 = loss[0][0]
    record = {
        "logdir": str(args.logdir),
        "first_logged_step": loss[0][1],
        "last_step": loss[-1][1],
        "seconds_first_to_last_event": round(max(e[0] for v in s.values() for e in v) - t0, 1),
        "loss": [{"step": st, "t": round(w - t0, 1), "loss": round(v, 4)} for w, st, v in loss],
        "val": [
            {"step": st, "t": round(w - t0, 1), "NDS": round(v, 4), "mAP": round(m[2], 4)}
            for (w, st, v), m in zip(nds, map_)
        ],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(record, indent=1) + "\n")

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 3.6), dpi=110)
    FigureCanvasAgg(fig)
    a1, a2 = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    a1.plot([p["step"] for p in record["loss"]], [p["loss"] for p in record["loss"]], lw=0.8)
    a1.set_xlabel("step")
    a1.set_ylabel("train loss (sum)")
    a1.set_title("float training loss")
    for key, colour in (("NDS", "#3b6fb6"), ("mAP", "#e08a2c")):
        a2.plot([p["step"] for p in record["val"]], [p[key] for p in record["val"]], "o-", label=key, color=colour)
    a2.set_xlabel("step")
    a2.set_ylabel("nuScenes val")
    a2.set_title("validation")
    a2.legend()
    fig.tight_layout()
    fig.savefig(str(args.out.with_suffix(".png")))
    print(f"{args.out.with_suffix('.json')}  {args.out.with_suffix('.png')}")
    for p in record["val"]:
        print(f"step {p['step']:5d}  t {p['t']:7.1f} s  NDS {p['NDS']:.4f}  mAP {p['mAP']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
