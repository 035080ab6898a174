"""The one error boundary of the console scripts: an expected failure becomes one line and exit 2; a bug keeps its
traceback, followed by a line asking to report it (exit 1).

Expected: our own errors (Fcos3dError and the ValueErrors of fcos3d modules), OSError (named file, and what to do
for a full disk, a missing permission, a file where a folder belongs), MemoryError, and the errors of the
libraries that read user files (lmdb, protobuf/onnx, TOML, TVM). Library code raises; only this module decides.
"""

from __future__ import annotations

import errno
import os
import sys
import traceback
from typing import NoReturn

import click

__all__ = ["expected_message", "one_line", "onnx_error", "run_command"]

REPORT = "this is a bug in fcos3d: please report it with the traceback above and the command line"

_OS_FIX = {
    errno.ENOSPC: "the disk is full: free space and re-run (outputs are written whole or not at all: the previous "
    "ones are intact)",
    errno.EDQUOT: "the disk quota is used up: free space and re-run",
    errno.EACCES: "permission denied: fix its permissions or choose another path",
    errno.EPERM: "operation not permitted: fix its permissions or choose another path",
    errno.EROFS: "a read-only file system: choose another path",
    errno.ENOTDIR: "a part of this path is a file, not a folder: choose another path",
    errno.EISDIR: "is a folder: name a file",
    errno.ENOENT: "no such file or folder: check the path",
    errno.ENAMETOOLONG: "the name is too long: choose a shorter path",
    errno.ENOTEMPTY: "the folder is not empty: move it away or choose another path",
    errno.EEXIST: "already exists: move it away or choose another path",
}


def one_line(text: str) -> str:
    """The message as one line. A DataLoader worker's error arrives wrapped ("Caught X in DataLoader worker
    process 0. Original Traceback ..."): its last line, the worker's own message, is the one to show."""
    text = str(text).strip()
    if "Original Traceback" in text:
        last = text.splitlines()[-1]
        head, sep, rest = last.partition(": ")
        text = rest if sep and "." in head and " " not in head else last
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[0] if lines else ""


def _os_message(exc: OSError) -> str:
    fix = _OS_FIX.get(exc.errno or -1, exc.strerror or type(exc).__name__)
    if exc.errno == errno.EEXIST and exc.filename is not None and os.path.isfile(exc.filename):
        fix = "a file where a folder is needed: move it away or choose another path"
    if exc.filename is None:
        return f"{exc.strerror or exc}: {fix}" if exc.strerror and fix != exc.strerror else str(exc)
    where = str(exc.filename) if exc.filename2 is None else f"{exc.filename} -> {exc.filename2}"
    return f"{where}: {exc.strerror}; {fix}" if exc.strerror and fix != exc.strerror else f"{where}: {fix}"


def expected_message(exc: BaseException) -> str | None:
    """The one line for an expected failure, or None for a bug (whose traceback should be seen)."""
    mod = type(exc).__module__ or ""
    first = one_line(str(exc)) or type(exc).__name__
    if mod.startswith("fcos3d.") or mod == "fcos3d":
        return first  # our errors name the file and the fix
    if isinstance(exc, OSError):
        return _os_message(exc)
    if isinstance(exc, MemoryError):
        return (
            "out of memory: a size is impossibly large for this machine (check --image-size, --set batch_size "
            "and the model's input shape)"
        )
    if isinstance(exc, RuntimeError) and "killed by signal: Bus error" in str(exc):
        # DataLoader's own text blames shared memory; data.mdb is checked when opened, so this is a file cut
        # short while in use
        return (
            "a data loader worker died of SIGBUS: a memory-mapped file it was reading (the LMDB's data.mdb?) was "
            "cut short while in use; copy or re-pack the LMDB again and re-run (--resume continues training)"
        )
    if isinstance(exc, UnicodeDecodeError):
        return f"a file that should be UTF-8 text is not ({first}): check the path"
    if mod == "lmdb" or mod.startswith("lmdb."):
        return (
            f"LMDB: {first} ({type(exc).__name__}): the LMDB is damaged or the disk is full; re-run `fcos3d data pack`"
        )
    if mod.startswith("google.protobuf") or mod.startswith("onnx"):
        return f"not a valid ONNX model ({type(exc).__name__}: {first}); export it again with `fcos3d export`"
    if mod == "tomllib" or mod.startswith("tomllib."):
        return f"TOML syntax error ({first}): fix the board file"
    if mod.startswith("tvm"):
        return f"TVM failed ({type(exc).__name__}: {first[:300]}); if the input is valid, this is a bug: report it"
    return None


def onnx_error(path, exc: BaseException):
    """An Fcos3dError naming ``path`` when ``exc`` is onnx/protobuf failing to read it, else None."""
    from fcos3d.errors import Fcos3dError

    mod = type(exc).__module__ or ""
    if not (mod.startswith("google.protobuf") or mod.startswith("onnx")):
        return None
    first = one_line(str(exc)) or type(exc).__name__
    return Fcos3dError(
        f"{path}: not a valid ONNX model ({type(exc).__name__}: {first[:200]}); export it again with `fcos3d export`"
    )


def run_command(command: click.Command, prog_name: str) -> NoReturn:
    """Run a click command under the boundary and exit: 0 on success, the command's own exit code, 2 for a usage
    error or an expected failure (one line on stderr), 130 when interrupted, 1 (with the traceback) for a bug."""
    try:
        rv = command.main(prog_name=prog_name, standalone_mode=False)
    except (click.exceptions.Abort, KeyboardInterrupt):
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except SystemExit:
        raise
    except Exception as exc:
        msg = expected_message(exc)
        if msg is None:
            traceback.print_exc()
            click.echo(f"error: {REPORT}", err=True)
            sys.exit(1)
        click.echo(f"error: {msg}", err=True)
        code = getattr(exc, "exit_code", 2)
        sys.exit(code if isinstance(code, int) else 2)
    sys.exit(rv if isinstance(rv, int) else 0)
