"""fcos3d trace on a config: every form of the tiny model (float, calibration, QAT, torch int, simulator, compiled
debug build) lined up at every layer; its SQNRs are quant-report's; an injected fault is found at its layer."""

import copy
import json
import math

import numpy as np
import pytest

from fcos3d.errors import Fcos3dError


@pytest.fixture(scope="module")
def traced(float_model, calibrated_model, qat_model, int_model, synth_lmdb, tmp_path_factory):
    """A config folder with the tiny model's three checkpoints, its exported ONNX and a debug build, traced on
    val image 0. Returns (cfg, result)."""
    from fcos3d.quant.export import export_qdq_onnx
    from fcos3d.quant.qat import set_quant_state
    from fcos3d.trainer.checkpoint import checkpoint_path, save_checkpoint
    from fcos3d.trainer.config import load_config
    from fcos3d.trainer.trace import run_trace

    tmp = tmp_path_factory.mktemp("trace")
    ckpt_dir = tmp / "work"
    calib = set_quant_state(copy.deepcopy(calibrated_model), observe=False, fake_quant=True).eval()
    save_checkpoint(checkpoint_path(ckpt_dir, "float", "best"), stage="float", state_dict=float_model.state_dict())
    save_checkpoint(
        checkpoint_path(ckpt_dir, "calibration", "best"), stage="calibration", state_dict=calib.state_dict()
    )
    save_checkpoint(checkpoint_path(ckpt_dir, "qat", "best"), stage="qat", state_dict=qat_model.state_dict())
    export_qdq_onnx(int_model, (1, 3, 64, 128), ckpt_dir / "model_int8.onnx")
    cfg = load_config(_config(tmp / "cfg.py", synth_lmdb, ckpt_dir))
    return cfg, run_trace(cfg, image=0)


def _config(path, lmdb, ckpt_dir):
    path.write_text(f'''"""trace test config: the tiny model of the trainer tests (128x64), synthetic val."""
from trainer_tiny import tiny_config
from fcos3d.trainer.config import param

_cfg = tiny_config({str(lmdb)!r}, {str(ckpt_dir)!r}, val=True, size=(128, 64))
ckpt_dir = param("ckpt_dir", _cfg["ckpt_dir"])
model = _cfg["model"]
val_data_loader = _cfg["val_data_loader"]
''')
    return path


def test_every_integer_executor_agrees_at_every_layer(traced):
    _, res = traced
    report = res["report"]
    assert set(res["forms"]) == {"float", "calibration", "qat"}
    assert report.reference == "simulator"
    assert set(report.exact) == {"torch int", "compiled (host)"}
    assert report.equal, report.verdict()
    assert all(r["differ"]["torch int"] == 0 and r["differ"]["compiled (host)"] == 0 for r in report.rows)
    assert "== simulator at all" in report.verdict()
    kinds = {r["kind"] for r in report.rows}
    assert {"Conv", "Add", "ResizeNearest"} <= kinds
    # every layer has its float forms: SQNR of calibration, qat and int against float, LSB errors
    assert all({"calibration", "qat", "int"} <= set(r["sqnr"]) for r in report.rows)
    assert all(math.isfinite(r["max_lsb"]["qat"]) for r in report.rows)
    assert report.worst_drops(3)


def test_sqnr_equals_quant_report_on_the_same_image(traced, float_model, qat_model, int_model):
    """The tracer's float-vs-int (and calibration, qat) SQNR per layer is quant-report's, number for number."""
    from fcos3d.quant.qat import set_quant_state
    from fcos3d.quant.report import quant_report
    from fcos3d.trainer.stages import load_stage_model
    from fcos3d.trainer.trace import trace_input

    cfg, res = traced
    img, _ = trace_input(cfg, 0)
    # the checkpoints as the tracer loads them, so both sides run the very same weights
    models = {s: load_stage_model(cfg, s) for s in ("float", "calibration", "qat")}
    from fcos3d.quant.intmodel import QAT2Quantize

    stages = {
        "calibration": set_quant_state(models["calibration"], observe=False, fake_quant=True),
        "qat": models["qat"],
        "int": QAT2Quantize(tuple(img.shape))(models["qat"]),
    }
    qr = quant_report(models["float"], stages, img)
    ours = {r["module"]: r["sqnr"] for r in res["report"].rows}
    assert len(qr.rows) == len(ours)
    for row in qr.rows:
        for stage in ("calibration", "qat", "int"):
            assert ours[row["layer"]][stage] == row[stage], (row["layer"], stage)


def test_files(traced):
    _, res = traced
    doc = json.loads(res["paths"]["json"].read_text())
    assert doc["equal"] is True and len(doc["rows"]) == len(res["report"].rows)
    assert doc["worst_drops"] and doc["rows"][0]["module"]
    header = res["paths"]["csv"].read_text().splitlines()[0]
    assert "differ[compiled (host)]" in header and "sqnr_db[int]" in header
    assert res["paths"]["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_simulator_fault_is_found_at_its_layer(traced, monkeypatch):
    """A patched simulator kernel for one op (one element +1) is reported at exactly that layer and element,
    by every other integer executor, with its inputs still equal."""
    import fcos3d.runtime.reference.simulator as simulator
    from fcos3d.trainer.trace import run_trace

    cfg, res = traced
    victim = next(r for r in res["report"].rows if r["kind"] == "Add")
    real = simulator.run_op

    def faulty(op, *xs):
        y = real(op, *xs)
        if op.name == victim["layer"]:
            y = y.copy()
            y.flat[5] = np.int8(-128) if y.flat[5] == 127 else y.flat[5] + 1
        return y

    monkeypatch.setattr(simulator, "run_op", faulty)
    report = run_trace(cfg, image=0, out=cfg["ckpt_dir"] + "/trace-fault")["report"]
    for executor in ("torch int", "compiled (host)"):
        d = report.divergences[executor]
        assert d is not None and d["layer"] == victim["layer"] and d["index"] == victim["index"]
        assert d["differ"] == 1 and d["inputs_equal"]
        assert list(np.unravel_index(5, victim["shape"])) == d["first"]["index"]
        assert d["first"]["value"] - d["first"]["reference"] in (-1, 255)
    assert not report.equal and f"first at layer {victim['index']} {victim['layer']}" in report.verdict()


def test_a_missing_image_is_a_clear_error(traced):
    from fcos3d.trainer.trace import trace_input

    cfg, _ = traced
    with pytest.raises(Fcos3dError, match="the val split has"):
        trace_input(cfg, 10**6)
    with pytest.raises(Fcos3dError, match="no such file"):
        trace_input(cfg, "/nonexistent.jpg")


def test_cli_prints_the_verdict_and_exits_1_on_a_difference(traced, monkeypatch, tmp_path):
    from click.testing import CliRunner

    import fcos3d.runtime.reference.simulator as simulator
    from fcos3d.cli.main import cli

    cfg, res = traced
    monkeypatch.setenv("COLUMNS", "200")  # rich: one table row per line
    args = ["trace", "--config", cfg["__file__"], "--image", "1", "--out", str(tmp_path / "ok"), "--top", "4"]
    ok = CliRunner().invoke(cli, args)
    assert ok.exit_code == 0, ok.output
    assert "compiled (host) == simulator at all" in ok.output and "torch int == simulator" in ok.output
    assert "largest SQNR drops" in ok.output and (tmp_path / "ok" / "trace.png").is_file()

    victim = next(r for r in res["report"].rows if r["kind"] == "Conv" and r["dtype"] == "int8")
    real = simulator.run_op

    def faulty(op, *xs):
        y = real(op, *xs)
        return (y.astype(np.int16) // 2).astype(np.int8) if op.name == victim["layer"] else y

    monkeypatch.setattr(simulator, "run_op", faulty)
    bad = CliRunner().invoke(cli, [*args[:-4], "--out", str(tmp_path / "bad")])
    assert bad.exit_code == 1, bad.output
    assert "first differing layer" in bad.output and victim["layer"] in bad.output
