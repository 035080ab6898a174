"""Tests of fcos3d/runtime/execute.py over TVM RPC: a `tvm.exec.rpc_server` subprocess on this machine runs the
host artifact; its outputs equal the local run's and the simulator's bit for bit, through the same API."""

from __future__ import annotations

import numpy as np
import pytest
from rpc_servers import free_port, host_server_cmd, random_inputs, rpc_server, write_artifact

from fcos3d.runtime.align import compare_outputs
from fcos3d.runtime.execute import DeviceError, load_artifact
from fcos3d.runtime.reference.simulator import Simulator

pytest.importorskip("cloudpickle", reason="tvm.exec.rpc_server needs cloudpickle (pip install cloudpickle)")
pytestmark = pytest.mark.timeout(240)  # a session that never opens (the server is busy) fails instead of hanging


@pytest.fixture(scope="module")
def host_artifact(tmp_path_factory):
    return write_artifact(tmp_path_factory.mktemp("rpc"), "host", seed=3)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """ "127.0.0.1:PORT" of an RPC server subprocess, up for this module's tests."""
    with rpc_server(host_server_cmd(), tmp_path_factory.mktemp("rpc_log") / "server.log", timeout=60) as address:
        yield address


def test_rpc_equals_local_and_simulator(host_artifact, server):
    onnx_path, folder = host_artifact
    local = load_artifact(folder, onnx_path=onnx_path)
    remote = load_artifact(folder, device=server, onnx_path=onnx_path)
    sim = Simulator(onnx_path)
    assert remote.device == server and remote.output_names == local.output_names == sim.output_names
    for x in random_inputs(3, seed=5):
        got, here, want = remote.run(x), local.run(x), sim.run(x)
        assert [a.dtype for a in got.values()] == [np.dtype("int8"), np.dtype("int32")]
        assert compare_outputs(got, here).equal
        report = compare_outputs(got, want)
        assert report.equal, report.summary()


def test_two_artifacts_on_one_server(tmp_path, host_artifact, server):
    """Each upload has its own remote name (content hash): a second model on the same board is not the first."""
    onnx2, folder2 = write_artifact(tmp_path, "host", seed=4)
    a = load_artifact(host_artifact[1], device=server)
    b = load_artifact(folder2, device=server)
    x = random_inputs(1)[0]
    assert compare_outputs(b.run(x), Simulator(onnx2).run(x)).equal
    assert not compare_outputs(a.run(x), b.run(x)).equal


def test_unreachable_board(host_artifact):
    with pytest.raises(DeviceError, match=r"cannot reach a TVM RPC server at 127\.0\.0\.1:\d+.*tvm\.exec\.rpc_server"):
        load_artifact(host_artifact[1], device=f"127.0.0.1:{free_port()}")


def _rpc_threads():
    import threading

    return [t for t in threading.enumerate() if t.name.startswith("fcos3d-rpc") and t.is_alive()]


def test_a_listener_that_never_answers_gives_one_line_within_the_timeout(host_artifact):
    import socket

    with socket.socket() as silent:  # accepts connections (the kernel's backlog) and never says a word
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        where = f"127.0.0.1:{silent.getsockname()[1]}"
        with pytest.raises(DeviceError, match=rf"{where}: no answer within 1 s while connecting.*--rpc-timeout"):
            load_artifact(host_artifact[1], device=where, timeout=1.0)
    assert _rpc_threads() == []  # the stuck call was woken (its socket shut down), nothing is left blocked


def test_a_remote_run_that_never_returns_is_a_device_error(host_artifact, monkeypatch):
    import json
    import threading

    from fcos3d.runtime.execute import Artifact

    folder = host_artifact[1]
    meta = json.loads((folder / "meta.json").read_text())
    release = threading.Event()
    art = Artifact(folder, meta, None, None, "127.0.0.1:9", None, object(), 0.5)
    monkeypatch.setattr(Artifact, "_invoke", lambda self, arrays: release.wait(30))
    try:
        with pytest.raises(DeviceError, match=r"127\.0\.0\.1:9: no answer within 0\.5 s while running .*model\.so"):
            art.run(random_inputs(1)[0])
    finally:
        release.set()


@pytest.mark.parametrize("timeout", [0, -1, float("nan")])
def test_rpc_timeout_must_be_positive(host_artifact, timeout):
    from fcos3d.errors import Fcos3dError

    with pytest.raises(Fcos3dError, match="RPC timeout .*positive number of seconds"):
        load_artifact(host_artifact[1], device="127.0.0.1:9", timeout=timeout)
