"""Observers: running and moving-average ranges, HAT's averaging constants, percentile, symmetric int8 scales."""

import pytest
import torch

from fcos3d.errors import Fcos3dError
from fcos3d.quant.observers import MIN_SCALE, MinMaxObserver, MovingAverageMinMaxObserver, PercentileObserver, QConfig


def test_min_max_keeps_running_extremes():
    ob = MinMaxObserver()
    ob(torch.tensor([-1.0, 2.0]))
    ob(torch.tensor([-3.0, 0.5]))
    assert ob.min_val.item() == -3.0 and ob.max_val.item() == 2.0
    assert ob.scale().item() == pytest.approx(3.0 / 127)


@pytest.mark.parametrize("c, expected_max", [(0.0, 2.0), (1.0, 4.0), (0.25, 2.5)])
def test_averaging_constant_follows_hat(c, expected_max):
    # c = 0 freezes after the first batch, c = 1 follows the latest, otherwise (1 - c) * old + c * new.
    ob = MinMaxObserver(averaging_constant=c)
    ob(torch.tensor([-1.0, 2.0]))
    ob(torch.tensor([-1.0, 4.0]))
    assert ob.max_val.item() == pytest.approx(expected_max)
    mov = MovingAverageMinMaxObserver(averaging_constant=c)
    mov(torch.tensor([-1.0, 2.0]))
    mov(torch.tensor([-1.0, 4.0]))
    assert mov.max_val.item() == pytest.approx(expected_max)


def test_per_channel_weight_scale():
    w = torch.zeros(3, 2, 3, 3)
    w[0, 0, 0, 0] = -1.27
    w[1, 1, 2, 2] = 0.254
    ob = MinMaxObserver(num_channels=3)
    ob(w)
    s = ob.scale()
    assert s.dtype == torch.float32 and s.shape == (3,)
    assert s[0].item() == pytest.approx(0.01) and s[1].item() == pytest.approx(0.002)
    assert s[2].item() == MIN_SCALE  # an all-zero channel still gets a valid scale


def test_percentile_clips_outliers():
    x = torch.cat([torch.linspace(-1, 1, 100_000), torch.tensor([100.0])])
    ob = PercentileObserver(percentile=99.9)
    ob(x)
    assert ob.max_val.item() < 1.01 and ob.min_val.item() == -ob.max_val.item()
    ob(x * 3)  # mean over batches
    assert ob.max_val.item() == pytest.approx(2.0, rel=0.01)


def test_percentile_calibration_loads_into_the_qat_min_max_observer():
    """The QAT stage swaps a percentile calibration observer for min_max: the saved state must fit exactly."""
    cal = PercentileObserver(percentile=99.0)
    cal(torch.linspace(-2, 2, 1001))
    qat = MinMaxObserver(averaging_constant=0.0)
    qat.load_state_dict(cal.state_dict(), strict=True)
    assert torch.equal(qat.scale(), cal.scale())
    qat(torch.tensor([50.0]))  # averaging_constant 0: the calibrated range stays frozen
    assert torch.equal(qat.scale(), cal.scale())


def test_unobserved_activation_scale_is_a_clear_error():
    with pytest.raises(Fcos3dError, match="calibration"):
        MinMaxObserver().scale()


def test_qconfig_validates_names():
    with pytest.raises(Fcos3dError, match="activation_qat_observer"):
        QConfig(activation_qat_observer="minmax")
    q = QConfig(activation_qkwargs=dict(averaging_constant=0), weight_qkwargs=dict(averaging_constant=1))
    assert q.activation("qat").averaging_constant == 0 and q.activation("calibration").averaging_constant is None
    assert q.weight(4).num_channels == 4


def test_state_loads_across_observer_kinds():
    a = MinMaxObserver()
    a(torch.tensor([-2.0, 1.0]))
    b = MovingAverageMinMaxObserver(averaging_constant=0.0)
    b.load_state_dict(a.state_dict())
    b(torch.tensor([-50.0, 50.0]))  # frozen: c = 0 after calibration
    assert b.scale().item() == a.scale().item()


def test_pipeline_rejects_other_qat_modes():
    from fcos3d.quant.convert import ModelConvertPipeline

    with pytest.raises(Fcos3dError, match="fuse_bn"):
        ModelConvertPipeline(qat_mode="with_bn")
