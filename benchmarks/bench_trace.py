"""How long `fcos3d trace` takes on one image of the 512x896 nuScenes recipe (the [trace] acceptance: < 2 minutes).

    .venv/bin/python benchmarks/bench_trace.py [--out build/bench_trace] [--size 512x896]

Makes the forms the tracer lines up, once (kept in --out): the config's model with seeded random weights as the
float checkpoint, calibrated on 2 random images (calibration checkpoint), converted to QAT (qat checkpoint), its
exported QDQ ONNX, and a synthetic camera JPEG. Then times, in this process: the debug build's compile (once per
ONNX), and the trace of the JPEG through float, calibration, QAT, torch int, simulator, compiled debug build and
onnxruntime. Prints a table and writes trace_timing.json beside the trace's own files.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "fcos3d_efficientnetb0_nuscenes.py"


def make_forms(work: Path, hw: tuple[int, int], seed: int = 0) -> Path:
    """Checkpoints of the three stages and the exported ONNX in ``work`` (skipped when there)."""
    import torch

    from fcos3d.quant.convert import Float2Calibration, Float2QAT
    from fcos3d.quant.export import export_qdq_onnx
    from fcos3d.quant.intmodel import QAT2Quantize
    from fcos3d.quant.qat import set_quant_state
    from fcos3d.trainer.checkpoint import checkpoint_path, save_checkpoint
    from fcos3d.trainer.config import build, load_config

    onnx_path = work / "model_int8.onnx"
    if onnx_path.is_file():
        return onnx_path
    cfg = load_config(CONFIG, {"ckpt_dir": str(work)})
    torch.manual_seed(seed)
    float_model = build(cfg["model"], "model").eval()
    shape = (1, 3, *hw)
    calib = Float2Calibration()(copy.deepcopy(float_model))
    calib.train()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _ in range(2):
            calib((torch.randint(0, 256, shape, generator=g).float() - 128) / 128)
    set_quant_state(calib, observe=False, fake_quant=True)
    qat = Float2QAT()(copy.deepcopy(calib)).eval()
    save_checkpoint(checkpoint_path(work, "float", "best"), stage="float", state_dict=float_model.state_dict())
    save_checkpoint(checkpoint_path(work, "calibration", "best"), stage="calibration", state_dict=calib.state_dict())
    save_checkpoint(checkpoint_path(work, "qat", "best"), stage="qat", state_dict=qat.state_dict())
    export_qdq_onnx(QAT2Quantize(shape)(qat), shape, onnx_path)
    return onnx_path


def camera_jpeg(path: Path, hw: tuple[int, int], seed: int = 0) -> Path:
    """A smooth, camera-like synthetic JPEG of the model's size."""
    import cv2

    rng = np.random.default_rng(seed)
    base = rng.uniform(0, 255, (hw[0] // 32, hw[1] // 32, 3)).astype(np.float32)
    img = cv2.resize(base, (hw[1], hw[0]), interpolation=cv2.INTER_CUBIC)
    img = np.clip(img + rng.normal(0, 12, img.shape), 0, 255).astype(np.uint8)
    cv2.imwrite(str(path), img)
    return path


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="build/bench_trace", type=Path)
    ap.add_argument("--size", default="512x896", help="HxW")
    args = ap.parse_args(argv)
    hw = tuple(int(v) for v in args.size.split("x"))
    work = args.out / f"work-{args.size}"
    work.mkdir(parents=True, exist_ok=True)

    from fcos3d.compiler.build import debug_build
    from fcos3d.trainer.config import load_config
    from fcos3d.trainer.trace import run_trace

    t = time.perf_counter()
    onnx_path = make_forms(work, hw)
    made = time.perf_counter() - t
    jpeg = camera_jpeg(work / "camera.jpg", hw)
    t = time.perf_counter()
    debug_build(onnx_path, "host", work / "artifact-host-debug", print)
    compile_s = time.perf_counter() - t
    cfg = load_config(CONFIG, {"ckpt_dir": str(work)})
    t = time.perf_counter()
    res = run_trace(cfg, image=str(jpeg), onnx_path=onnx_path, onnxruntime=True, out=work / "trace")
    trace_s = time.perf_counter() - t
    report = res["report"]
    timing = {
        "size": args.size,
        "layers": len(report.rows),
        "executors": report.executors,
        "forms": report.forms,
        "equal": report.equal,
        "make_forms_s": round(made, 1),
        "debug_compile_s": round(compile_s, 1),
        "trace_s": round(trace_s, 1),
        "verdict": report.verdict(),
    }
    (work / "trace" / "trace_timing.json").write_text(json.dumps(timing, indent=2))
    print("| size | layers | debug build compile (once) | trace of one image | integer executors equal |")
    print("|---|---:|---:|---:|---|")
    print(f"| {args.size} | {len(report.rows)} | {compile_s:.1f} s | {trace_s:.1f} s | {report.equal} |")
    print(report.verdict())
    sys.exit(0 if report.equal else 1)


if __name__ == "__main__":
    main()
