"""Fixtures of the quant tests: a tiny seeded FCOS3D, calibrated, QAT-converted, integer, exported (128x64 input)."""

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from quant_fixtures import INPUT_SHAPE, calibrate, images, tiny_float_model  # noqa: E402


@pytest.fixture(scope="session")
def float_model():
    return tiny_float_model()


@pytest.fixture(scope="session")
def calibrated_model(float_model):
    """The calibration stage's model after its observers saw 3 batches (train mode). Converters work in
    place: deep-copy it before converting."""
    import copy

    return calibrate(copy.deepcopy(float_model), seed=100)


@pytest.fixture(scope="session")
def qat_model(calibrated_model):
    """Calibrated on 3 batches, then converted to QAT (fake quant on), in eval mode."""
    import copy

    from fcos3d.quant.convert import Float2QAT

    return Float2QAT()(copy.deepcopy(calibrated_model)).eval()


@pytest.fixture(scope="session")
def int_model(qat_model):
    from fcos3d.quant.intmodel import QAT2Quantize

    return QAT2Quantize(INPUT_SHAPE)(qat_model)


@pytest.fixture(scope="session")
def onnx_path(int_model, tmp_path_factory):
    from fcos3d.quant.export import export_qdq_onnx

    path = tmp_path_factory.mktemp("onnx") / "tiny_int8.onnx"
    export_qdq_onnx(int_model, INPUT_SHAPE, path)
    return path


@pytest.fixture(scope="session")
def int8_inputs():
    """Two int8 images: a camera-like one and a uniform random one."""
    x0 = torch.round(images(1, seed=7) * 128).to(torch.int8)
    x1 = torch.randint(-128, 128, INPUT_SHAPE, generator=torch.Generator().manual_seed(8), dtype=torch.int8)
    return [x0, x1]
