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
    xs = [torch.round(images(1, seed=7) * 128).clamp(-128, 127).to(torch.int8),
          torch.randint(-128, 128, INPUT_SHAPE, generator=torch.Generator().manual_seed(8), dtype=torch.int8)]
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
