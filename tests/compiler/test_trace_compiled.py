"""The tracer on any model the compiler takes: a debug build (every layer an output) equals the simulator at every
layer; a fault planted in one layer of the compiled module is found at exactly that layer and element."""

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "int8"))

from zoo import DEFAULTS, SYMMETRIC, mobilenet_v3, quantize, resnet18  # noqa: E402

CLI = [sys.executable, "-m", "fcos3d.cli"]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("trace_zoo")
    return {
        "resnet18": quantize(resnet18(), SYMMETRIC, folder, "resnet18"),
        "mobilenet_v3": quantize(mobilenet_v3(), DEFAULTS, folder, "mobilenet_v3"),  # asymmetric uint8, tables
    }


def _x(shape=(1, 3, 32, 32), seed=0):
    return np.random.default_rng(seed).integers(-128, 128, shape, dtype=np.int8)


def test_layer_outputs_keep_the_graph_and_add_one_output_per_layer(models):
    from fcos3d.int8.layers import LAYER_OUTPUT_PREFIX, with_layer_outputs
    from fcos3d.int8.reader import parse_qdq

    graph = parse_qdq(models["resnet18"])
    debug, mapping = with_layer_outputs(graph)
    assert debug.ops is graph.ops and debug.outputs[: len(graph.outputs)] == graph.outputs
    assert list(mapping) == [op.name for op in graph.ops]
    assert len(debug.outputs) == len(graph.outputs) + sum(v.startswith(LAYER_OUTPUT_PREFIX) for v in mapping.values())
    assert len({o.name for o in debug.outputs}) == len(debug.outputs)


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v3"])
def test_debug_build_equals_the_simulator_at_every_layer(models, name, tmp_path):
    from fcos3d.compiler.build import compile_onnx
    from fcos3d.runtime.execute import load_artifact
    from fcos3d.runtime.trace import trace_onnx

    path = models[name]
    result = compile_onnx(path, "host", tmp_path / "debug", layer_outputs=True)
    art = load_artifact(tmp_path / "debug", onnx_path=path)
    report = trace_onnx(path, _x(), artifact=art)
    assert report.equal, report.verdict()
    assert all(r["differ"]["compiled (host)"] == 0 for r in report.rows)
    assert len(report.rows) == len(result.meta["layer_outputs"])
    # onnxruntime is measured, not required to be equal: every layer it has is compared
    assert "onnxruntime" in report.approximate and all(r["differ"]["onnxruntime"] is not None for r in report.rows)


def test_tosa_debug_build_equals_the_simulator_at_every_layer(models, tmp_path):
    """The TOSA reference model (an Ethos-U board's stand-in) traced layer by layer: a debug build's model.tosa
    exposes every layer, and each equals the simulator's (asymmetric uint8 model with lookup tables)."""
    pytest.importorskip("tosa", reason="tosa-tools (the TOSA reference model) is not installed")
    from fcos3d.compiler.build import compile_onnx
    from fcos3d.runtime.execute import load_artifact
    from fcos3d.runtime.trace import trace_onnx

    path = models["mobilenet_v3"]
    result = compile_onnx(path, "ethos-u55-256", tmp_path / "tosa-debug", layer_outputs=True)
    assert result.meta["backend"] == "tosa" and result.meta["vela"] is None and result.meta["layer_outputs"]
    report = trace_onnx(path, _x(seed=5), artifact=load_artifact(tmp_path / "tosa-debug", onnx_path=path))
    assert report.exact == ["TOSA reference model (ethos-u55-256)"]
    assert report.equal and all(r["differ"]["TOSA reference model (ethos-u55-256)"] == 0 for r in report.rows)


def test_float_model_gives_every_layer_an_sqnr(models):
    """With the float ONNX quantize_static started from, each layer is also measured against float: the
    simulator's integers ("int") and onnxruntime's, by SQNR and by the float value's distance in output steps."""
    from fcos3d.runtime.trace import trace_onnx

    path = models["mobilenet_v3"]
    report = trace_onnx(path, _x(), float_onnx=path.with_name("mobilenet_v3.float.onnx"))
    measured = [r for r in report.rows if "int" in r["sqnr"]]
    assert len(measured) >= len(report.rows) * 0.8  # every layer whose Q reads a float-model tensor
    sqnr = np.array([r["sqnr"]["int"] for r in measured])
    assert np.all(sqnr > 5.0) and np.median(sqnr) > 20.0, sqnr
    # onnxruntime equals the simulator here (0 LSB, see above), so its SQNR is the simulator's
    assert all(r["sqnr"]["onnxruntime"] == r["sqnr"]["int"] for r in measured if r["differ"]["onnxruntime"] == 0)
    # the float value sits within a few output steps of the integer (rounding, then accumulated error)
    lsb = [r["max_lsb"]["float"] for r in measured]
    assert all(0.0 <= v < 64.0 for v in lsb) and sum(v > 0.0 for v in lsb) > len(lsb) // 2, lsb
    assert report.worst_drops(3)


def test_a_flipped_constant_in_the_compiled_module_is_found_at_its_layer(models, tmp_path, monkeypatch):
    """One conv's bias, channel 2, raised by one output step inside the compiler's import: the tracer names that
    conv, channel 2's first element, the two values one LSB apart, and the conv's inputs still equal."""
    from fcos3d.compiler.build import compile_onnx
    from fcos3d.compiler.passes import import_int_graph
    from fcos3d.int8.ops import Conv
    from fcos3d.int8.reader import parse_qdq
    from fcos3d.runtime.execute import load_artifact
    from fcos3d.runtime.trace import trace_onnx

    path = models["resnet18"]
    convs = [op for op in parse_qdq(path).ops if isinstance(op, Conv) and not op.int32_output]
    victim = convs[len(convs) // 2]
    real = import_int_graph._EMITTERS[Conv]
    channel = 2
    # one output step in accumulator units: requantize is round(acc * m * 2**(shift - 31))
    step = int(np.ceil(2.0 ** (31 - int(victim.shift[channel])) / int(victim.multiplier[channel])))

    def faulty(bb, op, x):
        if op.name == victim.name:
            bias = op.bias.copy()
            bias[channel] += step
            op = dataclasses.replace(op, bias=bias)
        return real(bb, op, x)

    monkeypatch.setitem(import_int_graph._EMITTERS, Conv, faulty)
    compile_onnx(path, "host", tmp_path / "faulty", layer_outputs=True)
    monkeypatch.undo()
    report = trace_onnx(path, _x(seed=3), artifact=load_artifact(tmp_path / "faulty", onnx_path=path))
    d = report.divergences["compiled (host)"]
    assert d is not None and d["layer"] == victim.name and d["inputs_equal"], report.verdict()
    assert d["first"]["index"][1] == channel and abs(d["first"]["value"] - d["first"]["reference"]) == 1
    assert all(r["differ"]["compiled (host)"] == 0 for r in report.rows[: d["index"]])
    assert f"first at layer {d['index']} {victim.name}" in report.verdict()


def test_cli_debug_build_and_trace_exit_codes(models, tmp_path):
    """fcos3d-compile --debug-outputs writes layer_outputs; fcos3d trace --onnx reuses it, prints the verdict,
    writes its files and exits 0 (equal)."""
    path = models["mobilenet_v3"]
    art = tmp_path / "dbg"
    r = subprocess.run(
        [sys.executable, "-m", "fcos3d.cli.compile", str(path), "--debug-outputs", "--out", str(art)],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    assert "debug build:" in r.stdout
    meta = json.loads((art / "meta.json").read_text())
    assert len(meta["layer_outputs"]) > 10
    out = tmp_path / "trace"
    r = subprocess.run(
        [*CLI, "trace", "--onnx", str(path), "--artifact", str(art), "--out", str(out)],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "compiled (host) == simulator at all" in r.stdout
    assert (out / "trace.json").is_file() and (out / "trace.png").is_file()
    # a normal (not debug) build is refused with the fix
    plain = tmp_path / "plain"
    assert subprocess.run([sys.executable, "-m", "fcos3d.cli.compile", str(path), "--out", str(plain)]).returncode == 0
    r = subprocess.run([*CLI, "trace", "--onnx", str(path), "--artifact", str(plain)], capture_output=True, text=True)
    assert r.returncode == 2 and "not a debug build" in r.stderr and "--debug-outputs" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
