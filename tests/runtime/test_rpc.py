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
