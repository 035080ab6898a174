"""quant-report: per-layer SQNR of calibration / QAT / int against float, worst first, and its files and CLI."""

import copy
import csv
import json
import math

import numpy as np
import pytest
from quant_fixtures import images

from fcos3d.errors import Fcos3dError
from fcos3d.quant.report import layer_names, quant_report, sqnr_db, write_report
from fcos3d.trainer.quant_report import run_quant_report


@pytest.fixture(scope="module")
def calib_model(calibrated_model):
    """The calibration-stage model as `predict --stage calibration` runs it: observers off, fake quant on."""
    from fcos3d.quant.qat import set_quant_state

    return set_quant_state(copy.deepcopy(calibrated_model), observe=False, fake_quant=True).eval()


@pytest.fixture(scope="module")
def report(float_model, calib_model, qat_model, int_model):
    stages = {"calibration": calib_model, "qat": qat_model, "int": int_model}
    return quant_report(float_model, stages, images(2, seed=21))


def test_sqnr_db():
    assert sqnr_db([1.0, 2.0], [1.0, 1.0]) == pytest.approx(10 * math.log10(5.0))
    assert sqnr_db(np.ones(3), np.ones(3)) == math.inf
    assert sqnr_db(np.zeros(3), np.ones(3)) == -math.inf


def test_rows_cover_every_layer_sorted_worst_first(report, int_model):
    rows = report.rows
    assert len(rows) == len(int_model.ops) and report.sort_stage == "int"
    assert [r["int"] for r in rows] == sorted(r["int"] for r in rows)
    assert {r["kind"] for r in rows} >= {"conv", "head", "add", "resize"}
    heads = {r["output"] for r in rows if r["kind"] == "head"}
    assert heads == set(int_model.output_names)  # every raw head output has its row
    assert sorted(r["index"] for r in rows) == list(range(len(rows)))


def test_calibration_sqnr_is_finite_and_positive(report):
    calib = np.array([r["calibration"] for r in report.rows])
    assert np.all(np.isfinite(calib)) and np.all(calib > 0.0), calib.min()
    assert np.median(calib) > 15.0  # int8 keeps most layers well above the noise


def test_int_sqnr_equals_qat_sqnr(report):
    """The QAT fake quant computes the int model's integers, so both are equally far from float."""
    for r in report.rows:
        assert r["int"] == pytest.approx(r["qat"], rel=1e-3), r  # heads: float32 vs float64 of the same integers


def test_a_freshly_loaded_model_is_measured_quantised(float_model, qat_model):
    """A QAT model straight from its checkpoint links its ops by a float forward on its first call; that pass must
    not be what the report measures (it was: the first image's SQNRs came out at float precision, ~130 dB)."""
    from quant_fixtures import tiny_float_model

    from fcos3d.quant.convert import Float2Calibration, Float2QAT

    fresh = Float2QAT()(Float2Calibration()(tiny_float_model())).eval()  # as load_stage_model builds it
    fresh.load_state_dict(qat_model.state_dict())
    assert not fresh.__dict__.get("_sources_linked", False)
    img = images(1, seed=21)
    got = quant_report(float_model, {"qat": fresh}, img, names=layer_names(qat_model)).by_index()
    want = quant_report(float_model, {"qat": qat_model}, img, names=layer_names(qat_model)).by_index()
    assert [r["qat"] for r in got] == [r["qat"] for r in want]
    assert np.median([r["qat"] for r in got]) < 60.0  # int8 activations: tens of dB, never float precision


def test_identical_model_gives_inf(float_model, qat_model):
    same = quant_report(
        float_model, {"float again": copy.deepcopy(float_model)}, images(1, seed=3), names=layer_names(qat_model)
    )
    assert same.rows and all(r["float again"] == math.inf for r in same.rows)


def test_write_report_files(report, tmp_path):
    paths = write_report(report, tmp_path / "rep")
    doc = json.loads(paths["json"].read_text())
    assert doc["stages"] == ["calibration", "qat", "int"] and len(doc["layers"]) == len(report.rows)
    assert doc["layers"][0]["layer"] == report.rows[0]["layer"]
    with paths["csv"].open() as f:
        table = list(csv.DictReader(f))
    assert len(table) == len(report.rows) and float(table[0]["int"]) == pytest.approx(report.rows[0]["int"], abs=0.01)
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _config(path, lmdb, ckpt_dir):
    path.write_text(f'''"""quant-report test config: the tiny model of the trainer tests (128x64), synthetic val."""
from trainer_tiny import tiny_config
from fcos3d.trainer.config import param

_cfg = tiny_config({str(lmdb)!r}, {str(ckpt_dir)!r}, val=True, size=(128, 64))
ckpt_dir = param("ckpt_dir", _cfg["ckpt_dir"])
model = _cfg["model"]
val_data_loader = _cfg["val_data_loader"]
''')
    return path


def test_missing_checkpoint_names_the_file_and_the_command(tmp_path):
    with pytest.raises(Fcos3dError, match=r"float-checkpoint-best\.pth\.tar: not found .*fcos3d train --stage float"):
        run_quant_report({"ckpt_dir": str(tmp_path), "__file__": "cfg.py"})


def test_cli_from_checkpoints(float_model, calib_model, qat_model, synth_lmdb, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from fcos3d.cli.main import cli
    from fcos3d.trainer.checkpoint import checkpoint_path, save_checkpoint

    ckpt_dir = tmp_path / "work"
    cfg = _config(tmp_path / "cfg.py", synth_lmdb, ckpt_dir)
    save_checkpoint(checkpoint_path(ckpt_dir, "float", "best"), stage="float", state_dict=float_model.state_dict())
    save_checkpoint(
        checkpoint_path(ckpt_dir, "calibration", "last"), stage="calibration", state_dict=calib_model.state_dict()
    )
    runner = CliRunner()
    monkeypatch.setenv("COLUMNS", "200")  # rich: one table row per line
    missing = runner.invoke(cli, ["quant-report", "--config", str(cfg)])
    assert isinstance(missing.exception, Fcos3dError)
    assert "qat-checkpoint-best.pth.tar: not found" in str(missing.exception)
    assert "fcos3d train --stage qat" in str(missing.exception)

    save_checkpoint(checkpoint_path(ckpt_dir, "qat", "best"), stage="qat", state_dict=qat_model.state_dict())
    ok = runner.invoke(cli, ["quant-report", "--config", str(cfg), "--images", "2", "--top", "5"])
    assert ok.exit_code == 0, ok.output
    assert "worst 5 of" in ok.output and "calibration" in ok.output
    doc = json.loads((ckpt_dir / "quant_report" / "quant_report.json").read_text())
    assert doc["images"] == 2 and doc["layers"] and (ckpt_dir / "quant_report" / "quant_report.png").is_file()
    assert all(r["int"] == pytest.approx(r["qat"], rel=1e-3) for r in doc["layers"])
