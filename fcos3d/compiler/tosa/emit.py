"""The TOSA backend: an int8 op list (fcos3d.int8 ``IntGraph``) -> a TOSA 1.0 PRO-INT flatbuffer.

One more executor of the op contract: ``_EMITTERS`` maps each op class to a function that writes its TOSA ops
with the very integer constants the simulator uses (docs/int8.md 9 gives the mapping and why it is exact).
Activations are NHWC inside the graph (what Vela wants); the graph inputs and outputs keep TOSA's NHWC too and
the host transposes (``io`` records each end's permutation for the runner, fcos3d/runtime/tosa_reference.py).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fcos3d.int8 import fixedpoint as fx
from fcos3d.int8.dispatch import check_supported, implementation
from fcos3d.int8.ops import (
    Add,
    AveragePool,
    Clip,
    Concat,
    Conv,
    IntGraph,
    Lut,
    MatMul,
    MaxPool,
    Mul,
    Reshape,
    ResizeNearest,
    Transpose,
    infer_shapes,
)
from fcos3d.io import atomic_write_bytes

from .rescale import TosaEmitError, check_value_range, tosa_rescale
from .writer import TosaWriter

__all__ = ["TosaProgram", "emit_tosa", "NHWC", "EXECUTOR"]

EXECUTOR = "the TOSA emitter (fcos3d.compiler.tosa.emit)"
NHWC = (0, 2, 3, 1)  # tosa tensor = np.transpose(our NCHW tensor, NHWC)
_INT8_RANGE = (fx.INT8_MIN, fx.INT8_MAX)


@dataclass(frozen=True)
class TosaProgram:
    """The .tosa bytes and ``io``: per graph input and output, the ONNX name, the TOSA tensor, its dtype, its
    TOSA shape and ``perm`` (TOSA tensor = ``np.transpose(our tensor, perm)``); plain JSON (meta.json holds it).
    ``op_of``: {TOSA tensor: the name of the int8 op it was written for}."""

    data: bytes
    io: dict
    op_of: dict = field(default_factory=dict)

    def write(self, path: str | Path) -> Path:
        return atomic_write_bytes(path, self.data)


def _identity(rank: int) -> tuple[int, ...]:
    return tuple(range(rank))


def _inverse(perm: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(int(i) for i in np.argsort(perm))


class _Ctx:
    """The TOSA tensor that holds each tensor of the int8 graph, in which permutation of its NCHW axes."""

    def __init__(self, writer: TosaWriter, shapes: Mapping[str, tuple[int, ...]]):
        self.w = writer
        self.shapes = dict(shapes)
        self.where: dict[str, tuple[str, tuple[int, ...]]] = {}  # our tensor -> (tosa name, perm)
        self._variants: dict[tuple[str, tuple[int, ...]], str] = {}

    def shape(self, t: str) -> tuple[int, ...]:
        return tuple(self.shapes[t])

    def define(self, t: str, name: str, perm: tuple[int, ...]) -> None:
        self.where[t] = (name, tuple(perm))
        self._variants[(t, tuple(perm))] = name

    def default_perm(self, t: str) -> tuple[int, ...]:
        rank = len(self.shape(t))
        return NHWC if rank == 4 else _identity(rank)

    def get(self, t: str, perm: tuple[int, ...]) -> str:
        """The TOSA tensor holding ``np.transpose(t, perm)``: a TRANSPOSE of the one we have when needed."""
        perm = tuple(perm)
        if (t, perm) in self._variants:
            return self._variants[(t, perm)]
        name, have = self.where[t]
        inv = _inverse(have)
        tosa_perm = [inv[p] for p in perm]  # transpose(transpose(x, have), tosa_perm) == transpose(x, perm)
        shape = tuple(self.shape(t)[p] for p in perm)
        out = self.w.tensor(f"{name}_T", shape, self.w.dtypes[name])
        a = self.w.attr()
        a.TransposeAttribute(tosa_perm)
        self.w.op(self.w.Op.TRANSPOSE, [name], [out], a)
        self._variants[(t, perm)] = out
        return out

    def tosa_shape(self, t: str, perm: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(self.shape(t)[p] for p in perm)


# ---------------------------------------------------------------------------------------------------------
# Shared pieces: requantisation, exact window padding
# ---------------------------------------------------------------------------------------------------------


def _rescale(
    ctx: _Ctx,
    src: str,
    shape: tuple[int, ...],
    multiplier,
    shift,
    *,
    in_dtype: str,
    out_dtype: str,
    input_zp: int = 0,
    output_zp: int = 0,
    bounds: tuple[int, int] = _INT8_RANGE,
    value_bound: int,
    op_name: str,
    base: str,
) -> str:
    """RESCALE (scale32, SINGLE_ROUND: our one rounding, docs/int8.md 9) then, for bounds narrower than int8,
    CLAMP. ``multiplier``/``shift`` of length > 1 are per channel along the last (TOSA) axis. TOSA's RESCALE
    computes ``sat(apply_scale(v - input_zp) + output_zp)``; ``value_bound`` bounds ``|v - input_zp|``."""
    w = ctx.w
    m_t, s_t = tosa_rescale(multiplier, shift, op_name)
    check_value_range(s_t, int(value_bound), op_name, f"the input of its rescale {base!r}")
    per_channel = m_t.size > 1
    y = w.tensor(base, shape, out_dtype)
    a = w.attr()
    a.RescaleAttribute(True, w.RoundingMode.SINGLE_ROUND, per_channel, False, False)
    w.op(
        w.Op.RESCALE,
        [
            src,
            w.const(f"{base}_multiplier", m_t, "int32", cache=not per_channel),
            w.const(f"{base}_shift", s_t, "int8", cache=not per_channel),
            w.zero_point(input_zp, in_dtype),
            w.zero_point(output_zp, out_dtype),
        ],
        [y],
        a,
    )
    if out_dtype == "int8" and tuple(bounds) != _INT8_RANGE:
        y = _clamp(ctx, y, shape, bounds, f"{base}_clamp")
    return y


def _clamp(ctx: _Ctx, src: str, shape: tuple[int, ...], bounds: tuple[int, int], base: str) -> str:
    out = ctx.w.tensor(base, shape, "int8")
    ctx.w.op(ctx.w.Op.CLAMP, [src], [out], ctx.w.clamp_attr(int(bounds[0]), int(bounds[1]), "int8"))
    return out


def _slice(ctx: _Ctx, src: str, start: list[int], size: list[int], base: str) -> str:
    out = ctx.w.tensor(base, tuple(size), ctx.w.dtypes[src])
    ctx.w.op(
        ctx.w.Op.SLICE,
        [src, ctx.w.shape_const(f"{base}_start", start), ctx.w.shape_const(f"{base}_size", size)],
        [out],
        None,
    )
    return out


def _exact_window(
    ctx: _Ctx,
    x: str,
    kernel: tuple[int, int],
    strides: tuple[int, int],
    pads: tuple[int, int, int, int],
    out_hw: tuple[int, int],
    base: str,
) -> tuple[str, list[int]]:
    """TOSA 1.0 wants ``OH - 1 == (IH - 1 + pad_top + pad_bottom - (KH - 1)) / stride`` exactly (idiv_check):
    the end padding becomes the one the last window needs, and trailing input rows no window reads are sliced
    off. Our pads (top, left, bottom, right) -> TOSA's [top, bottom, left, right]."""
    n, h, w, c = ctx.w.shapes[x]
    size = [h, w]
    ends = []
    for i in range(2):
        end = (out_hw[i] - 1) * strides[i] + kernel[i] - size[i] - pads[i]
        if end < 0:  # rows past the last window: never read
            size[i] += end
            end = 0
        ends.append(end)
    if size != [h, w]:
        x = _slice(ctx, x, [0, 0, 0, 0], [n, size[0], size[1], c], f"{base}_crop")
    return x, [pads[0], ends[0], pads[1], ends[1]]


# ---------------------------------------------------------------------------------------------------------
# The ops
# ---------------------------------------------------------------------------------------------------------


def _emit_conv(ctx: _Ctx, op: Conv) -> None:
    """docs/int8.md 4.2/4.3: CONV2D or DEPTHWISE_CONV2D (int8 x int8 -> int32, input_zp = z_x: TOSA subtracts
    it from every real tap and pads with the real zero, as our folded bias does), the ONNX bias as TOSA's
    int32 bias; a grouped conv is one CONV2D per group on a channel SLICE, concatenated in int32. Then RESCALE
    per output channel (+ z_y) and CLAMP to the fused bounds, or the int32 accumulator itself for a head."""
    w = ctx.w
    n, c, h, wd = ctx.shape(op.input)
    o, cg, kh, kw = op.weight.shape
    dh, dw = op.dilations
    _, _, oh, ow = ctx.shape(op.output)
    x, pad = _exact_window(
        ctx, ctx.get(op.input, NHWC), (dh * (kh - 1) + 1, dw * (kw - 1) + 1), op.strides, op.pads, (oh, ow), op.name
    )
    izp, wzp = w.zero_point(op.input_zero_point, "int8"), w.zero_point(0, "int8")
    acc_shape = (n, oh, ow, o)

    def conv(src: str, weight: np.ndarray, bias: np.ndarray, base: str) -> str:
        out = w.tensor(base, (n, oh, ow, weight.shape[0]), "int32")
        a = w.attr()
        a.Conv2dAttribute(pad, list(op.strides), [dh, dw], False, w.DType.INT32)
        wt = w.const(f"{base}_weight", weight.transpose(0, 2, 3, 1), "int8")  # OIHW -> OHWI
        w.op(w.Op.CONV2D, [src, wt, w.const(f"{base}_bias", bias, "int32"), izp, wzp], [out], a)
        return out

    if op.groups == 1:
        acc = conv(x, op.weight, op.bias, f"{op.name}_acc")
    elif op.groups == c and cg == 1:
        mult = o // c  # output channel c * M + m reads input channel c
        acc = w.tensor(f"{op.name}_acc", acc_shape, "int32")
        a = w.attr()
        a.DepthwiseConv2dAttribute(pad, list(op.strides), [dh, dw], False, w.DType.INT32)
        weight = op.weight.reshape(c, mult, kh, kw).transpose(2, 3, 0, 1)  # (KH, KW, C, M)
        bias = w.const(f"{op.name}_bias", op.bias, "int32")
        w.op(w.Op.DEPTHWISE_CONV2D, [x, w.const(f"{op.name}_weight", weight, "int8"), bias, izp, wzp], [acc], a)
    else:
        og = o // op.groups
        hs, ws = w.shapes[x][1:3]
        parts = []
        for g in range(op.groups):
            xg = _slice(ctx, x, [0, 0, 0, g * cg], [n, hs, ws, cg], f"{op.name}_g{g}_in")
            sl = slice(g * og, (g + 1) * og)
            parts.append(conv(xg, op.weight[sl], op.bias[sl], f"{op.name}_g{g}_acc"))
        acc = w.tensor(f"{op.name}_acc", acc_shape, "int32")
        a = w.attr()
        a.ConcatAttribute(3)
        w.op(w.Op.CONCAT, parts, [acc], a)
    if op.int32_output:
        ctx.define(op.output, acc, NHWC)
        return
    k = cg * kh * kw
    bound = k * 255 * 127 + int(np.abs(op.bias.astype(np.int64)).max(initial=0))  # |x - z_x| <= 255
    y = _rescale(
        ctx,
        acc,
        acc_shape,
        op.multiplier,
        op.shift,
        in_dtype="int32",
        out_dtype="int8",
        output_zp=op.output_zero_point,
        bounds=op.output_bounds,
        value_bound=bound,
        op_name=op.name,
        base=f"{op.name}_out",
    )
    ctx.define(op.output, y, NHWC)


def _broadcast_pair(ctx: _Ctx, a: str, b: str, base: str) -> tuple[str, str, tuple[int, ...], tuple[int, ...]]:
    """Both operands of a broadcasting elementwise op in one layout and one rank (TOSA broadcasts size-1
    dims of equal-rank operands): NHWC for two 4-D tensors, else the NCHW order with the shorter shape
    reshaped to leading 1s (numpy's rule). Returns (a, b, perm, output TOSA shape)."""
    sa, sb = ctx.shape(a), ctx.shape(b)
    out = tuple(np.broadcast_shapes(sa, sb))
    perm = NHWC if len(sa) == len(sb) == 4 else _identity(len(out))
    names = []
    for t, s in ((a, sa), (b, sb)):
        if len(s) == len(out):
            names.append(ctx.get(t, perm))
        else:
            src = ctx.get(t, _identity(len(s)))
            full = (1,) * (len(out) - len(s)) + tuple(s)
            names.append(_reshape(ctx, src, full, f"{base}_rank"))
    return names[0], names[1], perm, tuple(out[p] for p in perm)


def _reshape(ctx: _Ctx, src: str, shape: tuple[int, ...], base: str) -> str:
    out = ctx.w.tensor(base, shape, ctx.w.dtypes[src])
    ctx.w.op(ctx.w.Op.RESHAPE, [src, ctx.w.shape_const(f"{base}_shape", shape)], [out], None)
    return out


def _emit_add(ctx: _Ctx, op: Add) -> None:
    """docs/int8.md 4.4 as TOSA writes an add of differently scaled tensors: RESCALE a and b (minus their zero
    points) into the common int32 domain, ADD, RESCALE the sum (+ z_y), CLAMP to the fused bounds."""
    w, r = ctx.w, op.rescale
    a, b, perm, shape = _broadcast_pair(ctx, op.a, op.b, op.name)
    common = []
    for name, t, m, s, z in (
        ("a", a, r.multiplier_a, r.shift_a, op.zero_point_a),
        ("b", b, r.multiplier_b, r.shift_b, op.zero_point_b),
    ):
        common.append(
            _rescale(
                ctx,
                t,
                w.shapes[t],
                m,
                s,
                in_dtype="int8",
                out_dtype="int32",
                input_zp=z,
                value_bound=255,
                op_name=op.name,
                base=f"{op.name}_{name}32",
            )
        )
    total = w.tensor(f"{op.name}_sum", shape, "int32")
    w.op(w.Op.ADD, common, [total], None)
    # |a32|, |b32| <= 255 * m * 2**(shift - 31) + 1 each (docs/int8.md 4.4: < 2**28 + 2)
    bound = sum(
        math.ceil(255 * m * 2.0 ** (s - 31)) + 1 for m, s in ((r.multiplier_a, r.shift_a), (r.multiplier_b, r.shift_b))
    )
    y = _rescale(
        ctx,
        total,
        shape,
        r.multiplier_out,
        r.shift_out,
        in_dtype="int32",
        out_dtype="int8",
        output_zp=op.output_zero_point,
        bounds=op.output_bounds,
        value_bound=bound,
        op_name=op.name,
        base=f"{op.name}_out",
    )
    ctx.define(op.output, y, perm)


def _emit_mul(ctx: _Ctx, op: Mul) -> None:
    """docs/int8.md 8.3: each operand minus its zero point widened to int32 (an exact RESCALE by 1), MUL
    (shift 0: the exact product, |acc| <= 65,025), RESCALE by ``s_a s_b / s_out`` (+ z_y), CLAMP to the bounds."""
    w = ctx.w
    a, b, perm, shape = _broadcast_pair(ctx, op.a, op.b, op.name)
    wide = []
    for name, t, z in (("a", a, op.zero_point_a), ("b", b, op.zero_point_b)):
        wide.append(
            _rescale(
                ctx,
                t,
                w.shapes[t],
                *fx.quantize_multiplier(1.0),  # (2**29, 2): exactly v, widened to int32
                in_dtype="int8",
                out_dtype="int32",
                input_zp=z,
                value_bound=255,
                op_name=op.name,
                base=f"{op.name}_{name}32",
            )
        )
    prod = w.tensor(f"{op.name}_prod", shape, "int32")
    w.op(w.Op.MUL, [*wide, w.const(f"{op.name}_mulshift", np.array([0]), "int8", cache=True)], [prod], None)
    y = _rescale(
        ctx,
        prod,
        shape,
        op.multiplier,
        op.shift,
        in_dtype="int32",
        out_dtype="int8",
        output_zp=op.output_zero_point,
        bounds=op.bounds,
        value_bound=255 * 255,
        op_name=op.name,
        base=f"{op.name}_out",
    )
    ctx.define(op.output, y, perm)


def _resize_params(
    src_idx: np.ndarray, in_size: int, out_size: int, op: ResizeNearest, axis: int
) -> tuple[int, int, int, int]:
    """TOSA RESIZE NEAREST's (scale_n, scale_d, offset, border) for one axis whose index map is ``src_idx``.

    TOSA: ``y = o * d + offset; i = floor(y / n); r = y - i * n; i += (2 r >= n)``, clamped to [0, in - 1]:
    round half up of ``(o d + offset) / n``. Our source coordinate is the rational ``(o A + B) / D``
    (ops.nearest_indices' transform); each nearest mode is a round half up of it shifted by less than one
    step of 1/D: floor = rhu(c - 1/2 + 1/(2D)), ceil = rhu(c + 1/2 - 1/(2D)), round_prefer_ceil = rhu(c),
    round_prefer_floor = rhu(c - 1/(2D)). The result is checked against ``src_idx`` element by element.
    """
    from fractions import Fraction

    sh = op.scales[axis] if op.scales is not None else Fraction(out_size, in_size)
    p, q = sh.numerator, sh.denominator  # scale = p / q (output / input)
    mode = op.coordinate_mode
    if mode == "asymmetric":
        A, B, D = q, 0, p
    elif mode in ("half_pixel", "pytorch_half_pixel"):
        A, B, D = 2 * q, q - p, 2 * p
        if mode == "pytorch_half_pixel" and out_size == 1:
            A, B, D = 0, 0, 1
    elif mode == "tf_half_pixel_for_nn":
        A, B, D = 2 * q, q, 2 * p
    else:  # align_corners
        A, B, D = (in_size - 1, 0, out_size - 1) if out_size > 1 else (0, 0, 1)
    nearest = op.nearest_mode
    if nearest == "floor":
        n, d, off = 2 * D, 2 * A, 2 * B - D + 1
    elif nearest == "ceil":
        n, d, off = 2 * D, 2 * A, 2 * B + D - 1
    elif nearest == "round_prefer_ceil":
        n, d, off = D, A, B
    else:  # round_prefer_floor
        n, d, off = 2 * D, 2 * A, 2 * B - 1
    if d == 0:  # one output (or a degenerate align_corners): any scale reading the same source works
        d = n
    g = math.gcd(math.gcd(n, d), off)
    n, d, off = n // g, d // g, off // g
    border = (out_size - 1) * d - (in_size - 1) * n + off
    o = np.arange(out_size, dtype=np.int64)
    y = o * d + off
    i = np.floor_divide(y, n)
    i = np.clip(i + (2 * (y - i * n) >= n), 0, in_size - 1)
    problems = []
    if not np.array_equal(i, np.asarray(src_idx)):
        problems.append("its index map is not one TOSA's nearest rule computes")
    if not (0 < n <= 2048 and 0 < d and -n <= off < 16 * n and -16 * n <= border < n and n <= 256 * d):
        problems.append(f"scale {n}/{d}, offset {off}, border {border} are outside TOSA's limits")
    if problems:
        raise TosaEmitError(
            f"{op.name}: nearest Resize {in_size} -> {out_size} ({op.coordinate_mode}, {op.nearest_mode}): "
            + "; ".join(problems)
        )
    return n, d, off, border


def _pow2_upscale(src_idx: np.ndarray, in_size: int, out_size: int) -> int:
    """The factor f in (2, 4, 8) with ``src_idx[o] == o // f`` and ``out_size <= f * in_size`` (an x f upsample,
    then a crop), or 0."""
    o = np.arange(out_size)
    for f in (2, 4, 8):
        if out_size <= f * in_size and np.array_equal(np.asarray(src_idx), o // f):
            return f
    return 0


def _upscale_params(f: int, in_size: int) -> tuple[int, int, int, int]:
    """(scale_n, scale_d, offset, border) of an exact x f nearest upsample computing ``o // f``: round half up of
    ``(2 o + 1 - f) / (2 f)`` (x2: scale 4/2, offset -1, border 1, the form U55/U65 accept: notes/npu.md)."""
    n, d, off = 2 * f, 2, 1 - f
    g = math.gcd(math.gcd(n, d), off)
    n, d, off = n // g, d // g, off // g
    return n, d, off, (f * in_size - 1) * d - (in_size - 1) * n + off


def _emit_resize(ctx: _Ctx, op: ResizeNearest) -> None:
    """docs/int8.md 4.5: TOSA RESIZE NEAREST_NEIGHBOR reproducing the op's exact index maps. An upsample by a
    power of two (to an odd size: then a SLICE of its first rows and columns, the same pixels) takes the form
    every Ethos-U accepts; other index maps take the general (scale, offset, border) of ``_resize_params``."""
    w = ctx.w
    like = ctx.shape(op.like) if op.like is not None else None
    shape = ctx.shape(op.input)
    index_h, index_w = op.index_maps(shape, like)
    n, c, oh, ow = ctx.shape(op.output)
    fy, fx = _pow2_upscale(index_h, shape[2], oh), _pow2_upscale(index_w, shape[3], ow)
    if fy and fx:
        ny, dy, offy, by = _upscale_params(fy, shape[2])
        nx, dx, offx, bx = _upscale_params(fx, shape[3])
        full = (n, fy * shape[2], fx * shape[3], c)
    else:
        ny, dy, offy, by = _resize_params(index_h, shape[2], oh, op, 0)
        nx, dx, offx, bx = _resize_params(index_w, shape[3], ow, op, 1)
        full = ctx.tosa_shape(op.output, NHWC)
    out = w.tensor(op.name, full, "int8")
    a = w.attr()
    a.ResizeAttribute(w.ResizeMode.NEAREST)
    w.op(
        w.Op.RESIZE,
        [
            ctx.get(op.input, NHWC),
            w.shape_const(f"{op.name}_scale", [ny, dy, nx, dx]),
            w.shape_const(f"{op.name}_offset", [offy, offx]),
            w.shape_const(f"{op.name}_border", [by, bx]),
        ],
        [out],
        a,
    )
    if full != ctx.tosa_shape(op.output, NHWC):
        out = _slice(ctx, out, [0, 0, 0, 0], list(ctx.tosa_shape(op.output, NHWC)), f"{op.name}_crop")
    ctx.define(op.output, out, NHWC)


def _emit_maxpool(ctx: _Ctx, op: MaxPool) -> None:
    """docs/int8.md 4.5: MAX_POOL2D (TOSA pads with the lowest value, our -128), the end padding set to what
    the last window (ceil mode's clipped one too) needs."""
    if tuple(op.dilations) != (1, 1):
        raise TosaEmitError(f"{op.name}: MaxPool dilations {op.dilations}: TOSA MAX_POOL2D has no dilation")
    w = ctx.w
    _, _, oh, ow = ctx.shape(op.output)
    x, pad = _exact_window(ctx, ctx.get(op.input, NHWC), op.kernel, op.strides, op.pads, (oh, ow), op.name)
    if pad[0] >= op.kernel[0] or pad[1] >= op.kernel[0] or pad[2] >= op.kernel[1] or pad[3] >= op.kernel[1]:
        raise TosaEmitError(f"{op.name}: MaxPool pads {op.pads} reach the kernel {op.kernel}: TOSA needs pad < kernel")
    out = w.tensor(op.name, ctx.tosa_shape(op.output, NHWC), "int8")
    a = w.attr()
    a.MaxPool2dAttribute(list(op.kernel), list(op.strides), pad, w.NanMode.PROPAGATE)
    w.op(w.Op.MAX_POOL2D, [x], [out], a)
    ctx.define(op.output, out, NHWC)


def _emit_average_pool(ctx: _Ctx, op: AveragePool) -> None:
    """docs/int8.md 4.7: the window sums of ``x - z_in`` as a DEPTHWISE_CONV2D with weights 1 (TOSA pads with
    the real zero: padding adds nothing), then the one requantisation by ``s_in / (count[p] * s_out)``: one
    per-tensor RESCALE when every window has the same count, else a RESCALE per output position (the positions
    as the last axis: TRANSPOSE to NCHW, RESHAPE to (N, C, Ho*Wo), per-channel multipliers). TOSA's own
    AVG_POOL2D rounds its reciprocal differently and is not used."""
    w = ctx.w
    shape = ctx.shape(op.input)
    n, c = shape[:2]
    (kh, kw), strides, pads = op.geometry(shape)
    _, _, oh, ow = ctx.shape(op.output)
    x, pad = _exact_window(ctx, ctx.get(op.input, NHWC), (kh, kw), strides, pads, (oh, ow), op.name)
    sums = w.tensor(f"{op.name}_sum", (n, oh, ow, c), "int32")
    a = w.attr()
    a.DepthwiseConv2dAttribute(pad, list(strides), [1, 1], False, w.DType.INT32)
    ones = w.const(f"{op.name}_ones", np.ones((kh, kw, c, 1)), "int8")
    zeros = w.const(f"{op.name}_zero_bias", np.zeros(c), "int32")
    w.op(
        w.Op.DEPTHWISE_CONV2D,
        [x, ones, zeros, w.zero_point(op.input_zero_point, "int8"), w.zero_point(0, "int8")],
        [sums],
        a,
    )
    m, sh = op.requant_tables(shape)  # (Ho, Wo)
    kw_ = dict(in_dtype="int32", out_dtype="int8", output_zp=op.output_zero_point, op_name=op.name)
    bound = kh * kw * 255
    if (m == m.flat[0]).all() and (sh == sh.flat[0]).all():
        y = _rescale(ctx, sums, (n, oh, ow, c), m.flat[0], sh.flat[0], value_bound=bound, base=op.name, **kw_)
        ctx.define(op.output, y, NHWC)
        return
    ctx.define(f"{op.name}/sums", sums, NHWC)  # an internal tensor of ours: get() transposes it to NCHW
    ctx.shapes[f"{op.name}/sums"] = (n, c, oh, ow)
    flat = _reshape(ctx, ctx.get(f"{op.name}/sums", _identity(4)), (n, c, oh * ow), f"{op.name}_positions")
    y = _rescale(ctx, flat, (n, c, oh * ow), m.ravel(), sh.ravel(), value_bound=bound, base=op.name, **kw_)
    ctx.define(op.output, _reshape(ctx, y, (n, c, oh, ow), f"{op.name}_nchw"), _identity(4))


def _emit_matmul(ctx: _Ctx, op: MatMul) -> None:
    """docs/int8.md 4.9: TOSA MATMUL (rank 3, int8 x int8 -> int32, both zero points) on the operands reshaped
    to (batch, M, K) and (batch, K, N); a constant weight is the (1, K, N) constant, its int32 bias an ADD;
    then RESCALE along N (+ z_y), CLAMP to the fused bounds, RESHAPE back."""
    w = ctx.w
    sa = ctx.shape(op.a)
    out_shape = ctx.shape(op.output)
    k = sa[-1]
    if op.weight is not None:
        nn = op.weight.shape[0]
        a3 = _reshape(ctx, ctx.get(op.a, _identity(len(sa))), (1, int(np.prod(sa[:-1])), k), f"{op.name}_a")
        b3 = w.const(f"{op.name}_weight", op.weight.T[None], "int8")  # (1, K, N)
        b_zp = 0
        batch = 1
    else:
        sb = ctx.shape(op.b)
        batch_shape = tuple(np.broadcast_shapes(tuple(sa[:-2]), tuple(sb[:-2])))
        if tuple(sa[:-2]) != batch_shape or tuple(sb[:-2]) != batch_shape:
            raise TosaEmitError(f"{op.name}: MatMul batch broadcasting {sa} x {sb} is not written for TOSA")
        batch = int(np.prod(batch_shape)) if batch_shape else 1
        a3 = _reshape(ctx, ctx.get(op.a, _identity(len(sa))), (batch, sa[-2], k), f"{op.name}_a")
        b3 = _reshape(ctx, ctx.get(op.b, _identity(len(sb))), (batch, k, sb[-1]), f"{op.name}_b")
        nn, b_zp = sb[-1], op.b_zero_point
    m_rows = w.shapes[a3][1]
    acc = w.tensor(f"{op.name}_acc", (batch, m_rows, nn), "int32")
    w.op(w.Op.MATMUL, [a3, b3, w.zero_point(op.a_zero_point, "int8"), w.zero_point(b_zp, "int8")], [acc], None)
    if op.weight is not None:
        biased = w.tensor(f"{op.name}_biased", (batch, m_rows, nn), "int32")
        w.op(w.Op.ADD, [acc, w.const(f"{op.name}_bias", op.bias.reshape(1, 1, nn), "int32")], [biased], None)
        acc = biased
        bound = k * 255 * 127 + int(np.abs(op.bias.astype(np.int64)).max(initial=0))
    else:
        bound = k * 255 * 255
    y = _rescale(
        ctx,
        acc,
        (batch, m_rows, nn),
        op.multiplier,
        op.shift,
        in_dtype="int32",
        out_dtype="int8",
        output_zp=op.output_zero_point,
        bounds=op.bounds,
        value_bound=bound,
        op_name=op.name,
        base=f"{op.name}_out",
    )
    ctx.define(op.output, _reshape(ctx, y, out_shape, f"{op.name}_shape"), _identity(len(out_shape)))


def _emit_concat(ctx: _Ctx, op: Concat) -> None:
    """docs/int8.md 4.5: inputs at another (scale, zero point) RESCALEd (int8 -> int8) to the output's, then
    CONCAT on the axis in the NHWC layout."""
    w = ctx.w
    perm = ctx.default_perm(op.output)
    rank = len(perm)
    axis = perm.index(op.axis % rank)
    parts = []
    for i, (t, r, z) in enumerate(zip(op.inputs, op.rescales, op.zero_points_in, strict=True)):
        src = ctx.get(t, perm)
        if r is not None:
            src = _rescale(
                ctx,
                src,
                w.shapes[src],
                r[0],
                r[1],
                in_dtype="int8",
                out_dtype="int8",
                input_zp=z,
                output_zp=op.output_zero_point,
                value_bound=255,
                op_name=op.name,
                base=f"{op.name}_in{i}",
            )
        parts.append(src)
    out = w.tensor(op.name, ctx.tosa_shape(op.output, perm), "int8")
    a = w.attr()
    a.ConcatAttribute(axis)
    w.op(w.Op.CONCAT, parts, [out], a)
    ctx.define(op.output, out, perm)


def _emit_clip(ctx: _Ctx, op: Clip) -> None:
    """docs/int8.md 4.6: CLAMP at the quantised bounds, after an int8 -> int8 RESCALE when the scale changes."""
    name, perm = ctx.where[op.input]
    shape = ctx.w.shapes[name]
    if op.rescale is not None:
        y = _rescale(
            ctx,
            name,
            shape,
            op.rescale[0],
            op.rescale[1],
            in_dtype="int8",
            out_dtype="int8",
            input_zp=op.input_zero_point,
            output_zp=op.output_zero_point,
            bounds=(op.lo, op.hi),
            value_bound=255,
            op_name=op.name,
            base=op.name,
        )
    else:
        y = _clamp(ctx, name, shape, (op.lo, op.hi), op.name)
    ctx.define(op.output, y, perm)


def _emit_lut(ctx: _Ctx, op: Lut) -> None:
    """docs/int8.md 8.1/8.2: TABLE with the op's 256 int8 entries (TOSA's int8 TABLE reads ``table[x + 128]``); a
    per-channel table (PRelu per channel, (C, 256)) is one TABLE per channel SLICE, CONCATenated."""
    w = ctx.w
    name, perm = ctx.where[op.input]
    shape = w.shapes[name]
    if not op.per_channel:
        out = w.tensor(op.name, shape, "int8")
        w.op(w.Op.TABLE, [name, w.const(f"{op.name}_table", op.table, "int8")], [out], None)
        ctx.define(op.output, out, perm)
        return
    axis = perm.index(1)  # our channel axis in the TOSA layout
    parts = []
    for c in range(shape[axis]):
        start, size = [0] * len(shape), list(shape)
        start[axis], size[axis] = c, 1
        part = _slice(ctx, name, start, size, f"{op.name}_c{c}_in")
        out = w.tensor(f"{op.name}_c{c}", tuple(size), "int8")
        w.op(w.Op.TABLE, [part, w.const(f"{op.name}_c{c}_table", op.table[c], "int8")], [out], None)
        parts.append(out)
    out = w.tensor(op.name, shape, "int8")
    a = w.attr()
    a.ConcatAttribute(axis)
    w.op(w.Op.CONCAT, parts, [out], a)
    ctx.define(op.output, out, perm)


def _emit_reshape(ctx: _Ctx, op: Reshape) -> None:
    """docs/int8.md 4.8: RESHAPE of the NCHW-ordered values (a TRANSPOSE back from NHWC first when needed)."""
    src = ctx.get(op.input, _identity(len(ctx.shape(op.input))))
    out_shape = ctx.shape(op.output)
    ctx.define(op.output, _reshape(ctx, src, out_shape, op.name), _identity(len(out_shape)))


def _emit_transpose(ctx: _Ctx, op: Transpose) -> None:
    """docs/int8.md 4.8: one TRANSPOSE from the layout the input is in to the output's (none when they agree)."""
    name, have = ctx.where[op.input]
    want = ctx.default_perm(op.output)
    inv = _inverse(have)
    tosa_perm = [inv[op.perm[r]] for r in want]
    if tosa_perm == list(range(len(tosa_perm))):
        ctx.define(op.output, name, want)
        return
    out = ctx.w.tensor(op.name, ctx.tosa_shape(op.output, want), ctx.w.dtypes[name])
    a = ctx.w.attr()
    a.TransposeAttribute(tosa_perm)
    ctx.w.op(ctx.w.Op.TRANSPOSE, [name], [out], a)
    ctx.define(op.output, out, want)


# One explicit dispatch table: op class -> emitter(ctx, op).
_EMITTERS = {
    Conv: _emit_conv,
    Add: _emit_add,
    ResizeNearest: _emit_resize,
    MaxPool: _emit_maxpool,
    Concat: _emit_concat,
    Clip: _emit_clip,
    Lut: _emit_lut,
    Mul: _emit_mul,
    AveragePool: _emit_average_pool,
    MatMul: _emit_matmul,
    Reshape: _emit_reshape,
    Transpose: _emit_transpose,
}


def emit_tosa(graph: IntGraph, input_shapes: Mapping[str, tuple[int, ...]] | None = None) -> TosaProgram:
    """``graph`` -> a TOSA 1.0 flatbuffer computing the same integers (int8 activations, int32 heads).

    ``input_shapes`` ({input name: NCHW shape}) fixes inputs with symbolic dims. Raises ``MissingOpError`` for an
    op class without an emitter and ``TosaEmitError`` (one line naming the op) for a form TOSA cannot express.
    """
    check_supported(_EMITTERS, graph.ops, EXECUTOR)
    given = dict(input_shapes or {})
    shapes_in = {}
    for gi in graph.inputs:
        shape = given.get(gi.name, gi.shape)
        if any(d is None for d in shape):
            raise TosaEmitError(f"input {gi.name!r} has shape {gi.shape}: give its static shape (input_shapes)")
        shapes_in[gi.name] = tuple(int(d) for d in shape)
    shapes = infer_shapes(graph, shapes_in)
    w = TosaWriter()
    ctx = _Ctx(w, shapes)
    io = {"inputs": [], "outputs": []}
    for gi in graph.inputs:
        perm = ctx.default_perm(gi.tensor)
        name = w.input(gi.name, ctx.tosa_shape(gi.tensor, perm), "int8")
        ctx.define(gi.tensor, name, perm)
        io["inputs"].append(
            {"name": gi.name, "tensor": name, "dtype": "int8", "shape": list(w.shapes[name]), "perm": list(perm)}
        )
    for op in graph.ops:
        w.current_op = op.name
        implementation(_EMITTERS, op, EXECUTOR)(ctx, op)
    w.current_op = ""
    used = {i["tensor"] for i in io["inputs"]}
    for go in graph.outputs:
        name, perm = ctx.where[go.tensor]
        if name in used:  # a graph input or an output already listed: TOSA needs a tensor of its own
            out = w.tensor(f"{go.name}_out", w.shapes[name], w.dtypes[name])
            w.op(w.Op.IDENTITY, [name], [out], None)
            name = out
        used.add(name)
        w.output(name)
        io["outputs"].append(
            {
                "name": go.name,
                "tensor": name,
                "dtype": w.dtypes[name],
                "shape": list(w.shapes[name]),
                "perm": list(perm),
            }
        )
    return TosaProgram(w.serialize(), io, dict(w.owner))
