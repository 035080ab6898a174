"""Atomic writes of files and folders (a temp beside the target, fsync, rename) and file hashes, standard library only.

A reader never sees a half-written output: an interrupted run leaves the old file or folder (or none), not a
torn one. Temps are named ``.<name>.tmp-<pid>-<random>``; the next write of the same target removes those
whose process is gone (clean_stale), so a killed run leaves nothing behind for long.
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import json
import math
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

__all__ = [
    "atomic_dir",
    "atomic_writer",
    "atomic_write_bytes",
    "atomic_write_text",
    "atomic_write_json",
    "clean_stale",
    "sha256_bytes",
    "sha256_file",
]

_TMP, _OLD = "tmp", "old"


def _temp_prefix(path: Path, kind: str) -> str:
    return f".{path.name}.{kind}-{os.getpid()}-"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _remove(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p, ignore_errors=True)
    else:
        try:
            p.unlink()
        except FileNotFoundError:
            pass


def clean_stale(path) -> list[Path]:
    """Remove the temps of ``path`` that killed runs left (``.<name>.tmp-<pid>-*`` / ``.old-``, pid gone or ours).

    A folder moved aside by a replace that was killed before the new one went in is moved back instead, so the
    previous output is never lost. Returns what was removed or restored. Anything else there is left alone.
    """
    path = Path(path)
    pattern = re.compile(rf"^\.{re.escape(path.name)}\.({_TMP}|{_OLD})-(\d+)(-[^/]*)?$")
    stale = []
    try:
        entries = list(path.parent.iterdir())
    except OSError:  # no parent folder yet
        return []
    for p in sorted(entries):
        m = pattern.match(p.name)
        if m and (int(m.group(2)) == os.getpid() or not _pid_alive(int(m.group(2)))):
            stale.append((m.group(1), p))
    done = []
    for kind, p in stale:
        if kind == _OLD and not os.path.lexists(path):
            os.rename(p, path)  # killed between the two renames of _replace_dir: the old output comes back
        else:
            _remove(p)
        done.append(p)
    return done


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems refuse fsync on a folder
        pass
    finally:
        os.close(fd)


def _with_filename(exc: OSError, path: Path) -> OSError:
    """The same OSError with ``path`` as its filename when it had none (a failed write names no file)."""
    if exc.filename is None and exc.errno is not None:
        return type(exc)(exc.errno, exc.strerror or os.strerror(exc.errno), str(path))
    return exc


@contextmanager
def atomic_writer(path) -> Iterator[BinaryIO]:
    """A binary file that appears at ``path`` only when the block ends without an exception.

    An OSError (disk full, permission, ``path`` is a folder) names ``path`` and leaves the old file and no temp.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(path)
    # The temp file must live in the target folder: os.replace is atomic only within one file system.
    fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(path, _TMP), dir=path.parent)
    try:
        # mkstemp makes the file 0600; give it the mode an ordinary open() would (0666 less the umask).
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)
        with os.fdopen(fd, "wb") as f:
            try:
                yield f
                f.flush()
                os.fsync(f.fileno())
            except OSError as exc:
                raise _with_filename(exc, path) from None
        if path.is_dir():
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write_bytes(path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically, creating parent folders; returns the path."""
    with atomic_writer(path) as f:
        f.write(data)
    return Path(path)


def atomic_write_text(path, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically; returns the path."""
    return atomic_write_bytes(path, text.encode(encoding))


def atomic_write_json(path, obj, *, indent: int | None = None, allow_nan: bool = True) -> Path:
    """Serialise ``obj`` as JSON and write it atomically; returns the path.

    allow_nan=False makes NaN/inf an error (ValueError) instead of the non-standard tokens NaN/Infinity,
    for files that strict JSON readers must accept. The object is serialised before anything is
    written, so a serialisation error leaves the old file untouched.
    """
    text = json.dumps(obj, indent=indent, allow_nan=allow_nan)
    return atomic_write_text(path, text + "\n")


def json_plain(v, *, inf_as_text: bool = False):
    """A JSON-safe copy of ``v`` for strict readers: mappings (keys as str) and lists/tuples recursively, numpy
    scalars to Python numbers (anything with ``item()`` that is not a container), NaN to None, and +-inf to None or,
    with ``inf_as_text``, to "inf" / "-inf" (where an infinite SQNR means "equal" and must survive)."""
    if isinstance(v, dict) or hasattr(v, "items") and hasattr(v, "keys"):
        return {str(k): json_plain(x, inf_as_text=inf_as_text) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [json_plain(x, inf_as_text=inf_as_text) for x in v]
    if hasattr(v, "item") and not hasattr(v, "__len__"):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return ("inf" if v > 0 else "-inf") if inf_as_text and not math.isnan(v) else None
    return v


# -- folders ----------------------------------------------------------------------------------------------------

_RENAME_EXCHANGE = 2  # linux/fs.h


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step (Linux renameat2 RENAME_EXCHANGE); False where the system cannot."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd = -100
    rc = renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), _RENAME_EXCHANGE)
    if rc == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def _replace_dir(tmp: Path, path: Path) -> None:
    """Put folder ``tmp`` at ``path``; an existing folder there goes away only once the new one is in place."""
    if not os.path.lexists(path):
        os.rename(tmp, path)
        return
    if _exchange(tmp, path):
        shutil.rmtree(tmp, ignore_errors=True)  # now holds the old folder
        return
    # Two renames: between them ``path`` is missing; clean_stale moves the old folder back if killed there.
    old = Path(tempfile.mkdtemp(prefix=_temp_prefix(path, _OLD), dir=path.parent))
    os.rmdir(old)
    os.rename(path, old)
    os.rename(tmp, path)
    shutil.rmtree(old, ignore_errors=True)


@contextmanager
def atomic_dir(path) -> Iterator[Path]:
    """Yield a temp folder beside ``path`` that replaces ``path`` (a folder or nothing) only when the block
    ends without an exception; on an exception it is removed and ``path`` is untouched.

    The caller decides beforehand whether an existing ``path`` may be replaced (atomic_dir never checks what
    is in it). Files written into the temp folder are fsynced before the rename.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(path)
    if os.path.lexists(path) and not path.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(path))
    tmp = Path(tempfile.mkdtemp(prefix=_temp_prefix(path, _TMP), dir=path.parent))
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it 0700
        yield tmp
        for root, _, files in os.walk(tmp):
            for name in files:
                fd = os.open(os.path.join(root, name), os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
        _fsync_dir(tmp)
        _replace_dir(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


# -- hashes -----------------------------------------------------------------------------------------------------


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB blocks (the one file hash of the project)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
