"""Run a compiled artifact (model.so + meta.json) with TVM's Relax VM, locally or on a board over TVM RPC.

Checks meta.json against the library before loading (ELF machine, truncation, every file's sha256, ONNX sha256,
TVM versions) and returns raw integer outputs named as in meta.json, for bit-exact comparison with the simulator.
Every RPC call has a timeout (a board that never answers is a DeviceError, not a hang). Never imports torch.
"""

from __future__ import annotations

import os
import platform
import socket
import struct
import threading
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fcos3d.artifact import FIX as _FIX
from fcos3d.artifact import ArtifactError, check_files, check_onnx, check_versions, library_path, read_meta
from fcos3d.errors import Fcos3dError
from fcos3d.io import sha256_file

__all__ = [
    "DEFAULT_RPC_TIMEOUT",
    "Artifact",
    "ArtifactError",
    "DeviceError",
    "ElfInfo",
    "load_artifact",
    "read_elf",
    "parse_device",
]

# Seconds an RPC connect, upload, load or run may take before the board counts as not answering: a board that
# accepts the connection and never answers would otherwise hang the caller for ever. One run of FCOS3D on a
# small Arm board takes seconds; uploading a library of some MB over a slow link, tens of seconds.
DEFAULT_RPC_TIMEOUT = 60.0

# ELF e_machine values (System V gABI) of the architectures a board can have, and the names
# platform.machine() / a target triple use for them.
_ELF_MACHINES = {62: "x86_64", 183: "aarch64", 40: "arm", 243: "riscv64", 3: "i386"}
_ARCH_ALIASES = {
    "amd64": "x86_64",
    "x86-64": "x86_64",
    "arm64": "aarch64",
    "armv7": "arm",
    "armv7l": "arm",
    "armv8": "aarch64",
    "i686": "i386",
    "x86": "i386",
}


class DeviceError(Fcos3dError):
    """The board could not be reached over TVM RPC, or it could not load or run the library."""


def _arch(name: str) -> str:
    """``x86_64`` / ``aarch64`` / ... from a machine name or the first field of a target triple."""
    a = name.split("-")[0].lower()
    return _ARCH_ALIASES.get(a, a)


# -- the library ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ElfInfo:
    """What the ELF header says: ``arch`` (x86_64, aarch64, ... or ``machine-<n>``), 64-bit or not, the size
    the headers need (``needed_bytes``, program segments and section table included) and the file's size."""

    arch: str
    is_64: bool
    needed_bytes: int
    size: int


def read_elf(path: Path) -> ElfInfo:
    """Parse an ELF shared library's header (no loading). A file that is not ELF, or shorter than its own
    program segments or section header table say (a truncated copy), raises ArtifactError."""
    data = Path(path).read_bytes()
    size = len(data)
    if size < 52 or data[:4] != b"\x7fELF":
        raise ArtifactError(f"{path}: not an ELF shared library ({size} bytes); {_FIX}")
    is_64, little = data[4] == 2, data[5] == 1
    e = "<" if little else ">"
    try:
        machine = struct.unpack_from(e + "H", data, 18)[0]
        if is_64:
            phoff, shoff = struct.unpack_from(e + "QQ", data, 32)
            phentsize, phnum, shentsize, shnum = struct.unpack_from(e + "HHHH", data, 54)
        else:
            phoff, shoff = struct.unpack_from(e + "II", data, 28)
            phentsize, phnum, shentsize, shnum = struct.unpack_from(e + "HHHH", data, 42)
        needed = max(phoff + phentsize * phnum, shoff + shentsize * shnum)
        for k in range(phnum):  # every segment's bytes must be in the file (PT_LOAD and the rest)
            at = phoff + k * phentsize
            if at + phentsize > size:
                break  # the header table itself is cut: `needed` already exceeds the size
            if is_64:
                p_offset, p_filesz = (
                    struct.unpack_from(e + "Q", data, at + 8)[0],
                    struct.unpack_from(e + "Q", data, at + 32)[0],
                )
            else:
                p_offset, p_filesz = (
                    struct.unpack_from(e + "I", data, at + 4)[0],
                    struct.unpack_from(e + "I", data, at + 16)[0],
                )
            needed = max(needed, p_offset + p_filesz)
    except struct.error:
        raise ArtifactError(
            f"{path}: the ELF header is cut short ({size} bytes): the library is truncated; {_FIX}"
        ) from None
    if needed > size:
        raise ArtifactError(
            f"{path}: truncated library ({size} bytes, its headers need {needed}): copy it again or {_FIX}"
        )
    return ElfInfo(_ELF_MACHINES.get(machine, f"machine-{machine}"), is_64, needed, size)


# -- meta.json against the library --------------------------------------------------------------------------


def _check_library(meta: dict, meta_path: Path, lib_path: Path, board: str | None, local: bool) -> ElfInfo:
    """model.so is whole, and built for the machine meta.json's target names (and, run locally, for this one)."""
    if board is not None and meta["board"] != board:
        raise ArtifactError(
            f"{meta_path}: compiled for board {meta['board']!r}, not {board!r}: {_FIX} --target {board}"
        )
    if not lib_path.is_file():
        raise ArtifactError(f"{lib_path} is missing; {_FIX}")
    elf = read_elf(lib_path)
    triple = str((meta.get("target") or {}).get("mtriple", ""))
    if triple and _arch(triple) != elf.arch:
        raise ArtifactError(
            f"{lib_path} is an {elf.arch} library but {meta_path} says board {meta['board']!r} "
            f"({triple}): the two do not belong together; {_FIX} --target {meta['board']}"
        )
    if local and elf.arch != _arch(platform.machine()):
        raise ArtifactError(
            f"{lib_path} is an {elf.arch} library (board {meta['board']!r}), this machine is "
            f"{platform.machine()}: run it on the board (device='HOST:PORT', TVM RPC) or "
            f"{_FIX} --target host"
        )
    return elf


# -- devices ----------------------------------------------------------------------------------------------------


def parse_device(device: str | None) -> tuple[str, int] | None:
    """None / "local" / "cpu" -> None (this process); "HOST:PORT" -> (host, port) of a TVM RPC server."""
    if device is None or device in ("local", "cpu"):
        return None
    host, sep, port = str(device).rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise Fcos3dError(
            f"device={device!r}: use 'local' or 'HOST:PORT' of a running "
            "`python -m tvm.exec.rpc_server --host HOST --port PORT`"
        )
    return host, int(port)


# Open RPC sessions by "host:port", alive while an Artifact holds them. tvm.exec.rpc_server serves one session
# at a time (a second connect waits until the first closes), so artifacts on the same board share one session.
_SESSIONS: weakref.WeakValueDictionary = weakref.WeakValueDictionary()


def _shutdown_sockets_to(where: str) -> None:
    """Shut down this process's TCP sockets connected to ``where`` ("host:port"); Linux (/proc), else nothing."""
    host, _, port = where.rpartition(":")
    try:
        addrs = {a[4][0] for a in socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM)}
        fds = [int(n) for n in os.listdir("/proc/self/fd")]
    except (OSError, ValueError):
        return
    for fd in fds:
        try:
            if not os.readlink(f"/proc/self/fd/{fd}").startswith("socket:"):
                continue
            sock = socket.socket(fileno=os.dup(fd))
        except OSError:
            continue
        try:
            peer = sock.getpeername()
            if isinstance(peer, tuple) and peer[1] == int(port) and peer[0] in addrs:
                sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        finally:
            sock.close()  # closes the duplicate only


def _timed(fn, timeout: float, what: str, where: str):
    """``fn()`` in a helper thread, given ``timeout`` seconds: a board that never answers becomes a DeviceError
    instead of a hang. TVM releases the GIL in its calls, so the wait here ends on time; the stuck call is left
    in its daemon thread (its session is dropped and never used again)."""
    box: dict = {}

    def call():
        try:
            box["value"] = fn()
        except BaseException as exc:  # handed to the caller's thread below
            box["error"] = exc

    worker = threading.Thread(target=call, name=f"fcos3d-rpc {what}", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        _SESSIONS.pop(where, None)
        # Wake the stuck call: with its socket shut down, TVM's blocked read fails and the thread ends (a thread
        # left blocked inside TVM would abort the interpreter at exit).
        _shutdown_sockets_to(where)
        worker.join(5.0)
        raise DeviceError(
            f"{where}: no answer within {timeout:g} s while {what}: is `python -m tvm.exec.rpc_server` (and "
            "not some other program) listening there, and is the board busy? Pass a longer --rpc-timeout for a "
            "slow board"
        )
    if "error" in box:
        raise box["error"]
    return box["value"]


def _connect(host: str, port: int, timeout: float):
    from tvm import rpc

    key = f"{host}:{port}"
    session = _SESSIONS.get(key)
    if session is not None:
        return session
    try:
        session = _timed(lambda: rpc.connect(host, port), timeout, "connecting", key)
    except DeviceError:
        raise
    except Exception as exc:  # tvm raises its own error classes (InternalError, TVMError) for socket failures
        raise DeviceError(
            f"cannot reach a TVM RPC server at {host}:{port} ({type(exc).__name__}): start "
            f"`python -m tvm.exec.rpc_server --host {host} --port {port}` on the board"
        ) from None
    _SESSIONS[key] = session
    return session


@dataclass
class Artifact:
    """A loaded artifact: ``run(x)`` -> ``{output name: int8/int32 array}`` in meta.json's order.

    ``device``: "local", or "HOST:PORT" when the library runs on a board over TVM RPC (same API, same outputs).
    """

    path: Path
    meta: dict
    _vm: object
    _dev: object
    device: str = "local"
    elf: ElfInfo | None = None
    _session: object = None  # the RPC session, kept alive as long as the artifact
    timeout: float = DEFAULT_RPC_TIMEOUT  # seconds per remote run (RPC only)

    @property
    def input_names(self) -> list[str]:
        return [i["name"] for i in self.meta["inputs"]]

    @property
    def output_names(self) -> list[str]:
        return [o["name"] for o in self.meta["outputs"]]

    def _invoke(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        import tvm

        fn = self.meta["function"]
        args = [tvm.runtime.tensor(v, self._dev) for v in arrays]
        # set_input / invoke_stateful / get_outputs rather than vm[fn](*args): the stateful calls are the ones that
        # work over RPC (a remote call cannot return the result tuple), and one path serves both devices.
        self._vm.set_input(fn, *args)
        self._vm.invoke_stateful(fn)
        result = self._vm.get_outputs(fn)
        result = result if isinstance(result, (tuple, list)) else (result,)
        return [r.numpy() for r in result]

    def run(self, x: np.ndarray | Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """int8 (N, C, H, W) input(s) -> raw outputs. ``x``: one array, or ``{input name: array}``."""
        if len(self.input_names) != 1 and not isinstance(x, Mapping):
            raise ValueError(f"the artifact has inputs {self.input_names}: pass a dict")
        given = dict(x) if isinstance(x, Mapping) else {self.input_names[0]: x}
        arrays = []
        for spec in self.meta["inputs"]:
            if spec["name"] not in given:
                raise KeyError(f"missing input {spec['name']!r}")
            v = np.ascontiguousarray(given[spec["name"]])
            if v.dtype != np.int8 or list(v.shape) != list(spec["shape"]):
                raise TypeError(f"input {spec['name']!r} must be int8 {spec['shape']}, got {v.dtype} {list(v.shape)}")
            arrays.append(v)
        lib = self.path / self.meta["library"]
        try:
            if self._session is None:
                result = self._invoke(arrays)
            else:
                result = _timed(lambda: self._invoke(arrays), self.timeout, f"running {lib}", self.device)
        except DeviceError:
            raise
        except Exception as exc:  # TVM's own error classes: a check inside the module failed
            first = str(exc).strip().splitlines()
            first = first[0] if first else type(exc).__name__
            if self._session is not None:
                raise DeviceError(f"{self.device}: running {lib} failed on the board: {first}") from None
            raise ArtifactError(
                f"{lib}: running it failed ({first[:200]}): {self.path / 'meta.json'} does not describe this "
                f"library's inputs; {_FIX}"
            ) from None
        specs = self.meta["outputs"]
        if len(result) != len(specs):
            raise ArtifactError(
                f"{self.path / 'meta.json'} lists {len(specs)} outputs, {self.meta['library']} returns "
                f"{len(result)}: the two do not belong together; {_FIX}"
            )
        out = {}
        for spec, a in zip(specs, result, strict=True):
            if str(a.dtype) != spec["dtype"] or list(a.shape) != list(spec["shape"]):
                raise ArtifactError(
                    f"{self.path / 'meta.json'}: output {spec['name']!r} is {spec['dtype']} "
                    f"{spec['shape']}, the library returns {a.dtype} {list(a.shape)}; {_FIX}"
                )
            out[spec["name"]] = a
        return out


def load_artifact(
    path: str | Path,
    device: str | None = None,
    onnx_path: str | Path | None = None,
    board: str | None = None,
    timeout: float = DEFAULT_RPC_TIMEOUT,
) -> Artifact:
    """Open an artifact folder and load model.so into a Relax VM, on this CPU or on a board over TVM RPC; an
    Ethos-U artifact (meta.json backend "tosa") opens on the TOSA reference model (runtime/tosa_reference.py).

    Checks first, each failure one ArtifactError naming the file and the fix: meta.json is valid; model.so is a
    whole ELF library for the machine meta.json's target names (run locally: for this machine); the TVM versions
    match the ones it was compiled with; the ONNX (``onnx_path``, else meta.json's path if that file is still
    there) has the sha256 compiled from; meta.json's board is ``board`` when given; every file of the folder
    has the sha256 meta.json records (a model.so from another compile is refused, never run).
    ``device``: None / "local", or "HOST:PORT" of `python -m tvm.exec.rpc_server` on the board. That server
    serves one client session at a time: artifacts loaded here share it, another client waits until it closes.
    ``timeout``: seconds the board may take to answer a connect, an upload, a load or a run (DeviceError after).
    """
    import tvm
    from tvm import relax

    path = Path(path)
    meta, meta_path = read_meta(path)
    remote = parse_device(device)
    if meta.get("backend") == "tosa":  # an Ethos-U artifact: model.tosa on the TOSA reference model, here
        if remote is not None:
            raise Fcos3dError(
                f"{meta_path}: a TOSA artifact for {meta.get('board')!r} runs on the TOSA reference model on this "
                f"machine (the NPU's integer spec, no hardware); drop --device {device}"
            )
        from .tosa_reference import load_tosa_artifact

        return load_tosa_artifact(path, onnx_path=onnx_path, board=board)
    lib_path = library_path(meta, meta_path)
    elf = _check_library(meta, meta_path, lib_path, board, local=remote is None)
    check_files(meta, meta_path)
    check_versions(meta, meta_path)
    check_onnx(meta, meta_path, onnx_path)

    if remote is None:
        # TVM pins its pool's threads by default; with a one-thread pool it pins the calling thread to core 0, and
        # every thread made after that (torch's, onnxruntime's) inherits the one core (PERFORMANCE.md, "Why 2
        # threads don't scale"). Unless the user chose, leave the process's CPUs as they are.
        os.environ.setdefault("TVM_BIND_THREADS", "0")
        try:
            lib = tvm.runtime.load_module(str(lib_path))
        except Exception as exc:  # a library that passes the header checks but still does not load
            raise ArtifactError(
                f"{lib_path} does not load ({str(exc).splitlines()[0] if str(exc) else exc!r}); {_FIX}"
            ) from None
        dev = tvm.cpu()
        return Artifact(path, meta, relax.VirtualMachine(lib, dev), dev, "local", elf)

    host, port = remote
    if not timeout > 0:
        raise Fcos3dError(f"RPC timeout {timeout!r}: give a positive number of seconds")
    session = _connect(host, port, timeout)
    where = f"{host}:{port}"
    # A name unique per library content: a board keeps uploads in one folder per session, and dlopen caches by name.
    remote_name = f"fcos3d-{sha256_file(lib_path)[:16]}.so"
    try:
        _timed(lambda: session.upload(str(lib_path), remote_name), timeout, f"uploading {lib_path}", where)
        lib = _timed(lambda: session.load_module(remote_name), timeout, f"loading {remote_name}", where)
    except DeviceError:
        raise
    except Exception as exc:
        first = str(exc).strip().splitlines()
        raise DeviceError(
            f"{host}:{port}: the board could not load {lib_path} ({elf.arch}, board {meta['board']!r}): "
            f"{first[-1] if first else type(exc).__name__}; is it the board this artifact was "
            f"compiled for? Otherwise {_FIX} --target <board>"
        ) from None
    dev = session.cpu()
    vm = _timed(lambda: relax.VirtualMachine(lib, dev), timeout, "starting the Relax VM", where)
    return Artifact(path, meta, vm, dev, where, elf, session, timeout)
