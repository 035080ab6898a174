"""Optimisers with weight decay on weights only: biases and normalisation parameters are not decayed.

Decaying BN scales and biases only hurts (they carry no capacity to regularise) and, for int8, pulls
BN scales toward zero, which folding then turns into tiny weight scales.
"""

from __future__ import annotations

import torch
from torch import nn

_NORM_TYPES = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm)


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two groups: conv/linear weights (decayed) and everything else (no decay)."""
    decay, no_decay, seen = [], [], set()
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            # Tied parameters (the head's convs shared across levels) appear under several modules.
            if not p.requires_grad or id(p) in seen:
                continue
            seen.add(id(p))
            if name == "weight" and not isinstance(module, _NORM_TYPES) and p.ndim > 1:
                decay.append(p)
            else:
                no_decay.append(p)
    return [dict(params=decay, weight_decay=weight_decay), dict(params=no_decay, weight_decay=0.0)]


def AdamW(model: nn.Module, lr: float, weight_decay: float = 0.01, betas=(0.9, 0.999), eps: float = 1e-8):
    return torch.optim.AdamW(param_groups(model, weight_decay), lr=lr, betas=betas, eps=eps)


def SGD(model: nn.Module, lr: float, weight_decay: float = 1e-4, momentum: float = 0.9, nesterov: bool = False):
    return torch.optim.SGD(param_groups(model, weight_decay), lr=lr, momentum=momentum, nesterov=nesterov)
