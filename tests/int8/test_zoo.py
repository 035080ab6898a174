"""The model zoo of the [int8-ops] acceptance (zoo.py: quantize_static QDQ / QOperator, symmetric and uint8).

Supported models compile for host and equal the simulator bit for bit (0 differing elements on the golden inputs:
seeded random, all 127, all -128, checkerboard); the others are refused by the ``fcos3d-compile`` script with exit
2 and one error that lists each offending node once. Tolerance: none.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from golden_cases import golden_inputs  # noqa: E402
from zoo import Quantization, build_zoo, quantize, unsupported  # noqa: E402

SCRIPT = Path(sys.executable).with_name("fcos3d-compile")

SUPPORTED = (
    "resnet18",
    "resnet18_defaults",
    "mobilenet_v2",
    "mobilenet_v2_qoperator",
    "resize_by_size",
    "dynamic_batch",
    "mobilenet_v3",
    "yolo_neck",
    "unet_half_pixel",
    "unet_align_corners",
    "odd_convs",
    "attention",
)
# Every zoo model compiles; what is still refused is zoo.unsupported(): its offending op types, each node once.
REFUSED = {"unsupported": {"ConvTranspose", "Sin"}}


@pytest.fixture(scope="module")
def zoo(tmp_path_factory) -> dict[str, tuple[Path, tuple | None]]:
    folder = tmp_path_factory.mktemp("zoo")
    # per-tensor weights: quantize_static's per-channel bias scales fail on a grouped ConvTranspose's (C, O/g) weight
    per_tensor = Quantization("s8s8_per_tensor", per_channel=False)
    return build_zoo(folder) | {"unsupported": (quantize(unsupported(), per_tensor, folder, "unsupported"), None)}


def test_every_zoo_model_is_either_supported_or_refused(zoo):
    assert set(zoo) == set(SUPPORTED) | set(REFUSED)
    assert len(SUPPORTED) >= 12


def test_supported_models_parse_and_run_in_the_simulator(zoo):
    from fcos3d.runtime.reference.simulator import Simulator

    for name in SUPPORTED:
        path, shape = zoo[name]
        sim = Simulator(path, {"input": shape} if shape else None)
        x = golden_inputs(tuple(shape or _declared_shape(path)))["random"]
        assert all(v.dtype == np.int8 for v in sim.run(x).values()), name


@pytest.mark.slow
@pytest.mark.parametrize("name", SUPPORTED)
def test_supported_model_compiles_bit_exact(zoo, name, tmp_path):
    from fcos3d.compiler.build import compile_onnx
    from fcos3d.runtime.execute import load_artifact
    from fcos3d.runtime.reference.simulator import Simulator

    path, shape = zoo[name]
    shapes = {"input": shape} if shape else None
    result = compile_onnx(path, "host", tmp_path / "art", input_shapes=shapes)
    art = load_artifact(tmp_path / "art", onnx_path=path)
    sim = Simulator(path, shapes)
    assert art.output_names == sim.output_names
    for case, x in golden_inputs(tuple(shape or _declared_shape(path))).items():
        want, got = sim.run(x), art.run(x)
        differ = {o: int(np.count_nonzero(got[o] != want[o])) for o in want}
        assert sum(differ.values()) == 0, (name, case, differ)
    graph_input = result.meta["inputs"][0]
    assert graph_input["zero_point"] == sim.input_zero_points["input"]
    assert graph_input["onnx_dtype"] in ("int8", "uint8")


def test_dynamic_batch_without_input_shape_is_one_clear_error(zoo, tmp_path):
    path, _ = zoo["dynamic_batch"]
    proc = _compile(path, "--out", tmp_path / "art")
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("error:") == 1 and "Traceback" not in proc.stderr
    assert "'input'" in proc.stderr and "--input-shape input=1,3,32,32" in proc.stderr


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_refused_model_exits_2_with_one_error_per_offending_node(zoo, name, tmp_path):
    path, shape = zoo[name]
    args = ["--input-shape", "input=" + ",".join(map(str, shape))] if shape else []
    proc = _compile(path, "--out", tmp_path / "art", *args)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.count("error:") == 1 and "Traceback" not in proc.stderr
    listed = re.findall(r"^  - (\S+) \((\w+)\): ", proc.stderr, flags=re.M)
    model = onnx.load(str(path))
    offending = {n.name: n.op_type for n in model.graph.node if n.op_type in REFUSED[name]}
    offending = {k: v for k, v in offending.items() if v != "Resize" or _linear(model, k)}
    assert Counter(n for n, _ in listed) == Counter(offending.keys()), proc.stderr  # each once, no other node
    assert not (tmp_path / "art").exists()


def _linear(model: onnx.ModelProto, node_name: str) -> bool:
    node = next(n for n in model.graph.node if n.name == node_name)
    return any(a.name == "mode" and a.s != b"nearest" for a in node.attribute)


def _declared_shape(path: Path) -> tuple[int, ...]:
    dims = onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim
    return tuple(d.dim_value for d in dims)


def _compile(*args) -> subprocess.CompletedProcess:
    if not SCRIPT.exists():
        pytest.skip(f"{SCRIPT} is not installed: run .venv/bin/pip install -e . --no-deps")
    return subprocess.run([str(SCRIPT), *map(str, args)], capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("name", SUPPORTED)
def test_every_zoo_model_traces_layer_by_layer(zoo, name):
    """fcos3d trace takes every model the compiler takes: each layer of the op list lined up between the
    simulator, onnxruntime (in LSB) and the float model quantize_static started from (SQNR)."""
    from fcos3d.runtime.reference.simulator import Simulator
    from fcos3d.runtime.trace import trace_onnx

    path, shape = zoo[name]
    sim = Simulator(path, {"input": shape} if shape else None)
    x = golden_inputs(tuple(shape or _declared_shape(path)))["random"]
    report = trace_onnx(path, x, simulator=sim, float_onnx=path.with_name(f"{name}.float.onnx"))
    assert len(report.rows) == len(sim.graph.ops)
    assert all(r["differ"]["onnxruntime"] is not None for r in report.rows), name
    measured = [r for r in report.rows if "int" in r["sqnr"]]
    if "qoperator" in name:  # QLinear* nodes name no float tensor (their ReLUs are fused): no SQNR, said so
        assert not measured and "QOperator" in report.notes[0], name
        return
    assert len(measured) >= len(report.rows) - 2, name  # all but layers whose float tensor the ONNX lacks
    assert sum(r["sqnr"]["int"] > 10.0 for r in measured) >= len(measured) // 2, name
