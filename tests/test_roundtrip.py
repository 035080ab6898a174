"""Acceptance: synthetic nuScenes -> LMDB -> dataset GT -> global -> cross-camera NMS -> result JSON -> devkit NDS ~1.

If this falls short, a stage between the packer and the result file loses or distorts boxes: the
camera frames, the merge of boxes seen by two cameras, the attributes, or the split's samples.
"""

from collections import defaultdict

import numpy as np

from fcos3d.boxes.results import build_result_json, camera_boxes_to_global, merge_sample_cameras
from fcos3d.data.classes import ATTRIBUTES, CLASS_ATTRIBUTES, CLASSES, DEFAULT_ATTRIBUTE
from fcos3d.data.dataset import NuscenesMonoDataset
from fcos3d.data.packer import pack_nuscenes
from fcos3d.eval.nuscenes_metric import evaluate_detections, split_sample_tokens


def test_ground_truth_round_trip_scores_one(synth_nusc, tmp_path):
    root, version = synth_nusc
    summary = pack_nuscenes(root, "val", version, tmp_path / "lmdb", num_workers=0)
    dataset = NuscenesMonoDataset(summary["path"])
    assert len(dataset) == 6 * summary["samples"] > 0

    per_camera = defaultdict(list)
    for i in range(len(dataset)):
        sample = dataset[i]
        anns = sample["anns"]
        n = len(anns["labels"])
        per_camera[sample["sample_token"]].append(camera_boxes_to_global(
            anns["centers3d"], anns["dims"], anns["rot_y"], anns["velo_cam"], np.ones(n), anns["labels"],
            anns["attr_labels"], sample["cam2ego"], sample["ego2global"],
        ))
    per_sample = {token: merge_sample_cameras(cams) for token, cams in per_camera.items()}
    n_camera_boxes = sum(len(b) for cams in per_camera.values() for b in cams)
    n_merged = sum(len(b) for b in per_sample.values())
    # Objects seen by two cameras were packed twice; the merge must have removed the copies.
    assert n_merged < n_camera_boxes

    tokens = split_sample_tokens(root, version, "val")
    assert set(per_sample) == set(tokens)
    result = build_result_json(per_sample, tokens, CLASSES, ATTRIBUTES, DEFAULT_ATTRIBUTE, class_attributes=CLASS_ATTRIBUTES)
    metrics = evaluate_detections(result, root, version, "val", tmp_path / "eval")
    assert metrics["NDS"] >= 0.99, metrics
    assert metrics["mAP"] >= 0.99, metrics
    assert metrics["num_pred_boxes"] == n_merged
