"""Random ground truth and predictions as the devkit's EvalBoxes, and the devkit's own scoring of them (no dataset).

Shared by tests/eval/test_fast_metric.py and tests/trainer/test_compare.py.
"""

import numpy as np

CLASSES = (
    "car",
    "truck",
    "bus",
    "trailer",
    "construction_vehicle",
    "pedestrian",
    "motorcycle",
    "bicycle",
    "traffic_cone",
    "barrier",
)
ATTRS = {
    "car": ("vehicle.moving", "vehicle.parked", "vehicle.stopped"),
    "pedestrian": ("pedestrian.moving", "pedestrian.standing"),
    "bicycle": ("cycle.with_rider", "cycle.without_rider"),
}


def _quat(yaw: float) -> list[float]:
    return [float(np.cos(yaw / 2)), 0.0, 0.0, float(np.sin(yaw / 2))]


def _box(token, xyz, size, yaw, velocity, name, score, attr):
    from nuscenes.eval.detection.data_classes import DetectionBox

    return DetectionBox(
        sample_token=token,
        translation=[float(v) for v in xyz],
        size=[float(v) for v in size],
        rotation=_quat(yaw),
        velocity=[float(v) for v in velocity],
        detection_name=name,
        detection_score=float(score),
        attribute_name=attr,
    )


def random_gt(rng, samples: int = 12):
    """Up to 14 boxes per sample, mostly cars/trucks/buses/trailers, every class now and then."""
    from nuscenes.eval.common.data_classes import EvalBoxes

    gt = EvalBoxes()
    for s in range(samples):
        token = f"sample{s:03d}"
        boxes = []
        for _ in range(int(rng.integers(0, 15))):
            name = CLASSES[int(rng.integers(0, 4))] if rng.random() < 0.8 else CLASSES[int(rng.integers(0, 10))]
            attrs = ATTRS.get(name, ("",))
            boxes.append(
                _box(
                    token,
                    rng.normal(0, 8, 3),
                    rng.uniform(0.5, 4, 3),
                    rng.uniform(-np.pi, np.pi),
                    rng.normal(0, 2, 2),
                    name,
                    -1.0,
                    attrs[int(rng.integers(len(attrs)))],
                )
            )
        gt.add_boxes(token, boxes)
    return gt


def random_predictions(rng, gt, *, ties: bool = True, noise: float = 1.2):
    """0-2 noisy copies of each ground-truth box (sometimes another class, a flipped heading, no velocity) plus
    a few false positives; scores rounded to 0.01 when ``ties`` (equal scores exercise the sort order)."""
    from nuscenes.eval.common.data_classes import EvalBoxes

    pred = EvalBoxes()

    def score():
        v = rng.random()
        return np.round(v, 2) if ties else v

    for token in gt.sample_tokens:
        boxes = []
        for g in gt.boxes[token]:
            for _ in range(int(rng.integers(0, 3))):
                name = g.detection_name if rng.random() < 0.9 else CLASSES[int(rng.integers(10))]
                attrs = ATTRS.get(name, ("",))
                velocity = np.array(g.velocity) + rng.normal(0, 1, 2)
                if rng.random() < 0.1:
                    velocity = [np.nan, np.nan]
                yaw = rng.uniform(-np.pi, np.pi) if rng.random() < 0.5 else 0.3
                boxes.append(
                    _box(
                        token,
                        np.array(g.translation) + rng.normal(0, noise, 3),
                        np.array(g.size) * rng.uniform(0.7, 1.3, 3),
                        yaw,
                        velocity,
                        name,
                        score(),
                        attrs[int(rng.integers(len(attrs)))],
                    )
                )
        for _ in range(int(rng.integers(0, 5))):
            name = CLASSES[int(rng.integers(10))]
            boxes.append(
                _box(
                    token,
                    rng.normal(0, 8, 3),
                    rng.uniform(0.5, 4, 3),
                    0.0,
                    (0, 0),
                    name,
                    score(),
                    ATTRS.get(name, ("",))[0],
                )
            )
        pred.add_boxes(token, boxes)
    return pred


def devkit_metrics(gt, pred) -> dict:
    """The devkit's DetectionEval.evaluate() on EvalBoxes, as our metric dict (NDS, mAP, m*, per class)."""
    from nuscenes.eval.common.config import config_factory
    from nuscenes.eval.detection.algo import accumulate, calc_ap, calc_tp
    from nuscenes.eval.detection.constants import TP_METRICS
    from nuscenes.eval.detection.data_classes import DetectionMetrics

    cfg = config_factory("detection_cvpr_2019")
    m = DetectionMetrics(cfg)
    for c in cfg.class_names:
        for th in cfg.dist_ths:
            md = accumulate(gt, pred, c, cfg.dist_fcn_callable, th)
            m.add_label_ap(c, th, calc_ap(md, cfg.min_recall, cfg.min_precision))
        md = accumulate(gt, pred, c, cfg.dist_fcn_callable, cfg.dist_th_tp)
        for name in TP_METRICS:
            if (c == "traffic_cone" and name in ("attr_err", "vel_err", "orient_err")) or (
                c == "barrier" and name in ("attr_err", "vel_err")
            ):
                m.add_label_tp(c, name, np.nan)
            else:
                m.add_label_tp(c, name, calc_tp(md, cfg.min_recall, name))
    s = m.serialize()
    short = {"trans_err": "ATE", "scale_err": "ASE", "orient_err": "AOE", "vel_err": "AVE", "attr_err": "AAE"}
    return {
        "NDS": s["nd_score"],
        "mAP": s["mean_ap"],
        **{f"m{short[k]}": v for k, v in s["tp_errors"].items()},
        "class_AP_by_distance": {c: {str(d): ap for d, ap in aps.items()} for c, aps in s["label_aps"].items()},
        "class_TP_errors": {c: {short[k]: v for k, v in e.items()} for c, e in s["label_tp_errors"].items()},
    }


def resampled(boxes, weights):
    """EvalBoxes holding sample s ``weights[s]`` times (copies get new tokens), in sample order."""
    from nuscenes.eval.common.data_classes import EvalBoxes

    out = EvalBoxes()
    for s, token in enumerate(boxes.sample_tokens):
        for k in range(int(weights[s])):
            copies = []
            for b in boxes.boxes[token]:
                ser = b.serialize()
                ser["sample_token"] = f"{token}#{k}"
                copies.append(type(b).deserialize(ser))
            out.add_boxes(f"{token}#{k}", copies)
    return out
