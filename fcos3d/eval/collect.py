"""Gather one split's detections image by image and score them: shared by every stage and the board.

Torch-free: the caller feeds raw head outputs (numpy) per image; this runs the host post-process,
merges each sample's cameras, writes the official result JSON and runs the devkit metric.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from ..boxes.postprocess import PostProcess
from ..boxes.results import build_result_json, merge_sample_cameras
from ..data.classes import ATTRIBUTES, CLASS_ATTRIBUTES, CLASSES, DEFAULT_ATTRIBUTE, NO_ATTRIBUTE
from ..io import atomic_write_json
from .nuscenes_metric import CONFIG_NAME, RESULT_FILE, evaluate_detections, split_sample_tokens

__all__ = ["DetectionCollector", "class_ranges", "write_result_json"]


def write_result_json(result: dict, path) -> Path:
    """Write a result dict atomically as strict JSON (NaN is an error, not a token); returns the path."""
    return atomic_write_json(path, result, allow_nan=False)


def class_ranges(class_names: Sequence[str] = CLASSES) -> np.ndarray:
    """The devkit's detection range (metres) per class, indexed by label."""
    from nuscenes.eval.common.config import config_factory

    cfg = config_factory(CONFIG_NAME)
    return np.array([cfg.class_range[c] for c in class_names], dtype=np.float64)


class DetectionCollector:
    """Collect camera images' raw outputs of one split, then write the result JSON and evaluate it.

    meta: the LMDB ``__meta__`` (dataroot, version, devkit split name) of the split predicted.
    """

    def __init__(self, meta: Mapping, strides: Sequence[int], post: PostProcess | None = None):
        self.meta = dict(meta)
        self.strides = tuple(strides)
        self.post = post or PostProcess()
        self.ranges = class_ranges()
        self.per_sample: dict[str, list] = defaultdict(list)
        self.images = 0

    def add_image(
        self, raw: Mapping[str, Sequence[np.ndarray]], cam_intrinsic, cam2ego, ego2global, sample_token: str
    ) -> dict:
        """Post-process one image's raw outputs {head: [(C, H, W) per level]}; returns its camera-frame boxes."""
        boxes = self.post.image_boxes(raw, self.strides, cam_intrinsic)
        if len(boxes["scores"]):
            boxes["attr_labels"] = np.where(boxes["attr_labels"] < 0, NO_ATTRIBUTE, boxes["attr_labels"])
        self.per_sample[sample_token].append(self.post.image_to_global(boxes, cam2ego, ego2global, self.ranges))
        self.images += 1
        return boxes

    def result(self) -> dict:
        """The nuScenes result dict covering every sample of the split."""
        tokens = split_sample_tokens(self.meta["dataroot"], self.meta["version"], self.meta["devkit_split"])
        merged = {t: merge_sample_cameras(cams) for t, cams in self.per_sample.items()}
        return build_result_json(
            merged, tokens, CLASSES, ATTRIBUTES, DEFAULT_ATTRIBUTE, class_attributes=CLASS_ATTRIBUTES
        )

    def evaluate(self, out_dir: str | Path) -> dict:
        """Write out_dir/results_nusc.json and metrics.json; return the metrics (NDS, mAP, ...)."""
        out_dir = Path(out_dir)
        result = self.result()
        path = write_result_json(result, out_dir / RESULT_FILE)
        metrics = evaluate_detections(
            path, self.meta["dataroot"], self.meta["version"], self.meta["devkit_split"], out_dir
        )
        metrics["result_file"] = str(path)
        return metrics
