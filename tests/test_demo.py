"""`fcos3d demo` end to end on a tiny synthetic set: every stage of the flow, as `make demo` runs it."""

import json
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.slow
def test_demo_tiny_full_flow(tmp_path):
    out = tmp_path / "demo"
    cmd = [
        sys.executable,
        "-m",
        "fcos3d.cli",
        "demo",
        "--out",
        str(out),
        "--scenes",
        "2",
        "--samples-per-scene",
        "2",
        "--image-size",
        "320x180",
        "--float-epochs",
        "1",
        "--calibration-steps",
        "2",
        "--qat-steps",
        "1",
        "--target",
        "host",
        "--target",
        "ethos-u55-256",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "fcos3d demo finished" in proc.stdout and "bit-exact" in proc.stdout

    summary = json.loads((out / "summary.json").read_text())
    steps = [r["step"] for r in summary["steps"]]
    assert steps == [
        "synth",
        "pack train",
        "pack val",
        "show",
        "train float",
        "calibration",
        "train qat",
        "predict int_infer",
        "export",
        "compile host",
        "compile ethos-u55-256",
        "align-bpu",
        "compare stages",
        "align-bpu ethos-u55-256",
        "trace",
        "perf",
        "pictures",
    ]
    # the demo's own FCOS3D, one val image through float, calibration, qat, torch int, simulator, compiled debug
    # build and onnxruntime: every integer executor equal at every layer
    trace = summary["trace"]
    assert trace["equal"] and trace["layers"] > 100, trace["verdict"]
    assert set(trace["executors"]) >= {
        "torch int",
        "simulator",
        "compiled (host)",
        "TOSA reference model (ethos-u55-256)",
    }
    # the Ethos-U artifact on the TOSA reference model: 12 val images, every output element equal
    (npu,) = summary["align_npu"]
    assert npu["board"] == "ethos-u55-256" and npu["images"] == 12 and npu["mismatches"] == 0 and npu["elements"] > 0
    assert "torch int == simulator at all" in trace["verdict"] and trace["worst_drops"]
    assert (out / "pictures" / "trace_sqnr_by_layer.png").is_file()
    acc = summary["accuracy"]
    assert set(acc) == {"float", "calibration", "qat", "int_infer", "board"}
    for m in acc.values():
        assert 0.0 <= m["NDS"] <= 1.0 and m["eval_set"] == "mini_val"
    # the board computes the simulator's integers, and those are the torch integer model's: same scores
    assert acc["board"]["NDS"] == acc["int_infer"]["NDS"] and acc["board"]["mAP"] == acc["int_infer"]["mAP"]
    # compare-stages inside the demo: every stage against float on the same images, the board's row equal to
    # int_infer's (same boxes), float's gap columns empty
    rows = {r[0]: r for r in summary["compare"]["rows"]}
    assert list(rows) == ["float", "calibration", "qat", "int_infer", "board"]
    assert rows["board"][1:7] == rows["int_infer"][1:7] and rows["float"][2] == ""
    assert float(rows["float"][1]) == pytest.approx(acc["float"]["NDS"], abs=5e-5)
    assert "paired bootstrap" in summary["compare"]["title"] and "stages vs float" in proc.stdout
    assert "## Every stage against float, paired" in (out / "SUMMARY.md").read_text()
    align = summary["align"]
    assert align["images"] == 12 and align["mismatches"] == 0 and align["equal"] and align["elements"] > 0
    assert {p["board"] for p in summary["perf"]} == {
        "host",
        "cortex-a55",
        "ethos-u65-512",
        "ethos-u55-256",
        "ethos-u85-256",
        "journey5-bayes",
    }
    assert all(p["latency_ms"] > 0 for p in summary["perf"])
    for p in summary["pictures"]:
        assert Path(p).is_file(), p
    assert len(list((out / "pictures").glob("pred_int_val_*.png"))) == 3
    assert (out / "pictures" / "accuracy.png").stat().st_size > 10_000
    assert (out / "work_dir" / "fcos3d_int8_qdq.onnx").is_file()
    assert (out / "work_dir" / "artifact-host" / "model.so").is_file()
    assert (out / "perf" / "cortex-a55" / "perf.html").is_file()
    md = (out / "SUMMARY.md").read_text()
    assert "| int_infer |" in md and "0 mismatches" in md


@pytest.mark.slow
def test_demo_stop_after_data(tmp_path):
    out = tmp_path / "demo"
    cmd = [
        sys.executable,
        "-m",
        "fcos3d.cli",
        "demo",
        "--out",
        str(out),
        "--scenes",
        "2",
        "--samples-per-scene",
        "2",
        "--image-size",
        "320x180",
        "--stop-after",
        "data",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(list((out / "pictures").glob("gt_val_*.png"))) == 3
    assert not (out / "work_dir").exists()
    assert [r["step"] for r in json.loads((out / "summary.json").read_text())["steps"]] == [
        "synth",
        "pack train",
        "pack val",
        "show",
    ]
