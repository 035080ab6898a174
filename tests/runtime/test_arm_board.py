"""The `--target cortex-a55` artifact really executes: TVM's RPC server on an emulated aarch64 board (qemu-user,
built by scripts/make_arm_board.sh) runs the cross-compiled model.so, bit-exact with the simulator."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from rpc_servers import arm_server_cmd, random_inputs, rpc_server, write_artifact

from fcos3d.runtime.align import compare_outputs
from fcos3d.runtime.execute import DeviceError, load_artifact, read_elf
from fcos3d.runtime.reference.simulator import Simulator

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

if arm_server_cmd() is None:
    pytest.skip(
        "no emulated Arm board: run scripts/make_arm_board.sh (about 1-2 minutes; needs debootstrap, "
        "qemu-user-static and network) or set FCOS3D_ARM_BOARD to its folder",
        allow_module_level=True,
    )
if shutil.which("qemu-aarch64-static") is None or shutil.which("aarch64-linux-gnu-g++") is None:
    pytest.skip(
        "needs qemu-aarch64-static and aarch64-linux-gnu-g++ (apt-get install qemu-user-static g++-aarch64-linux-gnu)",
        allow_module_level=True,
    )


@pytest.fixture(scope="module")
def board(tmp_path_factory):
    """ "127.0.0.1:PORT" of tvm.exec.rpc_server running under qemu-aarch64 (starting takes ~30 s: TVM imports
    twice under emulation)."""
    with rpc_server(arm_server_cmd(), tmp_path_factory.mktemp("arm_log") / "server.log", timeout=300) as address:
        yield address


def test_arm_artifact_runs_bit_exact_on_the_emulated_board(tmp_path, board):
    onnx_path, folder = write_artifact(tmp_path, "cortex-a55", seed=7)
    assert read_elf(folder / "model.so").arch == "aarch64"
    art = load_artifact(folder, device=board, onnx_path=onnx_path, board="cortex-a55")
    sim = Simulator(onnx_path)
    for x in random_inputs(2, seed=8):
        report = compare_outputs(art.run(x), sim.run(x))
        assert report.equal, report.summary()
        assert report.mismatches == 0 and [o.total for o in report.outputs] == [8 * 8 * 8, 5 * 8 * 8]


def test_host_library_on_the_arm_board_is_refused_clearly(tmp_path, board):
    _, folder = write_artifact(tmp_path, "host")
    with pytest.raises(DeviceError, match=r"the board could not load .*model\.so \(x86_64, board 'host'\)"):
        load_artifact(folder, device=board)


def _mmla_model(folder):
    """Convs whose channels and reduction words are even (on smmla) and one that is not (27 steps: sdot)."""
    import onnx
    from qdq_graphs import QDQGraphBuilder

    b = QDQGraphBuilder(seed=3)
    x = b.input((1, 64, 16, 24), scale=0.05)
    y = b.conv(x, 48, kernel=1, pad=0, relu=True)
    y = b.conv(y, 32, kernel=3, relu=True)
    b.output(b.conv(y, 16, kernel=3, stride=2, relu=True))
    b.output(b.conv(b.conv(y, 3, kernel=1, pad=0, relu=True), 6, kernel=3, relu=True))
    path = folder / "mmla.onnx"
    onnx.save(b.build(), path)
    return path


def test_i8mm_artifact_runs_bit_exact_on_the_emulated_board(tmp_path, board):
    """--target cortex-a720ae: the dense convs on smmla (qemu's "max" CPU has i8mm), bit-exact with the simulator."""
    import subprocess

    from fcos3d.compiler.build import compile_onnx

    onnx_path = _mmla_model(tmp_path)
    compile_onnx(onnx_path, "cortex-a720ae", tmp_path / "a720")
    objdump = shutil.which("aarch64-linux-gnu-objdump")
    if objdump:  # binutils-aarch64-linux-gnu comes with the cross compiler
        code = subprocess.run([objdump, "-d", str(tmp_path / "a720" / "model.so")], capture_output=True, text=True)
        assert "smmla" in code.stdout and "sdot" in code.stdout  # i8mm for the even convs, sdot for the rest
    art = load_artifact(tmp_path / "a720", device=board, onnx_path=onnx_path, board="cortex-a720ae")
    sim = Simulator(onnx_path)
    rng = np.random.default_rng(9)
    for _ in range(2):
        x = rng.integers(-128, 128, size=(1, 64, 16, 24), dtype=np.int8)
        report = compare_outputs(art.run(x), sim.run(x))
        assert report.equal and report.mismatches == 0, report.summary()
