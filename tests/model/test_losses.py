"""FCOS3DLoss: hand-computed focal and SmoothL1 values, normalisation, masking and edge cases."""

import math

import torch

from fcos3d.data.classes import NO_ATTRIBUTE
from fcos3d.model.losses import FCOS3DLoss, distill_loss, sigmoid_focal_loss, smooth_l1
from fcos3d.model.targets import FCOS3DTarget

torch.set_num_threads(1)

SIZES = [(24, 40), (12, 20), (6, 10), (3, 5), (2, 3)]
CHANNELS = {
    "cls_score": 10,
    "offset": 2,
    "depth": 1,
    "size": 3,
    "rot": 1,
    "velo": 2,
    "dir_cls": 2,
    "attr": 9,
    "centerness": 1,
}


def _raw(n=1, seed=0, requires_grad=True):
    g = torch.Generator().manual_seed(seed)
    return {
        h: [torch.randn(n, c, hh, ww, generator=g).requires_grad_(requires_grad) for hh, ww in SIZES]
        for h, c in CHANNELS.items()
    }


def _targets(scene_anns):
    return FCOS3DTarget()(SIZES, [scene_anns])


def test_focal_loss_hand_computed():
    logits = torch.tensor([2.0, -1.0, 0.5])
    targets = torch.tensor([1.0, 0.0, 0.0])
    # -0.25 (1 - s(2))^2 log s(2) - 0.75 s(-1)^2 log(1 - s(-1)) - 0.75 s(0.5)^2 log(1 - s(0.5))
    expected = 0.0004508907088100953 + 0.016993543131350493 + 0.2830587006445574
    assert math.isclose(sigmoid_focal_loss(logits, targets).item(), expected, rel_tol=1e-6)
    assert math.isclose(expected, 0.300503134484718, rel_tol=1e-12)


def test_smooth_l1_hand_computed():
    d = torch.tensor([0.05, -1.0, 0.0])
    torch.testing.assert_close(smooth_l1(d, 1 / 9), torch.tensor([0.5 * 0.05**2 * 9, 1 - 1 / 18, 0.0]))


def test_named_losses_finite_and_normalised(scene):
    anns, _, _, _ = scene
    t = _targets(anns)
    raw = _raw()
    losses = FCOS3DLoss()(raw, t)
    assert set(losses) == {
        "loss_cls",
        "loss_offset",
        "loss_depth",
        "loss_size",
        "loss_rot",
        "loss_velo",
        "loss_dir",
        "loss_attr",
        "loss_centerness",
    }
    assert all(torch.isfinite(v) and v.dim() == 0 for v in losses.values())
    # classification: summed focal loss / (positives + images)
    num_pos = int((t["labels"] < 10).sum())
    cls = torch.cat([m.flatten(2).transpose(1, 2) for m in raw["cls_score"]], 1)
    onehot = torch.nn.functional.one_hot(t["labels"], 11)[..., :10].float()
    torch.testing.assert_close(losses["loss_cls"], sigmoid_focal_loss(cls, onehot) / (num_pos + 1))
    # depth code weight 0.2 by default; 1.0 in the float stage is 5x that
    float_stage = FCOS3DLoss(code_weights=(1, 1, 1.0, 1, 1, 1, 1, 0.05, 0.05))(raw, t)
    torch.testing.assert_close(float_stage["loss_depth"], 5 * losses["loss_depth"])
    sum(losses.values()).backward()
    assert all(torch.isfinite(m.grad).all() for maps in raw.values() for m in maps)


def test_rotation_loss_ignores_half_turns_direction_loss_does_not(scene):
    anns, _, _, _ = scene
    t = _targets(anns)
    raw = _raw(requires_grad=False)
    flipped = dict(raw, rot=[m + math.pi for m in raw["rot"]])
    a, b = FCOS3DLoss()(raw, t), FCOS3DLoss()(flipped, t)
    torch.testing.assert_close(a["loss_rot"], b["loss_rot"], atol=1e-5, rtol=1e-5)
    # a perfect rotation and direction: near-zero losses
    perfect = dict(raw)
    P = [h * w for h, w in SIZES]
    yaw = t["bbox"][0, :, 6].split(P)
    bins = t["dir_labels"][0].split(P)
    perfect["rot"] = [y.reshape(1, 1, h, w) for y, (h, w) in zip(yaw, SIZES)]
    perfect["dir_cls"] = [
        (torch.nn.functional.one_hot(b, 2).T.reshape(1, 2, h, w).float() * 30) for b, (h, w) in zip(bins, SIZES)
    ]
    c = FCOS3DLoss()(perfect, t)
    assert c["loss_rot"] < 1e-6 and c["loss_dir"] < 1e-6


def test_nan_velocity_masked_and_no_attribute_skipped(scene):
    anns, _, _, _ = scene
    anns = dict(anns, velo_cam=anns["velo_cam"] * float("nan"), attr_labels=anns["attr_labels"] * 0 + NO_ATTRIBUTE)
    raw = _raw()
    losses = FCOS3DLoss()(raw, _targets(anns))
    assert losses["loss_velo"] == 0 and losses["loss_attr"] == 0
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    assert all(torch.isfinite(m.grad).all() for maps in raw.values() for m in maps)
    with_none = FCOS3DLoss(skip_no_attribute=False)(_raw(), _targets(anns))
    assert with_none["loss_attr"] > 0


def test_no_positives():
    empty = {
        k: v[:0]
        for k, v in {
            "bboxes2d": torch.zeros(1, 4),
            "centers2d": torch.zeros(1, 2),
            "depths": torch.zeros(1),
            "centers3d": torch.zeros(1, 3),
            "dims": torch.zeros(1, 3),
            "rot_y": torch.zeros(1),
            "velo_cam": torch.zeros(1, 2),
            "labels": torch.zeros(1, dtype=torch.long),
            "attr_labels": torch.zeros(1, dtype=torch.long),
        }.items()
    }
    raw = _raw()
    losses = FCOS3DLoss()(raw, FCOS3DTarget()(SIZES, [empty]))
    assert losses["loss_cls"] > 0 and all(v == 0 for k, v in losses.items() if k != "loss_cls")
    sum(losses.values()).backward()
    assert all(m.grad is not None for maps in raw.values() for m in maps)  # DDP sees every output used


def test_distill_loss_zero_at_the_teacher_and_hand_computed():
    teacher = _raw(seed=1, requires_grad=False)
    student = {h: [t.clone().requires_grad_(True) for t in maps] for h, maps in teacher.items()}
    assert abs(float(distill_loss(student, teacher))) < 1e-6
    # One location, one class logit moved; one depth output moved at a location the teacher scores 0.5 at most.
    student = {h: [t.clone() for t in maps] for h, maps in teacher.items()}
    student["cls_score"][0][0, 3, 2, 5] += 1.0
    t_logit = float(teacher["cls_score"][0][0, 3, 2, 5])
    p, q = 1 / (1 + math.exp(-t_logit)), 1 / (1 + math.exp(-(t_logit + 1.0)))
    kl = p * math.log(p / q) + (1 - p) * math.log((1 - p) / (1 - q))
    locations = sum(h * w for h, w in SIZES)
    weights = torch.cat([torch.sigmoid(m).amax(1).flatten() for m in teacher["cls_score"]])
    student["depth"][1][0, 0, 4, 7] += 2.0
    w = float(torch.sigmoid(teacher["cls_score"][1][0, :, 4, 7]).max())
    want = kl / locations + w * 4.0 / float(weights.sum())
    assert math.isclose(float(distill_loss(student, teacher)), want, rel_tol=1e-4)


def test_distill_loss_gradient_reaches_only_the_student():
    teacher = _raw(seed=1)
    student = _raw(seed=2)
    distill_loss(student, teacher).backward()
    assert all(m.grad is not None and m.grad.abs().sum() > 0 for maps in student.values() for m in maps)
    assert all(m.grad is None for maps in teacher.values() for m in maps)
