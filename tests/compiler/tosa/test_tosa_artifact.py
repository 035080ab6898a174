"""compile_tosa_artifact: the Ethos-U artifact folder (model.tosa, Vela's output, meta.json, perf side by side)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from golden_cases import ONNX_PATH, golden_inputs
from tosa_cases import mismatches, requires_vela

from fcos3d.runtime.reference.simulator import Simulator

pytestmark = requires_vela


def test_golden_fcos3d_artifact_for_ethos_u85(tmp_path):
    from fcos3d.artifact import ArtifactError, read_meta
    from fcos3d.compiler.tosa.artifact import compile_tosa_artifact
    from fcos3d.io import sha256_file
    from fcos3d.runtime.tosa_reference import TosaReferenceModel, load_tosa_artifact

    out = tmp_path / "art"
    art = compile_tosa_artifact(ONNX_PATH, "ethos-u85-256", out)
    names = {p.name for p in out.iterdir()}
    assert {"model.tosa", "model_vela.tflite", "meta.json", "perf.json", "perf.csv", "perf.html"} <= names, names
    meta, _ = read_meta(out)
    assert meta["board"] == "ethos-u85-256" and meta["backend"] == "tosa" and meta["library"] == "model.tosa"
    assert meta["onnx"]["sha256"] == sha256_file(ONNX_PATH)
    assert meta["versions"]["tosa-tools"] == "2026.8.0" and meta["versions"]["ethos-u-vela"] == "5.2.0"
    vela = meta["vela"]
    assert (vela["system_config"], vela["memory_mode"]) == ("Ethos_U85_SYS_DRAM_Mid", "Dedicated_Sram_384KB")
    assert vela["cpu_fallback"] is False and vela["cpu_ops"] == 0
    assert set(meta["files"]) == names - {"meta.json"}
    assert meta["files"]["model.tosa"] == sha256_file(out / "model.tosa")

    perf = json.loads((out / "perf.json").read_text())
    t = perf["totals"]
    assert t["vela_cycles"] == vela["total_cycles"] > 0 and t["estimate_cycles"] > 0
    assert len(perf["layers"]) == len(Simulator(ONNX_PATH).graph.ops)
    # Vela's per-op cycles all land on an op of ours (the emitter records which op each TOSA tensor serves)
    assert t["vela_unmatched_cycles"] == 0 and sum(r["vela_cycles"] for r in perf["layers"]) == pytest.approx(
        t["vela_sum_of_layer_cycles"]
    )
    assert (out / "perf.csv").read_text().splitlines()[-1].startswith("total,")
    assert "no NPU hardware ran" in (out / "perf.html").read_text()
    assert art.vela.output == out / "model_vela.tflite" and art.vela.output.is_file()

    sim = Simulator(ONNX_PATH)
    ref = TosaReferenceModel(out / "model.tosa", meta["tosa_io"])
    x = golden_inputs(tuple(sim.graph.inputs[0].shape))["random"]
    bad, total, lines = mismatches(sim, ref, [x])
    assert total > 0 and bad == 0, lines

    runner = load_tosa_artifact(out, onnx_path=ONNX_PATH, board="ethos-u85-256")
    assert "no hardware" in runner.label and runner.output_names == sim.output_names
    bad, total, lines = mismatches(sim, runner, [x])
    assert total > 0 and bad == 0, lines
    # Vela's command stream replaced by another (one byte changed): meta.json's sha256 no longer matches
    vela_out = out / "model_vela.tflite"
    good = vela_out.read_bytes()
    vela_out.write_bytes(good[:100] + bytes([good[100] ^ 0xFF]) + good[101:])
    with pytest.raises(ArtifactError) as e:
        load_tosa_artifact(out)
    assert "\n" not in str(e.value) and "model_vela.tflite" in str(e.value) and "meta.json" in str(e.value)
    vela_out.write_bytes(good)
    (out / "model.tosa").write_bytes((out / "model.tosa").read_bytes()[:-8])  # a torn copy
    with pytest.raises(ArtifactError, match="model.tosa"):
        load_tosa_artifact(out)
    assert [o["name"] for o in meta["outputs"]] == sim.output_names
    assert all(np.asarray(o["scales"]).size >= 1 for o in meta["outputs"])


def test_board_without_vela_config_is_refused(tmp_path):
    from fcos3d.compiler.tosa.artifact import compile_tosa_artifact
    from fcos3d.errors import Fcos3dError

    with pytest.raises(Fcos3dError, match="'host' has no Vela configuration"):
        compile_tosa_artifact(ONNX_PATH, "host", tmp_path / "art")
    assert not (tmp_path / "art").exists()
