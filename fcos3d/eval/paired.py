"""Paired comparison of stages on the same images: bootstrap intervals of metric gaps, and detection agreement.

Every stage is scored on the same resampled multiset of units (scenes or samples) in each bootstrap round, so
the gap stage - reference has the spread of the stages' disagreement, not of the split's sampling of scenes
twice over. Numpy only; the metric is fcos3d.eval.fast_metric (equal to the devkit on the whole split).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

from .fast_metric import MatchedSplit

__all__ = ["GAP_KEYS", "paired_bootstrap", "per_unit_metrics", "detection_agreement", "unit_index"]

GAP_KEYS = ("NDS", "mAP", "mAOE")


def unit_index(labels: Sequence) -> tuple[np.ndarray, list]:
    """(S,) unit number of each sample and the units in first-seen order, from a label per sample."""
    units: dict = {}
    idx = np.array([units.setdefault(x, len(units)) for x in labels], dtype=np.int64)
    return idx, list(units)


def _check_same_samples(splits: Mapping[str, MatchedSplit]) -> None:
    tokens = {name: s.sample_tokens for name, s in splits.items()}
    first = next(iter(tokens.values()))
    for name, t in tokens.items():
        if t != first:
            raise ValueError(f"stage {name!r} was scored on other samples than the others: predict the same split")


def paired_bootstrap(
    splits: Mapping[str, MatchedSplit],
    units: np.ndarray,
    *,
    reference: str = "float",
    rounds: int = 1000,
    seed: int = 0,
    keys: Sequence[str] = GAP_KEYS,
    level: float = 0.95,
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Percentile bootstrap of each stage's gap to ``reference`` over resampled units.

    units (S,): the unit (scene or sample) number of each sample. Each round draws U units with replacement
    (numpy default_rng(seed), the same draw for every stage) and scores every stage on the drawn samples.
    Returns {"point": {stage: {key: value}}, "gap": {stage: {key: stage - reference}}, "interval": {stage:
    {key: [lo, hi]}}, "std": {stage: {key: bootstrap std of the gap}}, "rounds": {stage: {key: (rounds,) gaps}},
    "units": U, "level": level}; identical stages give gaps of exactly 0 in every round.
    """
    if reference not in splits:
        raise ValueError(f"the reference stage {reference!r} is not among {sorted(splits)}")
    if rounds < 1:
        raise ValueError(f"rounds={rounds}: use at least 1 bootstrap round")
    _check_same_samples(splits)
    units = np.asarray(units, dtype=np.int64)
    n_units = int(units.max()) + 1 if len(units) else 0
    if n_units < 2:
        raise ValueError(f"{n_units} unit(s) to resample: a bootstrap needs at least 2")
    names = list(splits)
    point = {n: splits[n].metrics() for n in names}
    # Stages with the same matches (int_infer and the board when bit-exact) are scored once per round.
    first_of: dict[bytes, int] = {}
    same_as = [first_of.setdefault(splits[n].fingerprint(), i) for i, n in enumerate(names)]
    rng = np.random.default_rng(seed)
    draws = np.zeros((rounds, len(names), len(keys)))
    for b in range(rounds):
        counts = np.bincount(rng.integers(0, n_units, n_units), minlength=n_units)
        weights = counts[units]
        for i, n in enumerate(names):
            if same_as[i] != i:
                draws[b, i] = draws[b, same_as[i]]
                continue
            m = splits[n].metrics(weights)
            draws[b, i] = [m[k] for k in keys]
        if progress:
            progress(b + 1, rounds)
    ref = names.index(reference)
    gaps = draws - draws[:, ref : ref + 1]  # (rounds, stages, keys)
    tail = 100 * (1 - level) / 2
    lo, hi = np.percentile(gaps, [tail, 100 - tail], axis=0)  # (stages, keys) each
    return {
        "point": {n: {k: point[n][k] for k in keys} for n in names},
        "metrics": point,
        "gap": {n: {k: point[n][k] - point[reference][k] for k in keys} for n in names},
        "interval": {
            n: {k: [float(lo[i, j]), float(hi[i, j])] for j, k in enumerate(keys)} for i, n in enumerate(names)
        },
        "std": {n: {k: float(gaps[:, i, j].std()) for j, k in enumerate(keys)} for i, n in enumerate(names)},
        "rounds": {n: {k: gaps[:, i, j] for j, k in enumerate(keys)} for i, n in enumerate(names)},
        "units": n_units,
        "level": level,
    }


def per_unit_metrics(split: MatchedSplit, units: np.ndarray, keys: Sequence[str] = GAP_KEYS) -> np.ndarray:
    """(U, len(keys)) the metrics of each unit scored alone (a sample's NDS is noisy: read them side by side)."""
    units = np.asarray(units, dtype=np.int64)
    out = np.zeros((int(units.max()) + 1, len(keys)))
    for u in range(len(out)):
        m = split.metrics((units == u).astype(np.int64))
        out[u] = [m[k] for k in keys]
    return out


def detection_agreement(
    ref: MatchedSplit, other: MatchedSplit, *, max_dist: float = 1.0, min_score: float = 0.0
) -> dict:
    """How many of ``ref``'s detections (score >= min_score) ``other`` reproduces: a detection of the same class
    in the same sample whose BEV centre is within ``max_dist`` metres, each used once (ref's detections by
    descending score take the nearest free one; the higher-scoring one on equal distances).

    Returns {"share": matched / ref detections (1.0 when there are none), "matched", "total",
    "mean_abs_score_drift": mean |score_other - score_ref| over matched pairs (0.0 when none),
    "per_sample_share" (S,) (NaN where a sample has no ref detection), "per_sample_drift" (S,) (NaN: no pair)}.
    """
    _check_same_samples({"reference": ref, "other": other})
    S = ref.num_samples
    matched_n = np.zeros(S, dtype=np.int64)
    total_n = np.zeros(S, dtype=np.int64)
    drift_sum = np.zeros(S)
    r_keep = np.nonzero(ref.score >= min_score)[0]
    for s in range(S):
        r_s = r_keep[ref.sample[r_keep] == s]
        o_s = np.nonzero(other.sample == s)[0]
        total_n[s] = len(r_s)
        for c in np.unique(ref.label[r_s]):
            r = r_s[ref.label[r_s] == c]
            r = r[np.lexsort((r, -ref.score[r]))]  # descending score, file order on ties
            o = o_s[other.label[o_s] == c]
            if len(o) == 0:
                continue
            o = o[np.lexsort((o, -other.score[o]))]
            d = np.linalg.norm(ref.xy[r][:, None, :] - other.xy[o][None, :, :], axis=-1)  # (r, o)
            free = np.ones(len(o), dtype=bool)
            for row in range(len(r)):
                cand = np.where(free, d[row], np.inf)
                j = int(np.argmin(cand))
                if cand[j] <= max_dist:
                    free[j] = False
                    matched_n[s] += 1
                    drift_sum[s] += abs(other.score[o[j]] - ref.score[r[row]])
    matched, total = int(matched_n.sum()), int(total_n.sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        per_share = np.where(total_n > 0, matched_n / np.maximum(total_n, 1), np.nan)
        per_drift = np.where(matched_n > 0, drift_sum / np.maximum(matched_n, 1), np.nan)
    return {
        "share": matched / total if total else 1.0,
        "matched": matched,
        "total": total,
        "mean_abs_score_drift": float(drift_sum.sum() / matched) if matched else 0.0,
        "per_sample_share": per_share,
        "per_sample_drift": per_drift,
    }
