"""BatchNorm folding: conv (+ bias) followed by BN in eval mode -> one conv with a bias, same output.

Each BN folds with its own eps (PT2E's hard-coded 1e-5 cost 4 mAP: notes/int8.md). The head's convs are
shared across levels but each level has its own BN, so every level gets its own folded copy.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["fold_conv_bn"]


@torch.no_grad()
def fold_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(weight, bias) of the conv with ``bn`` folded in; new tensors (never the shared Parameters).

    Formula (float64, then float32): ``k = gamma / sqrt(running_var + eps)``; ``w' = w * k`` per output
    channel; ``b' = beta + (b - running_mean) * k`` (b = 0 without a conv bias). Without a BN the conv's
    own weight and bias are copied.
    """
    w = conv.weight.detach().double()
    b = conv.bias.detach().double() if conv.bias is not None else None
    if bn is None:
        return w.float().clone(), (b.float().clone() if b is not None else None)
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError("fold_conv_bn: the BatchNorm tracks no running statistics (track_running_stats=False)")
    gamma = (
        bn.weight.detach().double() if bn.weight is not None else torch.ones_like(bn.running_var, dtype=torch.float64)
    )
    beta = bn.bias.detach().double() if bn.bias is not None else torch.zeros_like(bn.running_mean, dtype=torch.float64)
    k = gamma / torch.sqrt(bn.running_var.double() + bn.eps)  # (O,)
    w_f = w * k.reshape(-1, 1, 1, 1)
    b0 = b if b is not None else torch.zeros_like(k)
    b_f = beta + (b0 - bn.running_mean.double()) * k
    return w_f.float(), b_f.float()
