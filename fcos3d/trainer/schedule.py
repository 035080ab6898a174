"""Learning-rate schedules as pure functions of the step: warmup, then step decay or a cyclic schedule.

Pure so that a resumed run computes exactly the lr an uninterrupted run would have used at that step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class LrSchedule:
    """lr(step) = base_lr x warmup factor x policy factor.

    policy "step": multiply by ``gamma`` at each step in ``milestones`` (steps, not epochs).
    policy "cyclic": HAT's/mmcv's one-cycle, rising linearly from base_lr to base_lr * up_ratio over the
      first ``step_ratio_up`` of the run, then cosine down to base_lr * down_ratio.
    policy "constant": no change.
    Warmup: linear from ``warmup_ratio`` x lr to lr over ``warmup_steps``.
    """

    base_lr: float
    total_steps: int
    policy: str = "step"
    milestones: tuple[int, ...] = ()
    gamma: float = 0.1
    up_ratio: float = 10.0
    down_ratio: float = 1e-4
    step_ratio_up: float = 0.4
    warmup_steps: int = 0
    warmup_ratio: float = 0.1

    def __post_init__(self):
        if self.policy not in ("step", "cyclic", "constant"):
            raise ValueError(f"LrSchedule.policy={self.policy!r}: use 'step', 'cyclic' or 'constant'")
        if self.base_lr <= 0 or self.total_steps <= 0:
            raise ValueError(
                f"LrSchedule needs base_lr > 0 and total_steps > 0, got {self.base_lr}, {self.total_steps}"
            )
        if not 0 < self.step_ratio_up < 1:
            raise ValueError(f"LrSchedule.step_ratio_up={self.step_ratio_up}: must lie in (0, 1)")

    def __call__(self, step: int) -> float:
        # 1. the policy's lr at this step
        if self.policy == "step":
            lr = self.base_lr * self.gamma ** sum(step >= m for m in self.milestones)
        elif self.policy == "cyclic":
            up = max(1, int(round(self.total_steps * self.step_ratio_up)))
            if step < up:
                lr = self.base_lr * (1 + (self.up_ratio - 1) * step / up)
            else:
                t = min(1.0, (step - up) / max(1, self.total_steps - up))
                hi, lo = self.base_lr * self.up_ratio, self.base_lr * self.down_ratio
                lr = lo + (hi - lo) * 0.5 * (1 + math.cos(math.pi * t))
        else:
            lr = self.base_lr
        # 2. linear warmup on top
        if step < self.warmup_steps:
            lr *= self.warmup_ratio + (1 - self.warmup_ratio) * step / self.warmup_steps
        return lr
