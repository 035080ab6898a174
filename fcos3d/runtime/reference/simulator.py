"""The integer simulator: runs a QDQ ONNX graph in integer arithmetic exactly as docs/int8.md specifies.

The executable specification that the torch int model and the compiled TVM module must equal bit for bit:
fcos3d.int8 reads the patterns and rounds, kernels.py computes; nothing here rounds on its own.
"""

from __future__ import annotations

from collections.abc import Mapping

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
    IntOp,
    MatMul,
    MaxPool,
    Reshape,
    ResizeNearest,
    Transpose,
    quantize_input,
)
from fcos3d.int8.reader import parse_qdq

from . import kernels, kernels_lut

__all__ = ["Simulator", "run_op"]


# Elements per call of fixedpoint.requantize_int8: its int64 temporaries then stay in cache (about 2.5x
# faster on a 256 x 64 x 112 accumulator than one call on the whole tensor).
_REQUANT_CHUNK = 2**17


def _requantize_channels(
    acc: np.ndarray, multiplier: np.ndarray, shift: np.ndarray, relu: bool, zero_point: int = 0, bounds=None
) -> np.ndarray:
    """``fixedpoint.requantize_int8(acc, m, shift, axis=1, relu, zero_point, bounds)`` applied to blocks of
    channels. Elementwise, so the result is the same integers as one call on the whole tensor."""
    c = acc.shape[1]
    step = max(1, _REQUANT_CHUNK // max(1, acc[:, :1].size))
    kw = dict(axis=1, relu=relu, zero_point=zero_point, bounds=bounds)
    if step >= c:
        return fx.requantize_int8(acc, multiplier, shift, **kw)
    out = np.empty(acc.shape, dtype=np.int8)
    for c0 in range(0, c, step):
        sl = slice(c0, c0 + step)
        out[:, sl] = fx.requantize_int8(acc[:, sl], multiplier[sl], shift[sl], **kw)
    return out


def _conv(op: Conv, x: np.ndarray) -> np.ndarray:
    """acc = conv(x padded by z_x, W) + folded bias (int32, exact); int32 head output, or requantised per
    channel, + z_out, saturated to the op's bounds (docs/int8.md 4.2)."""
    acc = kernels.conv2d_int8(
        x, op.weight, op.folded_bias, op.strides, op.pads, op.groups, op.input_zero_point, op.dilations
    )  # (N, O, Ho, Wo) int32
    if op.int32_output:
        return acc
    if op.output_zero_point == 0 and op.clamp is None:  # the symmetric path
        return _requantize_channels(acc, op.multiplier, op.shift, op.relu)
    return _requantize_channels(acc, op.multiplier, op.shift, op.relu, op.output_zero_point, op.output_bounds)


def _add(op: Add, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """docs/int8.md 4.4: both inputs (minus their zero points) into the common int32 domain, add, one
    requantisation, + z_out, saturation."""
    return fx.add_requantize(a, b, op.rescale, relu=op.relu, zero_points=op.zero_points, bounds=op.clamp)


def _resize(op: ResizeNearest, x: np.ndarray, *like: np.ndarray) -> np.ndarray:
    """Nearest resize: index maps from the runtime input size (and ``like``'s, if the op has it), then a gather."""
    index_h, index_w = op.index_maps(x.shape, *(t.shape for t in like))
    return kernels.resize_nearest(x, index_h, index_w)


def _maxpool(op: MaxPool, x: np.ndarray) -> np.ndarray:
    return kernels.maxpool2d_int8(x, op.kernel, op.strides, op.pads, op.ceil_mode, op.dilations)


def _concat(op: Concat, *xs: np.ndarray) -> np.ndarray:
    """Inputs with another scale or zero point are requantised to the output's
    (``saturate(requantize(x - z_i) + z_out)``), then copied."""
    parts = []
    for x, r, z in zip(xs, op.rescales, op.zero_points_in, strict=True):
        if r is not None:
            x = fx.requantize_int8(x.astype(np.int64) - z if z else x, r[0], r[1], zero_point=op.output_zero_point)
        parts.append(x)
    return np.concatenate(parts, axis=op.axis)


def _clip(op: Clip, x: np.ndarray) -> np.ndarray:
    """docs/int8.md 4.6: ``clamp(x, lo, hi)``, or with a scale change ``clamp(requantize(x - z_in) + z_out, lo, hi)``."""
    if op.rescale is None:
        return fx.saturate(x, op.lo, op.hi).astype(np.int8)
    return fx.requantize_int8(
        x.astype(np.int64) - op.input_zero_point, *op.rescale, zero_point=op.output_zero_point, bounds=(op.lo, op.hi)
    )


def _average_pool(op: AveragePool, x: np.ndarray) -> np.ndarray:
    """docs/int8.md 4.7: integer window sums of ``x - z_in``, one requantisation by ``s_in / (count * s_out)``
    per output position, + z_out, saturation."""
    if op.kernel is None:  # global: one window of H x W
        sums = (x.astype(np.int64).sum(axis=(2, 3), keepdims=True) - op.input_zero_point * x[0, 0].size).astype(
            np.int32
        )
    else:
        sums = kernels.window_sum_int32(x, op.kernel, op.strides, op.pads, op.ceil_mode, op.input_zero_point)
    m, sh = op.requant_tables(x.shape)  # (Ho, Wo), broadcast over N and C
    return fx.requantize_int8(sums, m, sh, zero_point=op.output_zero_point)


def _reshape(op: Reshape, x: np.ndarray) -> np.ndarray:
    return x.reshape(op.output_shape(x.shape))


def _transpose(op: Transpose, x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.transpose(x, op.perm or None))


def _matmul(op: MatMul, a: np.ndarray, *b: np.ndarray) -> np.ndarray:
    """docs/int8.md 4.9: exact int32 ``a @ W^T + folded bias`` (or ``(a - z_a) @ (b - z_b)``), requantised
    along the last axis, + z_out, saturated to the op's bounds. Products summed in float64: exact (< 2**53)."""
    if op.weight is not None:
        acc = np.matmul(a.astype(np.float64), op.weight.T.astype(np.float64)) + op.folded_bias.astype(np.float64)
    else:
        acc = np.matmul(
            a.astype(np.float64) - op.a_zero_point, b[0].astype(np.float64) - op.b_zero_point
        )  # |acc| <= K * 255 * 255
    acc = acc.astype(np.int64)
    return fx.requantize_int8(acc, op.multiplier, op.shift, axis=-1, zero_point=op.output_zero_point, bounds=op.bounds)


# One explicit dispatch table: op class -> kernel(op, *inputs).
_KERNELS = {
    Conv: _conv,
    Add: _add,
    ResizeNearest: _resize,
    MaxPool: _maxpool,
    Concat: _concat,
    Clip: _clip,
    AveragePool: _average_pool,
    Reshape: _reshape,
    Transpose: _transpose,
    MatMul: _matmul,
    **kernels_lut.KERNELS,
}
_EXECUTOR = "the numpy simulator (fcos3d.runtime.reference.simulator)"


def run_op(op: IntOp, *inputs: np.ndarray) -> np.ndarray:
    """Execute one integer op on its int8 inputs (int8 result, or int32 for a head conv).

    Public so that a validator can run a single op on tensors taken from another implementation.
    """
    return implementation(_KERNELS, op, _EXECUTOR)(op, *inputs)


class Simulator:
    """Integer execution of a QDQ or QOperator ONNX model (a path or an ``onnx.ModelProto``; ``input_shapes``
    fixes symbolic dims, see ``parse_qdq``) or of an ``IntGraph``.

    - ``run(x)``: int8 image(s) -> ``{output name: raw integers}``: int8 activations, int32 head outputs (a
      uint8 tensor of the ONNX is its int8 form ``u8 - 128`` on both sides; a uint8 array given for a uint8
      input is converted).
    - ``quantize_input(image)``: the normalised float image -> the int8 input.
    - ``output_scales``: ``{name: float64 1-D scales}`` with ``float = int * scales`` along axis 1.
    - ``run_float(x)``: ``run`` followed by that dequantisation (float64).

    ``graph`` (an ``IntGraph``) holds the integer ops and their constants.
    """

    def __init__(self, model, input_shapes: Mapping[str, tuple[int, ...]] | None = None):
        self.graph: IntGraph = model if isinstance(model, IntGraph) else parse_qdq(model, input_shapes)
        check_supported(_KERNELS, self.graph.ops, _EXECUTOR)
        self._last_use = self._last_uses()

    # -- description --------------------------------------------------------------------------------------

    @property
    def input_names(self) -> list[str]:
        return [i.name for i in self.graph.inputs]

    @property
    def output_names(self) -> list[str]:
        return [o.name for o in self.graph.outputs]

    @property
    def input_scales(self) -> dict[str, float]:
        """Per input, the int8 scale (1/128 for the image, docs/int8.md 4.1)."""
        return {i.name: i.scale for i in self.graph.inputs}

    @property
    def input_zero_points(self) -> dict[str, int]:
        """Per input, the int8 zero point (a uint8 input's ``z_u8 - 128``; 0 on the symmetric path)."""
        return {i.name: i.zero_point for i in self.graph.inputs}

    @property
    def output_zero_points(self) -> dict[str, int]:
        return {o.name: o.zero_point for o in self.graph.outputs}

    @property
    def output_scales(self) -> dict[str, np.ndarray]:
        """Per output, float64 1-D scales along the channel axis: (C,) for int32 heads, (1,) for int8."""
        return {o.name: o.scales.copy() for o in self.graph.outputs}

    @property
    def output_dtypes(self) -> dict[str, str]:
        return {o.name: o.dtype for o in self.graph.outputs}

    # -- execution ----------------------------------------------------------------------------------------

    def quantize_input(self, image: np.ndarray, name: str | None = None) -> np.ndarray:
        """Normalised float image -> int8 by ``fcos3d.int8.ops.quantize_input`` at the input's scale and zero
        point: ``clamp(floor(image / s + 1/2) + z, -128, 127)``. ``name`` picks the input when the graph has
        several."""
        i = self._input(name)
        return quantize_input(image, i.scale, i.zero_point)

    def run(self, x: np.ndarray | Mapping[str, np.ndarray], keep_intermediates: bool = False) -> dict[str, np.ndarray]:
        """int8 input(s) (N, C, H, W) -> ``{output name: int8 or int32 array}``.

        ``x``: one int8 array when the graph has one input, else ``{input name: array}``. With
        ``keep_intermediates`` the result also holds every int8 tensor of the graph under its ONNX name
        (for layer-by-layer comparisons); otherwise tensors are freed after their last use.
        """
        env = self._bind_inputs(x)
        for k, op in enumerate(self.graph.ops):
            env[op.output] = run_op(op, *(env[t] for t in op.inputs))
            if not keep_intermediates:
                for t in op.inputs:
                    if self._last_use.get(t) == k:
                        env.pop(t, None)
        out = {o.name: env[o.tensor] for o in self.graph.outputs}
        if keep_intermediates:
            out = {**env, **out}
        return out

    def run_float(self, x: np.ndarray | Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """``run`` then ``float = (int - zero point) * scale`` per channel, in float64. A float ``x`` is
        quantised first."""
        if isinstance(x, Mapping):
            x = {k: v if np.asarray(v).dtype.kind in "iu" else self.quantize_input(v, k) for k, v in x.items()}
        elif np.asarray(x).dtype.kind not in "iu":
            x = self.quantize_input(x)
        raw = self.run(x)
        result = {}
        for o in self.graph.outputs:
            v = raw[o.name]
            shape = [1] * v.ndim
            shape[1] = -1
            result[o.name] = (v.astype(np.float64) - o.zero_point) * o.scales.reshape(shape)
        return result

    # -- helpers ------------------------------------------------------------------------------------------

    def _input(self, name: str | None):
        inputs = self.graph.inputs
        if name is None:
            if len(inputs) != 1:
                raise ValueError(f"the graph has inputs {self.input_names}: name one")
            return inputs[0]
        for i in inputs:
            if i.name == name:
                return i
        raise KeyError(f"no graph input {name!r}; inputs are {self.input_names}")

    def _bind_inputs(self, x) -> dict[str, np.ndarray]:
        given = dict(x) if isinstance(x, Mapping) else {self._input(None).name: x}
        env = {}
        for i in self.graph.inputs:
            if i.name not in given:
                raise KeyError(f"missing input {i.name!r}")
            v = np.asarray(given[i.name])
            if v.dtype == np.uint8 and i.onnx_dtype == "uint8":  # the ONNX uint8 values: int8 form is u8 - 128
                v = (v.astype(np.int16) - 128).astype(np.int8)
            if v.dtype != np.int8 or v.ndim != len(i.shape):
                raise TypeError(
                    f"input {i.name!r} must be int8 with {len(i.shape)} dims (use quantize_input), "
                    f"got {v.dtype} {v.shape}"
                )
            for d, (want, got) in enumerate(zip(i.shape, v.shape)):
                if want is not None and want != got:
                    raise ValueError(f"input {i.name!r} has shape {v.shape}, the graph declares {i.shape} (dim {d})")
            env[i.tensor] = v
        return env

    def _last_uses(self) -> dict[str, int]:
        keep = {o.tensor for o in self.graph.outputs}
        last = {}
        for k, op in enumerate(self.graph.ops):
            for t in op.inputs:
                if t not in keep:
                    last[t] = k
        return last
