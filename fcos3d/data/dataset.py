"""NuscenesMonoDataset: camera-image samples from a packed LMDB; NuscenesMonoFromImage: from the JPEGs.

Both give the same sample dict (the record contract of fcos3d/data/record.py, image decoded) and
apply the same transforms, so training and on-board validation read identical data.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
from torch.utils.data import Dataset

from ..errors import Fcos3dError
from .devkit import check_images_exist, load_nuscenes, split_image_infos, split_meta, split_scenes
from .lmdb_file import check_data_mdb, open_lmdb
from .mono import build_record
from .record import LEN_KEY, META_KEY, RecordError, decode_meta, decode_record, index_key

__all__ = ["NuscenesMonoDataset", "NuscenesMonoFromImage", "record_to_sample", "close_lmdb_envs"]

# One read-only environment per (LMDB folder, process). lmdb refuses to open the same files twice in
# a process, and its registry of open files is inherited through fork, so a DataLoader worker must
# close the environment it inherited before opening its own (closing it there leaves the parent's
# intact). Environments live here, never on the dataset, so datasets pickle without them.
_ENVS: dict[str, tuple[int, tuple[int, int], object]] = {}  # path -> (pid, (st_dev, st_ino), env)


def _lmdb_env(path: Path, recheck: bool = False):
    """This process's read-only environment of ``path``; ``recheck`` reopens it if it was re-packed.

    Every open (in the main process and in each DataLoader worker) first checks data.mdb against its last page
    (lmdb_file.check_data_mdb): a truncated file is one Fcos3dError line, not a SIGBUS."""
    key = str(path)
    entry = _ENVS.get(key)
    pid = os.getpid()
    if entry is not None and entry[0] == pid and not recheck:
        return entry[2]
    try:
        st = os.stat(path / "data.mdb")
    except OSError as e:
        raise Fcos3dError(f"{path / 'data.mdb'}: {e.strerror}; pack the split first, or fix the path") from None
    ident = (st.st_dev, st.st_ino)
    if entry is not None:
        if entry[0] == pid and entry[1] == ident:
            check_data_mdb(path)  # the same file may have been cut short in place (a copy over it)
            return entry[2]
        entry[2].close()  # inherited through fork, or the files were replaced by a re-pack
    _ENVS.pop(key, None)
    env = open_lmdb(path, readonly=True, lock=False, readahead=False, meminit=False, subdir=True)
    _ENVS[key] = (pid, ident, env)
    return env


def close_lmdb_envs() -> None:
    """Close this process's cached LMDB environments (datasets reopen them on their next read).

    Needed before opening one of those LMDBs with ``lmdb.open`` directly in the same process, which
    lmdb refuses while the environment is open here.
    """
    for key, (_, _, env) in list(_ENVS.items()):
        env.close()  # inherited ones too: their entries in lmdb's registry travelled through fork
        del _ENVS[key]


def record_to_sample(rec: dict, where: str) -> dict:
    """The sample dict of a decoded record: the JPEG decoded to RGB, plus shape bookkeeping.

    Keys: img (H, W, 3) uint8 RGB; cam_intrinsic (3, 3), cam2ego (4, 4), ego2global (4, 4) float64;
    anns (record.ANN_FIELDS arrays + token lists); sample_token, sample_data_token, cam, timestamp,
    file_name; ori_shape, img_shape, pad_shape (H, W) tuples; scale_factor (2,) [sx, sy] float64.
    ``where`` names the record in error messages.
    """
    try:
        img = cv2.imdecode(np.frombuffer(rec["img"], dtype=np.uint8), cv2.IMREAD_COLOR)
    except (TypeError, ValueError, cv2.error):  # not bytes, or empty
        img = None
    if img is None:
        raise Fcos3dError(
            f"{where}: the JPEG does not decode (source image {rec.get('file_name') or '?'}): re-run "
            "`fcos3d data pack` for this split (pack checks every source JPEG and names a damaged one)"
        )
    h, w = img.shape[:2]
    if [h, w] != list(rec["img_shape"]):
        raise Fcos3dError(
            f"{where}: the JPEG is {w}x{h} but sample_data.json says {rec['img_shape'][1]}x{rec['img_shape'][0]}: fix the table or the image, then re-pack"
        )
    return {
        "img": cv2.cvtColor(img, cv2.COLOR_BGR2RGB),  # (H, W, 3) uint8
        "cam_intrinsic": rec["cam_intrinsic"],
        "cam2ego": rec["cam2ego"],
        "ego2global": rec["ego2global"],
        "anns": rec["anns"],
        "sample_token": rec["sample_token"],
        "sample_data_token": rec.get("sample_data_token", ""),
        "cam": rec["cam"],
        "timestamp": rec.get("timestamp", 0),
        "file_name": rec.get("file_name", ""),
        "ori_shape": (h, w),
        "img_shape": (h, w),
        "pad_shape": (h, w),
        "scale_factor": np.ones(2),
    }


def _check_transforms(transforms) -> tuple:
    if transforms is None:
        return ()
    if callable(transforms):
        transforms = [transforms]
    transforms = tuple(transforms)
    bad = [t for t in transforms if not callable(t)]
    if bad:
        raise Fcos3dError(
            f"transforms must be callables taking and returning a sample dict; got {type(bad[0]).__name__}"
        )
    return transforms


class _MonoSamples(Dataset):
    """What both datasets share: the meta, the transforms and their application."""

    _meta: dict
    transforms: tuple

    @property
    def meta(self) -> dict:
        """version, split, devkit_split, dataroot, classes, attributes, format, count (record.META_FIELDS)."""
        return dict(self._meta)

    def _apply(self, sample: dict) -> dict:
        for t in self.transforms:
            sample = t(sample)
        return sample

    def _check_index(self, index: int) -> int:
        n = len(self)
        index = int(index)
        if index < 0:
            index += n
        if not 0 <= index < n:
            raise IndexError(f"index {index} out of range for {n} samples")
        return index


class NuscenesMonoDataset(_MonoSamples):
    """Samples from an LMDB made by ``fcos3d data pack`` (one per camera image).

    The environment is opened lazily in each process that reads (DataLoader workers included) and is
    never pickled. ``transforms`` (callables sample -> sample) are applied in order.
    """

    def __init__(self, data_path, transforms=None):
        self.data_path = Path(data_path).expanduser().absolute()
        if not (self.data_path / "data.mdb").is_file():
            raise Fcos3dError(
                f"{self.data_path} is not an LMDB made by `fcos3d data pack` (no data.mdb there): pack the split first, or fix the path"
            )
        self.transforms = _check_transforms(transforms)
        env = _lmdb_env(self.data_path, recheck=True)
        raw_len, raw_meta = self._get(env, LEN_KEY, "__len__"), self._get(env, META_KEY, "__meta__")
        if raw_len is None or raw_meta is None:
            raise Fcos3dError(
                f"{self.data_path} has no __len__/__meta__ key (packing did not finish): re-run `fcos3d data pack`"
            )
        try:
            self._len = int(raw_len)
            self._meta = decode_meta(raw_meta)
        except (ValueError, RecordError) as e:
            raise Fcos3dError(f"{self.data_path}: corrupt __len__/__meta__ ({e}): re-run `fcos3d data pack`") from None

    def __len__(self) -> int:
        return self._len

    def _get(self, env, key: bytes, what: str) -> bytes | None:
        """One value read; lmdb's errors on a damaged file become one Fcos3dError line naming it."""
        import lmdb

        try:
            with env.begin() as txn:
                return txn.get(key)
        except lmdb.Error as e:
            raise Fcos3dError(
                f"{self.data_path / 'data.mdb'}: reading {what} failed ({type(e).__name__}: {e}); the LMDB is "
                "damaged: re-run `fcos3d data pack` for this split"
            ) from None

    def read_record(self, index: int) -> dict:
        """The decoded record (JPEG still encoded) at ``index``; corrupt data raises Fcos3dError."""
        index = self._check_index(index)
        raw = self._get(_lmdb_env(self.data_path), index_key(index), f"record {index}")
        if raw is None:
            raise Fcos3dError(f"{self.data_path}: record {index} is missing: re-run `fcos3d data pack` for this split")
        try:
            return decode_record(raw)
        except RecordError as e:
            raise Fcos3dError(
                f"{self.data_path}: record {index} is corrupt ({e}): re-run `fcos3d data pack` for this split"
            ) from None

    def __getitem__(self, index: int) -> dict:
        index = self._check_index(index)
        sample = record_to_sample(self.read_record(index), where=f"{self.data_path}: record {index}")
        return self._apply(sample)


class NuscenesMonoFromImage(_MonoSamples):
    """The same samples as the LMDB of (version, split), read from the original JPEG folder.

    Loads the devkit once here to build the per-image infos (picklable plain data), then reads and
    annotates each JPEG on demand with the packer's own code (fcos3d.data.mono.build_record).
    """

    def __init__(self, dataroot, version: str, split_name: str, transforms=None):
        self.transforms = _check_transforms(transforms)
        nusc = load_nuscenes(dataroot, version, split_name)
        self.dataroot = Path(nusc.dataroot)
        devkit_split, scenes = split_scenes(nusc, version, split_name)
        self._infos = split_image_infos(nusc, scenes)
        check_images_exist(self.dataroot, self._infos, split_name)
        self._meta = split_meta(version, split_name, devkit_split, self.dataroot, len(self._infos))

    def __len__(self) -> int:
        return len(self._infos)

    def read_record(self, index: int) -> dict:
        """The record (JPEG still encoded) at ``index``, exactly as the packer would store it."""
        info = self._infos[self._check_index(index)]
        path = self.dataroot / info["file_name"]
        try:
            img_bytes = path.read_bytes()
        except OSError as e:
            raise Fcos3dError(f"cannot read image {path} ({e.strerror}): restore samples/ from the download") from None
        return build_record(info, img_bytes)

    def __getitem__(self, index: int) -> dict:
        index = self._check_index(index)
        info = self._infos[index]
        sample = record_to_sample(self.read_record(index), where=str(self.dataroot / info["file_name"]))
        return self._apply(sample)
