"""LoadCheckpoint: key mapping, the report, and one-line errors for missing/extra/mis-shaped keys."""

import pytest
import torch
from torch import nn

from fcos3d.errors import Fcos3dError
from fcos3d.model.checkpoint import LoadCheckpoint, RGBInputToYUV, lite0_key_mapping

torch.set_num_threads(1)


def _net():
    return nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4))


def test_roundtrip_and_state_dict_wrapper(tmp_path):
    src, dst = _net(), _net()
    path = tmp_path / "ckpt.pth.tar"
    torch.save({"state_dict": src.state_dict(), "epoch": 3}, path)
    loader = LoadCheckpoint(path)
    assert loader(dst) is dst
    assert torch.equal(src[0].weight, dst[0].weight)
    assert loader.report.missing == [] and loader.report.unexpected == []


def test_missing_keys_need_allow_miss(tmp_path):
    path = tmp_path / "c.pth"
    torch.save({"0.weight": torch.zeros(4, 3, 1, 1)}, path)
    with pytest.raises(Fcos3dError, match="allow_miss") as e:
        LoadCheckpoint(path)(_net())
    assert "\n" not in str(e.value) and str(path) in str(e.value)
    loader = LoadCheckpoint(path, allow_miss=True)
    loader(_net())
    assert "0.bias" in loader.report.missing
    LoadCheckpoint(path, allow_miss=("0.", "1."))(_net())  # prefixes work too
    with pytest.raises(Fcos3dError):
        LoadCheckpoint(path, allow_miss=("1.",))(_net())


def test_extra_keys_need_ignore_extra(tmp_path):
    path = tmp_path / "c.pth"
    sd = _net().state_dict()
    sd["2.weight"] = torch.zeros(1)
    torch.save(sd, path)
    with pytest.raises(Fcos3dError, match="ignore_extra"):
        LoadCheckpoint(path)(_net())
    loader = LoadCheckpoint(path, ignore_extra=True)
    loader(_net())
    assert loader.report.unexpected == ["2.weight"]


def test_mapping_dict_and_drop(tmp_path):
    path = tmp_path / "c.pth"
    sd = {f"conv.{k[2:]}" if k.startswith("0.") else k: v for k, v in _net().state_dict().items()}
    sd["junk"] = torch.zeros(1)
    torch.save(sd, path)
    mapping = {"conv.weight": "0.weight", "conv.bias": "0.bias", "junk": None}
    loader = LoadCheckpoint(path, key_mapping=mapping)
    loader(_net())
    assert loader.report.dropped == ["junk"] and loader.report.unexpected == []


def test_shape_mismatch_and_not_a_checkpoint(tmp_path):
    path = tmp_path / "c.pth"
    torch.save({"0.weight": torch.zeros(5, 3, 1, 1)}, path)
    with pytest.raises(Fcos3dError, match="shape"):
        LoadCheckpoint(path, allow_miss=True)(_net())
    bad = tmp_path / "notes.txt"
    bad.write_text("not a checkpoint")
    with pytest.raises(Fcos3dError, match="not a weights-only"):
        LoadCheckpoint(bad)(_net())
    with pytest.raises(Fcos3dError, match="not found"):
        LoadCheckpoint(tmp_path / "absent.pth")(_net())


def test_lite0_key_mapping():
    assert lite0_key_mapping("_conv_stem.weight") == "stem.conv.weight"
    assert lite0_key_mapping("_bn0.running_var") == "stem.bn.running_var"
    assert lite0_key_mapping("_blocks.0._depthwise_conv.weight") == "stages.0.0.dw.conv.weight"
    assert lite0_key_mapping("_blocks.3._bn0.bias") == "stages.2.0.expand.bn.bias"
    assert lite0_key_mapping("_blocks.15._project_conv.weight") == "stages.6.0.project.conv.weight"
    assert lite0_key_mapping("_blocks.4._se_reduce.bias") == "stages.2.1.se.reduce.bias"
    assert lite0_key_mapping("_bn1.weight") == "head.bn.weight"
    assert lite0_key_mapping("_fc.bias") == "fc.bias"
    assert lite0_key_mapping("something.else") == "something.else"


def test_rgb_input_to_yuv_reads_yuv_as_the_rgb_weights_read_rgb():
    """The folded stem on cv2's YUV444 of an image = the original stem on the RGB image, both (x - 128) / 128."""
    import cv2
    import numpy as np

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1, bias=False))
    rgb = np.random.default_rng(0).integers(20, 236, (1, 16, 16, 3)).astype(np.uint8)  # away from cv2's clipping
    rgb[0, :4] = (200, 30, 30)  # saturated colours (a tail light) too
    yuv = cv2.cvtColor(rgb[0], cv2.COLOR_RGB2YUV)[None]
    as_input = lambda a: (torch.from_numpy(a.transpose(0, 3, 1, 2).astype(np.float32)) - 128) / 128  # noqa: E731
    want = net(as_input(rgb))
    assert RGBInputToYUV("0")(net) is net
    got = net(as_input(yuv))
    # cv2's uint8 rounding of Y, U, V: about 0.5 / 128 per input value.
    assert torch.allclose(got, want, atol=0.05 * want.abs().max().item()), (got - want).abs().max()
    with pytest.raises(Fcos3dError, match="no module"):
        RGBInputToYUV("missing")(net)
