"""FCOS3D's training losses on the raw head outputs and FCOS3DTarget's targets (mmdet3d's recipe).

Focal loss for classes, SmoothL1 per regression group, sin-difference rotation, CE for direction and
attribute, BCE for centerness; a dict of named scalar losses the trainer sums.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F

from fcos3d.data.classes import NO_ATTRIBUTE
from fcos3d.errors import Fcos3dError

__all__ = ["FCOS3DLoss", "distill_loss", "sigmoid_focal_loss", "smooth_l1", "flatten_levels"]

# Code weights of the 9 regression targets: offset x, y, depth, w, l, h, rot, vx, vz.
PRETRAIN_CODE_WEIGHTS = (1.0, 1.0, 0.2, 1.0, 1.0, 1.0, 1.0, 0.05, 0.05)
# Beyond exp(EXP_CLAMP) metres a depth or size is absurd; clamping keeps one bad step from giving inf.
EXP_CLAMP = 8.0


def sigmoid_focal_loss(
    logits: torch.Tensor, targets: torch.Tensor, gamma: float = 2.0, alpha: float = 0.25
) -> torch.Tensor:
    """Summed focal loss: sum of -alpha_t (1 - p_t)^gamma log(p_t) over all elements.

    logits and targets (0/1 floats) of the same shape; p_t = p for targets 1 and 1 - p for 0,
    alpha_t = alpha for targets 1 and 1 - alpha for 0. log(p_t) comes from BCE-with-logits (stable).
    """
    p = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")  # -log(p_t)
    p_t = p * targets + (1 - p) * (1 - targets)
    alpha_t = alpha * targets + (1 - alpha) * (1 - targets)
    return (alpha_t * (1 - p_t) ** gamma * ce).sum()


def smooth_l1(diff: torch.Tensor, beta: float) -> torch.Tensor:
    """Elementwise SmoothL1 of a difference: 0.5 d^2 / beta below beta, |d| - 0.5 beta above."""
    d = diff.abs()
    return torch.where(d < beta, 0.5 * d * d / beta, d - 0.5 * beta)


def flatten_levels(maps: Sequence[torch.Tensor]) -> torch.Tensor:
    """[(N, C, H_i, W_i) per level] -> (N, P, C), levels concatenated, each row-major (as the targets)."""
    return torch.cat([m.flatten(2).transpose(1, 2) for m in maps], dim=1)


class FCOS3DLoss:
    """Losses of FCOS3D.

    Args:
        num_classes: classes of the focal loss (label num_classes = background).
        gamma, alpha: focal loss.
        beta: SmoothL1 beta (1/9).
        code_weights: weights of the 9 regression targets (offset 2, depth, size 3, rot, velo 2);
            the default is the pretraining one (depth 0.2); the float stage sets depth to 1.0.
        loss_weights: {name: weight} multiplying the named losses (default all 1).
        skip_no_attribute: positives whose attribute is NO_ATTRIBUTE do not enter the attribute loss
            (cones, barriers and unlabelled objects; the result writer maps attributes per class).

    __call__(raw {head: [(N, C, H, W) per level]}, targets from FCOS3DTarget) -> dict of scalars:
    loss_cls, loss_offset, loss_depth, loss_size, loss_rot, loss_velo, loss_dir, loss_attr,
    loss_centerness (those whose head exists). Normalisation as mmdet3d: the focal loss by
    (positives + images), the regression and direction losses by positives (each loss sums its
    channels), attribute CE by the sum of the positives' centerness targets, centerness BCE by positives.
    Depth and size are compared in metres: exp(raw) against the metre targets (mmdet3d's coder).
    """

    def __init__(
        self,
        num_classes: int = 10,
        gamma: float = 2.0,
        alpha: float = 0.25,
        beta: float = 1.0 / 9.0,
        code_weights: Sequence[float] = PRETRAIN_CODE_WEIGHTS,
        loss_weights: Mapping[str, float] | None = None,
        skip_no_attribute: bool = True,
    ):
        if len(code_weights) != 9:
            raise Fcos3dError(
                f"code_weights has {len(code_weights)} values; give 9 (offset 2, depth, size 3, rot, velo 2)"
            )
        self.num_classes = num_classes
        self.gamma, self.alpha, self.beta = gamma, alpha, beta
        self.code_weights = tuple(float(w) for w in code_weights)
        self.loss_weights = dict(loss_weights or {})
        self.skip_no_attribute = skip_no_attribute

    @staticmethod
    def _global_mean(value: float | torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """A normaliser averaged over DDP processes (itself in one process).

        Each process divides its sums by the mean of the per-process counts, so the gradients DDP averages
        equal those of one process normalising the combined batch by its total count.
        """
        t = torch.as_tensor(value, dtype=like.dtype, device=like.device).detach().clone()
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(t)
            t = t / torch.distributed.get_world_size()
        return t

    def _reg(self, pred: torch.Tensor, target: torch.Tensor, cols: slice, num_pos: float) -> torch.Tensor:
        """Weighted SmoothL1 summed over the group's channels and positives, / positives. NaN targets masked."""
        w = torch.tensor(self.code_weights[cols], dtype=pred.dtype, device=pred.device)  # (k,)
        valid = torch.isfinite(target)
        target = torch.where(valid, target, torch.zeros_like(target))  # a NaN must not reach the graph
        return (smooth_l1(pred - target, self.beta) * w * valid).sum() / num_pos

    def __call__(self, raw: Mapping[str, Sequence[torch.Tensor]], targets: Mapping[str, torch.Tensor]) -> dict:
        cls = flatten_levels(raw["cls_score"])  # (N, P, C)
        N = cls.shape[0]
        labels = targets["labels"]  # (N, P)
        pos = (labels >= 0) & (labels < self.num_classes)  # (N, P)
        num_pos = int(pos.sum())

        onehot = F.one_hot(labels.clamp(max=self.num_classes), self.num_classes + 1)[..., :-1].to(cls.dtype)
        losses = {
            "loss_cls": sigmoid_focal_loss(cls, onehot, self.gamma, self.alpha) / self._global_mean(num_pos + N, cls)
        }

        heads = {h: flatten_levels(raw[h])[pos] for h in raw if h != "cls_score"}  # {h: (num_pos, C_h)}
        # Every process must run the same collectives in the same order, positives or not.
        n = self._global_mean(float(num_pos), cls).clamp(min=1.0)
        if num_pos == 0:
            if "attr" in raw:
                self._global_mean(0.0, cls)
            # Zero losses that still touch every output, so DDP sees gradients for all parameters.
            zero = {h: flatten_levels(raw[h]).sum() * 0.0 for h in raw}
            names = {
                "offset": "loss_offset",
                "depth": "loss_depth",
                "size": "loss_size",
                "rot": "loss_rot",
                "velo": "loss_velo",
                "dir_cls": "loss_dir",
                "attr": "loss_attr",
                "centerness": "loss_centerness",
            }
            losses.update({names[h]: zero[h] for h in names if h in raw})
            return self._weighted(losses)

        bbox = targets["bbox"][pos]  # (num_pos, 9)
        ctr_t = targets["centerness"][pos]  # (num_pos,)
        losses["loss_offset"] = self._reg(heads["offset"], bbox[:, 0:2], slice(0, 2), n)
        losses["loss_depth"] = self._reg(torch.exp(heads["depth"].clamp(max=EXP_CLAMP)), bbox[:, 2:3], slice(2, 3), n)
        losses["loss_size"] = self._reg(torch.exp(heads["size"].clamp(max=EXP_CLAMP)), bbox[:, 3:6], slice(3, 6), n)
        # sin(p - t) = sin p cos t - cos p sin t: zero at p = t and p = t + pi (the dir bin decides).
        losses["loss_rot"] = self._reg(
            torch.sin(heads["rot"] - bbox[:, 6:7]), torch.zeros_like(bbox[:, 6:7]), slice(6, 7), n
        )
        if "velo" in heads:
            losses["loss_velo"] = self._reg(heads["velo"], bbox[:, 7:9], slice(7, 9), n)
        if "dir_cls" in heads:
            losses["loss_dir"] = F.cross_entropy(heads["dir_cls"], targets["dir_labels"][pos], reduction="sum") / n
        if "attr" in heads:
            attr_t = targets["attr_labels"][pos]
            keep = attr_t >= 0
            if self.skip_no_attribute:
                keep &= attr_t != NO_ATTRIBUTE
            ce = F.cross_entropy(heads["attr"], attr_t.clamp(min=0), reduction="none")  # (num_pos,)
            w = ctr_t * keep
            losses["loss_attr"] = (ce * w).sum() / self._global_mean(w.sum(), ce).clamp(min=1e-6)
        losses["loss_centerness"] = (
            F.binary_cross_entropy_with_logits(heads["centerness"][:, 0], ctr_t, reduction="sum") / n
        )
        return self._weighted(losses)

    def _weighted(self, losses: dict) -> dict:
        return {k: v * self.loss_weights.get(k, 1.0) for k, v in losses.items()}


def distill_loss(
    student: Mapping[str, Sequence[torch.Tensor]], teacher: Mapping[str, Sequence[torch.Tensor]]
) -> torch.Tensor:
    """How far the student's raw outputs are from the teacher's ({head: [per level]}, the teacher's detached).

    The int8 stages are judged by how little they differ from float, so QAT can learn from the float model itself
    (knowledge distillation) as well as from the labels:
    - ``cls_score``: the binary KL divergence of the student's class probabilities from the teacher's at every
      location (the background matters: a spurious score is a false positive), summed over classes, averaged over
      locations;
    - every other head: the squared difference of the raw outputs averaged over channels, weighted at each
      location by the teacher's highest class probability (regressions off any object are never decoded) and
      normalised by the sum of those weights.
    Zero exactly when the student computes what the teacher does. Heads only one side has are skipped.
    """
    t_cls = flatten_levels(teacher["cls_score"]).detach()  # (N, P, C)
    s_cls = flatten_levels(student["cls_score"])
    p_t = torch.sigmoid(t_cls)
    # KL(Bernoulli(p_t) || Bernoulli(p_s)) = BCE(s, p_t) - H(p_t); both from logits, stable.
    kl = F.binary_cross_entropy_with_logits(s_cls, p_t, reduction="none") - F.binary_cross_entropy_with_logits(
        t_cls, p_t, reduction="none"
    )
    total = kl.sum(-1).mean()
    weight = p_t.amax(-1)  # (N, P)
    norm = weight.sum().clamp(min=1e-6)
    for head, maps in student.items():
        if head == "cls_score" or head not in teacher:
            continue
        diff = flatten_levels(maps) - flatten_levels(teacher[head]).detach()
        total = total + (diff.square().mean(-1) * weight).sum() / norm
    return total
