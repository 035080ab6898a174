"""Our requantisation constants as TOSA RESCALE operands, with the conditions under which they are exact.

docs/int8.md 2: ``requantize(v) = floor(v * m * 2**(shift - 31) + 1/2)`` (one rounding, ties toward +inf).
TOSA 1.0 RESCALE with ``scale32``, ``SINGLE_ROUND`` computes ``(v * M + 2**(S - 1)) >> S`` in int64 with
``M`` int32 >= 0, ``2 <= S <= 62`` and REQUIRE ``-2**(S - 1) <= v < 2**(S - 1)``. So ``M = m, S = 31 - shift``
is the same integer function; multiplying ``M`` by ``2**k`` and adding ``k`` to ``S`` keeps it (the rounding
constant scales too), which ``tosa_rescale`` does while ``M < 2**30`` to widen the admitted range of ``v``.
"""

from __future__ import annotations

import numpy as np

from fcos3d.errors import Fcos3dError

__all__ = ["TosaEmitError", "tosa_rescale", "check_value_range"]

MIN_TOSA_SHIFT, MAX_TOSA_SHIFT = 2, 62


class TosaEmitError(Fcos3dError, ValueError):
    """An op of the int8 graph that TOSA cannot express bit-exactly; the message names the op and the reason."""


def tosa_rescale(multiplier, shift, op_name: str) -> tuple[np.ndarray, np.ndarray]:
    """Our ``(m, shift)`` (int32 arrays or ints, ``fixedpoint.quantize_multiplier``'s) -> TOSA ``(M int32,
    S int8)`` arrays with ``(v * M + 2**(S-1)) >> S == requantize(v, m, shift)`` for every admitted ``v``.

    ``m == 0`` (a negligible scale: every value gives 0) -> ``(0, 62)``. Raises ``TosaEmitError`` when
    ``31 - shift`` is outside [2, 62] (scales of 2**29 or more, which no int8 graph has).
    """
    m = np.atleast_1d(np.asarray(multiplier, dtype=np.int64)).copy()
    s = 31 - np.atleast_1d(np.asarray(shift, dtype=np.int64))
    s = np.where(m == 0, MAX_TOSA_SHIFT, s)
    # Normalise: M * 2**k, S + k while M < 2**30 (only the power-of-two multiplier 2**29 moves, by one).
    while True:
        grow = (m > 0) & (m < 2**30) & (s < MAX_TOSA_SHIFT)
        if not grow.any():
            break
        m = np.where(grow, m * 2, m)
        s = np.where(grow, s + 1, s)
    if (s < MIN_TOSA_SHIFT).any() or (s > MAX_TOSA_SHIFT).any():
        raise TosaEmitError(
            f"{op_name}: a requantisation shift {int(s[(s < 2) | (s > 62)][0])} is outside TOSA RESCALE's [2, 62] "
            "(the scale is 2**29 or larger): check the quantisation scales of this op"
        )
    return m.astype(np.int32), s.astype(np.int8)


def check_value_range(tosa_shift: np.ndarray, bound: int, op_name: str, what: str) -> None:
    """TOSA REQUIREs ``|v| < 2**(S - 1)`` of a RESCALE input: refuse (one error) when ``bound``, the largest
    ``|v|`` the op can produce (docs/int8.md's overflow bound), could break it for some channel."""
    s_min = int(np.min(tosa_shift))
    if bound >= 2 ** (s_min - 1):
        raise TosaEmitError(
            f"{op_name}: {what} reaches {bound}, beyond TOSA RESCALE's input range 2**{s_min - 1} for its scale "
            f"(shift {s_min}): the requantisation factor is too large for this accumulator"
        )
