"""The packed LMDBs of the session's synthetic nuScenes (fixture ``synth_nusc``), packed once per process.

Test modules of the data loader share them through packed_lmdb(); nothing here is collected as a test.
"""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path


@functools.cache
def _workdir() -> Path:
    d = Path(tempfile.mkdtemp(prefix="fcos3d_packed_"))
    atexit.register(shutil.rmtree, d, ignore_errors=True)
    return d


@functools.cache
def packed_lmdb(root: Path, version: str, split: str) -> Path:
    """The LMDB of a split of the nuScenes root (treat as read-only: copy it before breaking it)."""
    from fcos3d.data.packer import pack_nuscenes

    out = _workdir() / f"{abs(hash((str(root), version))):x}"
    return Path(pack_nuscenes(root, split, version, out, num_workers=0)["path"])
