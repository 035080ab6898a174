"""LR schedules and weight-decay grouping."""

import math

import pytest
import torch
from torch import nn

from fcos3d.trainer.optim import param_groups
from fcos3d.trainer.schedule import LrSchedule


def test_step_with_warmup():
    s = LrSchedule(
        base_lr=1.0, total_steps=100, policy="step", milestones=(50, 80), gamma=0.1, warmup_steps=10, warmup_ratio=0.1
    )
    assert s(0) == pytest.approx(0.1)
    assert s(5) == pytest.approx(0.55)
    assert s(10) == pytest.approx(1.0)
    assert s(50) == pytest.approx(0.1)
    assert s(99) == pytest.approx(0.01)


def test_cyclic():
    s = LrSchedule(base_lr=1e-4, total_steps=100, policy="cyclic", up_ratio=10, down_ratio=1e-4, step_ratio_up=0.4)
    assert s(0) == pytest.approx(1e-4)
    assert s(40) == pytest.approx(1e-3)
    assert s(100) == pytest.approx(1e-8)
    assert s(70) == pytest.approx(1e-8 + (1e-3 - 1e-8) * 0.5 * (1 + math.cos(math.pi * 0.5)))


def test_bad_policy():
    with pytest.raises(ValueError, match="use 'step', 'cyclic' or 'constant'"):
        LrSchedule(base_lr=1.0, total_steps=10, policy="poly")


def test_weight_decay_on_weights_only():
    m = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Conv2d(4, 2, 1))
    decay, no_decay = param_groups(m, 0.01)
    assert {id(p) for p in decay["params"]} == {id(m[0].weight), id(m[2].weight)}
    assert len(no_decay["params"]) == 4 and no_decay["weight_decay"] == 0.0
    torch.optim.AdamW([decay, no_decay], lr=1e-3)
