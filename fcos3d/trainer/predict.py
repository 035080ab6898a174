"""Run a model (any stage) over a split and score it with the official metric.

The model only has to map an image batch to the flat raw outputs; decoding, NMS, the result JSON and
the metric are the torch-free DetectionCollector, which the board runtime uses too.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from ..boxes.decode import group_outputs
from ..boxes.postprocess import PostProcess
from ..eval.collect import DetectionCollector


@torch.no_grad()
def predict_split(
    forward: Callable[[torch.Tensor], Sequence[torch.Tensor]],
    loader,
    strides: Sequence[int],
    out_dir: str | Path,
    post: PostProcess | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """forward(img (B, 3, H, W)) -> flat raw outputs (FCOS3D order); returns the metrics dict."""
    collector = DetectionCollector(loader.dataset.meta, strides, post)
    total, done = len(loader.dataset), 0
    for batch in loader:
        flat = [t.detach().float().cpu().numpy() for t in forward(batch["img"])]
        K = batch["cam_intrinsic"].numpy()
        for i in range(len(K)):
            raw = group_outputs([a[i] for a in flat], strides)
            collector.add_image(
                raw, K[i], batch["cam2ego"][i].numpy(), batch["ego2global"][i].numpy(), batch["sample_token"][i]
            )
        done += len(K)
        if progress:
            progress(done, total)
    return collector.evaluate(out_dir)


def model_forward(model: torch.nn.Module, device: torch.device | str = "cpu") -> Callable:
    """An eval-mode forward on ``device`` for predict_split."""
    model.eval()

    def forward(img: torch.Tensor):
        return model(img.to(device))

    return forward
