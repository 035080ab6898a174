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
        per_camera[sample["sample_token"]].append(
            camera_boxes_to_global(
                anns["centers3d"],
                anns["dims"],
                anns["rot_y"],
                anns["velo_cam"],
                np.ones(n),
                anns["labels"],
                anns["attr_labels"],
                sample["cam2ego"],
                sample["ego2global"],
            )
        )
    per_sample = {token: merge_sample_cameras(cams) for token, cams in per_camera.items()}
    n_camera_boxes = sum(len(b) for cams in per_camera.values() for b in cams)
    n_merged = sum(len(b) for b in per_sample.values())
    # Objects seen by two cameras were packed twice; the merge must have removed the copies.
    assert n_merged < n_camera_boxes

    tokens = split_sample_tokens(root, version, "val")
    assert set(per_sample) == set(tokens)
    result = build_result_json(
        per_sample, tokens, CLASSES, ATTRIBUTES, DEFAULT_ATTRIBUTE, class_attributes=CLASS_ATTRIBUTES
    )
    metrics = evaluate_detections(result, root, version, "val", tmp_path / "eval")
    assert metrics["NDS"] >= 0.99, metrics
    assert metrics["mAP"] >= 0.99, metrics
    assert metrics["num_pred_boxes"] == n_merged


def _perfect_raw(t, i, sizes, num_classes=10, num_attrs=9, big=20.0):
    """Raw head outputs {head: [(C, H, W) per level]} of image i that decode exactly to its FCOS3DTarget targets."""
    labels, bbox = t["labels"][i].numpy(), t["bbox"][i].double().numpy()
    pos = labels < num_classes
    n = len(labels)
    cls = np.full((n, num_classes), -big)
    cls[pos, labels[pos]] = big
    ctr = np.clip(t["centerness"][i].double().numpy(), 1e-9, 1 - 1e-9)
    one_hot = lambda idx, k: np.eye(k)[np.clip(idx, 0, k - 1)] * big  # noqa: E731
    flat = {
        "cls_score": cls,
        "offset": bbox[:, 0:2],
        "depth": np.log(np.maximum(bbox[:, 2:3], 1e-9)),
        "size": np.log(np.maximum(bbox[:, 3:6], 1e-9)),
        "rot": bbox[:, 6:7],
        "velo": np.nan_to_num(bbox[:, 7:9]),
        "dir_cls": one_hot(t["dir_labels"][i].numpy(), 2),
        "attr": one_hot(t["attr_labels"][i].numpy(), num_attrs),
        "centerness": np.where(pos, np.log(ctr / (1 - ctr)), -big)[:, None],
    }
    raw, start = {h: [] for h in flat}, 0
    for h, w in sizes:
        for name, v in flat.items():
            raw[name].append(v[start : start + h * w].T.reshape(-1, h, w))  # (C, H, W)
        start += h * w
    return raw


def _score_perfect_logits(lmdb_root, out_dir, flip_dir=False):
    """Val GT -> FCOS3DTarget at the network input size -> perfect raw outputs -> the shared post-process,
    DetectionCollector (camera -> global, cross-camera merge) -> devkit metrics."""
    from fcos3d.boxes.postprocess import PostProcess
    from fcos3d.data.transforms import Pad, Resize3D
    from fcos3d.eval.collect import DetectionCollector
    from fcos3d.model.targets import FCOS3DTarget

    strides, (width, height) = (8, 16, 32, 64, 128), (384, 256)
    sizes = [(-(-height // s), -(-width // s)) for s in strides]
    dataset = NuscenesMonoDataset(lmdb_root / "val_lmdb", [Resize3D((width, height)), Pad(size=(width, height))])
    target = FCOS3DTarget(strides=strides)
    collector = DetectionCollector(dataset.meta, strides, PostProcess())
    for i in range(len(dataset)):
        sample = dataset[i]
        t = target(sizes, [sample["anns"]])
        if flip_dir:
            t["dir_labels"] = 1 - t["dir_labels"]
        collector.add_image(
            _perfect_raw(t, 0, sizes),
            sample["cam_intrinsic"],
            sample["cam2ego"],
            sample["ego2global"],
            sample["sample_token"],
        )
    return collector.evaluate(out_dir)


def test_perfect_head_outputs_score_one(synth_lmdb, tmp_path):
    """The training encoding (targets.py) and every step after the head (decode, NMS, camera -> global yaw and
    velocity, merge, result JSON) agree: raw outputs made from the targets give back the ground truth."""
    metrics = _score_perfect_logits(synth_lmdb, tmp_path / "ok")
    assert metrics["NDS"] >= 0.97, metrics
    assert metrics["mAOE"] < 0.01, metrics
    assert metrics["mAVE"] < 0.01, metrics
    assert metrics["mATE"] < 0.01, metrics
    # The direction bin is what separates a heading from its opposite: flipping it must cost ~pi for cars.
    flipped = _score_perfect_logits(synth_lmdb, tmp_path / "flip", flip_dir=True)
    assert flipped["class_TP_errors"]["car"]["AOE"] > 3.0, flipped["class_TP_errors"]["car"]
