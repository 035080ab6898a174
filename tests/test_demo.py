"""The demo command end to end on a tiny synthetic set: synth, pack, pictures, float training, the metric."""

import json
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.slow
def test_demo_tiny(tmp_path):
    out = tmp_path / "demo"
    cmd = [sys.executable, "-m", "fcos3d.cli", "demo", "--out", str(out), "--scenes", "2", "--samples-per-scene", "2",
           "--image-size", "320x180", "--float-epochs", "1"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(list((out / "pictures").glob("gt_val_*.png"))) == 3
    assert (out / "work_dir" / "float-checkpoint-last.pth.tar").is_file()
    metrics = json.loads((out / "work_dir" / "predict" / "float" / "metrics.json").read_text())
    assert 0.0 <= metrics["NDS"] <= 1.0 and metrics["eval_set"] == "mini_val"
    assert "fcos3d demo" in proc.stdout
