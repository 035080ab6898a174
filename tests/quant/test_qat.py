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


def test_round_half_up_ties_go_up():
    from fcos3d.quant.qat import round_half_up

    v = torch.tensor([2.5, -2.5, -0.5, 0.5, 1.5, -1.5, 0.49999997, -0.49999997, 3.2, -3.7])
    assert round_half_up(v).tolist() == [3.0, -2.0, 0.0, 1.0, 2.0, -1.0, 0.0, 0.0, 3.0, -4.0]
    # torch's fake quant rounds these ties to even (0.25 / 0.5 -> 0, 0.75 / 0.5 -> 2, -0.25 / 0.5 -> -0): ours go up
    y = fake_quant_per_tensor(torch.tensor([0.25, 0.75, -0.25, -0.75]), torch.tensor([0.5]))
    assert y.tolist() == [0.5, 1.0, 0.0, -0.5]


def test_qat_outputs_equal_the_int_model_layer_by_layer(qat_model, int_model):
    """Every int8 tensor of the QAT model equals the int model's exactly (end to end: one flipped tie would
    spread to later layers), and the raw head outputs agree to float32 rounding of the int32 accumulator."""
    from fcos3d.quant.report import qat_int_lsb

    rows = qat_int_lsb(qat_model, int_model, [images(1, seed=31), images(1, seed=32)])
    int8 = [r for r in rows if r["kind"] != "head"]
    heads = [r for r in rows if r["kind"] == "head"]
    assert len(heads) == 45 and sum(r["elements"] for r in int8) > 2_000_000
    assert sum(r["differ"] for r in int8) == 0, [r for r in int8 if r["differ"]][:3]
    assert max(r["max_lsb"] for r in heads) < 0.1  # accumulator steps


def test_widened_channel_is_simulated(qat_model):
    """A channel whose int32 bias needs a wider weight scale (tests/quant/test_intmodel.py) gets the int model's
    coarser weights and bias in QAT too."""
    import copy

    from quant_fixtures import INPUT_SHAPE

    from fcos3d.quant.intmodel import IntInferModel, QAT2Quantize

    q = copy.deepcopy(qat_model)
    pw = q.model.head.levels[0].cls_out.pw
    with torch.no_grad():
        pw.weight.mul_(1e-7)
        pw.bias.fill_(-4.6)
        pw.weight_observer.initialized.fill_(False)
    int_model = QAT2Quantize(INPUT_SHAPE)(q)
    assert int_model.widened_weight_scales == [pw.qname]
    x = images(1, seed=33)
    with torch.no_grad():
        got = q(x)
    ref = IntInferModel(int_model)(x)  # float64 int32 * s_in * s_w
    for name, a, b in zip(int_model.output_names, got, ref):
        assert torch.equal(a, b.float()), name  # the same value, rounded once to float32


def test_training_form_agrees_and_passes_float_gradients(qat_model):
    """With autograd on, fake quant is the float conv with the int model's weights and int32 bias and a half-up
    quantiser: it agrees with the exact (no-grad) form to 1 LSB on nearly every element, and its gradients are
    the straight-through ones: the bias gets sum(g) where the ReLU passes and the output did not saturate."""
    import copy

    import torch.nn.functional as F

    from fcos3d.quant.qat import round_half_up

    q = copy.deepcopy(qat_model).eval()
    conv = q.model.head.levels[0].cls_convs[0].pw  # 1x1 conv + BN + ReLU, int8 output
    seen = {}
    hook = conv.register_forward_pre_hook(lambda m, a: seen.update(x=a[0].detach()))  # returns None: input kept
    with torch.no_grad():
        q(images(2, seed=34))
        exact = conv(seen["x"])
    hook.remove()
    x = seen["x"].clone().requires_grad_(True)
    y = conv(x)
    s_out = conv.act_observer.scale()
    d = (y.detach() / s_out).round() - (exact / s_out).round()
    assert d.abs().max() <= 1 and (d != 0).float().mean() < 1e-3
    g = torch.randn(y.shape, generator=torch.Generator().manual_seed(0))
    (y * g).sum().backward()
    with torch.no_grad():
        w, b = conv.simulated_weight_bias()
        pre = F.conv2d(seen["x"], w, b, conv.stride, conv.padding, 1, conv.groups)
        passed = (pre > 0) & (round_half_up(pre / s_out) <= 127)
    torch.testing.assert_close(conv.bias.grad, (g * passed).sum(dim=(0, 2, 3)), rtol=1e-5, atol=1e-6)
    assert x.grad is not None and x.grad.abs().sum() > 0 and conv.weight.grad.abs().sum() > 0
