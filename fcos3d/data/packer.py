"""Pack one nuScenes split into an LMDB of msgpack records, one per camera image (like HAT's packer).

Reader processes read the JPEGs and build the records; this process is the single LMDB writer. The
LMDB is written into a temporary folder beside the target and renamed into place only on success.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import shutil
import time
from pathlib import Path

from ..errors import Fcos3dError
from .devkit import check_images_exist, load_nuscenes, split_image_infos, split_meta, split_scenes
from .mono import build_record
from .record import LEN_KEY, META_KEY, encode_meta, encode_record, index_key

__all__ = ["pack_nuscenes", "lmdb_path"]

MAP_SIZE = 1 << 40  # 1 TiB of address space: the file only grows as written (sparse), so it costs nothing
COMMIT_EVERY = 256  # records per write transaction: per-record commits are ~15x slower
_TMP_TAG = ".tmp-"
_OLD_TAG = ".old-"


def lmdb_path(target_data_dir, split_name: str) -> Path:
    """Where the LMDB of a split goes: ``<target>/<split>_lmdb``."""
    return Path(target_data_dir) / f"{split_name}_lmdb"


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
    record = build_record(info, img_bytes)
    return encode_record(record), len(record["anns"]["labels"])


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _clean_stale(final: Path) -> None:
    """Remove temp/old folders of this target left by killed runs (their pid is gone, or is ours)."""
    for p in final.parent.glob(f".{final.name}*"):
        for tag in (_TMP_TAG, _OLD_TAG):
            head, sep, pid = p.name.rpartition(tag)
            if sep and head == f".{final.name}" and pid.isdigit():
                if int(pid) == os.getpid() or not _pid_alive(int(pid)):
                    shutil.rmtree(p, ignore_errors=True)


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
    final.parent.mkdir(parents=True, exist_ok=True)
    _clean_stale(final)
    tmp = final.parent / f".{final.name}{_TMP_TAG}{os.getpid()}"
    total = len(infos)
    n_boxes = 0
    try:
        import lmdb

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
        # A directory cannot be os.replace'd onto a non-empty one: move the old one aside first, so
        # the target is either the old or the new complete LMDB (missing only between two renames).
        old = final.parent / f".{final.name}{_OLD_TAG}{os.getpid()}"
        if final.exists():
            os.rename(final, old)
        os.rename(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
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
