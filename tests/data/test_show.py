"""show_record: a PNG of the documented size whose image panel shows the boxes in their class colours."""

import cv2
import numpy as np
import pytest
from small_nuscenes import packed_lmdb

from fcos3d.data.dataset import NuscenesMonoDataset
from fcos3d.data.show import CLASS_COLORS, figure_size, show_record
from fcos3d.errors import Fcos3dError


def _rgb(hex_colour):
    return np.array([int(hex_colour[i : i + 2], 16) for i in (1, 3, 5)])


@pytest.fixture(scope="module")
def val_path(synth_nusc):
    return packed_lmdb(*synth_nusc, "val")


def test_show_writes_png_of_the_right_size(val_path, tmp_path):
    path = val_path
    ds = NuscenesMonoDataset(path)
    index = 0
    sample = ds[index]
    out = show_record(path, index=index, save_path=tmp_path / "pics" / "gt.png")
    assert out == tmp_path / "pics" / "gt.png" and [p.name for p in out.parent.iterdir()] == ["gt.png"]  # no temp left
    png = cv2.imread(str(out))[..., ::-1]  # RGB
    h, w = sample["img"].shape[:2]
    assert (png.shape[1], png.shape[0]) == figure_size(h, w) == (960 + 540, 540)  # 320x180 drawn 3x, then a 540 square
    # The centre dot of the last-drawn box in view has its class colour in the enlarged image panel.
    anns = sample["anns"]
    s = 540 / h
    inside = [i for i, (u, v) in enumerate(anns["centers2d"]) if 0 <= u < w and 0 <= v < h]
    assert inside
    i = inside[-1]
    u, v = anns["centers2d"][i] * s
    pixel = png[int(v), int(u)].astype(int)
    assert np.abs(pixel - _rgb(CLASS_COLORS[anns["labels"][i]])).max() <= 40
    # And the picture is not the bare image: the boxes changed many pixels.
    bare = cv2.resize(sample["img"], (960, 540), interpolation=cv2.INTER_LINEAR).astype(int)
    assert (np.abs(png[:, :960].astype(int) - bare).max(axis=2) > 60).mean() > 0.02


def test_show_bad_index(val_path, tmp_path):
    n = len(NuscenesMonoDataset(val_path))
    with pytest.raises(Fcos3dError, match=f"out of range.*{n} records"):
        show_record(val_path, index=10_000, save_path=tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_show_missing_lmdb(tmp_path):
    with pytest.raises(Fcos3dError, match="fcos3d data pack"):
        show_record(tmp_path / "nope", index=0, save_path=tmp_path / "x.png")
