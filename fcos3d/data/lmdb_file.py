"""Opening a packed LMDB safely: its data.mdb checked against its own meta pages before lmdb maps it.

lmdb maps data.mdb into memory; a file shorter than its last page (what an interrupted copy leaves) kills the
process with SIGBUS on the first read past the end, with no message. One stat and two page reads prevent it.
"""

from __future__ import annotations

import struct
from pathlib import Path

from ..errors import Fcos3dError

__all__ = ["check_data_mdb", "open_lmdb"]

# LMDB's on-disk meta page (lmdb 0.9, mdb.c: MDB_page header then MDB_meta), little-endian 64-bit builds:
# page header 16 bytes; MDB_meta: mm_magic u32, mm_version u32, mm_address ptr, mm_mapsize size_t,
# mm_dbs[2] (48 bytes each; mm_dbs[0].md_pad holds the page size), mm_last_pg u64, mm_txnid u64.
_MAGIC = 0xBEEFC0DE
_HEADER = 16
_META = struct.Struct("<II8x8x4x44x48xQQ")  # magic, version, ..., last_pg, txnid
_PSIZE_AT = _HEADER + 24  # mm_dbs[0].md_pad
_REPACK = "re-run `fcos3d data pack` for this split (or copy the LMDB folder again)"


def _meta_page(data: bytes, at: int) -> tuple[int, int, int] | None:
    """(page size, last page, txn id) of the meta page at byte ``at``, None when it is not one."""
    if len(data) < at + _HEADER + _META.size:
        return None
    magic, _version, last_pg, txnid = _META.unpack_from(data, at + _HEADER)
    if magic != _MAGIC:
        return None
    (psize,) = struct.unpack_from("<I", data, at + _PSIZE_AT)
    return psize, last_pg, txnid


def check_data_mdb(folder: str | Path) -> None:
    """Fcos3dError (one line naming the file) unless ``folder/data.mdb`` is an LMDB data file at least as long
    as its newest meta page says (``(last page + 1) * page size``)."""
    path = Path(folder) / "data.mdb"
    try:
        with open(path, "rb") as f:
            head = f.read(2 * 65536)  # both meta pages, whatever the page size (at most 64 KiB)
            size = f.seek(0, 2)
    except OSError as e:
        raise Fcos3dError(f"{path}: cannot be read ({e.strerror}); check the path and its permissions") from None
    first = _meta_page(head, 0)
    if first is None:
        raise Fcos3dError(f"{path}: not an LMDB data file ({size} bytes, no LMDB meta page); {_REPACK}")
    psize = first[0]
    second = _meta_page(head, psize) if 512 <= psize <= 65536 else None
    pages = [m for m in (first, second) if m is not None and m[0] == psize]
    _, last_pg, _ = max(pages, key=lambda m: m[2])  # the meta page of the newest committed transaction
    need = (last_pg + 1) * psize
    if size < need:
        raise Fcos3dError(
            f"{path}: truncated ({size:,} bytes, its last page ends at {need:,}; an interrupted copy?); {_REPACK}"
        )


def open_lmdb(folder: str | Path, **kwargs):
    """``lmdb.open(folder, **kwargs)`` after check_data_mdb; lmdb's own errors become one Fcos3dError line."""
    import lmdb

    check_data_mdb(folder)
    try:
        return lmdb.open(str(folder), **kwargs)
    except lmdb.Error as e:
        raise Fcos3dError(f"{Path(folder) / 'data.mdb'}: lmdb cannot open it ({e}); {_REPACK}") from None
