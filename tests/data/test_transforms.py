"""Transforms keep image, intrinsics and 2D annotations consistent; bad arguments fail when created."""

import dataclasses

import cv2
import numpy as np
import pytest
import torch

from fcos3d.boxes.geometry import project_points
from fcos3d.data.record import ANN_FIELDS
from fcos3d.data.transforms import Normalize, Pad, Resize3D, ToTensor, collate_fn, unbatch_anns
from fcos3d.errors import Fcos3dError


def make_sample(seed=0, h=180, w=320, n=5):
    """A sample dict as the dataset makes it, with n boxes in front of a 320x180 pinhole camera."""
    rng = np.random.default_rng(seed)
    K = np.array([[256.0, 0.0, 160.0], [0.0, 256.0, 90.0], [0.0, 0.0, 1.0]])
    centers3d = np.c_[rng.uniform(-5, 5, n), rng.uniform(-1, 2, n), rng.uniform(4, 40, n)]
    uv, depth = project_points(K, centers3d)
    bboxes = np.c_[uv - 10.0, uv + 10.0]
    anns = {
        "bboxes2d": bboxes,
        "centers2d": uv,
        "depths": depth,
        "centers3d": centers3d,
        "dims": rng.uniform(0.5, 5, (n, 3)),
        "rot_y": rng.uniform(-3, 3, n),
        "velo_cam": rng.normal(size=(n, 2)),
        "labels": rng.integers(0, 10, n),
        "attr_labels": rng.integers(0, 9, n),
    }
    anns = {k: np.asarray(anns[k], dtype=dt).reshape(shape) for k, (dt, shape) in ANN_FIELDS.items()}
    anns["instance_tokens"] = [f"i{k}" for k in range(n)]
    anns["ann_tokens"] = [f"a{k}" for k in range(n)]
    return {
        "img": rng.integers(0, 256, (h, w, 3), dtype=np.uint8),
        "cam_intrinsic": K,
        "cam2ego": np.eye(4),
        "ego2global": np.eye(4),
        "anns": anns,
        "sample_token": f"s{seed}",
        "cam": "CAM_FRONT",
        "ori_shape": (h, w),
        "img_shape": (h, w),
        "pad_shape": (h, w),
        "scale_factor": np.ones(2),
    }


def _reprojection_error(sample):
    uv, _ = project_points(sample["cam_intrinsic"], sample["anns"]["centers3d"])
    return np.abs(uv - sample["anns"]["centers2d"]).max()


@pytest.mark.parametrize("keep_ratio, size", [(True, (504, 896)), (False, (512, 896))])
def test_resize_keeps_projection(keep_ratio, size):
    s = make_sample()
    before = {k: v.copy() for k, v in s["anns"].items() if isinstance(v, np.ndarray)}
    out = Resize3D(img_scale=(896, 512), keep_ratio=keep_ratio)(s)
    assert out["img"].shape == (*size, 3) and out["img_shape"] == size and out["ori_shape"] == (180, 320)
    sx, sy = size[1] / 320, size[0] / 180
    np.testing.assert_allclose(out["scale_factor"], [sx, sy])
    if keep_ratio:
        assert sx == sy == 2.8
    assert _reprojection_error(out) < 0.5
    np.testing.assert_allclose(out["anns"]["bboxes2d"], before["bboxes2d"] * [sx, sy, sx, sy], rtol=1e-6)
    for k in ("depths", "centers3d", "dims", "rot_y", "velo_cam"):  # 3D geometry does not change
        np.testing.assert_array_equal(out["anns"][k], before[k])
    # The input is left alone.
    np.testing.assert_array_equal(s["anns"]["centers2d"], before["centers2d"])
    assert s["cam_intrinsic"][0, 0] == 256.0 and s["img"].shape == (180, 320, 3)


def test_resize_odd_sizes_keep_projection():
    # Sizes that need rounding: K_resized @ centers3d within 0.5 px of centers2d.
    for seed, scale in ((1, (1000, 333)), (2, (97, 200))):
        out = Resize3D(img_scale=scale)(make_sample(seed))
        assert _reprojection_error(out) < 0.5


def test_pad():
    s = Resize3D(img_scale=(896, 512))(make_sample())
    out = Pad(divisor=32)(s)
    assert out["img"].shape == (512, 896, 3) and out["pad_shape"] == (512, 896) and out["img_shape"] == (504, 896)
    assert not out["img"][504:].any()
    np.testing.assert_array_equal(out["img"][:504], s["img"])
    out = Pad(size=(900, 520))(s)
    assert out["img"].shape == (520, 900, 3) and not out["img"][:, 896:].any()
    with pytest.raises(Fcos3dError, match="larger"):
        Pad(size=(800, 512))(s)


def test_to_tensor_and_normalize():
    s = make_sample()
    s["img"][0, 0] = (255, 0, 0)  # pure red
    t = ToTensor()(s)
    assert t["img"].shape == (3, 180, 320) and t["img"].dtype == torch.float32
    np.testing.assert_array_equal(t["img"].numpy().transpose(1, 2, 0), s["img"])
    y = ToTensor(to_yuv=True)(s)
    # BT.601 luma of pure red: 0.299 * 255 = 76.2.
    assert abs(float(y["img"][0, 0, 0]) - 76.0) <= 1.0
    np.testing.assert_array_equal(y["img"].numpy().transpose(1, 2, 0), cv2.cvtColor(s["img"], cv2.COLOR_RGB2YUV))
    n = Normalize(mean=128.0, std=(128.0, 64.0, 32.0))(t)
    np.testing.assert_allclose(n["img"][1].numpy(), (s["img"][..., 1] - 128.0) / 64.0, rtol=1e-6)
    with pytest.raises(Fcos3dError, match="after ToTensor"):
        Normalize(mean=0.0, std=1.0)(s)
    with pytest.raises(Fcos3dError, match="before ToTensor"):
        Resize3D(img_scale=(64, 64))(t)


@pytest.mark.parametrize(
    "make, field",
    [
        (lambda: Resize3D(img_scale=(0, 512)), "img_scale"),
        (lambda: Resize3D(img_scale="896x512"), "img_scale"),
        (lambda: Resize3D(img_scale=(896, 512), keep_ratio="yes"), "keep_ratio"),
        (lambda: Pad(), "divisor"),
        (lambda: Pad(divisor=32, size=(896, 512)), "divisor"),
        (lambda: Pad(divisor=0), "divisor"),
        (lambda: Pad(size=(896.5, 512)), "size"),
        (lambda: ToTensor(to_yuv=1), "to_yuv"),
        (lambda: Normalize(mean=(1.0, 2.0), std=1.0), "mean"),
        (lambda: Normalize(mean=0.0, std=(1.0, 0.0, 1.0)), "std"),
    ],
)
def test_bad_arguments_name_the_field(make, field):
    with pytest.raises(Fcos3dError, match=field):
        make()


def test_transforms_are_frozen():
    r = Resize3D(img_scale=(896, 512))
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.keep_ratio = False


def test_collate():
    pipeline = [Resize3D(img_scale=(896, 512)), Pad(size=(896, 512)), ToTensor()]
    batch = []
    for seed, n in ((0, 3), (1, 0)):
        s = make_sample(seed, n=n)
        for t in pipeline:
            s = t(s)
        batch.append(s)
    out = collate_fn(batch)
    assert out["img"].shape == (2, 3, 512, 896)
    assert out["cam_intrinsic"].shape == (2, 3, 3) and out["cam_intrinsic"].dtype == torch.float32
    assert out["ego2global"].dtype == torch.float64
    assert [len(t) for t in out["anns"]["labels"]] == [3, 0]
    assert out["anns"]["centers3d"][0].shape == (3, 3) and out["anns"]["centers3d"][1].shape == (0, 3)
    assert out["anns"]["ann_tokens"] == [["a0", "a1", "a2"], []]
    assert out["sample_token"] == ["s0", "s1"] and out["img_shape"] == [(504, 896), (504, 896)]
    torch.testing.assert_close(out["anns"]["centers2d"][0], torch.from_numpy(batch[0]["anns"]["centers2d"]))
    per_image = unbatch_anns(out)
    assert len(per_image) == 2 and per_image[0]["labels"] is out["anns"]["labels"][0]
    # Different sizes cannot be stacked: the error says how to fix it.
    small = ToTensor()(make_sample(2))
    with pytest.raises(Fcos3dError, match="Pad"):
        collate_fn([batch[0], small])
