"""The int8 golden: the committed tiny FCOS3D ONNX gives the committed output hashes, in the simulator and compiled.

Made by scripts/make_int8_golden.py before the fcos3d/int8 redesign; a refactor that keeps every integer keeps
these hashes (and the exported graph) unchanged. Tolerance: none (sha256 of the raw integer bytes).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import onnx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from golden_cases import ONNX_PATH, OUTPUTS_PATH, golden_inputs, output_hashes  # noqa: E402
from golden_model import GOLDEN_SHAPE  # noqa: E402


@pytest.fixture(scope="module")
def golden() -> dict:
    return json.loads(OUTPUTS_PATH.read_text())


@pytest.fixture(scope="module")
def int_model():
    from golden_model import golden_int_model

    return golden_int_model()


def test_the_golden_files_are_small_and_agree(golden):
    assert ONNX_PATH.stat().st_size < 1_000_000
    assert golden["input_shape"] == list(GOLDEN_SHAPE)
    assert golden["simulator"] == golden["compiled_host"]
    assert set(golden["simulator"]) == set(golden_inputs(GOLDEN_SHAPE))


def test_simulator_outputs_equal_the_golden(golden):
    from fcos3d.runtime.reference.simulator import Simulator

    sim = Simulator(ONNX_PATH)
    got = {case: output_hashes(sim.run(x)) for case, x in golden_inputs(GOLDEN_SHAPE).items()}
    assert got == golden["simulator"]


def test_compiled_host_outputs_equal_the_golden(golden, tmp_path):
    from fcos3d.compiler.build import compile_onnx
    from fcos3d.runtime.execute import load_artifact

    compile_onnx(ONNX_PATH, "host", tmp_path / "artifact")
    art = load_artifact(tmp_path / "artifact", onnx_path=ONNX_PATH)
    got = {case: output_hashes(art.run(x)) for case, x in golden_inputs(GOLDEN_SHAPE).items()}
    assert got == golden["compiled_host"]


def test_torch_int_model_equals_the_simulator_on_the_golden_onnx(int_model):
    """The script's own steps (calibrate -> QAT -> QAT2Quantize) run in torch: 0 differing elements."""
    import torch

    from fcos3d.runtime.reference.simulator import Simulator

    sim = Simulator(ONNX_PATH)
    for case, x in golden_inputs(GOLDEN_SHAPE).items():
        ref = sim.run(x)
        got = int_model.run(torch.from_numpy(x))
        assert set(got) == set(ref)
        assert all(got[n].numpy().dtype == ref[n].dtype for n in ref), case
        differ = {n: int((got[n].numpy() != ref[n]).sum()) for n in ref}
        assert sum(differ.values()) == 0, (case, {n: d for n, d in differ.items() if d})


def test_export_rewrites_the_golden_graph(int_model, tmp_path):
    """The writer (fcos3d.int8.writer via export_qdq_onnx) reproduces the committed graph node for node."""
    from fcos3d.quant.export import export_qdq_onnx

    model = export_qdq_onnx(int_model, GOLDEN_SHAPE, tmp_path / "m.onnx")
    committed = onnx.load(str(ONNX_PATH))
    assert model.graph.SerializeToString() == committed.graph.SerializeToString(), (
        "the exported graph changed: if that is intended, rerun scripts/make_int8_golden.py"
    )
