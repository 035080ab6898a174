"""Load and check a QDQ (or QOperator) ONNX for the compiler: onnx.checker, opset, the reader's front end (QOperator
-> QDQ, fixed input shapes, folded shape subgraphs), static input shapes, onnxsim, then the supported patterns.

Pattern matching is fcos3d.int8's reader (``parse_qdq``), the simulator's too: the compiler accepts exactly the
graphs the simulator can run, and reports every unsupported node in one ``UnsupportedGraphError``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import onnx
from onnx.external_data_helper import load_external_data_for_model, uses_external_data

from fcos3d.int8.frontend import InputShapeError, prepare, symbolic_inputs
from fcos3d.int8.ops import IntGraph
from fcos3d.int8.reader import UnsupportedGraphError, parse_qdq
from fcos3d.io import sha256_bytes

__all__ = [
    "MIN_OPSET",
    "CheckedModel",
    "UnsupportedGraphError",
    "InvalidModelError",
    "InputShapeError",
    "check_onnx",
    "simplify",
]

# QuantizeLinear/DequantizeLinear with per-axis scales exist from opset 13.
MIN_OPSET = 13


class InvalidModelError(ValueError):
    """The file is not a valid ONNX model for the compiler (checker, opset); the message says which."""


@dataclass(frozen=True)
class CheckedModel:
    """A checked (and possibly simplified) model with its parsed integer graph.

    ``sha256``: of the ONNX file as given (or of its serialisation); ``simplified``: onnxsim's result was
    kept; ``note``: why it was not, if so.
    """

    model: onnx.ModelProto
    graph: IntGraph
    sha256: str
    opset: int
    simplified: bool
    note: str = ""


def _default_opset(model: onnx.ModelProto) -> int:
    for o in model.opset_import:
        if o.domain in ("", "ai.onnx"):
            return int(o.version)
    raise InvalidModelError("the model imports no default-domain ONNX opset")


def _qdq_counts(model: onnx.ModelProto) -> Counter:
    return Counter(n.op_type for n in model.graph.node if n.op_type == "QuantizeLinear")


def simplify(model: onnx.ModelProto) -> tuple[onnx.ModelProto, str]:
    """onnxsim without constant folding (folding would turn ``DQ(int8 weight)`` into float weights and lose
    the QDQ pattern). Returns (model, note): the original with a note when onnxsim fails, changes the
    number of QuantizeLinear nodes, or yields a graph the parser rejects."""
    try:
        import onnxsim

        simple, ok = onnxsim.simplify(model, skip_constant_folding=True)
    except Exception as exc:  # onnxsim raises many types; the original model is still valid
        return model, f"onnxsim failed ({type(exc).__name__}: {exc}); compiled the original graph"
    if not ok:
        return model, "onnxsim could not validate its result; compiled the original graph"
    if _qdq_counts(simple) != _qdq_counts(model):
        return model, "onnxsim changed the QuantizeLinear nodes; compiled the original graph"
    try:
        parse_qdq(simple)
    except (UnsupportedGraphError, ValueError):
        return model, "the simplified graph does not parse; compiled the original graph"
    return simple, ""


def _suggest(dims) -> str:
    """The --input-shape value to suggest: the fixed dims, 1 for a symbolic batch (dim 0), the dim's name otherwise."""
    out = []
    for k, d in enumerate(dims):
        out.append(str(d) if isinstance(d, int) and d > 0 else "1" if k == 0 else str(d or "?").upper())
    return ",".join(out)


def check_onnx(
    path: str | Path | onnx.ModelProto,
    run_simplify: bool = True,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
) -> CheckedModel:
    """Load, ``onnx.checker`` it, require opset >= 13, run the reader's front end with ``input_shapes``
    ({input name: shape}, for symbolic dims), require static input shapes, simplify (onnxsim), parse the patterns.

    Raises ``InvalidModelError`` (checker/opset), ``InputShapeError`` (a symbolic input dim without its shape,
    or a shape that does not fit: the message names the input and ``--input-shape``) or
    ``UnsupportedGraphError`` (every node outside the supported patterns, in one message: ``.nodes`` lists them).
    """
    if isinstance(path, onnx.ModelProto):
        model, data = path, path.SerializeToString()
    else:
        data = Path(path).read_bytes()
        model = onnx.load_from_string(data)
        if any(uses_external_data(t) for t in model.graph.initializer):
            # external weights live beside the model, wherever the compiler is run from; onnx refuses a
            # location outside that folder
            load_external_data_for_model(model, str(Path(path).resolve().parent))
    sha = sha256_bytes(data)
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:
        raise InvalidModelError(f"onnx.checker rejects the model: {exc}") from None
    opset = _default_opset(model)
    if opset < MIN_OPSET:
        raise InvalidModelError(f"opset {opset} < {MIN_OPSET}: re-export with opset >= {MIN_OPSET} (17 recommended)")
    model = prepare(model, input_shapes)  # QOperator -> QDQ, the given input shapes, shape subgraphs folded
    symbolic = symbolic_inputs(model)
    if symbolic:
        fix = " ".join(f"--input-shape {name}={_suggest(dims)}" for name, dims in symbolic.items())
        listed = "; ".join(f"input {name!r} has shape {tuple(dims)}" for name, dims in symbolic.items())
        raise InputShapeError(
            f"{listed}: the compiler needs static shapes. Give them: {fix} "
            "(compile_onnx(..., input_shapes={name: shape}))"
        )
    simplified, note = False, ""
    if run_simplify:  # first: onnxsim removes glue (Identity, ...) that the patterns do not know
        simple, note = simplify(model)
        model, simplified = simple, simple is not model
    # Raises UnsupportedGraphError listing every unsupported node (of the original graph when onnxsim's
    # result was not kept, so the names are the user's).
    graph = parse_qdq(model)
    return CheckedModel(model, graph, sha, opset, simplified, note)
