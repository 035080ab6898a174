"""Test helpers of the runtime: a small QDQ graph compiled to an artifact, and TVM RPC servers as subprocesses.

``rpc_server(cmd)`` starts `tvm.exec.rpc_server` on a free port (here, or on the emulated Arm board of
scripts/make_arm_board.sh), waits until it completes an RPC handshake and kills its process group at the end.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
from qdq_graphs import QDQGraphBuilder

ARM_BOARD_DIR = Path(os.environ.get("FCOS3D_ARM_BOARD", Path.home() / ".cache" / "fcos3d" / "arm64-rootfs"))
SHAPE = (1, 3, 16, 16)


def small_model(seed: int = 0) -> onnx.ModelProto:
    """Conv+ReLU -> depthwise 3x3 stride 2 and stride 1, + ReLU (their padding made inside their kernel) -> skip add
    -> max pool -> nearest x2 -> int32 head, with an int8 side output."""
    b = QDQGraphBuilder(seed=seed)
    x = b.input(SHAPE)
    y = b.conv(x, 8, relu=True)  # (1, 8, 16, 16)
    y = b.conv(y, 8, stride=2, groups=8, relu=True)  # depthwise, (1, 8, 8, 8)
    y = b.conv(y, 8, groups=8, relu=True)  # depthwise, (1, 8, 8, 8)
    y = b.add(y, b.conv(y, 8, kernel=1, pad=0), relu=True)
    b.output(y)
    y = b.resize(b.maxpool(y, 3, 2, 1), 2)  # (1, 8, 8, 8)
    b.conv(y, 5, kernel=1, pad=0, int32_output=True)  # (1, 5, 8, 8) int32
    return b.build()


def write_artifact(folder: Path, board: str, seed: int = 0) -> tuple[Path, Path]:
    """Save small_model(seed) as folder/model.onnx and compile it for ``board`` into folder/<board>/."""
    from fcos3d.compiler.build import compile_onnx

    folder.mkdir(parents=True, exist_ok=True)
    onnx_path = folder / "model.onnx"
    onnx.save(small_model(seed), onnx_path)
    compile_onnx(onnx_path, board, folder / board)
    return onnx_path, folder / board


def random_inputs(n: int, seed: int = 1) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(-128, 128, size=SHAPE, dtype=np.int8) for _ in range(n)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def host_server_cmd() -> list[str]:
    """`python -m tvm.exec.rpc_server` with this interpreter (the x86 "board")."""
    return [sys.executable, "-m", "tvm.exec.rpc_server"]


def arm_server_cmd() -> list[str] | None:
    """The emulated Arm board's server, or None when scripts/make_arm_board.sh has not built it."""
    if not (ARM_BOARD_DIR / ".complete").is_file():
        return None
    return [str(ARM_BOARD_DIR / "python3"), str(ARM_BOARD_DIR / "rpc_server.py")]


@contextlib.contextmanager
def rpc_server(cmd: list[str], log_path: Path, timeout: float = 120.0):
    """Yield "127.0.0.1:PORT" of a running server started by ``cmd``; kill it (its process group) afterwards."""
    from tvm import rpc

    port = free_port()
    log = open(log_path, "wb")
    # The server forks a worker per session: a new session (process group) lets teardown end them all.
    proc = subprocess.Popen(
        [*cmd, "--host", "127.0.0.1", "--port", str(port), "--port-end", str(port + 1)],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the RPC server exited with {proc.returncode}: {log_path.read_text()[-2000:]}")
            try:
                rpc.connect("127.0.0.1", port)  # a real handshake: the server accepts sessions
                break
            except Exception:  # tvm's InternalError while nothing listens yet
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"no RPC server on port {port} after {timeout} s: {log_path.read_text()[-2000:]}"
                    ) from None
                time.sleep(0.5)
        yield f"127.0.0.1:{port}"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()
