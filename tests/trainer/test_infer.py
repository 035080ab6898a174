"""Single-image inference: a picture with predictions (and GT with --ann), lone images with --intrinsics."""

import cv2
import numpy as np
import pytest
import torch
from trainer_tiny import tiny_config

from fcos3d.errors import Fcos3dError
from fcos3d.trainer.infer import infer_image
from fcos3d.trainer.loop import train


@pytest.fixture(scope="module")
def trained(synth_lmdb, tmp_path_factory):
    work = tmp_path_factory.mktemp("infer_work")
    cfg = tiny_config(synth_lmdb, work, max_steps=2, val=True)
    torch.set_num_threads(1)
    train(cfg, "float", work_dir=work)
    return cfg


def test_infer_nuscenes_image_with_gt(trained, synth_nusc, tmp_path):
    root, version = synth_nusc
    image = sorted((root / "samples" / "CAM_FRONT").glob("*.jpg"))[0]
    out = infer_image(trained, image, score_th=0.0, save_path=tmp_path / "pred.png", with_gt=True, version=version)
    png = cv2.imread(str(out["path"]))
    assert png is not None and png.shape[0] > png.shape[1] / 2  # two rows: prediction and ground truth
    b = out["boxes"]
    assert len(b["scores"]) > 0 and np.all(np.diff(b["scores"]) <= 0) and b["centers3d"].shape[1] == 3


def test_infer_lone_image(trained, synth_nusc, tmp_path):
    root, _ = synth_nusc
    lone = tmp_path / "lone.jpg"
    lone.write_bytes(sorted((root / "samples" / "CAM_BACK").glob("*.jpg"))[0].read_bytes())
    out = infer_image(trained, lone, score_th=0.5, save_path=tmp_path / "lone.png", intrinsics="253,253,160,90")
    assert out["path"].is_file()
    with pytest.raises(Fcos3dError, match="give fx,fy,cx,cy"):
        infer_image(trained, lone, save_path=tmp_path / "x.png", intrinsics="253,253")
    with pytest.raises(Fcos3dError, match="not under <dataroot>/samples"):
        infer_image(trained, lone, save_path=tmp_path / "x.png")
