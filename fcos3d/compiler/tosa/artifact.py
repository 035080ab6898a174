"""An Ethos-U artifact folder: model.tosa, Vela's output, meta.json and perf.{json,csv,html}, written whole.

``compile_tosa_artifact(onnx, board, out)`` is fcos3d-compile's path for the boards of ``VELA_CONFIGS``: check the
ONNX, emit TOSA (emit.py), run Vela for the board (vela.py), estimate (latency/), then the folder replaces ``out``
in one rename (fcos3d.io.atomic_dir), meta.json last with the sha256 of every other file.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from fcos3d.artifact import installed_version, make_meta, replaceable, write_meta
from fcos3d.boards import Board, load_board
from fcos3d.errors import Fcos3dError
from fcos3d.int8.ops import infer_shapes
from fcos3d.io import atomic_dir

from .emit import emit_tosa
from .vela import VELA_CONFIGS, VelaResult, run_vela

__all__ = ["TOSA_FILE", "TosaArtifact", "compile_tosa_artifact"]

TOSA_FILE = "model.tosa"
TOOL_DISTS = ("tosa-tools", "ethos-u-vela")


@dataclass(frozen=True)
class TosaArtifact:
    out_dir: Path
    tosa: Path
    vela: VelaResult | None  # None: a debug build (not run through Vela)
    meta: dict
    perf: dict


def compile_tosa_artifact(
    onnx_path: str | Path,
    board: Board | str,
    out_dir: str | Path,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
    run_simplify: bool = True,
    layer_outputs: bool = False,
) -> TosaArtifact:
    """The int8 QDQ ONNX -> ``out_dir`` for an Ethos-U ``board``. Returns data; prints nothing.

    meta.json holds what make_meta writes for every artifact (inputs, outputs, scales, board, sha256 of the ONNX,
    versions), with ``backend: "tosa"``, ``library: "model.tosa"``, ``tosa_io`` (each graph end's TOSA tensor and
    layout, for fcos3d.runtime.tosa_reference), ``vela`` (its three settings, totals, whether any op fell to the
    CPU) and the versions of tosa-tools and ethos-u-vela. Raises ``Fcos3dError`` for a board Vela has no
    configuration for, and the emitter's / Vela's one-line errors.
    ``layer_outputs``: the debug build (fcos3d-compile --debug-outputs): every layer's output is also a graph output
    (meta.json ``layer_outputs``) for the tracer; it runs on the reference model only, so Vela is not run
    (``vela`` is null) and the perf report is our estimate alone.
    """
    from ..check import check_onnx
    from ..latency.estimate import estimate
    from .perf import side_by_side, write_perf

    board = load_board(board) if isinstance(board, str) else board
    if board.name not in VELA_CONFIGS:
        raise Fcos3dError(
            f"board {board.name!r} has no Vela configuration; the TOSA path compiles for {', '.join(VELA_CONFIGS)}"
        )
    out_dir = Path(out_dir)
    replaceable(out_dir)  # a folder that is not an artifact fails before the work
    checked = check_onnx(onnx_path, run_simplify=run_simplify, input_shapes=input_shapes)
    graph, layer_map = checked.graph, None
    if layer_outputs:
        from fcos3d.int8.layers import with_layer_outputs

        graph, layer_map = with_layer_outputs(graph)
    program = emit_tosa(graph, input_shapes)
    shapes = infer_shapes(
        graph,
        {i.name: tuple((input_shapes or {}).get(i.name, i.shape)) for i in graph.inputs},
    )
    path_text = None if hasattr(onnx_path, "graph") else str(onnx_path)
    meta = make_meta(
        graph,
        board=board.name,
        target=board.target_dict(),
        onnx={"path": path_text, "sha256": checked.sha256, "opset": checked.opset, "simplified": checked.simplified},
        output_shapes=[shapes[o.tensor] for o in graph.outputs],
    )
    meta["backend"] = "tosa"
    meta["library"] = TOSA_FILE
    meta["tosa_io"] = program.io
    meta["versions"].update({d: installed_version(d) for d in TOOL_DISTS})
    if layer_map is not None:
        meta["layer_outputs"] = layer_map  # {op name: output name} (the debug build)
    replaceable(out_dir)
    with atomic_dir(out_dir) as tmp:
        tosa = program.write(tmp / TOSA_FILE)
        if layer_map is not None:
            meta["vela"] = None  # a debug build runs on the reference model only
            write_meta(tmp, meta)
            return_vela, perf = None, {}
        else:
            vela = run_vela(tosa, VELA_CONFIGS[board.name], tmp)
            meta["vela"] = {**vela.as_dict(), "cpu_fallback": vela.cpu_fallback}
            perf = side_by_side(estimate(checked.graph, board), vela, program.op_of)
            write_perf(perf, tmp)
            write_meta(tmp, meta)
            return_vela = replace(vela, output=out_dir / vela.output.name)  # where it lies after the rename
    return TosaArtifact(out_dir, out_dir / TOSA_FILE, return_vela, meta, perf)
