"""Lookup-table unary ops (Sigmoid, HardSigmoid, HardSwish, Tanh, LeakyRelu, PRelu) and the elementwise Mul.

A sibling of ops.py (which re-exports these); docs/int8.md 8.1-8.3 state the integer definitions. Every table and
multiplier is computed once, at parse time, here; executors only index and requantise.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from . import fixedpoint as fx

__all__ = ["LUT_FUNCTIONS", "Lut", "Mul", "lut_table", "mul_multiplier", "round_half_up_float"]


def round_half_up_float(v: np.ndarray) -> np.ndarray:
    """Exact round-half-up (ties toward +inf) of float64 values: ``floor(v) + (v - floor(v) >= 1/2)``.

    ``v - floor(v)`` is exact in float64 (no ``v + 0.5`` whose own rounding could cross a boundary)."""
    v = np.asarray(v, dtype=np.float64)
    fl = np.floor(v)
    return fl + (v - fl >= 0.5)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-x))


def _hard_sigmoid(alpha: float, beta: float) -> Callable[[np.ndarray], np.ndarray]:
    return lambda x: np.clip(alpha * x + beta, 0.0, 1.0)


def _hard_swish(x: np.ndarray) -> np.ndarray:
    return x * np.clip(x / 6.0 + 0.5, 0.0, 1.0)  # ONNX: alpha = 1/6, beta = 1/2


def _leaky(alpha: float) -> Callable[[np.ndarray], np.ndarray]:
    return lambda x: np.where(x >= 0, x, alpha * x)


# ONNX op type -> (attributes -> float64 function of the real input). Attributes as ONNX stores them (float32).
LUT_FUNCTIONS: dict[str, Callable[[dict], Callable[[np.ndarray], np.ndarray]]] = {
    "Sigmoid": lambda a: _sigmoid,
    "HardSigmoid": lambda a: _hard_sigmoid(
        float(np.float32(a.get("alpha", 0.2))), float(np.float32(a.get("beta", 0.5)))
    ),
    "HardSwish": lambda a: _hard_swish,
    "Tanh": lambda a: np.tanh,
    "LeakyRelu": lambda a: _leaky(float(np.float32(a.get("alpha", 0.01)))),
}


def lut_table(
    f: Callable[[np.ndarray], np.ndarray], s_in: float, z_in: int, s_out: float, z_out: int, bounds=(-128, 127)
) -> np.ndarray:
    """int8 (256,): ``T[q + 128] = clamp(round_half_up(f((q - z_in) * s_in) / s_out) + z_out, lo, hi)`` for every
    int8 ``q``, in float64 from the float32 scales as stored (docs/int8.md 8.1)."""
    q = np.arange(-128, 128, dtype=np.float64)
    v = f((q - z_in) * np.float64(s_in)) / np.float64(s_out)
    y = round_half_up_float(v) + z_out
    return np.clip(y, bounds[0], bounds[1]).astype(np.int8)


@dataclass(frozen=True, eq=False)
class Lut:
    """``y = table[x + 128]`` (a per-tensor table (256,)), or ``y[:, c] = table[c, x[:, c] + 128]`` (one table per
    channel of axis 1, (C, 256): PRelu with a per-channel slope). ``kind``: the ONNX op type it computes."""

    name: str
    input: str
    output: str
    table: np.ndarray
    kind: str = ""

    def __post_init__(self):
        t = np.asarray(self.table)
        if t.dtype != np.int8 or t.ndim not in (1, 2) or t.shape[-1] != 256:
            raise ValueError(f"Lut {self.name}: table must be int8 (256,) or (C, 256), got {t.dtype} {t.shape}")

    @property
    def inputs(self) -> tuple[str, ...]:
        return (self.input,)

    @property
    def per_channel(self) -> bool:
        return self.table.ndim == 2

    def output_shape(self, x: tuple[int, ...]) -> tuple[int, ...]:
        if self.per_channel and (len(x) < 2 or x[1] != self.table.shape[0]):
            raise ValueError(f"Lut {self.name}: {self.table.shape[0]} channel tables for an input of shape {x}")
        return tuple(x)


@dataclass(frozen=True, eq=False)
class Mul:
    """int8 x int8 elementwise with numpy broadcasting (docs/int8.md 8.3):
    ``y = clamp(requantize((a - z_a) * (b - z_b), m, shift) + z_out, lo, hi)``, ``(m, shift) =
    quantize_multiplier(s_a * s_b / s_out)`` (float64); ``|(a - z_a)(b - z_b)| <= 255 * 255 < 2**16``."""

    name: str
    a: str
    b: str
    output: str
    zero_point_a: int
    zero_point_b: int
    output_zero_point: int
    multiplier: int
    shift: int
    bounds: tuple[int, int] = (-128, 127)

    @property
    def inputs(self) -> tuple[str, ...]:
        return (self.a, self.b)

    def output_shape(self, a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(np.broadcast_shapes(a, b))


def mul_multiplier(s_a: float, s_b: float, s_out: float) -> tuple[int, int]:
    """``quantize_multiplier(s_a * s_b / s_out)``, float64 in this order from the stored float32 scales."""
    m, sh = fx.quantize_multiplier((np.float64(s_a) * np.float64(s_b)) / np.float64(s_out))
    return int(m), int(sh)
