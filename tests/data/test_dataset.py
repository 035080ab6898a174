"""NuscenesMonoDataset (LMDB) and NuscenesMonoFromImage (JPEGs): same samples, workers, samplers, errors."""

import pickle
import shutil

import cv2
import lmdb
import numpy as np
import pytest
import torch
from small_nuscenes import packed_lmdb
from torch.utils.data import DataLoader, DistributedSampler

from fcos3d.boxes.geometry import project_points
from fcos3d.data.dataset import NuscenesMonoDataset, NuscenesMonoFromImage
from fcos3d.data.record import ANN_FIELDS, decode_record, encode_record, index_key
from fcos3d.data.transforms import Pad, Resize3D, ToTensor, collate_fn
from fcos3d.errors import Fcos3dError


@pytest.fixture(scope="module")
def val_path(synth_nusc):
    return packed_lmdb(*synth_nusc, "val")


def test_sample_contents(val_path, synth_nusc):
    ds = NuscenesMonoDataset(val_path)
    assert len(ds) == ds.meta["count"] > 0 and len(ds) % 6 == 0 and ds.meta["split"] == "val"
    s = ds[1]
    assert s["img"].dtype == np.uint8 and s["img"].shape == (180, 320, 3)
    # RGB: the channels of the JPEG as OpenCV reads it (BGR), reversed.
    np.testing.assert_array_equal(s["img"], cv2.imread(str(synth_nusc[0] / s["file_name"]))[..., ::-1])
    assert s["cam"] == "CAM_FRONT_RIGHT" and s["img_shape"] == s["ori_shape"] == (180, 320)
    assert s["cam_intrinsic"].shape == (3, 3) and s["cam2ego"].shape == s["ego2global"].shape == (4, 4)
    for name, (dtype, shape) in ANN_FIELDS.items():
        assert s["anns"][name].dtype == dtype and s["anns"][name].shape[1:] == shape[1:]
    assert len(s["anns"]["labels"]) == len(s["anns"]["ann_tokens"]) > 0
    assert ds[-1]["sample_token"] == ds[len(ds) - 1]["sample_token"]
    with pytest.raises(IndexError):
        ds[len(ds)]


def test_lmdb_and_jpeg_folder_give_identical_samples(val_path, synth_nusc):
    a = NuscenesMonoDataset(val_path)
    b = NuscenesMonoFromImage(*synth_nusc, "val")
    assert len(a) == len(b) and a.meta == b.meta
    for i in range(len(a)):
        sa, sb = a[i], b[i]
        np.testing.assert_array_equal(sa["img"], sb["img"])
        for k in ("cam_intrinsic", "cam2ego", "ego2global"):
            np.testing.assert_array_equal(sa[k], sb[k])
        for k, v in sa["anns"].items():
            np.testing.assert_array_equal(np.asarray(v), np.asarray(sb["anns"][k]))
        assert (sa["sample_token"], sa["cam"]) == (sb["sample_token"], sb["cam"])


def test_resize_on_packed_samples_keeps_projection(val_path):
    ds = NuscenesMonoDataset(val_path, transforms=[Resize3D(img_scale=(896, 512)), Pad(size=(896, 512))])
    for i in range(len(ds)):
        s = ds[i]
        uv, _ = project_points(s["cam_intrinsic"], s["anns"]["centers3d"])  # (N, 2) with the resized K
        assert np.abs(uv - s["anns"]["centers2d"]).max() < 0.5
        assert s["img"].shape == (512, 896, 3) and s["img_shape"] == (504, 896)


def test_distributed_sampler_covers_every_index_once(synth_nusc):
    ds = NuscenesMonoDataset(packed_lmdb(*synth_nusc, "train"))
    seen = []
    for rank in range(2):
        sampler = DistributedSampler(ds, num_replicas=2, rank=rank, shuffle=True, seed=0)
        sampler.set_epoch(3)
        seen += list(sampler)
    assert sorted(seen) == list(range(len(ds)))


def test_dataloader_with_two_workers(val_path):
    ds = NuscenesMonoDataset(val_path, transforms=[Resize3D(img_scale=(896, 512)), Pad(size=(896, 512)), ToTensor()])
    ds[0]  # the main process opens the LMDB first: forked workers must still open their own
    loader = DataLoader(ds, batch_size=5, shuffle=False, num_workers=2, collate_fn=collate_fn)
    tokens, n_boxes = [], 0
    for batch in loader:
        b = batch["img"].shape[0]
        assert batch["img"].shape[1:] == (3, 512, 896) and batch["cam_intrinsic"].shape == (b, 3, 3)
        assert len(batch["anns"]["labels"]) == b and isinstance(batch["anns"]["labels"][0], torch.Tensor)
        tokens += [(t, c) for t, c in zip(batch["sample_token"], batch["cam"])]
        n_boxes += sum(len(t) for t in batch["anns"]["labels"])
    assert tokens == [(ds[i]["sample_token"], ds[i]["cam"]) for i in range(len(ds))]
    assert n_boxes == sum(len(ds[i]["anns"]["labels"]) for i in range(len(ds)))


def test_dataset_pickles_without_the_environment(val_path):
    ds = NuscenesMonoDataset(val_path)
    ds[0]
    clone = pickle.loads(pickle.dumps(ds))
    np.testing.assert_array_equal(clone[2]["img"], ds[2]["img"])


def _corrupt_copy(src, tmp_path, index, make_bytes):
    dst = tmp_path / "val_lmdb"
    shutil.copytree(src, dst)
    env = lmdb.open(str(dst), map_size=1 << 30)
    with env.begin(write=True) as txn:
        txn.put(index_key(index), make_bytes(txn.get(index_key(index))))
    env.close()
    return dst


def _bad_bbox_field(raw):
    rec = decode_record(raw)
    rec["anns"]["bboxes2d"] = [1.0, 2.0, 3.0]  # not (N, 4)
    return encode_record(rec)


@pytest.mark.parametrize(
    "corrupt",
    [
        lambda raw: b"\xc1" + raw[1:],  # 0xc1: a byte msgpack never uses
        lambda raw: raw[: len(raw) // 2],  # truncated
        _bad_bbox_field,  # valid msgpack, wrong shape
    ],
)
def test_corrupt_record_names_path_and_index(val_path, tmp_path, corrupt):
    path = _corrupt_copy(val_path, tmp_path, 5, corrupt)
    ds = NuscenesMonoDataset(path)
    ds[4]  # the others still read
    with pytest.raises(Fcos3dError) as e:
        ds[5]
    msg = str(e.value)
    assert str(path) in msg and "record 5" in msg and "fcos3d data pack" in msg and "\n" not in msg


def test_undecodable_jpeg_names_path_and_index(val_path, tmp_path):
    def break_jpeg(raw):
        rec = decode_record(raw)
        rec["img"] = b"\xff\xd8 not a jpeg"
        return encode_record(rec)

    path = _corrupt_copy(val_path, tmp_path, 3, break_jpeg)
    with pytest.raises(Fcos3dError, match=rf"{path}: record 3: the JPEG does not decode.*fcos3d data pack"):
        NuscenesMonoDataset(path)[3]


def test_missing_lmdb_path(tmp_path):
    with pytest.raises(Fcos3dError, match="not an LMDB made by `fcos3d data pack`"):
        NuscenesMonoDataset(tmp_path / "nothing_here")


# -- a damaged data.mdb is one line, in the main process and in loader workers alike (never a SIGBUS) -------


def _cut_copy(src, tmp_path, keep):
    dst = tmp_path / "val_lmdb"
    shutil.copytree(src, dst)
    data = (dst / "data.mdb").read_bytes()
    (dst / "data.mdb").write_bytes(keep(data))
    return dst


@pytest.mark.parametrize(
    "keep, expected",
    [
        (lambda d: d[: len(d) // 2], r"data\.mdb: truncated \(.* bytes, its last page ends at .*fcos3d data pack"),
        (lambda d: d[:-1], r"data\.mdb: truncated"),
        (lambda d: bytes(len(d)), r"data\.mdb: not an LMDB data file"),
        (lambda d: d[:100], r"data\.mdb: not an LMDB data file"),
    ],
)
def test_damaged_data_mdb_is_one_line(val_path, tmp_path, keep, expected):
    path = _cut_copy(val_path, tmp_path, keep)
    with pytest.raises(Fcos3dError, match=expected) as e:
        NuscenesMonoDataset(path)
    assert "\n" not in str(e.value)


def test_data_mdb_cut_after_opening_is_caught_in_workers(val_path, tmp_path):
    path = _cut_copy(val_path, tmp_path, lambda d: d)
    ds = NuscenesMonoDataset(path)  # whole when opened here
    data = (path / "data.mdb").read_bytes()
    (path / "data.mdb").write_bytes(data[: len(data) // 2])  # then cut short in place (an interrupted copy over it)
    loader = DataLoader(ds, batch_size=2, num_workers=1, collate_fn=lambda b: b)
    with pytest.raises(Fcos3dError, match=r"data\.mdb: truncated"):
        next(iter(loader))
    with pytest.raises(Fcos3dError, match=r"data\.mdb: truncated"):
        NuscenesMonoDataset(path)  # the main process's open environment is checked again
