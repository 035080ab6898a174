"""The way back from camera-frame detections to the official nuScenes result JSON (numpy only).

Per camera image: camera -> global (fcos3d.boxes.frames); per sample: concatenate the cameras and run a
cross-camera rotated BEV NMS, since a box seen by two cameras is detected twice; per split: one result
entry per sample (empty where nothing was found), in the devkit's format. Class and attribute names
come in as arguments (fcos3d.data.classes holds ours): boxes/ imports nothing from data/.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from .frames import boxes_camera_to_global
from .nms import multiclass_rotated_nms

__all__ = [
    "GlobalBoxes",
    "camera_boxes_to_global",
    "merge_sample_cameras",
    "build_result_json",
    "MAX_BOXES_PER_SAMPLE",
]

# The devkit rejects a result file with more boxes than this in one sample (detection_cvpr_2019).
MAX_BOXES_PER_SAMPLE = 500

# The cross-camera merge of mmdet3d's nuScenes metric (_format_camera_bbox): per-class rotated BEV NMS
# at IoU 0.05, boxes scoring <= 0.01 dropped, at most 500 per sample. Kept for parity with published
# FCOS3D numbers; note that 0.05 also merges distinct same-class objects that barely touch (walking
# pedestrians 0.6 m apart: 2 of 324 ground-truth boxes in a 10-scene synthetic round trip).
CROSS_CAMERA_IOU = 0.05
CROSS_CAMERA_SCORE = 0.01


@dataclass(frozen=True, eq=False)
class GlobalBoxes:
    """N boxes in the nuScenes global frame, as the result JSON wants them.

    translation (N, 3) metres; size (N, 3) [w, l, h]; rotation (N, 4) quaternion [w, x, y, z];
    velocity (N, 2) [vx, vy] m/s (NaN where unknown); scores (N,); labels (N,) class indices;
    attr_labels (N,) attribute indices. The arrays are private read-only copies: no caller's array is
    ever shared with (or written through) a GlobalBoxes.
    """

    translation: np.ndarray
    size: np.ndarray
    rotation: np.ndarray
    velocity: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    attr_labels: np.ndarray

    def __post_init__(self):
        fields = {
            "translation": (np.float64, (-1, 3)),
            "size": (np.float64, (-1, 3)),
            "rotation": (np.float64, (-1, 4)),
            "velocity": (np.float64, (-1, 2)),
            "scores": (np.float64, (-1,)),
            "labels": (np.int64, (-1,)),
            "attr_labels": (np.int64, (-1,)),
        }
        n = None
        for name, (dtype, shape) in fields.items():
            arr = np.array(getattr(self, name), dtype=dtype, copy=True).reshape(shape)
            arr.setflags(write=False)
            object.__setattr__(self, name, arr)
            if n is None:
                n = len(arr)
            elif len(arr) != n:
                raise ValueError(f"GlobalBoxes.{name} has {len(arr)} rows, translation has {n}")

    def __len__(self) -> int:
        return len(self.scores)

    @classmethod
    def empty(cls) -> GlobalBoxes:
        return cls(*(np.zeros((0,)) for _ in range(7)))

    @classmethod
    def concat(cls, parts: Sequence[GlobalBoxes]) -> GlobalBoxes:
        """All boxes of ``parts`` in order (an empty GlobalBoxes for no parts)."""
        if not parts:
            return cls.empty()
        return cls(**{name: np.concatenate([getattr(p, name) for p in parts]) for name in _FIELDS})

    def take(self, index) -> GlobalBoxes:
        """The boxes at ``index`` (an index array or boolean mask), in that order."""
        return GlobalBoxes(**{name: getattr(self, name)[index] for name in _FIELDS})

    @property
    def yaw(self) -> np.ndarray:
        """Heading (N,) about the global z axis: the angle of the box's rotated x (length) axis."""
        w, x, y, z = self.rotation.T / np.linalg.norm(self.rotation, axis=1)
        return np.arctan2(2.0 * (x * y + w * z), 1.0 - 2.0 * (y * y + z * z))

    def bev(self) -> np.ndarray:
        """BEV boxes (N, 5) = (x, y, w, l, yaw) for fcos3d.boxes.nms."""
        return np.stack(
            [self.translation[:, 0], self.translation[:, 1], self.size[:, 0], self.size[:, 1], self.yaw], axis=1
        )


_FIELDS = ("translation", "size", "rotation", "velocity", "scores", "labels", "attr_labels")


def camera_boxes_to_global(
    centers3d,
    dims,
    rot_y,
    velo_cam,
    scores,
    labels,
    attr_labels,
    cam2ego,
    ego2global,
    *,
    class_range: Sequence[float] | None = None,
) -> GlobalBoxes:
    """One camera image's boxes, camera frame -> global frame.

    centers3d (N, 3) camera-frame geometric centres; dims (N, 3) [w, l, h]; rot_y (N,); velo_cam (N, 2)
    camera [vx, vz]; scores (N,); labels (N,); attr_labels (N,); cam2ego, ego2global 4x4 poses.
    class_range (optional, indexed by label): drop boxes whose distance from the ego origin in the
    ground plane is beyond their class's range, as mmdet3d does before the merge (the devkit applies
    the same ranges, from the LIDAR_TOP ego pose, when it evaluates).
    """
    centers3d = np.asarray(centers3d, dtype=np.float64).reshape(-1, 3)  # (N, 3)
    n = len(centers3d)
    dims = np.asarray(dims, dtype=np.float64).reshape(n, 3)
    rot_y = np.asarray(rot_y, dtype=np.float64).reshape(n)
    velo_cam = np.asarray(velo_cam, dtype=np.float64).reshape(n, 2)
    scores = np.asarray(scores, dtype=np.float64).reshape(n)
    labels = np.asarray(labels, dtype=np.int64).reshape(n)
    attr_labels = np.asarray(attr_labels, dtype=np.int64).reshape(n)
    keep = np.arange(n)
    if class_range is not None:
        cam2ego = np.asarray(cam2ego, dtype=np.float64)
        ego_xy = (centers3d @ cam2ego[:3, :3].T + cam2ego[:3, 3])[:, :2]  # (N, 2)
        keep = np.flatnonzero(np.linalg.norm(ego_xy, axis=1) <= np.asarray(class_range, dtype=np.float64)[labels])
    translation, rotation, velocity = boxes_camera_to_global(
        centers3d[keep], rot_y[keep], velo_cam[keep], cam2ego, ego2global
    )
    return GlobalBoxes(
        translation=translation,
        size=dims[keep],
        rotation=rotation,
        velocity=velocity,
        scores=scores[keep],
        labels=labels[keep],
        attr_labels=attr_labels[keep],
    )


def merge_sample_cameras(
    per_camera: Sequence[GlobalBoxes],
    *,
    iou_threshold: float = CROSS_CAMERA_IOU,
    score_threshold: float = CROSS_CAMERA_SCORE,
    max_boxes: int = MAX_BOXES_PER_SAMPLE,
) -> GlobalBoxes:
    """One sample's boxes from its cameras: concatenate, then per-class rotated BEV NMS in the global frame.

    A box seen by two cameras comes out of both; the NMS keeps the higher-scoring copy (the earlier
    camera on a tie). Boxes scoring at most score_threshold are dropped first. Returns at most
    max_boxes boxes, highest score first.
    """
    boxes = GlobalBoxes.concat(list(per_camera))
    boxes = boxes.take(np.flatnonzero(boxes.scores > score_threshold))
    if len(boxes) == 0:
        return boxes
    keep = multiclass_rotated_nms(boxes.bev(), boxes.scores, boxes.labels, iou_threshold, max_boxes)
    return boxes.take(keep)


def _attribute_name(class_name: str, attr: str, default_attribute: Mapping[str, str], class_attributes) -> str:
    """The attribute to report: the predicted one when it belongs to the class, else the class default."""
    if class_attributes is not None:
        allowed = tuple(class_attributes.get(class_name, ()))
        if not allowed:
            return ""
        return attr if attr in allowed else default_attribute[class_name]
    # Without an explicit table, an attribute belongs to a class when it is in the same group
    # ("vehicle.", "cycle.", "pedestrian.") as the class default: the devkit's attribute groups.
    default = default_attribute[class_name]
    if not default:
        return ""
    return attr if attr and attr.split(".")[0] == default.split(".")[0] else default


def build_result_json(
    per_sample: Mapping[str, GlobalBoxes],
    sample_tokens_of_split: Sequence[str],
    class_names: Sequence[str],
    attribute_names: Sequence[str],
    default_attribute: Mapping[str, str],
    *,
    class_attributes: Mapping[str, Sequence[str]] | None = None,
    max_boxes_per_sample: int = MAX_BOXES_PER_SAMPLE,
) -> dict:
    """The nuScenes detection result dict ({"meta", "results"}) for one split.

    Every sample of the split gets an entry (an empty list where per_sample has none); a token in
    per_sample that is not in the split is an error (the devkit would reject the file). Per box:
    detection_name = class_names[label]; attribute_name = attribute_names[attr], "" for none, and the
    class default (default_attribute) where the attribute does not belong to the class (class_attributes,
    or the devkit's groups when it is None); classes without attributes get "". Velocity NaN -> 0.
    At most max_boxes_per_sample boxes per sample, the highest scoring.
    """
    split_tokens = list(dict.fromkeys(sample_tokens_of_split))
    extra = set(per_sample) - set(split_tokens)
    if extra:
        raise ValueError(
            f"{len(extra)} sample(s) are not in the split, e.g. {sorted(extra)[0]}: pass the tokens of the split that was predicted"
        )
    results = {}
    for token in split_tokens:
        boxes = per_sample.get(token)
        entries = []
        if boxes is not None and len(boxes):
            if boxes.labels.min() < 0 or boxes.labels.max() >= len(class_names):
                raise ValueError(f"sample {token}: label outside 0..{len(class_names) - 1}")
            if boxes.attr_labels.min() < 0 or boxes.attr_labels.max() >= len(attribute_names):
                raise ValueError(f"sample {token}: attribute label outside 0..{len(attribute_names) - 1}")
            order = np.argsort(-boxes.scores, kind="stable")[:max_boxes_per_sample]
            velocity = np.nan_to_num(boxes.velocity, nan=0.0)
            for i in order:
                name = class_names[boxes.labels[i]]
                entries.append(
                    {
                        "sample_token": token,
                        "translation": boxes.translation[i].tolist(),
                        "size": boxes.size[i].tolist(),
                        "rotation": boxes.rotation[i].tolist(),
                        "velocity": velocity[i].tolist(),
                        "detection_name": name,
                        "detection_score": float(boxes.scores[i]),
                        "attribute_name": _attribute_name(
                            name, attribute_names[boxes.attr_labels[i]] or "", default_attribute, class_attributes
                        ),
                    }
                )
        results[token] = entries
    meta = {"use_camera": True, "use_lidar": False, "use_radar": False, "use_map": False, "use_external": False}
    return {"meta": meta, "results": results}
