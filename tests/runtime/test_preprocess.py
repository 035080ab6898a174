"""Tests of fcos3d/runtime/preprocess.py: the on-board input equals the dataset pipeline's after int8 conversion,
exactly, on the JPEGs of a synthetic nuScenes; and the runtime imports no torch."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from rpc_servers import small_model

from fcos3d.errors import Fcos3dError
from fcos3d.runtime.preprocess import input_size_from_meta, prepare_jpeg
from fcos3d.runtime.reference.simulator import Simulator


@pytest.mark.parametrize("size", [(896, 512), (256, 160), (320, 180)])  # up (pads 8 rows), down (pads 16), same
def test_prepare_jpeg_equals_dataset_pipeline(synth_nusc, size):
    from fcos3d.data.dataset import NuscenesMonoFromImage
    from fcos3d.data.transforms import Normalize, Pad, Resize3D, ToTensor

    root, version = synth_nusc
    transforms = [Resize3D(img_scale=size), Pad(size=size), ToTensor(to_yuv=True), Normalize(128.0, 128.0)]
    ds = NuscenesMonoFromImage(root, version, "val", transforms=transforms)
    quantize = Simulator(small_model()).quantize_input  # the image input's scale is 1/128, as FCOS3D's
    for i in (0, len(ds) // 2, len(ds) - 1):
        sample = ds[i]
        jpeg = (ds.dataroot / sample["file_name"]).read_bytes()
        K = ds.read_record(i)["cam_intrinsic"]
        got = prepare_jpeg(jpeg, K, size)
        want = quantize(sample["img"].numpy()[None])  # (1, 3, H, W) int8
        assert got.x.dtype == np.int8 and got.x.shape == (1, 3, size[1], size[0]) and got.x.flags.c_contiguous
        np.testing.assert_array_equal(got.x, want)
        np.testing.assert_array_equal(got.cam_intrinsic, sample["cam_intrinsic"])
        np.testing.assert_array_equal(got.scale_factor, sample["scale_factor"])
        assert got.img_shape == sample["img_shape"] and got.pad_shape == sample["pad_shape"]
        assert got.ori_shape == sample["ori_shape"]


def test_padding_is_yuv_of_black():
    """Padded pixels are RGB (0, 0, 0): Y = 0, U = V = 128, so int8 (-128, 0, 0)."""
    import cv2

    rgb = np.full((90, 200, 3), 200, np.uint8)
    ok, jpeg = cv2.imencode(".jpg", rgb[..., ::-1])
    got = prepare_jpeg(jpeg.tobytes(), np.eye(3), (100, 60))  # 200x90 -> 100x45, 15 padded rows
    assert got.img_shape == (45, 100)
    np.testing.assert_array_equal(got.x[0, :, 45:, :], np.array([-128, 0, 0]).reshape(3, 1, 1) * np.ones((1, 15, 100)))
    np.testing.assert_array_equal(got.cam_intrinsic, np.diag([0.5, 0.5, 1.0]))


def test_bad_jpeg():
    with pytest.raises(Fcos3dError, match="do not decode"):
        prepare_jpeg(b"not a jpeg", np.eye(3), (64, 32))


def test_input_size_from_meta():
    meta = {"inputs": [{"name": "image", "shape": [1, 3, 512, 896], "dtype": "int8"}]}
    assert input_size_from_meta(meta) == (896, 512)


def test_runtime_imports_no_torch():
    code = (
        "import sys; import fcos3d.runtime.execute, fcos3d.runtime.preprocess, fcos3d.runtime.align; "
        "bad = [m for m in ('torch', 'torchvision') if m in sys.modules]; assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
