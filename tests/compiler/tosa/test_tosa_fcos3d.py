"""The committed narrow FCOS3D (tests/golden/int8: MBConv backbone, BiFPN adds, x2 and odd-size resizes, max
pools, 45 int32 head outputs) as TOSA: the reference model equals the simulator on every output element, and
Vela compiles it for the three Ethos-U boards with every op on the NPU."""

from __future__ import annotations

import numpy as np
import pytest
from golden_cases import ONNX_PATH, golden_inputs
from tosa_cases import emit_and_load, mismatches, requires_tosa, requires_vela

from fcos3d.runtime.reference.simulator import Simulator

pytestmark = requires_tosa


@pytest.fixture(scope="module")
def fcos3d_tosa(tmp_path_factory):
    """(simulator, reference model, .tosa path) of the golden FCOS3D."""
    sim = Simulator(ONNX_PATH)
    ref = emit_and_load(sim.graph, tmp_path_factory.mktemp("fcos3d_tosa"), "model")
    return sim, ref, ref.path


def test_fcos3d_reference_model_equals_simulator(fcos3d_tosa):
    sim, ref, _ = fcos3d_tosa
    assert len(ref.output_names) == 45 and ref.output_names == sim.output_names
    xs = list(golden_inputs(tuple(sim.graph.inputs[0].shape)).values())
    bad, total, lines = mismatches(sim, ref, xs)
    assert total == 4 * 2604 and bad == 0, "; ".join(lines)
    out = ref.run(xs[0])
    assert all(v.dtype == np.int32 for v in out.values())


@requires_vela
@pytest.mark.parametrize("board", ["ethos-u55-256", "ethos-u65-512", "ethos-u85-256"])
def test_fcos3d_compiles_for_ethos_u_with_every_op_on_the_npu(fcos3d_tosa, board, tmp_path):
    from fcos3d.compiler.tosa.vela import VELA_CONFIGS, run_vela

    _, _, path = fcos3d_tosa
    r = run_vela(path, board, tmp_path)
    assert r.output.is_file() and r.output.stat().st_size > 10_000
    assert not r.cpu_fallback and r.cpu_ops == 0 and r.npu_ops > 200, r.as_dict()
    assert {row["target"] for row in r.layers} == {"NPU"}
    assert r.config == VELA_CONFIGS[board]
    assert r.total_cycles > 0 and r.macs > 900_000  # the golden model: ~0.96 M MACs
    assert r.inference_time_s == pytest.approx(r.total_cycles / r.clock_hz, rel=1e-3)


@requires_vela
def test_vela_refusal_is_one_line_naming_the_file(tmp_path):
    """An x3 nearest resize runs on the reference model but U55 takes power-of-two upscales only."""
    from qdq_graphs import QDQGraphBuilder

    from fcos3d.compiler.tosa.vela import VelaError, run_vela

    b = QDQGraphBuilder(seed=2)
    b.output(b.resize(b.input((1, 4, 3, 3)), factor=3))
    ref = emit_and_load(Simulator(b.build()).graph, tmp_path, "x3")
    with pytest.raises(VelaError) as e:
        run_vela(ref.path, "ethos-u55-256", tmp_path / "vela")
    msg = str(e.value)
    assert "\n" not in msg and str(ref.path) in msg and "ethos-u55-256" in msg, msg


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty", "flipped"])
def test_corrupt_tosa_is_one_line_error_naming_the_file(fcos3d_tosa, damage, tmp_path):
    from fcos3d.runtime.tosa_reference import TosaReferenceError, TosaReferenceModel

    _, ref, path = fcos3d_tosa
    data = path.read_bytes()
    bad = tmp_path / "model.tosa"
    if damage == "truncated":
        bad.write_bytes(data[: len(data) // 3])
    elif damage == "garbage":
        bad.write_bytes(b"\x00" * 4 + b"TOSA" + bytes(range(256)) * 4)
    elif damage == "empty":
        bad.write_bytes(b"")
    else:  # the root table's offset points far past the end
        bad.write_bytes(b"\xff\xff\xff\x7f" + data[4:])
    with pytest.raises(TosaReferenceError) as e:
        TosaReferenceModel(bad, ref.io).run(np.zeros(ref.io["inputs"][0]["shape"], np.int8).transpose(0, 3, 1, 2))
    msg = str(e.value)
    assert "\n" not in msg and str(bad) in msg, msg


def test_missing_reference_model_is_one_line_error(monkeypatch, fcos3d_tosa):
    import fcos3d.runtime.tosa_reference as tr

    _, ref, path = fcos3d_tosa
    monkeypatch.setattr(tr, "_EXE", "no_such_tosa_reference_model")
    monkeypatch.setattr("importlib.metadata.distribution", lambda name: (_ for _ in ()).throw(ImportError(name)))
    with pytest.raises(tr.TosaReferenceMissingError) as e:
        tr.TosaReferenceModel(path, ref.io)
    assert "\n" not in str(e.value) and "tosa-tools" in str(e.value)
