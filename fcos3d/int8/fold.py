"""Constant folding of shape subgraphs (Shape -> Gather/Slice/Concat/... -> a Resize's sizes or a Reshape's shape).

Exporters leave them when a size follows a tensor (``F.interpolate(size=x.shape[2:])``, ``x.view(x.size(0), -1)``);
once the input shapes are fixed every value in them is a constant. A small numpy evaluator (ONNX semantics of
the listed ops, integers exact) replaces each foldable node whose inputs are known by an initializer, so the
parser sees the constant sizes it accepts. Nothing on the int8 value path is touched: only the ops below,
applied to tensor shapes or integer constants.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnx
from onnx import helper, numpy_helper

__all__ = ["FOLDABLE", "fold_shape_subgraphs", "static_shapes"]


def _attrs(node: onnx.NodeProto) -> dict:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _axes(node: onnx.NodeProto, args: list, index: int) -> list[int] | None:
    """Axes from input ``index`` (opset >= 13) or the ``axes`` attribute."""
    if len(args) > index and args[index] is not None:
        return [int(a) for a in np.asarray(args[index]).ravel()]
    axes = _attrs(node).get("axes")
    return None if axes is None else [int(a) for a in axes]


def _shape(node, args, shapes):
    a = _attrs(node)
    dims = np.array(shapes, dtype=np.int64)
    return dims[a.get("start", 0) : a.get("end", len(dims))]


def _gather(node, args, _):
    return np.take(args[0], np.asarray(args[1]).astype(np.int64), axis=int(_attrs(node).get("axis", 0)))


def _slice(node, args, _):
    data, starts, ends = args[0], args[1], args[2]
    axes = args[3] if len(args) > 3 and args[3] is not None else np.arange(len(starts))
    steps = args[4] if len(args) > 4 and args[4] is not None else np.ones(len(starts), np.int64)
    index = [slice(None)] * data.ndim
    for s, e, ax, st in zip(starts, ends, axes, steps, strict=True):
        index[int(ax)] = slice(int(s), int(e), int(st))  # Python slicing clamps like ONNX Slice
    return data[tuple(index)]


def _squeeze(node, args, _):
    axes = _axes(node, args, 1)
    return np.squeeze(args[0], axis=None if axes is None else tuple(axes))


def _unsqueeze(node, args, _):
    out = args[0]
    axes = _axes(node, args, 1)
    rank = out.ndim + len(axes)
    for ax in sorted(a % rank for a in axes):
        out = np.expand_dims(out, ax)
    return out


def _div(node, args, _):
    a, b = args
    if a.dtype.kind in "iu" and b.dtype.kind in "iu":  # ONNX integer Div truncates toward zero
        q = np.abs(a) // np.abs(b)
        return (np.sign(a) * np.sign(b) * q).astype(np.result_type(a, b))
    return (a / b).astype(np.result_type(a, b))


def _constant_of_shape(node, args, _):
    value = _attrs(node).get("value")
    fill = numpy_helper.to_array(value).reshape(-1)[0] if value is not None else np.float32(0)
    return np.full(tuple(int(d) for d in args[0]), fill, dtype=np.asarray(fill).dtype)


def _cast(node, args, _):
    return args[0].astype(helper.tensor_dtype_to_np_dtype(int(_attrs(node)["to"])))


# op_type -> evaluator(node, input values (None for an absent optional input), static shape of input 0 or None)
FOLDABLE: dict[str, Callable] = {
    "Shape": _shape,
    "Size": lambda node, args, shapes: np.array(int(np.prod(shapes)), dtype=np.int64),
    "Gather": _gather,
    "Slice": _slice,
    "Concat": lambda node, args, _: np.concatenate(args, axis=int(_attrs(node)["axis"])),
    "Unsqueeze": _unsqueeze,
    "Squeeze": _squeeze,
    "Cast": _cast,
    "Identity": lambda node, args, _: args[0],
    "Reshape": lambda node, args, _: args[0].reshape([int(d) for d in args[1]]),
    "ConstantOfShape": _constant_of_shape,
    "Range": lambda node, args, _: np.arange(args[0], args[1], args[2]).astype(np.asarray(args[0]).dtype),
    "Add": lambda node, args, _: args[0] + args[1],
    "Sub": lambda node, args, _: args[0] - args[1],
    "Mul": lambda node, args, _: args[0] * args[1],
    "Div": _div,
    "Neg": lambda node, args, _: -args[0],
    "Floor": lambda node, args, _: np.floor(args[0]),
    "Ceil": lambda node, args, _: np.ceil(args[0]),
    "Max": lambda node, args, _: np.maximum.reduce(args),
    "Min": lambda node, args, _: np.minimum.reduce(args),
    "Equal": lambda node, args, _: np.equal(args[0], args[1]),
    "Where": lambda node, args, _: np.where(args[0], args[1], args[2]),
    "Expand": lambda node, args, _: args[0] * np.ones([int(d) for d in args[1]], dtype=args[0].dtype),
}
# These start a shape computation from a tensor's (static) shape.
_SHAPE_SOURCES = ("Shape", "Size")


def static_shapes(model: onnx.ModelProto) -> dict[str, tuple[int, ...]]:
    """Every tensor whose shape onnx's shape inference (or the declaration) makes fully static."""
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # an op onnx cannot infer: fall back to the declared shapes
        inferred = model
    out = {}
    for vi in (*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output):
        dims = vi.type.tensor_type.shape.dim
        if vi.type.tensor_type.HasField("shape") and all(d.HasField("dim_value") for d in dims):
            out[vi.name] = tuple(int(d.dim_value) for d in dims)
    for t in model.graph.initializer:
        out[t.name] = tuple(int(d) for d in t.dims)
    return out


def fold_shape_subgraphs(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` with every foldable node (``FOLDABLE``) that computes a constant replaced by an initializer.

    A node is folded when all its inputs are known: initializers, Constant nodes, folded outputs, and for
    Shape/Size the static shape of its input. A node none of whose inputs comes from a shape is folded only
    when every input is an integer constant (float arithmetic on the quantisation constants is left alone).
    Returns ``model`` itself when nothing folds.
    """
    g = model.graph
    if not any(n.op_type in _SHAPE_SOURCES for n in g.node):
        return model
    shapes = static_shapes(model)
    known: dict[str, np.ndarray] = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    derived: set[str] = set()
    folded: set[int] = set()
    for k, node in enumerate(g.node):
        if node.op_type == "Constant" and len(node.attribute) == 1 and node.attribute[0].name == "value":
            known[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
            continue
        fn = FOLDABLE.get(node.op_type)
        if fn is None or node.domain not in ("", "ai.onnx"):
            continue
        if node.op_type in _SHAPE_SOURCES:
            shape = shapes.get(node.input[0])
            if shape is None:
                continue
            args = []
        else:
            if any(t and t not in known for t in node.input):
                continue
            args = [known[t] if t else None for t in node.input]
            from_shape = any(t in derived for t in node.input)
            if not from_shape and not all(a is None or a.dtype.kind in "iub" for a in args):
                continue
            shape = None
        try:
            value = np.asarray(fn(node, args, shape))
        except Exception:  # a case the small evaluator does not cover: leave the node to the parser
            continue
        known[node.output[0]] = value
        derived.add(node.output[0])
        folded.add(k)
    if not folded:
        return model
    used = {t for k, n in enumerate(g.node) if k not in folded for t in n.input} | {o.name for o in g.output}
    m = onnx.ModelProto()
    m.CopyFrom(model)
    nodes = [n for k, n in enumerate(m.graph.node) if k not in folded]
    new_inits = [
        numpy_helper.from_array(known[n.output[0]], n.output[0])
        for k, n in enumerate(g.node)
        if k in folded and n.output[0] in used
    ]
    del m.graph.node[:]
    m.graph.node.extend(nodes)
    m.graph.initializer.extend(new_inits)
    return m
