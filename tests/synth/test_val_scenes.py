"""--val-scenes: a larger val split made of appended val-only scenes; the train split and the default set unchanged."""

import json

import pytest

from fcos3d.errors import Fcos3dError
from fcos3d.synth import scene_plan, write_synthetic_nuscenes


def test_scene_plan_appends_val_scenes_only():
    names, split = scene_plan("v1.0-synth", 10)
    more, more_split = scene_plan("v1.0-synth", 10, val_scenes=6)
    assert more[:10] == names and more_split["train"] == split["train"]
    assert (
        more_split["val"][:2] == split["val"]
        and len(more_split["val"]) == 6
        and set(more[10:]) <= set(more_split["val"])
    )
    assert scene_plan("v1.0-synth", 10, val_scenes=2) == (names, split)  # the plan's own count: nothing added
    tv, tv_split = scene_plan("v1.0-trainval", 10, val_scenes=5)
    assert (
        len(tv) == 13 and len(tv_split["val"]) == 5 and tv_split["train"] == scene_plan("v1.0-trainval", 10)[1]["train"]
    )
    assert scene_plan("v1.0-mini", 10, val_scenes=2) == scene_plan("v1.0-mini", 10)
    with pytest.raises(Fcos3dError, match="official mini_val scenes; use a version that reads splits.json"):
        scene_plan("v1.0-mini", 10, val_scenes=3)
    with pytest.raises(Fcos3dError, match="fewer than the 2 val scene"):
        scene_plan("v1.0-synth", 10, val_scenes=1)


def test_extra_val_scenes_leave_the_train_scenes_byte_identical(tmp_path):
    kw = dict(version="v1.0-synth", scenes=2, samples_per_scene=2, image_size=(96, 64), seed=1)
    small = write_synthetic_nuscenes(tmp_path / "a", **kw)
    big = write_synthetic_nuscenes(tmp_path / "b", val_scenes=3, **kw)
    assert (small["train_scenes"], small["val_scenes"]) == (1, 1)
    assert (big["train_scenes"], big["val_scenes"], big["scenes"]) == (1, 3, 4)
    assert big["images"] == 4 * 2 * 6
    splits = json.loads((tmp_path / "b/v1.0-synth/splits.json").read_text())
    assert splits["custom_train"] == ["scene-0001"] and splits["custom_val"] == [
        "scene-0002",
        "scene-0003",
        "scene-0004",
    ]
    jpgs = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a" / "samples").rglob("*.jpg"))
    assert jpgs and all((tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes() for f in jpgs)
    # the devkit reads the larger split
    from fcos3d.eval.nuscenes_metric import split_sample_tokens

    assert len(split_sample_tokens(tmp_path / "b", "v1.0-synth", "val")) == 3 * 2
