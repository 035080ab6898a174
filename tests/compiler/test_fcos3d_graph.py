"""The exported FCOS3D QDQ graph (tiny synthetic-config model, seeded) compiles for the host bit-exactly:
compiled module == simulator == torch integer model on every output element."""

import copy
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "quant"))

from quant_fixtures import INPUT_SHAPE, images, tiny_float_model  # noqa: E402


@pytest.mark.slow
def test_exported_fcos3d_compiles_bit_exact(tmp_path):
    from fcos3d.compiler.build import compile_onnx
    from fcos3d.quant.convert import Float2Calibration, Float2QAT
    from fcos3d.quant.export import export_qdq_onnx
    from fcos3d.quant.intmodel import QAT2Quantize
    from fcos3d.runtime.execute import load_artifact
    from fcos3d.runtime.reference.simulator import Simulator

    q = Float2Calibration()(copy.deepcopy(tiny_float_model()))
    q.train()
    with torch.no_grad():
        for i in range(3):
            q(images(2, seed=100 + i))
    int_model = QAT2Quantize(INPUT_SHAPE)(Float2QAT()(q).eval())
    onnx_path = tmp_path / "fcos3d_int8.onnx"
    export_qdq_onnx(int_model, INPUT_SHAPE, onnx_path)

    compile_onnx(onnx_path, "host", tmp_path / "art")
    art, sim = load_artifact(tmp_path / "art"), Simulator(onnx_path)
    assert len(sim.output_names) == 45
    xs = [
        torch.round(images(1, seed=7) * 128).clamp(-128, 127).to(torch.int8),
        torch.randint(-128, 128, INPUT_SHAPE, generator=torch.Generator().manual_seed(8), dtype=torch.int8),
    ]
    mismatches = total = 0
    for x in xs:
        want, got = sim.run(x.numpy()), art.run(x.numpy())
        with torch.no_grad():
            torch_int = int_model(x)
        for i, name in enumerate(sim.output_names):
            assert got[name].dtype == np.int32 and want[name].dtype == np.int32
            mismatches += int(np.count_nonzero(got[name] != want[name]))
            mismatches += int(np.count_nonzero(torch_int[i].numpy() != want[name]))
            total += want[name].size
    assert total > 1000 and mismatches == 0, f"{mismatches} of {total} output elements differ"


@pytest.mark.slow
def test_synthetic_config_graph_compiles_bit_exact(tmp_path):
    """The synthetic config's own model (384x256 input, 128-channel head), calibrated on two images."""
    from fcos3d.compiler.build import compile_onnx
    from fcos3d.quant.convert import Float2Calibration, Float2QAT
    from fcos3d.quant.export import export_qdq_onnx
    from fcos3d.quant.intmodel import QAT2Quantize
    from fcos3d.runtime.execute import load_artifact
    from fcos3d.runtime.reference.simulator import Simulator
    from fcos3d.trainer.config import build, load_config

    cfg = load_config(Path(__file__).resolve().parents[2] / "configs" / "fcos3d_efficientnetb0_synthetic.py")
    torch.manual_seed(0)
    shape = (1, 3, cfg["input_size"][1], cfg["input_size"][0])
    q = Float2Calibration()(build(cfg["model"], "model").eval())
    q.train()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for _ in range(2):
            q((torch.randint(0, 256, shape, generator=g).float() - 128) / 128)
    int_model = QAT2Quantize(shape)(Float2QAT()(q).eval())
    onnx_path = tmp_path / "synthetic_int8.onnx"
    export_qdq_onnx(int_model, shape, onnx_path)
    compile_onnx(onnx_path, "host", tmp_path / "art")
    art, sim = load_artifact(tmp_path / "art"), Simulator(onnx_path)
    x = torch.randint(-128, 128, shape, generator=g, dtype=torch.int8).numpy()
    want, got = sim.run(x), art.run(x)
    mismatches = sum(int(np.count_nonzero(got[n] != want[n])) for n in want)
    assert len(want) == 45 and mismatches == 0, f"{mismatches} output elements differ"
