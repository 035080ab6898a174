"""The reader's front end: QOperator -> QDQ, fixed input shapes, folded shape subgraphs, in that order.

``prepare(model, input_shapes)`` returns the graph the QDQ parser reads (a copy; the caller's model is never
changed); ``symbolic_inputs`` says which inputs still have a symbolic dim, for the compiler's one clear error.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import onnx

from fcos3d.errors import Fcos3dError

from .fold import fold_shape_subgraphs
from .qoperator import rewrite_qoperators

__all__ = ["InputShapeError", "prepare", "set_input_shapes", "symbolic_inputs", "parse_input_shape"]


class InputShapeError(Fcos3dError, ValueError):
    """An input shape is missing (a symbolic dim) or does not fit the graph; the message names the input and
    the fix (``--input-shape NAME=1,3,H,W``)."""


def _graph_inputs(model: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    inits = {t.name for t in model.graph.initializer}
    return [v for v in model.graph.input if v.name not in inits]


def _dims(vi: onnx.ValueInfoProto) -> tuple[int | str | None, ...]:
    return tuple(
        d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in vi.type.tensor_type.shape.dim
    )


def symbolic_inputs(model: onnx.ModelProto) -> dict[str, tuple]:
    """``{input name: declared shape}`` of the graph inputs with a symbolic (or missing) dim."""
    out = {}
    for vi in _graph_inputs(model):
        dims = _dims(vi)
        if not vi.type.tensor_type.HasField("shape") or any(not isinstance(d, int) or d <= 0 for d in dims):
            out[vi.name] = dims
    return out


def parse_input_shape(text: str) -> tuple[str, tuple[int, ...]]:
    """``"NAME=1,3,H,W"`` -> ``(NAME, (1, 3, H, W))`` (the CLI's ``--input-shape``); ValueError otherwise."""
    name, sep, dims = text.rpartition("=")
    try:
        shape = tuple(int(d) for d in dims.split(","))
    except ValueError:
        shape = ()
    if not sep or not name or not shape or min(shape) < 1:
        raise ValueError(f"{text!r}: write NAME=D0,D1,... with positive integers, e.g. input=1,3,224,224")
    return name, shape


def set_input_shapes(model: onnx.ModelProto, input_shapes: Mapping[str, Sequence[int]]) -> onnx.ModelProto:
    """A copy of ``model`` whose graph inputs named in ``input_shapes`` have those static dims.

    Each given shape must have the input's rank and agree with its fixed dims; an unknown name is an error.
    """
    m = onnx.ModelProto()
    m.CopyFrom(model)
    inputs = {vi.name: vi for vi in _graph_inputs(m)}
    for name, shape in input_shapes.items():
        if name not in inputs:
            raise InputShapeError(
                f"--input-shape {name}=...: the graph has no input {name!r}; its inputs are {sorted(inputs)}"
            )
        shape = tuple(int(d) for d in shape)
        vi = inputs[name]
        declared = _dims(vi)
        if vi.type.tensor_type.HasField("shape") and len(declared) != len(shape):
            raise InputShapeError(
                f"--input-shape {name}={','.join(map(str, shape))}: input {name!r} has rank {len(declared)} "
                f"(declared shape {declared})"
            )
        for k, (want, got) in enumerate(zip(declared, shape)):
            if isinstance(want, int) and want > 0 and want != got:
                raise InputShapeError(
                    f"--input-shape {name}={','.join(map(str, shape))}: dim {k} of input {name!r} is fixed to "
                    f"{want} in the graph"
                )
        tensor_shape = vi.type.tensor_type.shape
        del tensor_shape.dim[:]
        for d in shape:
            tensor_shape.dim.add().dim_value = d
    if input_shapes:  # shapes inferred from the old symbolic dims would contradict the new ones
        del m.graph.value_info[:]
    return m


def prepare(model: onnx.ModelProto, input_shapes: Mapping[str, Sequence[int]] | None = None) -> onnx.ModelProto:
    """The graph the QDQ parser reads: QOperator nodes rewritten to QDQ (qoperator.py), the inputs named in
    ``input_shapes`` given those static shapes, and shape subgraphs folded to constants (fold.py)."""
    model = rewrite_qoperators(model)
    if input_shapes:
        model = set_input_shapes(model, input_shapes)
    return fold_shape_subgraphs(model)
