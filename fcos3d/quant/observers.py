"""Range observers for symmetric int8: per-output-channel for weights, per-tensor for activations.

An observer tracks (min, max) of what it sees and turns it into a scale ``max(|min|, |max|) / 127``;
zero points are always 0 (docs/int8.md section 1). The image input needs none: its scale is fixed at 1/128.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from fcos3d.errors import Fcos3dError

__all__ = [
    "INPUT_SCALE",
    "MIN_SCALE",
    "Observer",
    "MinMaxObserver",
    "MovingAverageMinMaxObserver",
    "PercentileObserver",
    "OBSERVERS",
    "QConfig",
]

# The int8 image is the YUV byte - 128 with scale 1/128: (u8 - 128) / 128 exactly (docs/int8.md 4.1).
INPUT_SCALE = 1.0 / 128.0
# No scale below this (float32 eps): an all-zero tensor or weight channel still gets a valid, tiny scale.
MIN_SCALE = float(torch.finfo(torch.float32).eps)
# Symmetric int8: |q| <= 127 maps the observed absolute maximum; -128 stays unused for weights.
QMAX = 127


class Observer(nn.Module):
    """Base: buffers ``min_val``/``max_val`` (shape (C,) per channel along axis 0, or (1,)), ``initialized``.

    Args:
        num_channels: 1 for per-tensor, C for per-output-channel (reduction over every axis but 0).
        averaging_constant: None keeps the running extremes (min of mins, max of maxes); a number c in
            [0, 1] keeps a moving average ``new = (1 - c) * old + c * batch`` (HAT's convention: c = 0
            freezes after the first observation, c = 1 follows the latest batch).

    All observers share these buffers, so a calibration observer's state loads into a QAT observer of
    another kind (the stages swap them).
    """

    def __init__(self, num_channels: int = 1, averaging_constant: float | None = None):
        super().__init__()
        if averaging_constant is not None and not 0.0 <= averaging_constant <= 1.0:
            raise Fcos3dError(f"averaging_constant={averaging_constant}: use a number in [0, 1] or None")
        self.num_channels = int(num_channels)
        self.averaging_constant = averaging_constant
        self.register_buffer("min_val", torch.zeros(self.num_channels))
        self.register_buffer("max_val", torch.zeros(self.num_channels))
        self.register_buffer("initialized", torch.zeros((), dtype=torch.bool))

    def batch_range(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(min, max) of one batch, (C,) each."""
        if self.num_channels == 1:
            return x.min().reshape(1), x.max().reshape(1)
        flat = x.reshape(x.shape[0], -1)  # (C, rest)
        return flat.min(dim=1).values, flat.max(dim=1).values

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lo, hi = (v.float() for v in self.batch_range(x.detach()))
        c = self.averaging_constant
        if not bool(self.initialized):
            self.min_val.copy_(lo)
            self.max_val.copy_(hi)
            self.initialized.fill_(True)
        elif c is None:
            torch.minimum(self.min_val, lo, out=self.min_val)
            torch.maximum(self.max_val, hi, out=self.max_val)
        else:
            self.min_val.mul_(1.0 - c).add_(lo, alpha=c)
            self.max_val.mul_(1.0 - c).add_(hi, alpha=c)
        return x

    def scale(self) -> torch.Tensor:
        """float32 (C,): ``max(|min|, |max|) / 127``, at least MIN_SCALE. Raises before any observation."""
        if not bool(self.initialized):
            raise Fcos3dError(
                "an activation observer has seen no data: run the calibration stage first "
                "(fcos3d train --stage calibration) or load a calibration/qat checkpoint"
            )
        amax = torch.maximum(self.min_val.abs(), self.max_val.abs())
        # A tensor divisor, not the Python int: torch's CUDA kernels divide by a scalar as a multiplication by
        # its reciprocal, which can land 1 ulp away from the CPU's division, and the scale must not depend on
        # the device (QAT on a GPU evaluates the integers of the int model made on the CPU).
        return (amax / torch.full_like(amax, QMAX)).clamp(min=MIN_SCALE).float()

    def extra_repr(self) -> str:
        return f"num_channels={self.num_channels}, averaging_constant={self.averaging_constant}"


class MinMaxObserver(Observer):
    """Running min/max (averaging_constant None, for calibration) or their moving average (HAT's min_max)."""


class MovingAverageMinMaxObserver(Observer):
    """Moving average of per-batch min/max with constant c (default 0.01)."""

    def __init__(self, num_channels: int = 1, averaging_constant: float | None = 0.01):
        if averaging_constant is None:
            raise Fcos3dError(
                "MovingAverageMinMaxObserver needs an averaging_constant in [0, 1]; use min_max for running extremes"
            )
        super().__init__(num_channels, averaging_constant)


class PercentileObserver(Observer):
    """Per-batch ``percentile`` of |x| as the symmetric range (clips rare outliers), combined over batches.

    Per-tensor only. Over batches: the mean of the batch values (averaging_constant None; ``count`` is
    kept in the state) or a moving average with the given constant.
    """

    def __init__(self, num_channels: int = 1, averaging_constant: float | None = None, percentile: float = 99.99):
        if num_channels != 1:
            raise Fcos3dError("PercentileObserver is per-tensor: use it for activations, min_max for weights")
        if not 0.0 < percentile <= 100.0:
            raise Fcos3dError(f"percentile={percentile}: use a value in (0, 100]")
        super().__init__(num_channels, averaging_constant)
        self.percentile = float(percentile)
        # Not saved: the state every observer kind shares is min/max/initialized, so a percentile calibration
        # loads into the QAT stage's min_max observers.
        self.register_buffer("count", torch.zeros((), dtype=torch.int64), persistent=False)

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = x.detach().abs().flatten().float()
        k = max(1, min(a.numel(), int(round(a.numel() * self.percentile / 100.0))))
        p = a.kthvalue(k).values.reshape(1)  # (1,)
        c = self.averaging_constant
        if not bool(self.initialized) or c is None:
            n = int(self.count)
            new = (self.max_val * n + p) / (n + 1) if bool(self.initialized) else p
            self.max_val.copy_(new)
            self.min_val.copy_(-new)
            self.initialized.fill_(True)
        else:
            self.max_val.mul_(1.0 - c).add_(p, alpha=c)
            self.min_val.copy_(-self.max_val)
        self.count += 1
        return x


# One explicit table: config name -> observer class.
OBSERVERS = {
    "min_max": MinMaxObserver,
    "moving_average_min_max": MovingAverageMinMaxObserver,
    "percentile": PercentileObserver,
}


@dataclass(frozen=True)
class QConfig:
    """Which observers the stages use (the ``qconfig_params`` of ModelConvertPipeline), validated on creation.

    Calibration: ``activation_calibration_observer`` with running extremes (its qkwargs:
    ``activation_calibration_qkwargs``, default none). QAT: ``activation_qat_observer`` with
    ``activation_qkwargs`` (HAT: averaging_constant=0, i.e. the calibrated ranges stay frozen). Weights:
    ``weight_observer`` per output channel with ``weight_qkwargs`` (HAT: averaging_constant=1, the
    latest weights) in every stage.
    """

    activation_calibration_observer: str = "min_max"
    activation_qat_observer: str = "min_max"
    weight_observer: str = "min_max"
    activation_calibration_qkwargs: dict = field(default_factory=dict)
    activation_qkwargs: dict = field(default_factory=lambda: dict(averaging_constant=0.0))
    weight_qkwargs: dict = field(default_factory=lambda: dict(averaging_constant=1.0))

    def __post_init__(self):
        for name in ("activation_calibration_observer", "activation_qat_observer", "weight_observer"):
            value = getattr(self, name)
            if value not in OBSERVERS:
                raise Fcos3dError(f"qconfig_params.{name}={value!r} is unknown: use one of {sorted(OBSERVERS)}")
        if self.weight_observer == "percentile":
            raise Fcos3dError(
                "qconfig_params.weight_observer='percentile' is not supported: weights are per channel, use min_max"
            )

    def activation(self, stage: str) -> Observer:
        if stage == "calibration":
            return OBSERVERS[self.activation_calibration_observer](1, **self.activation_calibration_qkwargs)
        return OBSERVERS[self.activation_qat_observer](1, **self.activation_qkwargs)

    def weight(self, num_channels: int) -> Observer:
        return OBSERVERS[self.weight_observer](num_channels, **self.weight_qkwargs)
