"""The LMDB packer against the devkit: counts, meta, annotations, atomic re-runs and one-line errors."""

import shutil
import subprocess
import sys
from pathlib import Path

import lmdb
import numpy as np
import pytest
from pyquaternion import Quaternion
from small_nuscenes import packed_lmdb

from fcos3d.data import packer
from fcos3d.data.classes import ATTRIBUTES, CAMERAS, CATEGORY_TO_CLASS, CLASSES, NO_ATTRIBUTE
from fcos3d.data.dataset import close_lmdb_envs
from fcos3d.data.packer import pack_nuscenes
from fcos3d.data.record import LEN_KEY, META_KEY, decode_meta, decode_record, index_key
from fcos3d.errors import Fcos3dError

FCOS3D = Path(sys.executable).parent / "fcos3d"


@pytest.fixture(scope="module")
def root(synth_nusc):
    return synth_nusc[0]


@pytest.fixture(scope="module")
def version(synth_nusc):
    return synth_nusc[1]


@pytest.fixture(scope="module")
def nusc(root, version):
    from nuscenes.nuscenes import NuScenes

    return NuScenes(version, str(root), verbose=False)


def _read_all(path) -> dict:
    close_lmdb_envs()  # datasets of other tests may hold it open in this process; lmdb allows one
    env = lmdb.open(str(path), readonly=True, lock=False)
    try:
        with env.begin() as txn:
            return dict(txn.cursor())
    finally:
        env.close()


def _split_samples(nusc, devkit_split):
    from nuscenes.utils.splits import get_scenes_of_split

    names = set(get_scenes_of_split(devkit_split, nusc))
    return [s for s in nusc.sample if nusc.get("scene", s["scene_token"])["name"] in names]


@pytest.mark.parametrize("split, devkit_split", [("train", "mini_train"), ("val", "mini_val")])
def test_counts_and_meta(nusc, root, version, split, devkit_split):
    path = packed_lmdb(root, version, split)
    kv = _read_all(path)
    samples = _split_samples(nusc, devkit_split)
    n = len(samples) * len(CAMERAS)
    assert n > 0 and int(kv[LEN_KEY]) == n and len(kv) == n + 2
    meta = decode_meta(kv[META_KEY])
    assert meta["version"] == version and meta["split"] == split and meta["devkit_split"] == devkit_split
    assert meta["dataroot"] == str(root.absolute()) and meta["count"] == n
    assert meta["classes"] == list(CLASSES) and meta["attributes"] == list(ATTRIBUTES)
    # Every (sample, camera) once, cameras in CAMERAS order within a sample.
    recs = [decode_record(kv[index_key(i)]) for i in range(n)]
    assert {(r["sample_token"], r["cam"]) for r in recs} == {(s["token"], c) for s in samples for c in CAMERAS}
    assert [r["cam"] for r in recs[:6]] == list(CAMERAS)


def _devkit_camera_box(nusc, ann_token, sd):
    """The annotation in the camera frame, moved the devkit's way (Box.translate / Box.rotate)."""
    box = nusc.get_box(ann_token)
    ep = nusc.get("ego_pose", sd["ego_pose_token"])
    cs = nusc.get("calibrated_sensor", sd["calibrated_sensor_token"])
    box.translate(-np.array(ep["translation"]))
    box.rotate(Quaternion(ep["rotation"]).inverse)
    box.translate(-np.array(cs["translation"]))
    box.rotate(Quaternion(cs["rotation"]).inverse)
    velo = nusc.box_velocity(ann_token)
    velo = Quaternion(cs["rotation"]).inverse.rotate(Quaternion(ep["rotation"]).inverse.rotate(np.r_[velo[:2], 0.0]))
    return box, velo


@pytest.mark.parametrize("split", ["train", "val"])
def test_annotations_match_devkit(nusc, root, version, split):
    from nuscenes.utils.geometry_utils import BoxVisibility, box_in_image, view_points

    kv = _read_all(packed_lmdb(root, version, split))
    n_checked = 0
    for i in range(int(kv[LEN_KEY])):
        rec = decode_record(kv[index_key(i)])
        sd = nusc.get("sample_data", rec["sample_data_token"])
        K = np.array(nusc.get("calibrated_sensor", sd["calibrated_sensor_token"])["camera_intrinsic"])
        a = rec["anns"]
        h, w = rec["img_shape"]
        assert (h, w) == (sd["height"], sd["width"])
        for j, tok in enumerate(a["ann_tokens"]):
            box, velo = _devkit_camera_box(nusc, tok, sd)
            np.testing.assert_allclose(a["centers3d"][j], box.center, atol=1e-3)
            np.testing.assert_allclose(a["dims"][j], box.wlh, atol=1e-5)
            assert a["depths"][j] == pytest.approx(box.center[2], abs=1e-3) and box.center[2] > 0
            heading = box.orientation.rotation_matrix[:, 0]
            d = a["rot_y"][j] - np.arctan2(-heading[2], heading[0])
            assert abs((d + np.pi) % (2 * np.pi) - np.pi) < 1e-4
            np.testing.assert_allclose(
                a["centers2d"][j], view_points(box.center[:, None], K, normalize=True)[:2, 0], atol=1e-2
            )
            np.testing.assert_allclose(a["velo_cam"][j], velo[[0, 2]], atol=1e-4)  # NaN == NaN here
            ann = nusc.get("sample_annotation", tok)
            assert CLASSES[a["labels"][j]] == CATEGORY_TO_CLASS[ann["category_name"]]
            names = [nusc.get("attribute", t)["name"] for t in ann["attribute_tokens"]]
            assert a["attr_labels"][j] == (ATTRIBUTES.index(names[0]) if names else NO_ATTRIBUTE)
            x1, y1, x2, y2 = a["bboxes2d"][j]
            assert 0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h
            n_checked += 1
        # Nothing the devkit sees in the image (a corner in view, centre in front) is missing.
        kept = set(a["ann_tokens"])
        for tok in nusc.get("sample", rec["sample_token"])["anns"]:
            ann = nusc.get("sample_annotation", tok)
            box, _ = _devkit_camera_box(nusc, tok, sd)
            if (
                ann["category_name"] in CATEGORY_TO_CLASS
                and box.center[2] > 0
                and box_in_image(box, K, (w, h), BoxVisibility.ANY)
            ):
                assert tok in kept
            if ann["category_name"] not in CATEGORY_TO_CLASS:
                assert tok not in kept
    assert n_checked > 50


def test_rerun_is_idempotent_and_cleans_up(root, version, tmp_path):
    target = tmp_path / "lmdb"
    first = pack_nuscenes(root, "val", version, target, num_workers=0)
    before = _read_all(first["path"])
    stale = target / ".val_lmdb.tmp-999999999"  # a temp dir of a killed run (no such pid)
    (stale / "junk").mkdir(parents=True)
    calls = []
    second = pack_nuscenes(root, "val", version, target, num_workers=2, progress=lambda d, t: calls.append((d, t)))
    assert second["path"] == first["path"] and second["records"] == first["records"] == len(before) - 2
    assert _read_all(second["path"]) == before  # reader processes keep the order: byte-identical
    assert sorted(p.name for p in target.iterdir()) == ["val_lmdb"]
    assert calls == [(i + 1, first["records"]) for i in range(first["records"])]


def test_failed_run_keeps_the_old_lmdb(root, version, tmp_path, monkeypatch):
    target = tmp_path / "lmdb"
    pack_nuscenes(root, "val", version, target, num_workers=0)
    before = _read_all(target / "val_lmdb")
    calls = []

    def flaky(record):
        calls.append(1)
        if len(calls) == 5:
            raise RuntimeError("disk on fire")
        return packer_encode(record)

    packer_encode = packer.encode_record
    monkeypatch.setattr(packer, "encode_record", flaky)
    with pytest.raises(RuntimeError, match="disk on fire"):
        pack_nuscenes(root, "val", version, target, num_workers=0)
    assert _read_all(target / "val_lmdb") == before
    assert sorted(p.name for p in target.iterdir()) == ["val_lmdb"]


@pytest.fixture
def root_copy(root, tmp_path):
    dst = tmp_path / "nuscenes"
    shutil.copytree(root, dst)
    return dst


def test_missing_jpeg_is_named(root_copy, version, tmp_path):
    victim = sorted((root_copy / "samples" / "CAM_BACK").glob("*.jpg"))[0]
    victim.unlink()
    with pytest.raises(Fcos3dError, match=f"missing image .*{victim.name}"):
        pack_nuscenes(root_copy, "train", version, tmp_path / "out", num_workers=0)
    assert not (tmp_path / "out" / "train_lmdb").exists()


def test_missing_src_dir_and_bad_split(root, version, tmp_path):
    with pytest.raises(Fcos3dError, match="does not exist"):
        pack_nuscenes(tmp_path / "nope", "train", version, tmp_path / "out")
    with pytest.raises(Fcos3dError, match="train or val"):
        pack_nuscenes(root, "test", version, tmp_path / "out")


def _cli_pack(src, version, out):
    return subprocess.run(
        [
            str(FCOS3D),
            "data",
            "pack",
            "--src-data-dir",
            str(src),
            "--split-name",
            "val",
            "--version",
            version,
            "--target-data-dir",
            str(out),
            "--num-workers",
            "0",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    "breakage, expected",
    [
        ("table", "missing table .*sample_annotation.json"),
        ("version", r"{v}x.*not found.*versions found there: {v}\)"),
        ("map", r"missing map image .*\.png"),
    ],
)
def test_cli_bad_input_is_one_line(root_copy, version, tmp_path, breakage, expected):
    import re

    asked = version
    if breakage == "table":
        (root_copy / version / "sample_annotation.json").unlink()
    elif breakage == "map":
        for png in (root_copy / "maps").glob("*.png"):
            png.unlink()
    else:
        asked = version + "x"  # a version name that is not there
    expected = expected.format(v=re.escape(version))
    r = _cli_pack(root_copy, asked, tmp_path / "out")
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    assert re.search(expected, lines[0]), lines[0]
    assert not (tmp_path / "out" / "val_lmdb").exists()


def test_custom_version_reads_splits_json(root_copy, version, tmp_path):
    import json

    (root_copy / version).rename(root_copy / "v1.0-custom")
    with pytest.raises(Fcos3dError, match="missing .*splits.json"):
        pack_nuscenes(root_copy, "val", "v1.0-custom", tmp_path / "out", num_workers=0)
    scenes = json.loads((root_copy / "v1.0-custom" / "scene.json").read_text())
    names = sorted(s["name"] for s in scenes)
    (root_copy / "v1.0-custom" / "splits.json").write_text(
        json.dumps({"custom_train": names[:1], "custom_val": names[1:]})
    )
    summary = pack_nuscenes(root_copy, "val", "v1.0-custom", tmp_path / "out", num_workers=0)
    assert summary["devkit_split"] == "custom_val" and summary["scenes"] == len(names) - 1
    meta = decode_meta(_read_all(summary["path"])[META_KEY])
    assert meta["version"] == "v1.0-custom" and meta["devkit_split"] == "custom_val"


# -- pack checks every source JPEG and never deletes what it did not make ------------------------------------


@pytest.mark.parametrize(
    "damage, expected",
    [
        (lambda b: b[: len(b) // 2], r"a cut-short JPEG \(no EOI marker"),
        (lambda b: b"GIF89a" + b[6:], r"not a JPEG \(no SOI marker"),
        (lambda b: b[:2] + bytes(200) + b[-2:], r"the JPEG does not decode"),
    ],
)
def test_damaged_source_jpeg_is_named(root_copy, version, tmp_path, damage, expected):
    victim = sorted((root_copy / "samples" / "CAM_FRONT").glob("*.jpg"))[0]
    victim.write_bytes(damage(victim.read_bytes()))
    with pytest.raises(Fcos3dError, match=rf"{victim}: {expected}.*nuScenes download"):
        pack_nuscenes(root_copy, "train", version, tmp_path / "out", num_workers=0)
    assert not (tmp_path / "out" / "train_lmdb").exists()
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == []


@pytest.mark.parametrize(
    "make, expected",
    [
        (lambda p: (p.mkdir(), (p / "notes.txt").write_text("mine")), r"not an LMDB made by .*holds notes\.txt"),
        (lambda p: (p.mkdir(), (p / "lock.mdb").write_text("")), r"not an LMDB made by .*holds lock\.mdb"),
        (lambda p: p.write_text("a file named like the LMDB"), r"exists and is not an LMDB folder"),
    ],
)
def test_a_target_that_is_not_an_lmdb_is_refused_and_kept(root, version, tmp_path, make, expected):
    target = tmp_path / "out"
    target.mkdir()
    make(target / "val_lmdb")
    before = sorted((p.name, p.is_dir()) for p in target.iterdir())
    with pytest.raises(Fcos3dError, match=expected):
        pack_nuscenes(root, "val", version, target, num_workers=0)
    assert sorted((p.name, p.is_dir()) for p in target.iterdir()) == before


def test_disk_errors_from_lmdb_are_one_line(root, version, tmp_path, monkeypatch):
    import lmdb as lmdb_module

    target = tmp_path / "lmdb"
    pack_nuscenes(root, "val", version, target, num_workers=0)
    before = _read_all(target / "val_lmdb")

    class FullTxn:
        def __init__(self, txn):
            self.txn = txn

        def put(self, *a):
            raise lmdb_module.DiskError("mdb_put: No space left on device")

        def abort(self):
            self.txn.abort()

    real_open = lmdb_module.open

    class Env:
        def __init__(self, *a, **k):
            self.env = real_open(*a, **k)

        def begin(self, write=False):
            return FullTxn(self.env.begin(write=write))

        def close(self):
            self.env.close()

    monkeypatch.setattr(lmdb_module, "open", Env)
    with pytest.raises(Fcos3dError, match=r"val_lmdb: writing the LMDB failed \(DiskError: .*is the disk full"):
        pack_nuscenes(root, "val", version, target, num_workers=0)
    monkeypatch.undo()
    assert _read_all(target / "val_lmdb") == before
    assert sorted(p.name for p in target.iterdir()) == ["val_lmdb"]
