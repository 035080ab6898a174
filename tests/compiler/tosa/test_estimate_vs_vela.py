"""Our latency estimate (fcos3d.compiler.latency) against Vela's on the committed narrow FCOS3D, per Ethos-U board:
the Ethos-U board files are fitted to Vela 5.2.0 (scripts/fit_npu_boards.py, PERFORMANCE.md "Ethos-U: our estimate
vs Vela"), so the two totals agree within 15%. Breaking a board figure breaks this test. Three Vela compiles of
the 0.96 M-MAC golden graph: a few seconds."""

from __future__ import annotations

import pytest
from golden_cases import ONNX_PATH
from tosa_cases import requires_vela

pytestmark = requires_vela

BOARDS = ("ethos-u55-256", "ethos-u65-512", "ethos-u85-256")


@pytest.fixture(scope="module")
def golden(tmp_path_factory):
    """(int8 graph, .tosa path, op_of) of the golden FCOS3D."""
    from fcos3d.compiler.check import check_onnx
    from fcos3d.compiler.tosa.emit import emit_tosa

    graph = check_onnx(ONNX_PATH).graph
    program = emit_tosa(graph)
    path = program.write(tmp_path_factory.mktemp("est_vs_vela") / "model.tosa")
    return graph, path, program.op_of


@pytest.mark.parametrize("board", BOARDS)
def test_estimate_within_15_percent_of_vela(golden, board, tmp_path):
    from fcos3d.compiler.latency.estimate import estimate
    from fcos3d.compiler.tosa.perf import side_by_side
    from fcos3d.compiler.tosa.vela import run_vela

    graph, path, op_of = golden
    vela = run_vela(path, board, tmp_path)
    assert not vela.cpu_fallback
    d = side_by_side(estimate(graph, board), vela, op_of)
    t = d["totals"]
    assert abs(t["estimate_vs_vela"]) <= 0.15, (
        f"{board}: ours {t['estimate_ms']:.4f} ms vs Vela {t['vela_ms']:.4f} ms ({t['estimate_vs_vela']:+.0%}); "
        "refit with scripts/fit_npu_boards.py --fit"
    )
    # every layer of ours got Vela cycles (the op_of mapping holds), so the per-layer comparison is complete
    assert sum(1 for r in d["layers"] if r["vela_cycles"] > 0) >= 0.9 * len(d["layers"])


# Zoo models of the [int8-ops] zoo held to the same 15%: resnet18 (its adds on (1, 128, 1, 1) tensors were +20% on
# U65 before the per-kind model) and resize_by_size (an out-of-sample check of the fit: an RGB stem, a 1x1 conv
# and an odd-size resize; -35% on U65/U85 before). Two quantize_static runs and six Vela compiles: a few seconds.
ZOO_MODELS = ("resnet18", "resize_by_size")


@pytest.fixture(scope="module")
def zoo_graphs(tmp_path_factory):
    """{name: (int8 graph, .tosa path, op_of)} of the ZOO_MODELS."""
    from zoo import ZOO, quantize

    from fcos3d.compiler.check import check_onnx
    from fcos3d.compiler.tosa.emit import emit_tosa

    folder = tmp_path_factory.mktemp("zoo_est_vs_vela")
    out = {}
    for name, make, q, _ in ZOO:
        if name in ZOO_MODELS:
            graph = check_onnx(quantize(make(), q, folder, name)).graph
            program = emit_tosa(graph)
            out[name] = (graph, program.write(folder / f"{name}.tosa"), program.op_of)
    return out


@pytest.mark.parametrize("board", BOARDS)
@pytest.mark.parametrize("model", ZOO_MODELS)
def test_zoo_estimate_within_15_percent_of_vela(zoo_graphs, model, board, tmp_path):
    from fcos3d.compiler.latency.estimate import estimate
    from fcos3d.compiler.tosa.perf import side_by_side
    from fcos3d.compiler.tosa.vela import run_vela

    graph, path, op_of = zoo_graphs[model]
    vela = run_vela(path, board, tmp_path)
    assert not vela.cpu_fallback
    t = side_by_side(estimate(graph, board), vela, op_of)["totals"]
    assert abs(t["estimate_vs_vela"]) <= 0.15, (
        f"{model} on {board}: ours {t['estimate_ms']:.4f} ms vs Vela {t['vela_ms']:.4f} ms "
        f"({t['estimate_vs_vela']:+.0%}); refit with scripts/fit_npu_boards.py --fit"
    )
