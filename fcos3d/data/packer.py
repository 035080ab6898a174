"""Pack one nuScenes split into an LMDB of msgpack records, one per camera image (like HAT's packer).

Reader processes read and check the JPEGs and build the records; this process is the single LMDB writer. The
LMDB is written into a temporary folder beside the target and renamed into place only on success; a target
that is not an LMDB made here is refused, never replaced.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import time
from pathlib import Path

from ..errors import Fcos3dError
from ..io import atomic_dir
from .devkit import check_images_exist, load_nuscenes, split_image_infos, split_meta, split_scenes
from .mono import build_record
from .record import LEN_KEY, META_KEY, encode_meta, encode_record, index_key

__all__ = ["pack_nuscenes", "lmdb_path", "check_jpeg"]

MAP_SIZE = 1 << 40  # 1 TiB of address space: the file only grows as written (sparse), so it costs nothing
COMMIT_EVERY = 256  # records per write transaction: per-record commits are ~15x slower


def lmdb_path(target_data_dir, split_name: str) -> Path:
    """Where the LMDB of a split goes: ``<target>/<split>_lmdb``."""
    return Path(target_data_dir) / f"{split_name}_lmdb"


def check_jpeg(data: bytes, path, img_shape) -> None:
    """Fcos3dError naming ``path`` unless ``data`` is a whole JPEG (SOI and EOI markers) that decodes to the
    ``img_shape`` [H, W] of the table: a damaged source image is reported when packing, not when training."""
    import cv2
    import numpy as np

    fix = "replace it with the file from the nuScenes download (or re-render it), then re-run `fcos3d data pack`"
    if data[:2] != b"\xff\xd8":
        raise Fcos3dError(f"{path}: not a JPEG (no SOI marker FF D8 at the start); {fix}")
    if data.rstrip(b"\0")[-2:] != b"\xff\xd9":
        raise Fcos3dError(f"{path}: a cut-short JPEG (no EOI marker FF D9 at the end); {fix}")
    img = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise Fcos3dError(f"{path}: the JPEG does not decode; {fix}")
    h, w = img.shape[:2]
    if [h, w] != [int(v) for v in img_shape]:
        raise Fcos3dError(
            f"{path}: the JPEG is {w}x{h} but sample_data.json says {img_shape[1]}x{img_shape[0]}: fix the table "
            "or the image, then re-run `fcos3d data pack`"
        )


def _encode_image(job: tuple[dict, str]) -> tuple[bytes, int]:
    """Reader process: (record bytes, number of boxes) of one image info."""
    info, dataroot = job
    path = os.path.join(dataroot, info["file_name"])
    try:
        with open(path, "rb") as f:
            img_bytes = f.read()
    except OSError as e:  # checked upfront, so only a file removed while packing gets here
        raise Fcos3dError(
            f"cannot read image {path} ({e.strerror}): restore it and re-run `fcos3d data pack`"
        ) from None
    check_jpeg(img_bytes, path, info["img_shape"])
    record = build_record(info, img_bytes)
    return encode_record(record), len(record["anns"]["labels"])


def _check_target(final: Path) -> None:
    """Pack replaces only what pack made: a missing path, an empty folder or an LMDB folder (data.mdb and
    lock.mdb, nothing else). Anything else is refused, never deleted or hidden."""
    if not os.path.lexists(final):
        return
    if final.is_symlink() or not final.is_dir():
        raise Fcos3dError(f"{final} exists and is not an LMDB folder: move it away or pass another --target-data-dir")
    names = sorted(p.name for p in final.iterdir())
    foreign = [n for n in names if n not in ("data.mdb", "lock.mdb")]
    if foreign or (names and "data.mdb" not in names):
        raise Fcos3dError(
            f"{final} is not an LMDB made by `fcos3d data pack` (it holds {(foreign or names)[0]}): pack replaces "
            "the whole folder, so move it away or pass another --target-data-dir"
        )


def _results(jobs: list, num_workers: int):
    """Encoded records in job order: inline for num_workers=0, else from a Pool of readers."""
    if num_workers == 0:
        yield from map(_encode_image, jobs)
        return
    with multiprocessing.get_context().Pool(num_workers) as pool:
        # imap keeps the order; small chunks keep the writer busy while readers work ahead.
        yield from pool.imap(_encode_image, jobs, chunksize=4)


def pack_nuscenes(
    src_data_dir, split_name: str, version: str, target_data_dir, num_workers: int = 2, progress=None
) -> dict:
    """Pack a split ("train" or "val") of a nuScenes root into ``<target_data_dir>/<split>_lmdb``.

    Every key-frame sample of the split's scenes gives 6 records (CAMERAS order), keyed
    ``index_key(6 * sample_index + camera_index)``; ``__len__`` and ``__meta__`` as in
    fcos3d/data/record.py. An existing LMDB there is replaced only when the new one is complete.
    ``progress(done, total)`` is called after each record. Returns a summary dict (path, records,
    boxes, samples, scenes, version, split, devkit_split, seconds). Bad input raises Fcos3dError.
    """
    t0 = time.perf_counter()
    if not isinstance(num_workers, int) or num_workers < 0:
        raise Fcos3dError(
            f"num_workers={num_workers!r}: use 0 (pack in this process) or a positive number of reader processes"
        )
    nusc = load_nuscenes(src_data_dir, version, split_name)
    root = Path(nusc.dataroot)
    devkit_split, scenes = split_scenes(nusc, version, split_name)
    infos = split_image_infos(nusc, scenes)
    check_images_exist(root, infos, split_name)
    n_scenes = len(scenes)
    # The infos hold all we need: free the tables (the devkit's explorer makes a reference cycle)
    # before forking readers, which would otherwise copy the pages that refcounting touches.
    del nusc, scenes
    gc.collect()

    final = lmdb_path(target_data_dir, split_name).absolute()
    _check_target(final)
    total = len(infos)
    n_boxes = 0
    import lmdb

    # Written into a temp folder beside the target and renamed into place only when complete (fcos3d.io.atomic_dir):
    # a failure or a kill leaves the previous LMDB (or none); the next run removes the killed run's temp folder.
    with atomic_dir(final) as tmp:
        try:
            env = lmdb.open(str(tmp), map_size=MAP_SIZE, subdir=True, readahead=False, meminit=False)
            try:
                txn = env.begin(write=True)
                jobs = [(info, str(root)) for info in infos]
                for i, (raw, n) in enumerate(_results(jobs, num_workers)):
                    txn.put(index_key(i), raw)
                    n_boxes += n
                    if (i + 1) % COMMIT_EVERY == 0:
                        txn.commit()
                        txn = env.begin(write=True)
                    if progress is not None:
                        progress(i + 1, total)
                meta = split_meta(version, split_name, devkit_split, root, total)
                txn.put(LEN_KEY, str(total).encode("ascii"))
                txn.put(META_KEY, encode_meta(meta))
                txn.commit()
                env.sync(True)
            finally:
                env.close()
        except lmdb.Error as e:  # ENOSPC and other OS errors come from lmdb as its own error classes
            raise Fcos3dError(
                f"{final}: writing the LMDB failed ({type(e).__name__}: {e}); is the disk full? Free space "
                "(or pass another --target-data-dir) and re-run `fcos3d data pack`; the previous LMDB is unchanged"
            ) from None
    return {
        "path": str(final),
        "records": total,
        "boxes": n_boxes,
        "samples": total // 6,
        "scenes": n_scenes,
        "version": version,
        "split": split_name,
        "devkit_split": devkit_split,
        "seconds": round(time.perf_counter() - t0, 2),
    }
