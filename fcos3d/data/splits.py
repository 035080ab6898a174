"""Which devkit split name a (version, train|val) pair means, and which scenes it holds (torch-free).

The devkit knows predefined splits by official scene names: ``mini_train``/``mini_val`` need a version
ending in "mini", ``train``/``val`` one ending in "trainval". Any other version reads its splits from
``<dataroot>/<version>/splits.json``; its keys must not be predefined names (the devkit would take the
predefined list instead), so we use ``custom_train`` and ``custom_val`` there.
"""

from __future__ import annotations

SPLITS = ("train", "val")
CUSTOM_SPLIT_KEYS = {"train": "custom_train", "val": "custom_val"}


def devkit_split_name(version: str, split: str) -> str:
    """The split name to hand to the devkit (DetectionEval's eval_set) for our "train" or "val"."""
    if split not in SPLITS:
        raise ValueError(f"split {split!r} is not one of {SPLITS}")
    if version.endswith("mini"):
        return f"mini_{split}"
    if version.endswith("trainval"):
        return split
    return CUSTOM_SPLIT_KEYS[split]


def is_custom_version(version: str) -> bool:
    """True when the version's splits come from splits.json rather than the devkit's official lists."""
    return not (version.endswith("mini") or version.endswith("trainval"))
