"""The quant stages end to end on the synthetic set: float -> calibration -> qat -> int_infer / export.

Slow (minutes on 2 CPU cores: the nuScenes metric runs after calibration, QAT and int_infer).
"""

import math

import numpy as np
import pytest
import torch
from trainer_tiny import tiny_config

from fcos3d.errors import Fcos3dError
from fcos3d.quant.convert import Float2Calibration, Float2QAT, ModelConvertPipeline
from fcos3d.trainer.checkpoint import LoadStageCheckpoint, checkpoint_path, load_checkpoint, save_checkpoint
from fcos3d.trainer.optim import AdamW
from fcos3d.trainer.stages import load_stage_model, run_export, run_predict, run_train

pytestmark = pytest.mark.slow

QCONFIG = dict(
    activation_calibration_observer="min_max",
    activation_qat_observer="min_max",
    activation_qkwargs=dict(averaging_constant=0),
    weight_qkwargs=dict(averaging_constant=1),
)


def quant_config(lmdb, ckpt_dir):
    cfg = tiny_config(lmdb, ckpt_dir, batch_size=2, max_steps=2, size=(128, 64), val=True)
    cfg["val_data_loader"]["batch_size"] = 4
    cfg["calibration_trainer"] = dict(
        num_steps=2,
        converters=(
            ModelConvertPipeline(
                qat_mode="fuse_bn",
                qconfig_params=QCONFIG,
                converters=[
                    LoadStageCheckpoint(checkpoint_path(ckpt_dir, "float", "last"), "float"),
                    Float2Calibration(),
                ],
            ),
        ),
    )
    cfg["qat_trainer"] = dict(
        epochs=1,
        optimizer=dict(type=AdamW, lr=1e-5),
        lr_schedule=dict(policy="constant"),
        val_interval=1,
        amp=False,
        max_steps=2,
        converters=(
            ModelConvertPipeline(
                qat_mode="fuse_bn",
                qconfig_params=QCONFIG,
                converters=[
                    Float2QAT(),
                    LoadStageCheckpoint(checkpoint_path(ckpt_dir, "calibration", "best"), "calibration"),
                ],
            ),
        ),
    )
    cfg["export_cfg"] = dict(input_shape=(1, 3, 64, 128))
    return cfg


@pytest.fixture(scope="module")
def trained(synth_lmdb, tmp_path_factory):
    ckpt_dir = tmp_path_factory.mktemp("quant_stages")
    cfg = quant_config(synth_lmdb, ckpt_dir)
    run_train(cfg, "float")
    calib = run_train(cfg, "calibration")
    qat = run_train(cfg, "qat")
    return cfg, ckpt_dir, calib, qat


def test_calibration_writes_observer_state(trained):
    cfg, ckpt_dir, calib, _ = trained
    ck = load_checkpoint(checkpoint_path(ckpt_dir, "calibration", "best"), expected_stage="calibration")
    keys = [k for k in ck["state_dict"] if k.endswith("act_observer.max_val")]
    assert keys and all(bool(ck["state_dict"][k.replace("max_val", "initialized")]) for k in keys)
    assert calib["steps"] == 2 and "NDS" in calib["best"]


def test_qat_keeps_calibrated_activation_ranges(trained):
    cfg, ckpt_dir, _, qat = trained
    calib = load_checkpoint(checkpoint_path(ckpt_dir, "calibration", "best"))["state_dict"]
    q = load_checkpoint(checkpoint_path(ckpt_dir, "qat", "last"), expected_stage="qat")["state_dict"]
    for k in calib:
        if k.endswith("act_observer.max_val"):
            assert torch.equal(calib[k], q[k]), k  # averaging_constant 0: frozen after calibration


def test_qat_distills_from_the_float_checkpoint(trained, tmp_path):
    # Two distilled QAT steps from the same calibration: the loss of the float teacher is there, named, and
    # scaled by its weight; a config whose distill dict is malformed is refused before any training.
    from fcos3d.trainer.loop import Reporter, train
    from fcos3d.trainer.stages import _float_model

    cfg, ckpt_dir, _, _ = trained

    class Losses(Reporter):
        seen: list = []

        def on_step(self, step, losses, lr):
            self.seen.append(losses)

    def distilled(weight):
        c = dict(cfg)
        teacher = (LoadStageCheckpoint(checkpoint_path(ckpt_dir, "float", "last"), "float"),)
        c["qat_trainer"] = dict(cfg["qat_trainer"], distill=dict(teacher=teacher, weight=weight))
        Losses.seen = []
        torch.manual_seed(0)
        train(c, "qat", work_dir=tmp_path / str(weight), reporter=Losses(), build_model=_float_model)
        return Losses.seen

    one, three = distilled(1.0), distilled(3.0)
    assert len(one) == 2 and all(s["loss_distill"] > 0 for s in one)
    assert math.isclose(three[0]["loss_distill"], 3 * one[0]["loss_distill"], rel_tol=1e-4)
    c = dict(cfg, qat_trainer=dict(cfg["qat_trainer"], distill=dict(weight=1.0)))
    with pytest.raises(Fcos3dError, match="trainer.distill must be dict"):
        train(c, "qat", work_dir=tmp_path / "bad", build_model=_float_model)


def test_predict_int_infer(trained):
    # calibration and qat were already scored by the validations of their training runs.
    cfg, _, calib, qat = trained
    assert np.isfinite(calib["best"]["NDS"]) and np.isfinite(qat["best"]["NDS"])
    metrics = run_predict(cfg, "int_infer")
    assert np.isfinite(metrics["NDS"]) and 0.0 <= metrics["NDS"] <= 1.0


def test_int_infer_equals_exported_onnx(trained, tmp_path):
    from fcos3d.runtime.reference.simulator import Simulator

    cfg, _, _, _ = trained
    summary = run_export(cfg, out=tmp_path / "m.onnx")
    int_model = load_stage_model(cfg, "int_infer").int_model
    x = torch.randint(-128, 128, (1, 3, 64, 128), dtype=torch.int8, generator=torch.Generator().manual_seed(0))
    got = Simulator(summary["path"]).run(x.numpy())
    ref = int_model.run(x)
    assert sum(int((got[n] != ref[n].numpy()).sum()) for n in int_model.output_names) == 0


def test_wrong_stage_and_non_checkpoint_files_are_clear_errors(trained, tmp_path):
    cfg, ckpt_dir, _, _ = trained
    with pytest.raises(Fcos3dError, match="'float'-stage checkpoint where a 'qat' one is needed"):
        load_stage_model(cfg, "qat", checkpoint_path(ckpt_dir, "float", "last"))
    with pytest.raises(Fcos3dError, match="'qat'-stage checkpoint where a 'calibration' one is needed"):
        load_stage_model(cfg, "calibration", checkpoint_path(ckpt_dir, "qat", "last"))
    junk = tmp_path / "junk.pth.tar"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(Fcos3dError, match="not a loadable checkpoint"):
        load_stage_model(cfg, "int_infer", junk)
    other = save_checkpoint(tmp_path / "dict.pth.tar", stage="qat", state_dict={"w": torch.zeros(1)})
    with pytest.raises(Fcos3dError, match="do not fit"):
        load_stage_model(cfg, "qat", other)
    with pytest.raises(Fcos3dError, match="'float'-stage checkpoint where a 'calibration' one"):
        LoadStageCheckpoint(checkpoint_path(ckpt_dir, "float", "last"), "calibration")(None)


def test_a_checkpoint_of_another_activation_is_a_clear_error(trained):
    """ReLU and ReLU6 models have the same weights: the recorded activations are what tells them apart."""
    from fcos3d.trainer.checkpoint import activation_counts
    from fcos3d.trainer.config import build

    cfg, ckpt_dir, _, _ = trained
    counts = activation_counts(build(cfg["model"], "model"))
    assert list(counts) == ["relu"] and counts["relu"] > 20
    for stage in ("float", "calibration", "qat"):  # the quantised stages count their QConv2d activations alike
        assert load_checkpoint(checkpoint_path(ckpt_dir, stage, "last"))["activations"] == counts
    relu6 = dict(cfg, model=dict(cfg["model"], backbone=dict(cfg["model"]["backbone"], activation="relu6")))
    with pytest.raises(Fcos3dError, match="trained with activations .*'relu'.* but the config builds .*'relu6'"):
        load_stage_model(relu6, "qat", checkpoint_path(ckpt_dir, "qat", "last"))
    with pytest.raises(Fcos3dError, match="backbone_activation=relu"):
        LoadStageCheckpoint(checkpoint_path(ckpt_dir, "float", "last"), "float")(build(relu6["model"], "model"))
