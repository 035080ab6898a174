"""Fake quant: straight-through gradients; the QAT model and the integer model agree closely (SQNR)."""

import torch
from quant_fixtures import images

from fcos3d.quant.qat import fake_quant_per_channel, fake_quant_per_tensor


def test_fake_quant_per_tensor_straight_through():
    s = torch.tensor([0.1])
    x = torch.tensor([-20.0, -1.23, 0.0, 0.47, 12.6, 13.0], requires_grad=True)
    y = fake_quant_per_tensor(x, s)
    torch.testing.assert_close(y.detach(), torch.tensor([-12.8, -1.2, 0.0, 0.5, 12.6, 12.7]))
    y.sum().backward()
    assert x.grad.tolist() == [0.0, 1.0, 1.0, 1.0, 1.0, 0.0]  # identity inside the int8 range, 0 where clamped


def test_fake_quant_per_channel_weights_symmetric():
    w = torch.tensor([[1.0, -2.0, 0.3], [0.01, 0.02, -0.03]], requires_grad=True).reshape(2, 3, 1, 1)
    w.retain_grad()
    s = torch.tensor([1.0 / 127, 0.02 / 127])
    y = fake_quant_per_channel(w, s)
    q = torch.round(y.detach() / s.reshape(2, 1, 1, 1))
    assert q.min() >= -127 and q.max() <= 127 and q[0, 1].item() == -127  # -2 clamps to -127, never -128
    y.sum().backward()
    assert w.grad.reshape(2, 3).tolist() == [[1.0, 0.0, 1.0], [1.0, 1.0, 0.0]]


def sqnr_db(ref: torch.Tensor, test: torch.Tensor) -> float:
    noise = ((ref - test) ** 2).mean()
    return float(10 * torch.log10((ref**2).mean() / noise.clamp(min=1e-30)))


def test_qat_model_and_int_model_agree(qat_model, int_model):
    from fcos3d.quant.intmodel import IntInferModel

    x = images(2, seed=11)
    with torch.no_grad():
        fq = qat_model(x)
    got = IntInferModel(int_model)(x)
    worst = min(sqnr_db(a.double(), b) for a, b in zip(fq, got))
    assert worst > 30.0, worst


def test_qat_training_step_updates_weights_and_keeps_calibrated_ranges(qat_model):
    import copy

    q = copy.deepcopy(qat_model).train()
    act = q.model.backbone.stem.act_observer
    before_range = act.max_val.clone()
    before_w = q.model.backbone.stem.weight.detach().clone()
    opt = torch.optim.SGD(q.parameters(), lr=0.1)
    out = q(images(2, seed=12) * 3)  # a wider input: frozen ranges (averaging_constant 0) must not move
    sum(o.float().pow(2).mean() for o in out).backward()
    opt.step()
    assert torch.equal(act.max_val, before_range)
    assert not torch.equal(q.model.backbone.stem.weight, before_w)
