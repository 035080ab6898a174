"""QDQ patterns of the op family of docs/int8.md 8: lookup tables, Mul, Softmax, ConvTranspose, bilinear Resize.

``DQ(x) -> Sigmoid/HardSigmoid/HardSwish/Tanh/LeakyRelu/PRelu -> Q``: a 256-entry int8 table (per channel for PRelu),
or, when the activation feeds an AveragePool with no Q between, a fixed-point table fused with the pool;
``DQ(a), DQ(b) -> Mul -> [Relu | Clip] -> Q``; ``DQ(x) -> Softmax -> Q``; ``DQ(x), DQ(W), [DQ(B)] -> ConvTranspose ->
[Relu | Clip] -> Q``; ``DQ(x) -> Resize(linear) -> Q`` (other Resize modes go on to parse_ops.parse_resize). Every
integer constant is built here, once (the ops_* modules' rules). ``PARSERS`` is merged into ``reader.PARSERS``.
"""

from __future__ import annotations

import numpy as np
import onnx

from . import fixedpoint as fx
from .ops_convtranspose import ConvTranspose
from .ops_lut import LUT_FUNCTIONS, Lut, Mul, lut_table, mul_multiplier, round_half_up_float
from .ops_lut_pool import LUT_POOL_FRACTION_BITS, MIN_FRACTION_BITS, LutAveragePool
from .ops_pool import AveragePool
from .ops_resize_linear import LINEAR_COORDINATE_MODES, ResizeLinear
from .ops_softmax import Softmax, softmax_constants
from .parse_ops import conv_multipliers_or_reject, resize_targets
from .parse_ops import parse_resize as parse_resize_nearest
from .patterns import Parser, Reject, int_pair, node_attrs, spatial_attrs

__all__ = [
    "PARSERS",
    "parse_conv_transpose",
    "parse_lut",
    "parse_mul",
    "parse_prelu",
    "parse_resize",
    "parse_softmax",
]


def parse_lut(p: Parser, node: onnx.NodeProto) -> None:
    """A unary float function of one int8 activation: ``DQ(x) -> Sigmoid/HardSigmoid/HardSwish/Tanh/LeakyRelu -> Q``."""
    f = LUT_FUNCTIONS[node.op_type](node_attrs(node))
    x = p.dq_view(node.input[0])
    if _feeds_pool(p, node):
        return _parse_lut_pool(p, node, x, [f], [])
    q = p.follow_to_q(node.output[0], activation=False)
    table = lut_table(f, x.scale, x.zero_point, q.scale, q.zero_point, q.bounds)
    p.define_output(q)
    p.accept(Lut(p.name(node), x.src, q.tensor, table, node.op_type), [node, x.node, *q.nodes])


def _slope(p: Parser, tensor: str) -> tuple[np.ndarray, list]:
    """PRelu's slope as float32 values: a float constant, or ``DQ`` of an integer constant (quantize_static's
    form), dequantised in float32 as onnxruntime does: ``float32((q - z) * s)``. Returns (values, DQ nodes)."""
    if p.is_const(tensor):
        v = np.asarray(p.const(tensor, "PRelu slope"))
        if v.dtype != np.float32:
            raise Reject(f"PRelu slope has dtype {v.dtype}, expected float32 or a DequantizeLinear of a constant")
        return v, []
    dq = p.producer.get(tensor)
    if dq is None or dq.op_type != "DequantizeLinear" or not p.is_const(dq.input[0]):
        raise Reject("PRelu slope must be a constant (float, or DequantizeLinear of an integer constant)")
    p.check_block_size(dq)
    q = np.asarray(p.const(dq.input[0], "PRelu slope"))
    s = np.asarray(p.const(dq.input[1], "PRelu slope scale"), dtype=np.float32)
    z = p.optional_const(dq, 2, "PRelu slope zero point")
    z = np.zeros((), np.float32) if z is None else np.asarray(z).astype(np.float32)
    if s.size > 1:  # per-axis: scale and zero point along the DQ's axis
        axis = int(node_attrs(dq).get("axis", 1)) % max(q.ndim, 1)
        shape = [1] * q.ndim
        shape[axis] = s.size
        s = s.reshape(shape)
        z = z.reshape(shape) if z.size > 1 else z
    return ((q.astype(np.float32) - z) * s).astype(np.float32), [dq]


def _feeds_pool(p: Parser, node: onnx.NodeProto) -> bool:
    users = p.consumers.get(node.output[0], [])
    return (
        len(users) == 1
        and node.output[0] not in p.output_set
        and users[0].op_type in ("AveragePool", "GlobalAveragePool")
    )


def _parse_lut_pool(p: Parser, node: onnx.NodeProto, x, fs: list, extra_nodes: list) -> None:
    """``DQ(x) -> f -> AveragePool -> Q`` (no Q after f): ``T_c[q] = round_half_up(f_c((q - z_in) s_in) / s_out
    * 2**F)`` int32, then the integer mean of T over each window (docs/int8.md 8.9)."""
    pool_node = p.single_consumer(node.output[0], "AveragePool")
    attrs = node_attrs(pool_node)
    if pool_node.op_type == "GlobalAveragePool":  # its window (H x W) is unknown here, so is the table's F
        raise Reject(f"{node.op_type} -> GlobalAveragePool without a QuantizeLinear between is not supported")
    kernel = int_pair(attrs.get("kernel_shape", ()), "kernel_shape")
    strides, pads, _ = spatial_attrs(attrs, kernel, allow_dilation=False)
    ceil = bool(int(attrs.get("ceil_mode", 0)))
    include_pad = bool(int(attrs.get("count_include_pad", 0)))
    q = p.follow_to_q(pool_node.output[0], activation=False)
    v = (np.arange(-128, 128, dtype=np.float64) - x.zero_point) * np.float64(x.scale)
    real = np.stack([f(v) / np.float64(q.scale) for f in fs])  # f in output steps, (tables, 256)
    # F: at most LUT_POOL_FRACTION_BITS, and small enough that |T| * window fits int32
    window = kernel[0] * kernel[1]
    top = max(float(np.abs(real).max()) + 1.0, 1.0) * window
    fb = min(LUT_POOL_FRACTION_BITS, int(np.floor(np.log2(fx.INT32_MAX / top))))
    if fb < MIN_FRACTION_BITS:
        raise Reject(f"{node.op_type} -> {pool_node.op_type}: a {window}-element window leaves too few table bits")
    table = round_half_up_float(np.ldexp(real, fb))
    table = table if len(fs) > 1 else table[0]
    pool = AveragePool(
        p.name(pool_node), x.src, q.tensor, kernel, strides, pads, ceil, include_pad, 2.0**-fb, 0, 1.0, 0
    )
    p.define_output(q)
    op = LutAveragePool(p.name(node), x.src, q.tensor, table.astype(np.int32), pool, q.zero_point, q.bounds)
    p.accept(op, [node, x.node, *extra_nodes, pool_node, *q.nodes])


def parse_prelu(p: Parser, node: onnx.NodeProto) -> None:
    """``DQ(x) -> PRelu(slope const) -> Q``: one table per channel (axis 1), or one table for a scalar slope."""
    slope, slope_nodes = _slope(p, node.input[1])
    x = p.dq_view(node.input[0])
    flat = slope.reshape(-1).astype(np.float64)
    if flat.size != 1 and slope.shape[0] == 1:  # (1, C, 1, 1) -> (C, 1, 1)
        slope = slope.reshape(slope.shape[1:])
    if flat.size != 1 and (slope.ndim < 1 or any(d != 1 for d in slope.shape[1:])):
        raise Reject(
            f"PRelu slope of shape {slope.shape}: only a scalar or one slope per channel (C, 1, ...) is supported"
        )
    fs = [lambda v, a=a: np.where(v >= 0, v, a * v) for a in flat]
    if _feeds_pool(p, node):
        return _parse_lut_pool(p, node, x, fs, slope_nodes)
    q = p.follow_to_q(node.output[0], activation=False)
    tables = [
        lut_table(lambda v, a=a: np.where(v >= 0, v, a * v), x.scale, x.zero_point, q.scale, q.zero_point, q.bounds)
        for a in flat
    ]
    table = tables[0] if flat.size == 1 else np.stack(tables)
    p.define_output(q)
    p.accept(Lut(p.name(node), x.src, q.tensor, table, "PRelu"), [node, x.node, *slope_nodes, *q.nodes])


def parse_mul(p: Parser, node: onnx.NodeProto) -> None:
    """``DQ(a), DQ(b) -> Mul -> [Relu | Clip] -> Q``: two int8 activations, numpy broadcasting."""
    a = p.dq_view(node.input[0])
    b = p.dq_view(node.input[1])
    q = p.follow_to_q(node.output[0], activation=True)
    m, sh = mul_multiplier(a.scale, b.scale, q.scale)
    p.define_output(q)
    op = Mul(p.name(node), a.src, b.src, q.tensor, a.zero_point, b.zero_point, q.zero_point, m, sh, q.bounds)
    p.accept(op, [node, a.node, b.node, *q.nodes])


def parse_softmax(p: Parser, node: onnx.NodeProto) -> None:
    """``DQ(x) -> Softmax(axis = last) -> Q``: the integer recipe of ops_softmax.py."""
    axis = int(node_attrs(node).get("axis", -1))
    if axis < -1:
        raise Reject(f"Softmax axis={axis}: only the last axis is supported")
    x = p.dq_view(node.input[0])
    q = p.follow_to_q(node.output[0], activation=False)
    try:
        table, m, k = softmax_constants(x.scale, q.scale)
    except ValueError as e:
        raise Reject(str(e)) from None
    p.define_output(q)
    p.accept(
        Softmax(p.name(node), x.src, q.tensor, table, m, k, q.zero_point, q.bounds, axis), [node, x.node, *q.nodes]
    )


def parse_conv_transpose(p: Parser, node: onnx.NodeProto) -> None:
    """``DQ(x), DQ(W int8, axis 1), [DQ(B int32)] -> ConvTranspose (group 1) -> [Relu | Clip] -> Q``."""
    attrs = node_attrs(node)
    weight, s_w, dq_w = p.dq_const(node.input[1], np.int8, "weight", axis=1)
    if weight.ndim != 4:
        raise Reject(f"only 2-D ConvTranspose is supported (weight shape {weight.shape})")
    if int(attrs.get("group", 1)) != 1:
        raise Reject(f"group={attrs.get('group')}: only group 1 ConvTranspose is supported")
    if attrs.get("auto_pad", "NOTSET") != "NOTSET" or "output_shape" in attrs:
        raise Reject("auto_pad / output_shape are not supported: export explicit pads and output_padding")
    if "kernel_shape" in attrs and tuple(attrs["kernel_shape"]) != tuple(weight.shape[2:]):
        raise Reject(f"kernel_shape {tuple(attrs['kernel_shape'])} differs from the weight's {weight.shape[2:]}")
    strides = int_pair(attrs.get("strides", (1, 1)), "strides")
    dilations = int_pair(attrs.get("dilations", (1, 1)), "dilations")
    out_pad = int_pair(attrs.get("output_padding", (0, 0)), "output_padding")
    pads = tuple(int(v) for v in attrs.get("pads", (0, 0, 0, 0)))
    if len(pads) != 4 or min(pads) < 0 or min(strides) < 1 or min(dilations) < 1 or min(out_pad) < 0:
        raise Reject(f"pads {pads} / strides {strides} / dilations {dilations} / output_padding {out_pad} not valid")
    o = weight.shape[1]
    bias, dq_b = np.zeros(o, np.int32), None
    if len(node.input) > 2 and node.input[2]:
        bias, _, dq_b = p.dq_const(node.input[2], np.int32, "bias")
        if bias.size != o:
            raise Reject(f"bias shape {bias.shape} must be ({o},)")
        bias = bias.reshape(o)
    x = p.dq_view(node.input[0])
    # one output gets at most C_in * ceil(kh/s) * ceil(kw/s) products of |x - z| <= 255 and |w| <= 127
    taps = weight.shape[0] * -(-weight.shape[2] // strides[0]) * -(-weight.shape[3] // strides[1])
    if taps * 255 * 127 + int(np.abs(bias.astype(np.int64)).max(initial=0)) > fx.INT32_MAX:
        raise Reject("ConvTranspose accumulator bound exceeds int32")
    q = p.follow_to_q(node.output[0], activation=True)
    m, sh = conv_multipliers_or_reject(x.scale, s_w, q.scale)
    p.define_output(q)
    op = ConvTranspose(
        p.name(node),
        x.src,
        q.tensor,
        weight,
        bias,
        strides,
        pads,
        out_pad,
        dilations,
        x.zero_point,
        q.zero_point,
        m,
        sh,
        q.bounds,
    )
    p.accept(op, [node, x.node, dq_w, dq_b, *q.nodes])


def parse_resize(p: Parser, node: onnx.NodeProto) -> None:
    """``mode=linear`` (bilinear): ``DQ(x) -> Resize -> Q`` with exact integer weights; other modes: the core
    nearest parser (parse_ops.parse_resize)."""
    attrs = node_attrs(node)
    if attrs.get("mode", "nearest") != "linear":
        return parse_resize_nearest(p, node)
    coord = attrs.get("coordinate_transformation_mode", "half_pixel")
    if coord not in LINEAR_COORDINATE_MODES:
        raise Reject(f"coordinate_transformation_mode={coord!r} is not supported for linear resize")
    if (
        int(attrs.get("antialias", 0))
        or "axes" in attrs
        or attrs.get("keep_aspect_ratio_policy", "stretch") != "stretch"
    ):
        raise Reject("the antialias / axes / keep_aspect_ratio_policy attributes are not supported")
    scales, sizes = resize_targets(p, node)
    x = p.dq_view(node.input[0])
    q = p.follow_to_q(node.output[0], activation=False)
    p.define_output(q)
    op = ResizeLinear(
        p.name(node), x.src, q.tensor, scales, sizes, coord, x.scale, x.zero_point, q.scale, q.zero_point, q.bounds
    )
    p.accept(op, [node, x.node, *q.nodes])


PARSERS = {
    **{op: parse_lut for op in LUT_FUNCTIONS},
    "PRelu": parse_prelu,
    "Mul": parse_mul,
    "Softmax": parse_softmax,
    "ConvTranspose": parse_conv_transpose,
    "Resize": parse_resize,
}
