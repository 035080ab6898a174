"""The parse functions of the core ops: one per anchor ONNX op type, each matching its QDQ pattern (reader.py).

Each checks its node's attributes and constants first, then reads its inputs (``Parser.dq_view``), its output
(``Parser.follow_to_q``), computes the op's integer constants once (fixedpoint.py) and claims its nodes. The
patterns are listed in reader.py's docstring; docs/int8.md section 4 defines each op's integers.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import onnx

from . import fixedpoint as fx
from .ops import (
    COORDINATE_MODES,
    NEAREST_MODES,
    Add,
    AveragePool,
    Clip,
    Concat,
    Conv,
    MatMul,
    MaxPool,
    Reshape,
    ResizeNearest,
    Transpose,
    clip_bounds,
)
from .patterns import Parser, QView, Reject, int_pair, node_attrs, spatial_attrs

__all__ = [
    "conv_multipliers_or_reject",
    "resize_targets",
    "parse_add",
    "parse_average_pool",
    "parse_clip",
    "parse_concat",
    "parse_conv",
    "parse_gemm",
    "parse_global_average_pool",
    "parse_layout",
    "parse_matmul",
    "parse_maxpool",
    "parse_resize",
]

# Relative difference allowed between a stored bias scale and s_in * s_w[c]: the exporter rounds the product
# to float32 (half an ulp, 2**-24), possibly after a float32 multiply (another 2**-24).
_BIAS_SCALE_RTOL = 2.0**-20


# -- helpers of several parse functions ----------------------------------------------------------------------


def _bias(p: Parser, node: onnx.NodeProto, index: int, channels: int) -> tuple[np.ndarray, np.ndarray | None, object]:
    """The optional int32 bias input ``node.input[index]``: (bias (channels,), its scales or None, its DQ node)."""
    if len(node.input) <= index or not node.input[index]:
        return np.zeros(channels, dtype=np.int32), None, None
    bias, s_b, dq_b = p.dq_const(node.input[index], np.int32, "bias")
    if bias.size != channels or bias.ndim > 2:
        raise Reject(f"bias shape {bias.shape} must be ({channels},)")
    return bias.reshape(channels), s_b, dq_b


def _check_bias_scale(s_b: np.ndarray | None, s_in: float, s_w: np.ndarray) -> None:
    if s_b is None:
        return
    implied = np.float64(s_in) * s_w
    if np.any(np.abs(s_b - implied) > _BIAS_SCALE_RTOL * implied):
        raise Reject("bias scale must equal input scale x weight scale per channel (docs/int8.md 4.2)")


def _check_accumulator(weight: np.ndarray, fan_in: int, folded_bias: np.ndarray) -> None:
    """|acc| <= fan_in * 128 * max|w| + max|folded bias| must fit int32 (docs/int8.md 4.2)."""
    max_w = int(np.abs(weight.astype(np.int16)).max()) if weight.size else 0
    max_b = int(np.abs(folded_bias.astype(np.int64)).max()) if folded_bias.size else 0
    bound = fx.accumulator_bound(fan_in, max_b, max_w)
    if bound > fx.INT32_MAX:
        raise Reject(f"accumulator bound {bound} exceeds int32 (fan-in {fan_in}, |bias| too large)")


def conv_multipliers_or_reject(s_in: float, s_w, s_out: float) -> tuple[np.ndarray, np.ndarray]:
    """fixedpoint.conv_multipliers, its ValueError (a scale out of range) as this node's Reject."""
    try:
        return fx.conv_multipliers(s_in, s_w, s_out)
    except ValueError as e:
        raise Reject(str(e)) from None


def _scale_preserving(p: Parser, node: onnx.NodeProto) -> tuple[str, str, list]:
    """(input, output, nodes) of an op that moves int8 values: ``DQ(x, s, z) -> op -> Q(s, z)``, or the op
    straight on an int8 tensor (its output then has the input's scale and zero point)."""
    src = p.int8_source(node.input[0])
    if src is not None:
        p.define_like(node.output[0], src)
        return src.src, node.output[0], [node]
    x = p.dq_view(node.input[0])
    q = p.follow_to_q(node.output[0], activation=False)
    if np.float32(x.scale) != np.float32(q.scale) or x.zero_point != q.zero_point:
        raise Reject(
            f"{node.op_type} must keep the scale and zero point (input {x.scale!r}, {x.zero_point}; "
            f"output {q.scale!r}, {q.zero_point})"
        )
    p.define_output(q)
    return x.src, q.tensor, [node, x.node, *q.nodes]


# -- the parse functions: one per anchor op type ----------------------------------------------------------


def parse_conv(p: Parser, node: onnx.NodeProto) -> None:
    attrs = node_attrs(node)
    weight, s_w, dq_w = p.dq_const(node.input[1], np.int8, "weight")
    if weight.ndim != 4:
        raise Reject(f"only 2-D convs are supported (weight shape {weight.shape})")
    o = weight.shape[0]
    groups = int(attrs.get("group", 1))
    strides, pads, dilations = spatial_attrs(attrs, tuple(weight.shape[2:]))
    if groups < 1 or o % groups:
        raise Reject(f"group={groups} does not divide the {o} output channels")
    bias, s_b, dq_b = _bias(p, node, 2, o)
    x = p.dq_view(node.input[0])
    _check_bias_scale(s_b, x.scale, s_w)
    fan_in = int(np.prod(weight.shape[1:]))
    wsum = weight.reshape(o, -1).astype(np.int64).sum(axis=1)
    folded = bias.astype(np.int64) - x.zero_point * wsum
    if np.abs(folded).max(initial=0) > fx.INT32_MAX:
        raise Reject("bias - input zero point x sum(w) leaves int32 (docs/int8.md 4.2)")
    _check_accumulator(weight, fan_in, folded)
    nodes = [node, x.node, dq_w, dq_b]
    out = node.output[0]
    common = dict(input_zero_point=x.zero_point, dilations=dilations)
    if out in p.output_set and not p.consumers.get(out):
        op = Conv(
            p.name(node),
            x.src,
            out,
            weight,
            bias,
            strides,
            pads,
            groups,
            False,
            x.scale,
            s_w,
            None,
            None,
            None,
            **common,
        )
        p.heads[out] = op  # also in p.ops, in node order
    else:
        q = p.follow_to_q(out, activation=True)
        m, sh = conv_multipliers_or_reject(x.scale, s_w, q.scale)
        op = Conv(
            p.name(node),
            x.src,
            q.tensor,
            weight,
            bias,
            strides,
            pads,
            groups,
            q.relu,
            x.scale,
            s_w,
            q.scale,
            m,
            sh,
            output_zero_point=q.zero_point,
            clamp=q.clamp,
            **common,
        )
        p.define_output(q)
        nodes += q.nodes
    p.accept(op, nodes)


def parse_add(p: Parser, node: onnx.NodeProto) -> None:
    a = p.dq_view(node.input[0])
    b = p.dq_view(node.input[1])
    q = p.follow_to_q(node.output[0], activation=True)
    rescale = fx.add_multipliers(a.scale, b.scale, q.scale)
    p.define_output(q)
    op = Add(
        p.name(node),
        a.src,
        b.src,
        q.tensor,
        a.scale,
        b.scale,
        q.scale,
        rescale,
        q.relu,
        zero_point_a=a.zero_point,
        zero_point_b=b.zero_point,
        output_zero_point=q.zero_point,
        clamp=q.clamp,
    )
    p.accept(op, [node, a.node, b.node, *q.nodes])


def parse_clip(p: Parser, node: onnx.NodeProto) -> None:
    """A Relu or Clip that no Conv/Add/Gemm absorbed: ``DQ(x, s_in, z_in) -> Relu/Clip -> Q(s_out, z_out)``."""
    low, high = p.activation_range(node)
    x = p.dq_view(node.input[0])
    q = p.follow_to_q(node.output[0], activation=False)
    lo, hi = clip_bounds(low, high, q.scale, q.zero_point)
    same = np.float32(x.scale) == np.float32(q.scale) and x.zero_point == q.zero_point
    rescale = None
    if not same:
        m, sh = fx.quantize_multiplier(np.float64(x.scale) / np.float64(q.scale))
        rescale = (int(m), int(sh))
    p.define_output(q)
    op = Clip(p.name(node), x.src, q.tensor, lo, hi, x.scale, x.zero_point, q.scale, q.zero_point, rescale)
    p.accept(op, [node, x.node, *q.nodes])


def resize_targets(p: Parser, node) -> tuple[tuple[Fraction, Fraction] | None, tuple[int, ...] | None]:
    """(scales, sizes) of an ONNX Resize, exactly one set: constant NCHW ``sizes`` (input 3), else constant
    float32 ``scales`` (1, 1, s_h, s_w) as exact rationals (input 2); Reject otherwise."""
    scales = sizes = None
    if len(node.input) >= 4 and node.input[3]:
        raw = np.asarray(p.const(node.input[3], "Resize sizes")).astype(np.int64).ravel()
        if raw.size != 4 or np.any(raw < 1):
            raise Reject(f"Resize sizes {raw.tolist()} must be 4 positive NCHW sizes")
        sizes = tuple(int(v) for v in raw)
    elif len(node.input) >= 3 and node.input[2]:
        raw = np.asarray(p.const(node.input[2], "Resize scales")).ravel()
        if raw.dtype != np.float32 or raw.size != 4 or raw[0] != 1 or raw[1] != 1 or np.any(raw[2:] <= 0):
            raise Reject(f"Resize scales {raw.tolist()} must be float32 (1, 1, s_h, s_w) with s > 0")
        scales = (Fraction(float(raw[2])), Fraction(float(raw[3])))
    else:
        raise Reject("Resize needs constant scales or sizes")
    return scales, sizes


def parse_resize(p: Parser, node: onnx.NodeProto) -> None:
    attrs = node_attrs(node)
    mode = attrs.get("mode", "nearest")
    coord = attrs.get("coordinate_transformation_mode", "half_pixel")
    nearest = attrs.get("nearest_mode", "round_prefer_floor")
    if mode != "nearest":
        raise Reject(f"mode={mode!r}: only nearest resize is integer-exact")
    if coord not in COORDINATE_MODES or nearest not in NEAREST_MODES:
        raise Reject(f"coordinate_transformation_mode={coord!r} / nearest_mode={nearest!r} not supported")
    if "axes" in attrs or attrs.get("keep_aspect_ratio_policy", "stretch") != "stretch":
        raise Reject("the axes / keep_aspect_ratio_policy attributes are not supported")
    scales, sizes = resize_targets(p, node)
    src, out, nodes = _scale_preserving(p, node)
    p.accept(ResizeNearest(p.name(node), src, out, scales, sizes, coord, nearest), nodes)


def parse_maxpool(p: Parser, node: onnx.NodeProto) -> None:
    attrs = node_attrs(node)
    if len([t for t in node.output if t]) != 1:
        raise Reject("MaxPool with an Indices output is not supported")
    if int(attrs.get("storage_order", 0)) != 0:
        raise Reject("storage_order=1 is not supported")
    kernel = int_pair(attrs.get("kernel_shape", ()), "kernel_shape")
    strides, pads, dilations = spatial_attrs(attrs, kernel)
    ceil = bool(int(attrs.get("ceil_mode", 0)))
    src, out, nodes = _scale_preserving(p, node)
    p.accept(MaxPool(p.name(node), src, out, kernel, strides, pads, ceil, dilations), nodes)


def _average_pool(p: Parser, node: onnx.NodeProto, kernel, strides, pads, ceil: bool, include_pad: bool) -> None:
    x = p.dq_view(node.input[0])
    q = p.follow_to_q(node.output[0], activation=False)
    p.define_output(q)
    op = AveragePool(
        p.name(node),
        x.src,
        q.tensor,
        kernel,
        strides,
        pads,
        ceil,
        include_pad,
        x.scale,
        x.zero_point,
        q.scale,
        q.zero_point,
    )
    p.accept(op, [node, x.node, *q.nodes])


def parse_average_pool(p: Parser, node: onnx.NodeProto) -> None:
    attrs = node_attrs(node)
    kernel = int_pair(attrs.get("kernel_shape", ()), "kernel_shape")
    strides, pads, _ = spatial_attrs(attrs, kernel, allow_dilation=False)
    ceil = bool(int(attrs.get("ceil_mode", 0)))
    include_pad = bool(int(attrs.get("count_include_pad", 0)))
    _average_pool(p, node, kernel, strides, pads, ceil, include_pad)


def parse_global_average_pool(p: Parser, node: onnx.NodeProto) -> None:
    _average_pool(p, node, None, (1, 1), (0, 0, 0, 0), False, False)


def _layout_param(p: Parser, node: onnx.NodeProto) -> tuple[str, tuple[int, ...]]:
    """(Reshape kind, param) of Flatten / Reshape / Squeeze / Unsqueeze (constants checked before the inputs)."""
    attrs = node_attrs(node)
    if node.op_type == "Flatten":
        return "flatten", (int(attrs.get("axis", 1)),)
    if node.op_type == "Reshape":
        if int(attrs.get("allowzero", 0)) != 0:
            raise Reject("allowzero=1 is not supported")
        shape = np.asarray(p.const(node.input[1], "Reshape shape"))
        if shape.dtype != np.int64 or shape.ndim != 1:
            raise Reject(f"Reshape shape must be a 1-D int64 constant, got {shape.dtype} {shape.shape}")
        return "reshape", tuple(int(v) for v in shape)
    axes = p.optional_const(node, 1, f"{node.op_type} axes")
    axes = tuple(int(a) for a in (axes.ravel() if axes is not None else attrs.get("axes", ())))
    if node.op_type == "Unsqueeze" and not axes:
        raise Reject("Unsqueeze needs axes")
    return node.op_type.lower(), axes


def parse_layout(p: Parser, node: onnx.NodeProto) -> None:
    """Flatten, Reshape, Squeeze, Unsqueeze (a ``Reshape`` op) and Transpose: int8 values moved, (s, z) kept."""
    if node.op_type == "Transpose":
        perm = tuple(int(v) for v in node_attrs(node).get("perm", ()))
        src, out, nodes = _scale_preserving(p, node)
        p.accept(Transpose(p.name(node), src, out, perm), nodes)
        return
    kind, param = _layout_param(p, node)
    src, out, nodes = _scale_preserving(p, node)
    p.accept(Reshape(p.name(node), src, out, kind, param), nodes)


def parse_concat(p: Parser, node: onnx.NodeProto) -> None:
    axis = int(node_attrs(node).get("axis", 1))
    sources = [p.int8_source(t) for t in node.input]
    if all(s is not None for s in sources):  # int8 passthrough: only without any scale change
        if len({(np.float32(s.scale), s.zero_point) for s in sources}) != 1:
            raise Reject("a Concat of int8 tensors needs one shared scale and zero point")
        s0 = sources[0]
        p.define_like(node.output[0], s0)
        n = len(sources)
        op = Concat(
            p.name(node),
            tuple(s.src for s in sources),
            node.output[0],
            axis,
            (s0.scale,) * n,
            s0.scale,
            (None,) * n,
            (s0.zero_point,) * n if s0.zero_point else (),
            s0.zero_point,
        )
        p.accept(op, [node])
        return
    views = [p.dq_view(t) for t in node.input]
    q = p.follow_to_q(node.output[0], activation=False)
    rescales = []
    for v in views:
        if np.float32(v.scale) == np.float32(q.scale) and v.zero_point == q.zero_point:
            rescales.append(None)
        else:
            m, sh = fx.quantize_multiplier(np.float64(v.scale) / np.float64(q.scale))
            rescales.append((int(m), int(sh)))
    p.define_output(q)
    zps = tuple(v.zero_point for v in views)
    op = Concat(
        p.name(node),
        tuple(v.src for v in views),
        q.tensor,
        axis,
        tuple(v.scale for v in views),
        q.scale,
        tuple(rescales),
        zps if any(zps) else (),
        q.zero_point,
    )
    p.accept(op, [node, *(v.node for v in views), *q.nodes])


def _matmul_op(p: Parser, node: onnx.NodeProto, a: QView, weight, s_w, bias, s_b, dq_nodes) -> None:
    """The constant-weight MatMul op (Gemm, or MatMul with a DQ'd constant B): weight int8 (N, K)."""
    _check_bias_scale(s_b, a.scale, s_w)
    n, k = weight.shape
    folded = bias.astype(np.int64) - a.zero_point * weight.astype(np.int64).sum(axis=1)
    if np.abs(folded).max(initial=0) > fx.INT32_MAX:
        raise Reject("bias - input zero point x sum(w) leaves int32 (docs/int8.md 4.9)")
    _check_accumulator(weight, k, folded)
    q = p.follow_to_q(node.output[0], activation=True)
    m, sh = conv_multipliers_or_reject(a.scale, s_w, q.scale)
    p.define_output(q)
    op = MatMul(
        p.name(node),
        a.src,
        None,
        q.tensor,
        np.ascontiguousarray(weight),
        bias,
        a.scale,
        a.zero_point,
        s_w,
        0,
        q.scale,
        q.zero_point,
        m,
        sh,
        q.bounds,
    )
    p.accept(op, [node, a.node, *dq_nodes, *q.nodes])


def parse_gemm(p: Parser, node: onnx.NodeProto) -> None:
    attrs = node_attrs(node)
    if float(attrs.get("alpha", 1.0)) != 1.0 or (len(node.input) > 2 and float(attrs.get("beta", 1.0)) != 1.0):
        raise Reject("alpha and beta must be 1 (fold them into the scales)")
    if int(attrs.get("transA", 0)) != 0:
        raise Reject("transA=1 is not supported")
    trans_b = int(attrs.get("transB", 0))
    b, s_w, dq_w = p.dq_const(node.input[1], np.int8, "weight", axis=0 if trans_b else 1)
    if b.ndim != 2:
        raise Reject(f"the Gemm weight must be 2-D, got {b.shape}")
    weight = b if trans_b else b.T  # (N, K)
    bias, s_b, dq_b = _bias(p, node, 2, weight.shape[0])
    a = p.dq_view(node.input[0])
    _matmul_op(p, node, a, weight, s_w, bias, s_b, [dq_w, dq_b])


def parse_matmul(p: Parser, node: onnx.NodeProto) -> None:
    dq_b = p.producer.get(node.input[1])
    if dq_b is not None and dq_b.op_type == "DequantizeLinear" and p.is_const(dq_b.input[0]):
        b, s_w, dq_w = p.dq_const(node.input[1], np.int8, "weight", axis=1)
        if b.ndim != 2:
            raise Reject(f"a constant MatMul weight must be 2-D (K, N), got {b.shape}")
        a = p.dq_view(node.input[0])
        _matmul_op(p, node, a, b.T, s_w, np.zeros(b.shape[1], np.int32), None, [dq_w])
        return
    a = p.dq_view(node.input[0])
    b = p.dq_view(node.input[1])
    q = p.follow_to_q(node.output[0], activation=True)
    m, sh = conv_multipliers_or_reject(a.scale, np.array([b.scale]), q.scale)
    p.define_output(q)
    op = MatMul(
        p.name(node),
        a.src,
        b.src,
        q.tensor,
        None,
        None,
        a.scale,
        a.zero_point,
        np.array([np.float64(b.scale)]),
        b.zero_point,
        q.scale,
        q.zero_point,
        m,
        sh,
        q.bounds,
    )
    p.accept(op, [node, a.node, b.node, *q.nodes])
