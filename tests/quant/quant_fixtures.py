"""Helpers of the quant tests (imported by conftest.py and the tests): the input shape, images, the tiny model."""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "trainer"))

from trainer_tiny import tiny_config  # noqa: E402

INPUT_SHAPE = (1, 3, 64, 128)  # (N, 3, H, W)


def images(n: int, seed: int) -> torch.Tensor:
    """Camera-like normalised images: (u8 - 128) / 128 with smooth structure plus noise."""
    g = torch.Generator().manual_seed(seed)
    base = torch.rand((n, 3, 8, 16), generator=g) * 255
    img = torch.nn.functional.interpolate(base, size=INPUT_SHAPE[2:], mode="bilinear", align_corners=False)
    img = (img + torch.randn(img.shape, generator=g) * 20).round().clamp(0, 255)
    return (img - 128) / 128


def tiny_float_model(seed: int = 0, activation: str = "relu") -> torch.nn.Module:
    """The trainer tests' tiny FCOS3D (backbone ``activation``) with random BN statistics (so folding matters)
    and head prediction weights of a trained scale (init's std 0.01 and the class prior bias make |acc| > 2**24
    untypically)."""
    from fcos3d.trainer.config import build

    torch.manual_seed(seed)
    model = build(tiny_config("/unused", "/unused", activation=activation)["model"], "model")
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                c = m.num_features
                m.running_mean.copy_(torch.rand(c, generator=g) - 0.5)
                m.running_var.copy_(torch.rand(c, generator=g) * 1.5 + 0.5)
                m.weight.copy_(torch.rand(c, generator=g) + 0.5)
                m.bias.copy_((torch.rand(c, generator=g) - 0.5) * 0.4)
        for lvl in model.head.levels[:1]:
            for m in lvl.modules():
                if isinstance(m, torch.nn.Conv2d) and m.groups == 1 and m.bias is not None:
                    m.weight.normal_(0.0, 0.2, generator=g)
                    m.bias.uniform_(-1.0, 1.0, generator=g)
    return model.eval()


def calibrate(float_model: torch.nn.Module, seed: int):
    """The calibration stage's model (Float2Calibration, in place) after its observers saw 3 batches of 2 images
    (seeds seed, seed + 1, seed + 2), left in train mode."""
    from fcos3d.quant.convert import Float2Calibration

    q = Float2Calibration()(float_model)
    q.train()
    with torch.no_grad():
        for i in range(3):
            q(images(2, seed=seed + i))
    return q
