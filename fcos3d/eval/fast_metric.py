"""The nuScenes detection metric in numpy, fast enough to score a thousand resampled splits (paired bootstrap).

Equal to the devkit's DetectionEval on the whole split (tests/eval/test_fast_metric.py). How: the devkit's greedy
matching of a prediction only looks at the ground truth of its own sample, in the order of that sample's
predictions, so each prediction's match (true positive at each distance threshold, and its TP errors at
``dist_th_tp``) is computed once per split (``match_boxes``). Scoring any multiset of samples (``weights``, a count
per sample) is then a cumulative sum over the predictions sorted once per class, in the devkit's order, with
each sample's predictions repeated as often as the sample is drawn; the precision/recall interpolation, AP, TP
errors and NDS follow the devkit's arithmetic step by step, so the whole split gives the devkit's floats.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "MatchedSplit",
    "load_gt_boxes",
    "load_pred_boxes",
    "match_boxes",
    "metrics_on_samples",
    "scene_of_samples",
]

CONFIG_NAME = "detection_cvpr_2019"
# The devkit's TP metric names in its order (nuscenes.eval.detection.constants.TP_METRICS) and our short names.
TP_METRICS = ("trans_err", "scale_err", "orient_err", "vel_err", "attr_err")
TP_SHORT = {"trans_err": "ATE", "scale_err": "ASE", "orient_err": "AOE", "vel_err": "AVE", "attr_err": "AAE"}
# TP errors the devkit does not define for a class (evaluate.py): NaN, left out of the class mean.
UNDEFINED_TP = {
    "traffic_cone": ("attr_err", "vel_err", "orient_err"),
    "barrier": ("attr_err", "vel_err"),
}
N_INTERP = 101  # DetectionMetricData.nelem: recall sampled at 0, 0.01, ..., 1
_REC_INTERP = np.linspace(0, 1, N_INTERP)
_REC_INTERP.setflags(write=False)


def _config():
    from nuscenes.eval.common.config import config_factory

    return config_factory(CONFIG_NAME)


def scene_of_samples(nusc, sample_tokens: Sequence[str]) -> list[str]:
    """The scene token of each sample."""
    return [nusc.get("sample", t)["scene_token"] for t in sample_tokens]


def load_gt_boxes(nusc, eval_set: str):
    """The split's ground truth as DetectionEval.__init__ loads it: EvalBoxes with ego distances, range-filtered."""
    from nuscenes.eval.common.loaders import (
        add_center_dist,
        filter_eval_boxes,
        get_samples_of_custom_split,
        load_gt,
        load_gt_of_sample_tokens,
    )
    from nuscenes.eval.detection.data_classes import DetectionBox
    from nuscenes.utils.splits import is_predefined_split

    if is_predefined_split(split_name=eval_set):
        gt = load_gt(nusc, eval_set, DetectionBox, verbose=False)
    else:
        tokens = get_samples_of_custom_split(split_name=eval_set, nusc=nusc)
        gt = load_gt_of_sample_tokens(nusc, tokens, DetectionBox, verbose=False)
    return filter_eval_boxes(nusc, add_center_dist(nusc, gt), _config().class_range, verbose=False)


def load_pred_boxes(result: Mapping, nusc, eval_set: str):
    """A result dict's predictions as DetectionEval.__init__ loads them (same sample order, same filters)."""
    from nuscenes.eval.common.data_classes import EvalBoxes
    from nuscenes.eval.common.loaders import add_center_dist, filter_eval_boxes, get_samples_of_custom_split
    from nuscenes.eval.detection.data_classes import DetectionBox
    from nuscenes.utils.splits import is_predefined_split

    cfg = _config()
    content = result["results"]
    if not is_predefined_split(split_name=eval_set):
        content = {t: content[t] for t in get_samples_of_custom_split(split_name=eval_set, nusc=nusc)}
    pred = EvalBoxes.deserialize(content, DetectionBox)
    for token in pred.sample_tokens:
        if len(pred.boxes[token]) > cfg.max_boxes_per_sample:
            raise ValueError(f"sample {token} has {len(pred.boxes[token])} boxes: at most {cfg.max_boxes_per_sample}")
    pred = add_center_dist(nusc, pred)
    if any(len(b) for b in pred.boxes.values()):  # the devkit's filter cannot tell the box type of an empty set
        pred = filter_eval_boxes(nusc, pred, cfg.class_range, verbose=False)
    return pred


def metrics_on_samples(
    results: Mapping[str, Mapping], nusc, eval_set: str, sample_tokens: Sequence[str]
) -> dict[str, dict]:
    """Each result dict's metrics on the split's samples ``sample_tokens`` alone: the devkit's metric as if the
    split held only those samples (their ground truth and predictions; the other samples' left out). The ground
    truth is loaded once for all results. A token outside the split is an error."""
    gt = load_gt_boxes(nusc, eval_set)
    wanted = set(sample_tokens)
    unknown = wanted.difference(gt.sample_tokens)
    if unknown:
        raise ValueError(f"{len(unknown)} sample token(s) not in the split {eval_set}, e.g. {sorted(unknown)[0]}")
    out = {}
    for name, result in results.items():
        split = match_boxes(gt, load_pred_boxes(result, nusc, eval_set))
        out[name] = split.metrics(np.array([t in wanted for t in split.sample_tokens], dtype=np.int64))
    return out


def _center_distance(p_xy: np.ndarray, g_xy: np.ndarray) -> np.ndarray:
    """(P, G) xy distances, as the devkit's center_distance computes each: np.linalg.norm of a 2-vector is
    sqrt(x.dot(x)), a BLAS dot (fused multiply-add on most CPUs); a batched matmul calls the same kernel,
    whereas (d * d).sum() rounds differently in ~8 % of cases."""
    d = p_xy[:, None, :] - g_xy[None, :, :]  # (P, G, 2)
    return np.sqrt(np.matmul(d[..., None, :], d[..., :, None])[..., 0, 0])


def _tp_errors(gt_box, pred_box, class_name: str) -> list[float]:
    """The devkit's TP errors of one match (accumulate()): its own functions, so every rule is the devkit's."""
    from nuscenes.eval.common.utils import attr_acc, center_distance, scale_iou, velocity_l2, yaw_diff

    period = np.pi if class_name == "barrier" else 2 * np.pi  # barriers' orientation is defined up to 180 degrees
    errs = {
        "trans_err": center_distance(gt_box, pred_box),
        "vel_err": velocity_l2(gt_box, pred_box),
        "scale_err": 1 - scale_iou(gt_box, pred_box),
        "orient_err": yaw_diff(gt_box, pred_box, period=period),
        "attr_err": 1 - attr_acc(gt_box, pred_box),
    }
    return [float(errs[m]) for m in TP_METRICS]


@dataclass(frozen=True, eq=False)
class MatchedSplit:
    """One split's predictions, each matched once; ``metrics(weights)`` scores any multiset of its samples.

    sample_tokens (S,); npos (S, C) ground-truth boxes per sample and class; per prediction (P,), in the
    devkit's order (samples in result order, boxes in file order): sample, label, score, tp (P, T) matched at
    each distance threshold, err (P, 5) TP errors at dist_th_tp (NaN where unmatched or undefined);
    order[c]: the indices of class c's predictions sorted as the devkit sorts them (score descending, the later
    box first among equal scores).
    """

    sample_tokens: tuple
    class_names: tuple
    dist_ths: tuple
    dist_th_tp: float
    min_recall: float
    min_precision: float
    mean_ap_weight: float
    npos: np.ndarray
    sample: np.ndarray
    label: np.ndarray
    score: np.ndarray
    tp: np.ndarray
    err: np.ndarray
    order: tuple
    # Also kept for detection agreement: the predictions' BEV centres (P, 2).
    xy: np.ndarray

    def fingerprint(self) -> bytes:
        """Equal for two splits with the same predictions' matches and scores (their metrics are then equal)."""
        import hashlib

        h = hashlib.sha256()
        for a in (self.npos, self.sample, self.label, self.score, self.tp, self.err):
            h.update(np.ascontiguousarray(a).tobytes())
        return h.digest()

    @property
    def num_samples(self) -> int:
        return len(self.sample_tokens)

    def metrics(self, weights: np.ndarray | None = None) -> dict:
        """NDS, mAP, mATE..mAAE, class_AP, class_TP_errors of the multiset with ``weights[s]`` copies of sample s
        (default: each once, the devkit's result)."""
        w = np.ones(self.num_samples, dtype=np.int64) if weights is None else np.asarray(weights, dtype=np.int64)
        if w.shape != (self.num_samples,) or (w < 0).any():
            raise ValueError(f"weights must be {self.num_samples} non-negative counts, one per sample")
        npos_all = self.npos.T @ w  # (C,)
        t_tp = self.dist_ths.index(self.dist_th_tp)
        label_aps: dict[str, dict[float, float]] = {}
        label_tp: dict[str, dict[str, float]] = {}
        for c, name in enumerate(self.class_names):
            o = self.order[c]
            idx = np.repeat(o, w[self.sample[o]])  # each prediction once per copy of its sample, in sorted order
            label_aps[name], errs = {}, None
            for t, th in enumerate(self.dist_ths):
                curves = _curves(self.tp[idx, t], self.score[idx], int(npos_all[c]))
                label_aps[name][th] = self._ap(curves)
                if t == t_tp:
                    errs = self._tp(curves, self.tp[idx, t], self.score[idx], self.err[idx])
            label_tp[name] = {
                m: (np.nan if m in UNDEFINED_TP.get(name, ()) else errs[k]) for k, m in enumerate(TP_METRICS)
            }
        return self._summary(label_aps, label_tp)

    def _ap(self, curves) -> float:
        """calc_ap: the mean of the precision above min_recall, less min_precision, clipped at 0, rescaled."""
        prec = np.copy(curves[0])
        prec = prec[round(100 * self.min_recall) + 1 :]
        prec -= self.min_precision
        prec[prec < 0] = 0
        return float(np.mean(prec)) / (1.0 - self.min_precision)

    def _tp(self, curves, tp: np.ndarray, score: np.ndarray, err: np.ndarray) -> list[float]:
        """The TP errors of one class at dist_th_tp (accumulate's interpolation, then calc_tp)."""
        prec, conf, matched = curves
        if not matched:
            return [1.0] * len(TP_METRICS)  # no prediction matched: the devkit's "no predictions" errors of 1
        first = round(100 * self.min_recall) + 1
        nz = np.nonzero(conf)[0]
        last = nz[-1] if len(nz) else 0  # max_recall_ind: the last recall with a confidence above 0
        out = []
        match_conf = score[tp]
        for k in range(len(TP_METRICS)):
            cm = _cummean(err[tp, k])
            curve = np.interp(conf[::-1], match_conf[::-1], cm[::-1])[::-1]
            out.append(1.0 if last < first else float(np.mean(curve[first : last + 1])))
        return out

    def _summary(self, label_aps: dict, label_tp: dict) -> dict:
        """DetectionMetrics: class means over thresholds, mAP, the class means of TP errors, NDS."""
        mean_dist_aps = {c: np.mean(list(d.values())) for c, d in label_aps.items()}
        mean_ap = float(np.mean(list(mean_dist_aps.values())))
        tp_errors = {m: float(np.nanmean([label_tp[c][m] for c in self.class_names])) for m in TP_METRICS}
        tp_scores = {m: max(0.0, 1.0 - tp_errors[m]) for m in TP_METRICS}
        nds = float(self.mean_ap_weight * mean_ap + np.sum(list(tp_scores.values())))
        nds = nds / float(self.mean_ap_weight + len(tp_scores))
        return {
            "NDS": nds,
            "mAP": mean_ap,
            **{f"m{TP_SHORT[m]}": tp_errors[m] for m in TP_METRICS},
            "class_AP": {c: float(v) for c, v in mean_dist_aps.items()},
            "class_AP_by_distance": {c: {str(d): float(ap) for d, ap in aps.items()} for c, aps in label_aps.items()},
            "class_TP_errors": {c: {TP_SHORT[m]: float(v) for m, v in errs.items()} for c, errs in label_tp.items()},
        }


def _curves(tp: np.ndarray, score: np.ndarray, npos: int):
    """accumulate()'s precision and confidence at 101 recall points, and whether anything matched.

    tp (n,) bool and score (n,) in the devkit's sorted order. No ground truth or no match gives the devkit's
    DetectionMetricData.no_predictions() curves (precision and confidence zero)."""
    if npos == 0 or not tp.any():
        return np.zeros(N_INTERP), np.zeros(N_INTERP), False
    tp_c = np.cumsum(tp.astype(np.int64)).astype(float)
    fp_c = np.cumsum((~tp).astype(np.int64)).astype(float)
    prec = tp_c / (fp_c + tp_c)
    rec = tp_c / float(npos)
    return np.interp(_REC_INTERP, rec, prec, right=0), np.interp(_REC_INTERP, rec, score, right=0), True


def _cummean(x: np.ndarray) -> np.ndarray:
    """The devkit's NaN-aware running mean (all NaN: ones)."""
    if np.isnan(x).sum() == len(x):
        return np.ones(len(x))
    sums = np.nancumsum(x.astype(float))
    counts = np.cumsum(~np.isnan(x))
    return np.divide(sums, counts, out=np.zeros_like(sums), where=counts != 0)


def match_boxes(gt, pred) -> MatchedSplit:
    """Match every prediction of ``pred`` (EvalBoxes, filtered) to ``gt`` once per distance threshold, as the
    devkit's accumulate() does: per class, predictions by descending score take the nearest untaken ground
    truth box of their sample (the first one on equal distances), a match when nearer than the threshold."""
    cfg = _config()
    classes = tuple(cfg.class_names)
    cls_index = {c: i for i, c in enumerate(classes)}
    dist_ths = tuple(float(d) for d in cfg.dist_ths)
    t_tp = dist_ths.index(float(cfg.dist_th_tp))
    tokens = tuple(pred.sample_tokens)
    if set(tokens) != set(gt.sample_tokens):
        raise ValueError("the predictions' samples are not the ground truth's: predict on exactly the split's samples")
    S, C, T = len(tokens), len(classes), len(dist_ths)

    boxes = [b for t in tokens for b in pred.boxes[t]]
    P = len(boxes)
    sample = np.repeat(np.arange(S), [len(pred.boxes[t]) for t in tokens]).astype(np.int64)
    label = np.array([cls_index[b.detection_name] for b in boxes], dtype=np.int64)
    score = np.array([b.detection_score for b in boxes], dtype=np.float64)
    xy = np.array([b.translation[:2] for b in boxes], dtype=np.float64).reshape(P, 2)
    tp = np.zeros((P, T), dtype=bool)
    err = np.full((P, len(TP_METRICS)), np.nan)
    npos = np.zeros((S, C), dtype=np.int64)

    start = 0
    for s, token in enumerate(tokens):
        n = len(pred.boxes[token])
        gts = gt.boxes[token] if token in gt.boxes else []
        g_label = np.array([cls_index.get(g.detection_name, -1) for g in gts], dtype=np.int64)
        npos[s] = np.bincount(g_label[g_label >= 0], minlength=C)
        for c in range(C):
            g_idx = np.nonzero(g_label == c)[0]
            p_local = np.nonzero(label[start : start + n] == c)[0]
            if len(p_local) == 0 or len(g_idx) == 0:
                continue  # no ground truth of the class here: every prediction is a false positive
            # The devkit's order within the sample: descending score, the later box first among equal scores.
            p_local = p_local[np.lexsort((p_local, score[start + p_local]))[::-1]]
            g_xy = np.array([gts[j].translation[:2] for j in g_idx], dtype=np.float64)
            dist = _center_distance(xy[start + p_local], g_xy)  # (p, g)
            for t, th in enumerate(dist_ths):
                taken = np.zeros(len(g_idx), dtype=bool)
                for row, p in enumerate(p_local):
                    d = np.where(taken, np.inf, dist[row])
                    j = int(np.argmin(d))  # the first of equal minima, as the devkit's strict "<" keeps
                    if d[j] < th:
                        taken[j] = True
                        tp[start + p, t] = True
                        if t == t_tp:
                            err[start + p] = _tp_errors(gts[g_idx[j]], boxes[start + p], classes[c])
        start += n

    order = []
    for c in range(C):
        idx = np.nonzero(label == c)[0]
        order.append(idx[np.lexsort((idx, score[idx]))[::-1]])  # score descending, later first on ties
    for a in (npos, sample, label, score, tp, err, xy):
        a.setflags(write=False)
    return MatchedSplit(
        sample_tokens=tokens,
        class_names=classes,
        dist_ths=dist_ths,
        dist_th_tp=float(cfg.dist_th_tp),
        min_recall=float(cfg.min_recall),
        min_precision=float(cfg.min_precision),
        mean_ap_weight=float(cfg.mean_ap_weight),
        npos=npos,
        sample=sample,
        label=label,
        score=score,
        tp=tp,
        err=err,
        order=tuple(order),
        xy=xy,
    )
