"""The `fcos3d-compile` console script: cortex-a55 gives an aarch64 ELF; unsupported ops give exit 2 and one error."""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import onnx
import pytest
from qdq_graphs import QDQGraphBuilder

SCRIPT = Path(sys.executable).with_name("fcos3d-compile")
EM_AARCH64 = 183


def _run(*args):
    if not SCRIPT.exists():
        pytest.skip(f"{SCRIPT} is not installed: run .venv/bin/pip install -e . --no-deps")
    return subprocess.run([str(SCRIPT), *map(str, args)], capture_output=True, text=True, timeout=300)


def _small_model(path: Path) -> Path:
    b = QDQGraphBuilder(seed=3)
    x = b.input((1, 3, 8, 8))
    y = b.conv(x, 4, relu=True)
    b.output(b.maxpool(y))
    b.conv(y, 2, kernel=1, pad=0, int32_output=True)
    onnx.save(b.build(), path)
    return path


def test_arm_npu_target_writes_an_aarch64_shared_object(tmp_path):
    if shutil.which("aarch64-linux-gnu-g++") is None:
        pytest.skip("aarch64-linux-gnu-g++ is missing (apt-get install g++-aarch64-linux-gnu; .ci/run installs it)")
    model = _small_model(tmp_path / "m.onnx")
    proc = _run(model, "--target", "cortex-a55", "--out", tmp_path / "art", "--dump-ir-after", "fuse")
    assert proc.returncode == 0, proc.stderr
    header = (tmp_path / "art" / "model.so").read_bytes()[:20]
    assert header[:4] == b"\x7fELF"
    assert header[4] == 2  # EI_CLASS: ELFCLASS64
    assert header[5] == 1  # EI_DATA: little endian
    assert struct.unpack_from("<H", header, 18)[0] == EM_AARCH64  # e_machine
    meta = json.loads((tmp_path / "art" / "meta.json").read_text())
    assert meta["board"] == "cortex-a55" and meta["target"]["mtriple"] == "aarch64-linux-gnu"
    assert [o["dtype"] for o in meta["outputs"]] == ["int8", "int32"]
    assert len(meta["outputs"][1]["scales"]) == 2  # per output channel of the int32 head
    assert "R.call_tir" in (tmp_path / "art" / "ir-after-fuse.py").read_text()


def test_unsupported_ops_exit_2_with_one_error_listing_them(tmp_path):
    b = QDQGraphBuilder(seed=4)
    x = b.input((1, 2, 4, 4))
    y = b.conv(x, 2)
    sig = b.node("Sin", [b.dq(y)], prefix="bad_sin")[0]
    soft = b.node("Erf", [sig], prefix="bad_erf")[0]
    b.outputs.append(onnx.helper.make_tensor_value_info(soft, onnx.TensorProto.FLOAT, [1, 2, 4, 4]))
    path = tmp_path / "bad.onnx"
    onnx.save(b.build(), path)
    proc = _run(path, "--target", "host", "--out", tmp_path / "art")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.count("error:") == 1
    assert "bad_sin" in proc.stderr and "bad_erf" in proc.stderr
    assert not (tmp_path / "art" / "model.so").exists()


def test_unknown_board_lists_the_known_ones(tmp_path):
    proc = _run(_small_model(tmp_path / "m.onnx"), "--target", "nope")
    assert proc.returncode == 2
    assert "cortex-a55" in proc.stderr and "host" in proc.stderr


def test_tune_trials_without_a_database_or_for_a_cross_board_is_a_usage_error(tmp_path):
    model = _small_model(tmp_path / "m.onnx")
    proc = _run(model, "--tune-trials", "8", "--out", tmp_path / "art")
    assert proc.returncode == 2 and "--tuning-db" in proc.stderr
    proc = _run(model, "--target", "cortex-a55", "--tune-trials", "8", "--tuning-db", tmp_path / "db")
    assert proc.returncode == 2 and "--target host" in proc.stderr


def test_input_shape_fixes_a_symbolic_dim(tmp_path):
    b = QDQGraphBuilder(seed=5)
    x = b.input((1, 3, 8, 8))
    b.output(b.conv(x, 4, relu=True))
    model = b.build()
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "N"
    path = tmp_path / "dyn.onnx"
    onnx.save(model, path)
    proc = _run(path, "--out", tmp_path / "art")
    assert proc.returncode == 2 and proc.stderr.count("error:") == 1 and "--input-shape image=1,3,8,8" in proc.stderr
    proc = _run(path, "--out", tmp_path / "art", "--input-shape", "image=1,3,8,8")
    assert proc.returncode == 0, proc.stderr
    meta = json.loads((tmp_path / "art" / "meta.json").read_text())
    assert meta["inputs"][0]["shape"] == [1, 3, 8, 8] and meta["inputs"][0]["zero_point"] == 0
    proc = _run(path, "--out", tmp_path / "art", "--input-shape", "image=1,3,x")
    assert proc.returncode == 2 and "NAME=D0,D1" in proc.stderr
