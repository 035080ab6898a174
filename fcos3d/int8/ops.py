"""The integer ops of the int8 graph: frozen dataclasses holding their integer constants (docs/int8.md 4).

Every executor (torch int model, numpy simulator, TVM import, QDQ writer) is a dict from these classes to an
implementation; the rules that several of them need (nearest-resize indices, window sizes, input
quantisation, quantised Clip bounds) are written here once. Activations are int8 with a per-tensor (scale, zero
point) (docs/int8.md 1); the siblings ops_pool.py, ops_layout.py and ops_matmul.py hold the pools, the layout ops
and Gemm/MatMul, and ``OP_CLASSES`` at the end lists them all.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction
from functools import lru_cache

import numpy as np

from . import fixedpoint as fx
from .ops_pool import pool_output_size

__all__ = [
    "COORDINATE_MODES",
    "NEAREST_MODES",
    "Conv",
    "Add",
    "ResizeNearest",
    "MaxPool",
    "Concat",
    "Clip",
    "AveragePool",
    "Reshape",
    "Transpose",
    "MatMul",
    "IntOp",
    "OP_CLASSES",
    "GraphInput",
    "GraphOutput",
    "IntGraph",
    "conv_output_size",
    "pool_output_size",
    "output_bounds",
    "clip_bounds",
    "round_half_up_fraction",
    "nearest_indices",
    "quantize_input",
    "infer_shapes",
]


def conv_output_size(size: int, kernel: int, stride: int, pad_begin: int, pad_end: int) -> int:
    """Output length of a conv / pool window along one axis: ``floor((size + pads - kernel) / stride) + 1``."""
    span = size + pad_begin + pad_end - kernel
    if span < 0 or stride < 1:
        raise ValueError(
            f"window of {kernel} (stride {stride}, pads {pad_begin}+{pad_end}) does not fit an input of {size}"
        )
    return span // stride + 1


def output_bounds(relu: bool, clamp: tuple[int, int] | None, zero_point: int) -> tuple[int, int]:
    """The int8 bounds ``(lo, hi)`` an op saturates its output to (docs/int8.md 4.2).

    ``clamp`` (a fused Clip's quantised bounds) when given; else ``(zero_point, 127)`` with a fused ReLU (the
    real 0 is the zero point) and ``(-128, 127)`` without. Symmetric ReLU: ``(0, 127)``.
    """
    if clamp is not None:
        return clamp
    return (int(zero_point) if relu else fx.INT8_MIN, fx.INT8_MAX)


def round_half_up_fraction(v: Fraction) -> int:
    """``floor(v + 1/2)`` of an exact rational: to nearest, ties toward +inf (the project's one tie rule)."""
    return math.floor(v + Fraction(1, 2))


def clip_bounds(low: float | None, high: float | None, scale: float, zero_point: int) -> tuple[int, int]:
    """Quantised bounds of ``Clip(low, high)`` followed by ``Q(scale, zero_point)`` (docs/int8.md 4.6).

    ``Q(clip(v, a, b)) = sat(clip(round(v / s), round(a / s), round(b / s)) + z)`` because rounding is
    monotonic (it commutes with min and max). So the bounds are ``z + round(a / s)`` and ``z + round(b / s)``,
    each rounded half up from the exact rational value of the stored float32 ``a`` and ``s``, and clamped to
    [-128, 127]; a missing or infinite bound is the int8 limit. ``low > high`` (ONNX: the result is ``high``)
    gives ``lo = hi``, so that min-then-max and max-then-min orders agree.
    """

    def quantised(v: float) -> int:
        if math.isnan(v):
            raise ValueError("clip_bounds: a Clip bound is NaN")
        if math.isinf(v):
            return fx.INT8_MAX if v > 0 else fx.INT8_MIN
        q = int(zero_point) + round_half_up_fraction(Fraction(float(v)) / Fraction(float(scale)))
        return min(max(q, fx.INT8_MIN), fx.INT8_MAX)

    lo = fx.INT8_MIN if low is None else quantised(low)
    hi = fx.INT8_MAX if high is None else quantised(high)
    return (min(lo, hi), hi)


def quantize_input(image: np.ndarray, scale: float, zero_point: int = 0) -> np.ndarray:
    """Normalised float image -> int8: ``clamp(floor(image / s + 1/2) + z, -128, 127)``, computed in float64.

    ``zero_point`` is the int8 zero point (a uint8 input's ``z_u8 - 128``, docs/int8.md 1); 0 on the symmetric
    path.

    Rounding: to nearest, ties toward +inf, like every rounding of the integer path; for the camera input
    ``(u8 - 128) / 128`` with ``s = 1/128`` it is exact (no rounding happens, docs/int8.md 4.1). onnxruntime's
    QuantizeLinear rounds ties to even instead, so for arbitrary floats the two can differ by 1 at exact ties.
    """
    x = np.asarray(image, dtype=np.float64)
    if not np.all(np.isfinite(x)):
        raise ValueError("quantize_input: the image holds NaN or inf")
    return fx.saturate(np.floor(x / np.float64(scale) + 0.5) + int(zero_point)).astype(np.int8)


# ---------------------------------------------------------------------------------------------------------
# Nearest resize: the one index rule (ONNX Resize, mode "nearest"), in exact rationals.
# ---------------------------------------------------------------------------------------------------------

COORDINATE_MODES = ("asymmetric", "half_pixel", "pytorch_half_pixel", "tf_half_pixel_for_nn", "align_corners")
NEAREST_MODES = ("floor", "ceil", "round_prefer_floor", "round_prefer_ceil")


@lru_cache(maxsize=256)
def _nearest_indices_cached(
    in_size: int, out_size: int, scale: Fraction, coordinate_mode: str, nearest_mode: str
) -> np.ndarray:
    half = Fraction(1, 2)
    idx = np.empty(out_size, dtype=np.intp)
    for dst in range(out_size):
        if coordinate_mode == "asymmetric":
            src = dst / scale
        elif coordinate_mode == "half_pixel":
            src = (dst + half) / scale - half
        elif coordinate_mode == "pytorch_half_pixel":
            src = (dst + half) / scale - half if out_size > 1 else Fraction(0)
        elif coordinate_mode == "tf_half_pixel_for_nn":
            src = (dst + half) / scale
        else:  # align_corners
            src = Fraction(dst * (in_size - 1), out_size - 1) if out_size > 1 else Fraction(0)
        if nearest_mode == "floor":
            k = math.floor(src)
        elif nearest_mode == "ceil":
            k = math.ceil(src)
        elif nearest_mode == "round_prefer_floor":
            k = math.ceil(src - half)
        else:  # round_prefer_ceil
            k = math.floor(src + half)
        idx[dst] = min(max(k, 0), in_size - 1)
    idx.flags.writeable = False
    return idx


def nearest_indices(
    in_size: int, out_size: int, scale: Fraction, coordinate_mode: str = "asymmetric", nearest_mode: str = "floor"
) -> np.ndarray:
    """Source index of each output position of an ONNX nearest Resize along one axis, in exact rationals.

    Formula (ONNX Resize): ``x_src = transform(dst)`` by ``coordinate_mode`` (asymmetric: ``dst / scale``;
    half_pixel: ``(dst + 1/2) / scale - 1/2``; pytorch_half_pixel: as half_pixel, 0 when out_size == 1;
    tf_half_pixel_for_nn: ``(dst + 1/2) / scale``; align_corners: ``dst * (in - 1) / (out - 1)``), then
    ``nearest_mode`` (floor, ceil, round_prefer_floor = ``ceil(x - 1/2)``, round_prefer_ceil =
    ``floor(x + 1/2)``), then clamped to ``[0, in_size - 1]``. ``scale`` is the exact rational value of the
    stored float32 scale, or ``out / in`` when the graph gives sizes. Computed with ``fractions.Fraction``
    so ties are decided exactly (onnxruntime evaluates the same formula in float32). torch's
    ``interpolate(mode="nearest", scale_factor=2)`` exports asymmetric + floor: ``src = floor(dst / 2)``.
    Returns a read-only int array of length ``out_size``.
    """
    if coordinate_mode not in COORDINATE_MODES or nearest_mode not in NEAREST_MODES:
        raise ValueError(f"nearest_indices: unsupported modes {coordinate_mode!r} / {nearest_mode!r}")
    if in_size < 1 or out_size < 1 or scale <= 0:
        raise ValueError(f"nearest_indices: bad sizes {in_size} -> {out_size} or scale {scale}")
    return _nearest_indices_cached(int(in_size), int(out_size), Fraction(scale), coordinate_mode, nearest_mode)


# ---------------------------------------------------------------------------------------------------------
# The ops. Tensor names refer to int8 tensors (a Q output or an int8 graph input), except the output of a
# head Conv, which is its int32 accumulator. ``inputs`` lists the tensors an executor passes, in order.
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Conv:
    """int8 conv (docs/int8.md 4.2) or, with ``output_scale is None``, an int32 head conv (4.3).

    ``pads = (top, left, bottom, right)``; ``weight`` int8 (O, C/groups, kh, kw); ``bias`` int32 (O,)
    (zeros when the ONNX conv has none; the ONNX bias, before the input zero point is folded in:
    ``folded_bias``); ``input_scale`` a Python float holding the stored float32 scale; ``weight_scale``
    float64 (O,) holding the stored float32 scales; ``(multiplier, shift)`` int32 (O,) made by
    ``fixedpoint.conv_multipliers`` (None for int32 output).

    Zero points (docs/int8.md 4.2, all 0 on the symmetric path): the input is padded with
    ``input_zero_point`` (the real zero) and ``-input_zero_point * sum(w[c])`` is folded into the bias;
    ``output_zero_point`` is added after requantisation. ``clamp``: quantised bounds of a fused Clip
    (``output_bounds`` gives the bounds in every case). ``dilations``: (dh, dw).
    """

    name: str
    input: str
    output: str
    weight: np.ndarray
    bias: np.ndarray
    strides: tuple[int, int]
    pads: tuple[int, int, int, int]
    groups: int
    relu: bool
    input_scale: float
    weight_scale: np.ndarray
    output_scale: float | None
    multiplier: np.ndarray | None
    shift: np.ndarray | None
    input_zero_point: int = 0
    output_zero_point: int = 0
    clamp: tuple[int, int] | None = None
    dilations: tuple[int, int] = (1, 1)

    @property
    def inputs(self) -> tuple[str, ...]:
        return (self.input,)

    @property
    def output_bounds(self) -> tuple[int, int]:
        return output_bounds(self.relu, self.clamp, self.output_zero_point)

    @property
    def folded_bias(self) -> np.ndarray:
        """int32 (O,): ``bias[c] - input_zero_point * sum_k w[c, k]`` (= ``bias`` when the zero point is 0).

        With the input padded by its zero point, ``sum_k (x_k - z) w_k + bias = sum_k x_k w_k + folded_bias``
        exactly; the reader checks that it fits int32 with the accumulator bound (docs/int8.md 4.2).
        """
        if self.input_zero_point == 0:
            return self.bias
        wsum = self.weight.reshape(self.weight.shape[0], -1).astype(np.int64).sum(axis=1)
        return (self.bias.astype(np.int64) - int(self.input_zero_point) * wsum).astype(np.int32)

    @property
    def int32_output(self) -> bool:
        return self.output_scale is None

    @property
    def accumulator_scale(self) -> np.ndarray:
        """float64 (O,): the real value of one accumulator step per channel, ``s_in * s_w[c]``."""
        return np.float64(self.input_scale) * self.weight_scale

    def output_shape(self, x: tuple[int, ...]) -> tuple[int, ...]:
        o, _, kh, kw = self.weight.shape
        dh, dw = self.dilations
        return (
            x[0],
            o,
            conv_output_size(x[2], dh * (kh - 1) + 1, self.strides[0], self.pads[0], self.pads[2]),
            conv_output_size(x[3], dw * (kw - 1) + 1, self.strides[1], self.pads[1], self.pads[3]),
        )


@dataclass(frozen=True, eq=False)
class Add:
    """int8 + int8 with different scales and zero points, optional fused ReLU or Clip bounds (docs/int8.md 4.4,
    ``fixedpoint.add_requantize``)."""

    name: str
    a: str
    b: str
    output: str
    scale_a: float
    scale_b: float
    output_scale: float
    rescale: fx.AddRescale
    relu: bool = False
    zero_point_a: int = 0
    zero_point_b: int = 0
    output_zero_point: int = 0
    clamp: tuple[int, int] | None = None

    @property
    def inputs(self) -> tuple[str, ...]:
        return (self.a, self.b)

    @property
    def zero_points(self) -> tuple[int, int, int]:
        return (self.zero_point_a, self.zero_point_b, self.output_zero_point)

    @property
    def output_bounds(self) -> tuple[int, int]:
        return output_bounds(self.relu, self.clamp, self.output_zero_point)

    def output_shape(self, a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(np.broadcast_shapes(a, b))


@dataclass(frozen=True, eq=False)
class ResizeNearest:
    """ONNX nearest Resize of the two spatial axes (docs/int8.md 4.5); the scale is unchanged.

    Exactly one of ``scales`` (exact rationals of the stored float32 H and W scales; output size
    ``floor(in * scale)``), ``sizes`` (the fixed NCHW output size; H, W scales ``out / in``; N and C must
    equal the input's) and ``like`` (a second input tensor whose H, W is the output size at run time, as
    ``sizes``: the torch int model's resize, whose sizes follow the image; the QDQ writer fixes them) is set.
    """

    name: str
    input: str
    output: str
    scales: tuple[Fraction, Fraction] | None
    sizes: tuple[int, int, int, int] | None
    coordinate_mode: str = "asymmetric"
    nearest_mode: str = "floor"
    like: str | None = None

    def __post_init__(self):
        if sum(v is not None for v in (self.scales, self.sizes, self.like)) != 1:
            raise ValueError(f"{self.name}: a ResizeNearest needs exactly one of scales, sizes and like")
        if self.coordinate_mode not in COORDINATE_MODES or self.nearest_mode not in NEAREST_MODES:
            raise ValueError(f"{self.name}: unsupported modes {self.coordinate_mode!r} / {self.nearest_mode!r}")

    @property
    def inputs(self) -> tuple[str, ...]:
        return (self.input,) if self.like is None else (self.input, self.like)

    def _output_hw(self, shape: tuple[int, ...], like: tuple[int, ...] | None) -> tuple[int, int, Fraction, Fraction]:
        n, c, h, w = shape
        if self.scales is not None:
            sh, sw = self.scales
            oh, ow = int(h * sh), int(w * sw)  # ONNX: floor(in * scale), exact in rationals
        else:
            if self.sizes is not None:
                if tuple(self.sizes[:2]) != (n, c):
                    raise ValueError(f"{self.name}: Resize sizes {self.sizes} must keep N and C of the input {shape}")
                oh, ow = self.sizes[2:]
            elif like is None:
                raise ValueError(f"{self.name}: the output size comes from the tensor {self.like!r}: pass its shape")
            else:
                oh, ow = like[2:]
            sh, sw = Fraction(oh, h), Fraction(ow, w)
        if oh < 1 or ow < 1:
            raise ValueError(f"{self.name}: resize of {h}x{w} by {self.scales} gives an empty output")
        return oh, ow, sh, sw

    def index_maps(self, shape: tuple[int, ...], like: tuple[int, ...] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The source row and column of every output pixel, for an NCHW input of ``shape`` (exact rationals).

        ``like``: the shape of the ``like`` tensor (needed only when the op has one). The one place every
        executor takes nearest-resize indices from.
        """
        oh, ow, sh, sw = self._output_hw(shape, like)
        h, w = shape[2:]
        return (
            nearest_indices(h, oh, sh, self.coordinate_mode, self.nearest_mode),
            nearest_indices(w, ow, sw, self.coordinate_mode, self.nearest_mode),
        )

    def output_shape(self, x: tuple[int, ...], like: tuple[int, ...] | None = None) -> tuple[int, ...]:
        oh, ow, _, _ = self._output_hw(x, like)
        return (x[0], x[1], oh, ow)


@dataclass(frozen=True, eq=False)
class MaxPool:
    """int8 max pool with -128 padding (docs/int8.md 4.5); scale and zero point are unchanged.

    ``ceil_mode``: ONNX's ceil output size (a last window that would start in the right padding is dropped),
    the extra windows clipped to the input; ``dilations`` (dh, dw).
    """

    name: str
    input: str
    output: str
    kernel: tuple[int, int]
    strides: tuple[int, int]
    pads: tuple[int, int, int, int]
    ceil_mode: bool = False
    dilations: tuple[int, int] = (1, 1)

    @property
    def inputs(self) -> tuple[str, ...]:
        return (self.input,)

    def output_shape(self, x: tuple[int, ...]) -> tuple[int, ...]:
        return (
            x[0],
            x[1],
            pool_output_size(
                x[2], self.kernel[0], self.strides[0], self.pads[0], self.pads[2], self.ceil_mode, self.dilations[0]
            ),
            pool_output_size(
                x[3], self.kernel[1], self.strides[1], self.pads[1], self.pads[3], self.ceil_mode, self.dilations[1]
            ),
        )


@dataclass(frozen=True, eq=False)
class Concat:
    """Concatenation of int8 tensors (docs/int8.md 4.5).

    ``rescales[i]`` is None when input i already has the output scale and zero point, else the per-tensor
    ``(multiplier, shift)`` of ``s_i / s_out`` applied as ``saturate(requantize(x - z_i) + z_out)`` before
    copying. ``input_zero_points``: empty means all 0.
    """

    name: str
    inputs: tuple[str, ...]
    output: str
    axis: int
    input_scales: tuple[float, ...]
    output_scale: float
    rescales: tuple[tuple[int, int] | None, ...]
    input_zero_points: tuple[int, ...] = ()
    output_zero_point: int = 0

    @property
    def zero_points_in(self) -> tuple[int, ...]:
        return self.input_zero_points or (0,) * len(self.inputs)

    def output_shape(self, *xs: tuple[int, ...]) -> tuple[int, ...]:
        out = list(xs[0])
        out[self.axis] = sum(x[self.axis] for x in xs)
        return tuple(out)


@dataclass(frozen=True, eq=False)
class Clip:
    """Clip (and a ReLU or Clip that no Conv/Add absorbed) on an int8 tensor (docs/int8.md 4.6).

    ``y = clamp(x, lo, hi)`` when input and output share scale and zero point (``rescale`` None), else
    ``y = clamp(requantize(x - z_in, m, shift) + z_out, lo, hi)`` with ``(m, shift)`` of ``s_in / s_out``.
    ``(lo, hi)``: ``clip_bounds`` of the Clip's float bounds at the output's scale and zero point.
    """

    name: str
    input: str
    output: str
    lo: int
    hi: int
    input_scale: float
    input_zero_point: int
    output_scale: float
    output_zero_point: int
    rescale: tuple[int, int] | None

    @property
    def inputs(self) -> tuple[str, ...]:
        return (self.input,)

    def output_shape(self, x: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(x)


@dataclass(frozen=True)
class GraphInput:
    """One graph input. ``tensor`` is the int8 tensor the ops read; ``float_input``: the ONNX input is the
    float image and ``Q(scale, zero point)`` makes ``tensor`` (else the ONNX input is that integer tensor).
    ``shape``: the declared shape, None for a symbolic dim. ``zero_point``: int8 zero point (docs/int8.md 1);
    ``onnx_dtype``: the ONNX type of the quantised tensor, "int8" or "uint8" (a uint8 tensor ``q`` is the int8
    tensor ``q - 128`` here, with zero point ``z_u8 - 128``: feed ``u8 - 128``)."""

    name: str
    tensor: str
    scale: float
    float_input: bool
    shape: tuple[int | None, ...]
    zero_point: int = 0
    onnx_dtype: str = "int8"


@dataclass(frozen=True)
class GraphOutput:
    """One graph output: ``dtype`` 'int8' or 'int32'; ``float = (int - zero_point) * scales`` along axis 1.

    ``scales`` is float64 1-D: per output channel (O,) for int32 head outputs (``s_in * s_w[c]``), one
    element for int8 outputs (the per-tensor activation scale, broadcast over channels). ``zero_point``: the
    int8 zero point (0 for int32 heads); ``onnx_dtype``: "int8" or "uint8" (the quantised type in the ONNX:
    a uint8 value is the int8 output + 128) or "int32".
    """

    name: str
    tensor: str
    dtype: str
    scales: np.ndarray
    zero_point: int = 0
    onnx_dtype: str = ""

    def __post_init__(self):
        if not self.onnx_dtype:
            object.__setattr__(self, "onnx_dtype", self.dtype)


@dataclass(frozen=True)
class IntGraph:
    """An integer graph: inputs, ops in execution order, outputs, and every int8 tensor's scale and zero point
    (``tensor_zero_points``: a tensor missing there has zero point 0)."""

    inputs: tuple[GraphInput, ...]
    ops: tuple[IntOp, ...]
    outputs: tuple[GraphOutput, ...]
    tensor_scales: dict[str, float]
    tensor_zero_points: dict[str, int] = field(default_factory=dict)

    def zero_point(self, tensor: str) -> int:
        return int(self.tensor_zero_points.get(tensor, 0))


def infer_shapes(graph: IntGraph, input_shapes: dict[str, tuple[int, ...]]) -> dict[str, tuple[int, ...]]:
    """Every tensor's static shape, from the shapes of the graph inputs (``{input name: NCHW shape}``)."""
    shapes = {i.tensor: tuple(int(d) for d in input_shapes[i.name]) for i in graph.inputs}
    for op in graph.ops:
        shapes[op.output] = op.output_shape(*(shapes[t] for t in op.inputs))
    return shapes


# The op classes of the other modules of this room (no import cycle: they import fixedpoint only).
from .ops_convtranspose import ConvTranspose  # noqa: E402
from .ops_layout import Reshape, Transpose  # noqa: E402
from .ops_lut import Lut, Mul  # noqa: E402
from .ops_lut_pool import LutAveragePool  # noqa: E402
from .ops_matmul import MatMul  # noqa: E402
from .ops_pool import AveragePool  # noqa: E402
from .ops_resize_linear import ResizeLinear  # noqa: E402
from .ops_softmax import Softmax  # noqa: E402

IntOp = (
    Conv
    | Add
    | ResizeNearest
    | MaxPool
    | Concat
    | Clip
    | AveragePool
    | Reshape
    | Transpose
    | MatMul
    | Lut
    | Mul
    | Softmax
    | ConvTranspose
    | ResizeLinear
    | LutAveragePool
)
OP_CLASSES: tuple[type, ...] = (
    Conv,
    Add,
    ResizeNearest,
    MaxPool,
    Concat,
    Clip,
    AveragePool,
    Reshape,
    Transpose,
    MatMul,
    Lut,
    Mul,
    Softmax,
    ConvTranspose,
    ResizeLinear,
    LutAveragePool,
)
