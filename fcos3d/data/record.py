"""The LMDB record contract: one msgpack record per camera image (never pickle), torch-free.

Keys in the LMDB: fixed-width decimal indices ``b"%08d"``, plus ``b"__len__"`` (LEN_KEY: the count,
ASCII) and ``b"__meta__"`` (META_KEY: a msgpack dict with the keys of META_FIELDS: version (the
devkit version folder), split ("train"/"val"), devkit_split (its devkit name, DetectionEval's
eval_set), dataroot (absolute path of the nuScenes root), classes, attributes, format (RECORD_FORMAT)
and count (= __len__)). Every record is a dict:

    format        int, RECORD_FORMAT
    img           bytes, the original JPEG
    img_shape     [H, W] of the original image
    file_name     path of the JPEG relative to the dataroot (samples/CAM_X/...jpg)
    sample_token, sample_data_token, cam (e.g. "CAM_FRONT"), timestamp (microseconds)
    cam_intrinsic 3x3 list
    cam2ego       4x4 list (camera -> ego pose)
    ego2global    4x4 list (ego -> global pose)
    anns          dict of equal-length lists, one entry per visible box (see ANN_FIELDS)

Annotation fields (camera frame; conventions in fcos3d/boxes/geometry.py):
    bboxes2d    (N, 4) x1, y1, x2, y2 of the projected box hull clipped to the image
    centers2d   (N, 2) projection (u, v) of the 3D centre (may lie outside the image)
    depths      (N,)   z of the 3D centre
    centers3d   (N, 3) geometric centre x, y, z
    dims        (N, 3) w, l, h metres
    rot_y       (N,)   rotation about the camera y axis
    velo_cam    (N, 2) velocity [vx, vz] in the camera frame (NaN where the devkit has none)
    labels      (N,)   index into fcos3d.data.classes.CLASSES
    attr_labels (N,)   index into ATTRIBUTES (NO_ATTRIBUTE for none)
    instance_tokens, ann_tokens (N,) str
"""

from __future__ import annotations

import msgpack
import numpy as np

RECORD_FORMAT = 1

ANN_FIELDS = {
    "bboxes2d": (np.float32, (-1, 4)),
    "centers2d": (np.float32, (-1, 2)),
    "depths": (np.float32, (-1,)),
    "centers3d": (np.float32, (-1, 3)),
    "dims": (np.float32, (-1, 3)),
    "rot_y": (np.float32, (-1,)),
    "velo_cam": (np.float32, (-1, 2)),
    "labels": (np.int64, (-1,)),
    "attr_labels": (np.int64, (-1,)),
}
REQUIRED_FIELDS = ("img", "img_shape", "sample_token", "cam", "cam_intrinsic", "cam2ego", "ego2global", "anns")


LEN_KEY = b"__len__"
META_KEY = b"__meta__"
META_FIELDS = ("version", "split", "devkit_split", "dataroot", "classes", "attributes", "format", "count")


def index_key(i: int) -> bytes:
    return b"%08d" % i


def encode_record(record: dict) -> bytes:
    """msgpack bytes of a record; numpy arrays become nested lists."""

    def default(obj):
        if isinstance(obj, np.ndarray):
            return obj.tolist()
        if isinstance(obj, np.generic):
            return obj.item()
        raise TypeError(f"cannot pack {type(obj).__name__}")

    return msgpack.packb(record, default=default, use_bin_type=True)


class RecordError(ValueError):
    """A record that cannot be decoded or misses a field."""


def decode_record(raw: bytes) -> dict:
    """Record dict with ``anns`` as numpy arrays and matrices as float64 arrays.

    Raises RecordError on bytes that are not a msgpack record of this format.
    """
    try:
        rec = msgpack.unpackb(raw, raw=False)
    except Exception as e:  # msgpack raises several types for corrupt input
        raise RecordError(f"not a msgpack record ({type(e).__name__}: {e})") from None
    if not isinstance(rec, dict):
        raise RecordError(f"record is a {type(rec).__name__}, not a dict")
    missing = [k for k in REQUIRED_FIELDS if k not in rec]
    if missing:
        raise RecordError(f"record misses field(s) {', '.join(missing)}")
    if rec.get("format") != RECORD_FORMAT:
        raise RecordError(
            f"record format {rec.get('format')!r}, this library reads format {RECORD_FORMAT}: re-pack the data"
        )
    for k, shape in (("cam_intrinsic", (3, 3)), ("cam2ego", (4, 4)), ("ego2global", (4, 4))):
        try:
            rec[k] = np.asarray(rec[k], dtype=np.float64).reshape(shape)
        except (TypeError, ValueError) as e:
            raise RecordError(f"{k} is not a {shape[0]}x{shape[1]} matrix ({e})") from None
    anns = rec["anns"]
    if not isinstance(anns, dict):
        raise RecordError(f"record annotations are a {type(anns).__name__}, not a dict")
    out = {}
    for name, (dtype, shape) in ANN_FIELDS.items():
        if name not in anns:
            raise RecordError(f"record annotations miss field {name}")
        try:
            out[name] = np.asarray(anns[name], dtype=dtype).reshape(shape)
        except (TypeError, ValueError) as e:  # wrong shape or non-numeric values
            raise RecordError(f"annotation field {name} is not {dtype.__name__} of shape {shape} ({e})") from None
    for name in ("instance_tokens", "ann_tokens"):
        out[name] = list(anns.get(name, []))
    rec["anns"] = out
    return rec


def encode_meta(meta: dict) -> bytes:
    """msgpack bytes of the ``__meta__`` dict; it must hold every key of META_FIELDS."""
    missing = [k for k in META_FIELDS if k not in meta]
    if missing:
        raise ValueError(f"meta misses key(s) {', '.join(missing)}")
    return msgpack.packb(meta, use_bin_type=True)


def decode_meta(raw: bytes) -> dict:
    """The ``__meta__`` dict; raises RecordError if it is not one of this format."""
    try:
        meta = msgpack.unpackb(raw, raw=False)
    except Exception as e:  # msgpack raises several types for corrupt input
        raise RecordError(f"__meta__ is not msgpack ({type(e).__name__}: {e})") from None
    if not isinstance(meta, dict) or any(k not in meta for k in META_FIELDS):
        raise RecordError("__meta__ is not a meta dict of this format: re-pack the data")
    if meta["format"] != RECORD_FORMAT:
        raise RecordError(
            f"records of format {meta['format']!r}, this library reads format {RECORD_FORMAT}: re-pack the data"
        )
    return meta
