"""A nuScenes root read through the devkit: upfront checks with one-line errors, and per-image infos.

An image info is a plain, picklable dict with everything one camera image needs (file, intrinsics,
poses and the sample's boxes in the global frame), so reader processes need no devkit instance.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..boxes.geometry import pose_matrix
from ..errors import Fcos3dError
from .classes import ATTRIBUTES, CAMERAS, CATEGORY_TO_CLASS, CLASSES, NO_ATTRIBUTE
from .record import RECORD_FORMAT
from .splits import devkit_split_name, is_custom_version

__all__ = [
    "TABLES",
    "check_nuscenes_root",
    "load_nuscenes",
    "split_scenes",
    "split_image_infos",
    "check_images_exist",
    "split_meta",
]

# The tables NuScenes() loads; a missing one is an AssertionError deep in the devkit otherwise.
TABLES = (
    "category",
    "attribute",
    "visibility",
    "instance",
    "sensor",
    "calibrated_sensor",
    "ego_pose",
    "log",
    "scene",
    "sample",
    "sample_data",
    "sample_annotation",
    "map",
)
_ATTR_INDEX = {name: i for i, name in enumerate(ATTRIBUTES) if name}
_CLASS_INDEX = {name: i for i, name in enumerate(CLASSES)}


def _versions_in(root: Path) -> list[str]:
    """Sub-folders of a dataroot that hold JSON tables: the versions a user may name."""
    return sorted(p.name for p in root.iterdir() if p.is_dir() and any(p.glob("*.json")))


def check_nuscenes_root(dataroot, version: str, split: str | None = None) -> Path:
    """Check a nuScenes root before the devkit loads it; return its absolute path.

    Checks, in order: the root exists; ``<root>/<version>/`` exists (else lists the versions found);
    every table JSON exists; every map PNG named in map.json exists; for ``split`` of a version without
    official splits, ``splits.json`` exists and names the split. Raises Fcos3dError on the first
    problem, naming the file and the fix.
    """
    root = Path(dataroot).expanduser().absolute()
    if not root.is_dir():
        raise Fcos3dError(
            f"nuScenes root {root} does not exist: pass the folder that holds <version>/ and samples/ (or make one with `fcos3d data synth`)"
        )
    table_dir = root / version
    if not table_dir.is_dir():
        found = _versions_in(root)
        hint = (
            f"versions found there: {', '.join(found)}"
            if found
            else "no version folder (with *.json tables) found there; is this the nuScenes root?"
        )
        raise Fcos3dError(f"version folder {table_dir} not found: --version must name a folder of {root} ({hint})")
    for name in TABLES:
        if not (table_dir / f"{name}.json").is_file():
            raise Fcos3dError(
                f"missing table {table_dir / f'{name}.json'}: the {version} metadata is incomplete; re-extract the version folder from the download"
            )
    map_json = table_dir / "map.json"
    try:
        maps = json.loads(map_json.read_text())
        filenames = [m["filename"] for m in maps]
    except (ValueError, KeyError, TypeError) as e:
        raise Fcos3dError(
            f"{map_json} is not a nuScenes map table ({type(e).__name__}: {e}): re-extract the version folder"
        ) from None
    for fn in filenames:
        if not (root / fn).is_file():
            raise Fcos3dError(
                f"missing map image {root / fn} (named in {map_json}): copy the maps/ folder of the download into {root}"
            )
    if split is not None:
        try:
            devkit_split = devkit_split_name(version, split)
        except ValueError as e:
            raise Fcos3dError(f"{e}: use --split-name train or val") from None
        if is_custom_version(version):
            splits_json = table_dir / "splits.json"
            if not splits_json.is_file():
                raise Fcos3dError(
                    f"missing {splits_json}: version {version!r} has no official splits, so it needs splits.json with the keys custom_train and custom_val (or use a version name ending in 'mini' or 'trainval')"
                )
            try:
                names = json.loads(splits_json.read_text())[devkit_split]
            except (ValueError, KeyError, TypeError):
                raise Fcos3dError(
                    f"{splits_json} has no list {devkit_split!r}: add it (a list of scene names)"
                ) from None
            if not isinstance(names, list):
                raise Fcos3dError(f"{splits_json}: {devkit_split!r} is not a list of scene names: fix the file")
    return root


def load_nuscenes(dataroot, version: str, split: str | None = None):
    """The devkit's NuScenes for a checked root (check_nuscenes_root first); devkit failures -> Fcos3dError."""
    from nuscenes.nuscenes import NuScenes

    root = check_nuscenes_root(dataroot, version, split)
    try:
        return NuScenes(version=version, dataroot=str(root), verbose=False)
    except json.JSONDecodeError as e:
        raise Fcos3dError(
            f"a table in {root / version} is not valid JSON ({e}): re-extract the version folder"
        ) from None
    except Exception as e:  # the devkit raises bare AssertionError/KeyError/Exception for inconsistent tables
        # e.g. a log that no map lists (KeyError of a log token): its own messages are terse.
        raise Fcos3dError(
            f"the devkit could not load {root / version} ({type(e).__name__}: {e}): the tables do not match each other; re-extract the version folder"
        ) from None


def split_scenes(nusc, version: str, split: str) -> tuple[str, list[dict]]:
    """(devkit split name, the split's scene records in scene.json order) for our "train" or "val"."""
    from nuscenes.utils.splits import get_scenes_of_split

    devkit_split = devkit_split_name(version, split)
    names = set(get_scenes_of_split(devkit_split, nusc))
    scenes = [s for s in nusc.scene if s["name"] in names]
    if not scenes:
        some = ", ".join(sorted(names)[:3])
        raise Fcos3dError(
            f"none of the {len(names)} scenes of split {devkit_split!r} ({some}, ...) is in {Path(nusc.dataroot) / version / 'scene.json'}: "
            "pack a split that this version holds, or check --version"
        )
    return devkit_split, scenes


def _sample_boxes(nusc, sample: dict) -> dict:
    """The detection-class boxes of one sample in the global frame (other categories are skipped)."""
    centers, wlh, rotations, velocities, labels, attrs, inst_tokens, ann_tokens = [], [], [], [], [], [], [], []
    for token in sample["anns"]:
        ann = nusc.get("sample_annotation", token)
        cls = CATEGORY_TO_CLASS.get(ann["category_name"])
        if cls is None:
            continue
        attr = NO_ATTRIBUTE
        for attr_token in ann["attribute_tokens"]:
            # nuScenes gives at most one attribute per box; take the first one we know.
            name = nusc.get("attribute", attr_token)["name"]
            if name in _ATTR_INDEX:
                attr = _ATTR_INDEX[name]
                break
        centers.append(ann["translation"])
        wlh.append(ann["size"])
        rotations.append(ann["rotation"])
        velocities.append(nusc.box_velocity(token)[:2])  # global [vx, vy]; NaN where not estimable
        labels.append(_CLASS_INDEX[cls])
        attrs.append(attr)
        inst_tokens.append(ann["instance_token"])
        ann_tokens.append(token)
    return {
        "centers": np.asarray(centers, dtype=np.float64).reshape(-1, 3),
        "wlh": np.asarray(wlh, dtype=np.float64).reshape(-1, 3),
        "rotations": np.asarray(rotations, dtype=np.float64).reshape(-1, 4),
        "velocities": np.asarray(velocities, dtype=np.float64).reshape(-1, 2),
        "labels": np.asarray(labels, dtype=np.int64),
        "attr_labels": np.asarray(attrs, dtype=np.int64),
        "instance_tokens": inst_tokens,
        "ann_tokens": ann_tokens,
    }


def split_image_infos(nusc, scenes: list[dict]) -> list[dict]:
    """One info per camera image of every key-frame sample of the scenes, in a fixed order.

    Order: scenes as given, samples in time order (first_sample_token -> next), cameras in the order
    of fcos3d.data.classes.CAMERAS; so index = 6 * sample_index + camera_index. Each info holds
    sample_token, sample_data_token, cam, timestamp, file_name, img_shape [H, W], cam_intrinsic (3, 3),
    cam2ego (4, 4), ego2global (4, 4) and ``boxes`` (the sample's global boxes, shared by its 6 infos).
    """
    infos = []
    for scene in scenes:
        token = scene["first_sample_token"]
        while token:
            sample = nusc.get("sample", token)
            boxes = _sample_boxes(nusc, sample)
            for cam in CAMERAS:
                if cam not in sample["data"]:
                    raise Fcos3dError(
                        f"sample {token} has no {cam} image in {Path(nusc.dataroot) / nusc.version / 'sample_data.json'}: the tables are incomplete"
                    )
                infos.append(image_info(nusc, sample["data"][cam], boxes))
            token = sample["next"]
    return infos


def image_info(nusc, sample_data_token: str, boxes: dict | None = None) -> dict:
    """The info of one camera image (the fields split_image_infos lists); boxes default to its sample's."""
    sd = nusc.get("sample_data", sample_data_token)
    cs = nusc.get("calibrated_sensor", sd["calibrated_sensor_token"])
    ep = nusc.get("ego_pose", sd["ego_pose_token"])
    if boxes is None:
        boxes = _sample_boxes(nusc, nusc.get("sample", sd["sample_token"]))
    return {
        "sample_token": sd["sample_token"],
        "sample_data_token": sd["token"],
        "cam": nusc.get("sensor", cs["sensor_token"])["channel"],
        "timestamp": int(sd["timestamp"]),
        "file_name": sd["filename"],
        "img_shape": [int(sd["height"]), int(sd["width"])],
        "cam_intrinsic": np.asarray(cs["camera_intrinsic"], dtype=np.float64).reshape(3, 3),
        "cam2ego": pose_matrix(cs["translation"], cs["rotation"]),
        "ego2global": pose_matrix(ep["translation"], ep["rotation"]),
        "boxes": boxes,
    }


def find_image_info(image_path, version: str) -> dict:
    """The info of a key-frame camera JPEG that lies in a nuScenes dataroot (``<root>/samples/<CAM>/<file>``)."""
    image_path = Path(image_path).resolve()
    if len(image_path.parents) < 3 or image_path.parents[1].name != "samples":
        raise Fcos3dError(
            f"{image_path}: not under <dataroot>/samples/<CAMERA>/; pass --intrinsics fx,fy,cx,cy for a lone image"
        )
    root = image_path.parents[2]
    nusc = load_nuscenes(root, version)
    rel = f"samples/{image_path.parent.name}/{image_path.name}"
    for sd in nusc.sample_data:
        if sd["filename"] == rel:
            return image_info(nusc, sd["token"])
    raise Fcos3dError(f"{image_path}: no sample_data record of {root / version} names this file; check --version")


def check_images_exist(dataroot, infos: list[dict], split: str) -> None:
    """Raise Fcos3dError naming the first missing JPEG (and how many are missing)."""
    root = Path(dataroot)
    missing = [info["file_name"] for info in infos if not (root / info["file_name"]).is_file()]
    if missing:
        raise Fcos3dError(
            f"missing image {root / missing[0]} ({len(missing)} of {len(infos)} camera images of split {split} missing): "
            "restore samples/ from the download (or re-run `fcos3d data synth`)"
        )


def split_meta(version: str, split: str, devkit_split: str, dataroot, count: int) -> dict:
    """The ``__meta__`` dict of a packed split (keys: record.META_FIELDS); evaluation finds the GT from it."""
    return {
        "version": version,
        "split": split,
        "devkit_split": devkit_split,
        "dataroot": str(Path(dataroot).absolute()),
        "classes": list(CLASSES),
        "attributes": list(ATTRIBUTES),
        "format": RECORD_FORMAT,
        "count": int(count),
    }
