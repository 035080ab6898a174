"""Layout ops: Reshape (also Flatten, Squeeze, Unsqueeze) and Transpose: pure data movement of int8 values.

Scale and zero point are unchanged and nothing rounds (docs/int8.md 4.8); each op only knows its output shape.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["RESHAPE_KINDS", "Reshape", "Transpose"]

RESHAPE_KINDS = ("reshape", "flatten", "squeeze", "unsqueeze")


@dataclass(frozen=True, eq=False)
class Reshape:
    """A change of shape that keeps the C-order of the values. ``kind`` and ``param`` are the ONNX op's:

    - ``reshape``: ``param`` the target shape, 0 copies the input's dim, -1 is inferred (ONNX allowzero=0);
    - ``flatten``: ``param = (axis,)``: ``(prod(x[:axis]), prod(x[axis:]))``;
    - ``squeeze``: ``param`` the axes to drop (each of size 1), empty: every size-1 axis;
    - ``unsqueeze``: ``param`` the axes of the output that are new size-1 axes.
    """

    name: str
    input: str
    output: str
    kind: str
    param: tuple[int, ...]

    def __post_init__(self):
        if self.kind not in RESHAPE_KINDS:
            raise ValueError(f"{self.name}: Reshape kind {self.kind!r} is not one of {RESHAPE_KINDS}")

    @property
    def inputs(self) -> tuple[str, ...]:
        return (self.input,)

    def output_shape(self, x: tuple[int, ...]) -> tuple[int, ...]:
        x = tuple(int(d) for d in x)
        rank = len(x)
        if self.kind == "flatten":
            axis = self.param[0] + rank if self.param[0] < 0 else self.param[0]
            if not 0 <= axis <= rank:
                raise ValueError(f"{self.name}: Flatten axis {self.param[0]} for rank {rank}")
            return (math.prod(x[:axis]), math.prod(x[axis:]))
        if self.kind == "squeeze":
            axes = {a + rank if a < 0 else a for a in self.param} or {i for i, d in enumerate(x) if d == 1}
            if any(not 0 <= a < rank or x[a] != 1 for a in axes):
                raise ValueError(f"{self.name}: cannot squeeze axes {self.param} of shape {x}")
            return tuple(d for i, d in enumerate(x) if i not in axes)
        if self.kind == "unsqueeze":
            out_rank = rank + len(self.param)
            axes = {a + out_rank if a < 0 else a for a in self.param}
            if len(axes) != len(self.param) or any(not 0 <= a < out_rank for a in axes):
                raise ValueError(f"{self.name}: bad Unsqueeze axes {self.param} for rank {rank}")
            it = iter(x)
            return tuple(1 if i in axes else next(it) for i in range(out_rank))
        out = [x[i] if d == 0 and i < rank else int(d) for i, d in enumerate(self.param)]
        if out.count(-1) > 1 or any(d < -1 for d in out):
            raise ValueError(f"{self.name}: bad Reshape shape {self.param}")
        total = math.prod(x)
        if -1 in out:
            known = math.prod(d for d in out if d != -1)
            if known == 0 or total % known:
                raise ValueError(f"{self.name}: cannot reshape {x} to {self.param}")
            out[out.index(-1)] = total // known
        if math.prod(out) != total:
            raise ValueError(f"{self.name}: cannot reshape {x} ({total} values) to {tuple(out)}")
        return tuple(out)


@dataclass(frozen=True, eq=False)
class Transpose:
    """``y = x.transpose(perm)`` (ONNX Transpose; ``perm`` always given, the default reversal filled in)."""

    name: str
    input: str
    output: str
    perm: tuple[int, ...]

    @property
    def inputs(self) -> tuple[str, ...]:
        return (self.input,)

    def output_shape(self, x: tuple[int, ...]) -> tuple[int, ...]:
        if sorted(self.perm) != list(range(len(x))):
            raise ValueError(f"{self.name}: perm {self.perm} does not fit rank {len(x)}")
        return tuple(int(x[p]) for p in self.perm)
