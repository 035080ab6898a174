"""The shipped configs load and build: the published-recipe model at 512x896 runs a forward pass."""

from pathlib import Path

import torch

from fcos3d.trainer.config import build, load_config

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def test_nuscenes_config_builds_the_published_model():
    cfg = load_config(CONFIGS / "fcos3d_efficientnetb0_nuscenes.py")
    model = build(cfg["model"]).eval()
    for convert in cfg["float_trainer"]["converters"]:
        model = convert(model)  # the Lite0 ImageNet weights load into the backbone, nothing missing
    with torch.no_grad():
        out = model(torch.zeros(1, 3, 512, 896))
    assert len(out) == 45 and tuple(out[0].shape) == (1, 10, 64, 112)
    assert cfg["data_loader"]["batch_size"] == 8


def test_synthetic_config_loads_with_overrides(tmp_path):
    cfg = load_config(CONFIGS / "fcos3d_efficientnetb0_synthetic.py", {"data_root": str(tmp_path), "float_epochs": "3"})
    assert cfg["data_loader"]["dataset"]["data_path"] == f"{tmp_path}/train_lmdb"
    assert cfg["float_trainer"]["epochs"] == 3
    assert cfg["model"]["backbone"]["activation"] == "relu6"  # Lite0's own: bounded for int8 (PERFORMANCE.md)
    hat = load_config(CONFIGS / "fcos3d_efficientnetb0_synthetic.py", {"backbone_activation": "relu"})
    assert hat["model"]["backbone"]["activation"] == "relu"
