"""The issue's acceptance graph: the synthetic config's own FCOS3D (EfficientNet-b0 at 384x256, BiFPN, 128-channel
head), calibrated on two images and exported, runs bit-exactly on the TOSA reference model and compiles with Vela
for ethos-u55-256, ethos-u65-512 and ethos-u85-256 with every op on the NPU (about 20 s: export, one reference run,
three Vela compiles)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from tosa_cases import emit_and_load, mismatches, requires_vela

pytestmark = [pytest.mark.slow, requires_vela]


def test_synthetic_config_graph_on_reference_model_and_vela(tmp_path):
    import torch

    from fcos3d.compiler.tosa.vela import run_vela
    from fcos3d.quant.convert import Float2Calibration, Float2QAT
    from fcos3d.quant.export import export_qdq_onnx
    from fcos3d.quant.intmodel import QAT2Quantize
    from fcos3d.runtime.reference.simulator import Simulator
    from fcos3d.trainer.config import build, load_config

    cfg = load_config(Path(__file__).resolve().parents[3] / "configs" / "fcos3d_efficientnetb0_synthetic.py")
    torch.manual_seed(0)
    shape = (1, 3, cfg["input_size"][1], cfg["input_size"][0])
    q = Float2Calibration()(build(cfg["model"], "model").eval())
    q.train()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for _ in range(2):
            q((torch.randint(0, 256, shape, generator=g).float() - 128) / 128)
    onnx_path = tmp_path / "synthetic_int8.onnx"
    export_qdq_onnx(QAT2Quantize(shape)(Float2QAT()(q).eval()), shape, onnx_path)

    sim = Simulator(onnx_path)
    ref = emit_and_load(sim.graph, tmp_path, "model")
    x = torch.randint(-128, 128, shape, generator=g, dtype=torch.int8).numpy()
    bad, total, lines = mismatches(sim, ref, [x])
    assert len(ref.output_names) == 45 and total > 60_000 and bad == 0, "; ".join(lines)

    for board in ("ethos-u55-256", "ethos-u65-512", "ethos-u85-256"):
        r = run_vela(ref.path, board, tmp_path / board)
        assert not r.cpu_fallback and r.cpu_ops == 0 and r.npu_ops > 300, (board, r.as_dict())
        assert r.macs > 1e9 and np.isfinite(r.inference_time_s) and r.inference_time_s > 0
