"""The synthetic nuScenes writer: scenes simulated one at a time and written in the devkit's exact format:
tables to <out>/<version>/*.json, JPEGs to samples/CAM_*/, lidar to samples/LIDAR_TOP/."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import cv2
import numpy as np

from ..boxes.geometry import invert_pose, pose_matrix, rotmat_to_quat, yaw_to_quat
from ..data.classes import CAMERAS, CLASSES
from ..data.splits import CUSTOM_SPLIT_KEYS, is_custom_version
from ..errors import Fcos3dError
from . import paint
from .models import build_model
from .rig import lidar_points, make_calibration, visible_in_camera
from .world import LOCATIONS, World, ensure_every_class, make_world

DEFAULT_SCENES = 10
DEFAULT_SAMPLES_PER_SCENE = 20
KEYFRAME_US = 500_000  # nuScenes key frames come at 2 Hz
MINI_SCENES = 10

# The devkit's detection_cvpr_2019 class ranges (metres from the ego, in x-y); annotated objects stay
# RANGE_MARGIN inside them so that the evaluator's range filter never drops ground truth.
CLASS_RANGE = {
    "car": 50,
    "truck": 50,
    "bus": 50,
    "trailer": 50,
    "construction_vehicle": 50,
    "pedestrian": 40,
    "motorcycle": 40,
    "bicycle": 40,
    "traffic_cone": 30,
    "barrier": 30,
}
RANGE_MARGIN = 2.0
MIN_DIST = 3.0  # nothing is annotated (or drawn) closer than this to the ego's origin

# nuScenes' full category list (category.json), with our short descriptions.
CATEGORIES = (
    "human.pedestrian.adult",
    "human.pedestrian.child",
    "human.pedestrian.wheelchair",
    "human.pedestrian.stroller",
    "human.pedestrian.personal_mobility",
    "human.pedestrian.police_officer",
    "human.pedestrian.construction_worker",
    "animal",
    "vehicle.car",
    "vehicle.motorcycle",
    "vehicle.bicycle",
    "vehicle.bus.bendy",
    "vehicle.bus.rigid",
    "vehicle.truck",
    "vehicle.construction",
    "vehicle.emergency.ambulance",
    "vehicle.emergency.police",
    "vehicle.trailer",
    "movable_object.barrier",
    "movable_object.trafficcone",
    "movable_object.pushable_pullable",
    "movable_object.debris",
    "static_object.bicycle_rack",
)
ATTRIBUTE_NAMES = (
    "vehicle.moving",
    "vehicle.stopped",
    "vehicle.parked",
    "cycle.with_rider",
    "cycle.without_rider",
    "pedestrian.sitting_lying_down",
    "pedestrian.standing",
    "pedestrian.moving",
)
VISIBILITY = (
    ("1", "v0-40", "visibility of whole object is between 0 and 40%"),
    ("2", "v40-60", "visibility of whole object is between 40 and 60%"),
    ("3", "v60-80", "visibility of whole object is between 60 and 80%"),
    ("4", "v80-100", "visibility of whole object is between 80 and 100%"),
)
SCENE_TABLES = (
    "instance",
    "calibrated_sensor",
    "ego_pose",
    "log",
    "scene",
    "sample",
    "sample_data",
    "sample_annotation",
)


def write_synthetic_nuscenes(
    out,
    version: str = "v1.0-mini",
    seed: int = 0,
    scenes: int | None = None,
    samples_per_scene: int | None = None,
    image_size=(800, 450),
    progress=None,
    val_scenes: int | None = None,
) -> dict:
    """Write a synthetic dataset in nuScenes' on-disk format under ``out``; returns a summary of counts.

    The same seed gives byte-identical files. Scene i depends only on (seed, i), so a smaller set is a
    prefix of a larger one. ``val_scenes``: make the val split this many scenes by appending val-only scenes
    after the ``scenes`` of the plan (the train split stays the same scenes). ``progress(done, total)`` is
    called after each camera image.
    """
    n_scenes, n_samples, size = _check_request(seed, scenes, samples_per_scene, image_size)
    names, split_of = scene_plan(version, n_scenes, val_scenes)
    out = Path(out)
    out_v = _make_root(out, version)
    writer = _SceneWriter(
        out, seed, n_samples, size, _static_tables(out_v), progress, len(names) * n_samples * len(CAMERAS)
    )
    for si, name in enumerate(names):
        writer.scene(si, name)
    map_rows = _write_maps(out, writer.maps)
    for key, rows in writer.tables.items():
        _dump(out_v / f"{key}.json", rows)
    _dump(out_v / "map.json", map_rows)
    _write_splits(out_v, version, split_of)
    return _summary(len(names), split_of, writer)


def scene_plan(version: str, n: int, val_scenes: int | None = None) -> tuple[list[str], dict[str, list[str]]]:
    """Scene names for ``n`` scenes of ``version`` and the split each belongs to ({"train": [...], "val": [...]}).

    mini versions use official mini names, interleaved so that any n >= 2 has a val scene; trainval
    versions use official train/val names (about 80/20); other versions get generic names whose split
    goes to splits.json. ``val_scenes`` (more than the plan's val scenes): val-only scenes are appended
    after the n, so the train scenes and the first val scenes stay exactly those of n scenes.
    """
    if n < 1:
        raise Fcos3dError(f"--scenes must be at least 1 (got {n})")
    n_val = sum(1 for i in range(n) if i % 5 == 1)  # ~20% val, and a val scene in any n >= 2
    extra = 0 if val_scenes is None else int(val_scenes) - n_val
    if extra < 0:
        raise Fcos3dError(
            f"--val-scenes {val_scenes} is fewer than the {n_val} val scene(s) of --scenes {n}: use --val-scenes "
            f"{n_val} or more (it adds val scenes), or fewer --scenes"
        )
    if extra and version.endswith("mini"):
        raise Fcos3dError(
            f"--val-scenes {val_scenes}: {version}'s val split is the devkit's 2 official mini_val scenes; use a "
            "version that reads splits.json (e.g. --version v1.0-synth) or v1.0-trainval for more val scenes"
        )
    if version.endswith("mini"):
        from nuscenes.utils.splits import mini_train, mini_val

        if n > MINI_SCENES:
            raise Fcos3dError(
                f"--scenes {n} is too many for {version}: the mini split has {MINI_SCENES} scenes; use --scenes"
                f" {MINI_SCENES} or less, or a version such as v1.0-trainval or v1.0-synth for more"
            )
        tr, va = list(mini_train[: n - n_val]), list(mini_val[:n_val])
    elif version.endswith("trainval"):
        from nuscenes.utils.splits import train, val

        if n - n_val > len(train) or n_val > len(val):
            raise Fcos3dError(
                f"--scenes {n} is too many for {version}: the devkit names {len(train) + len(val)} train/val scenes"
            )
        if n_val + extra > len(val):
            raise Fcos3dError(
                f"--scenes {n} --val-scenes {n_val + extra} is too many for {version}: the devkit names "
                f"{len(train)} train and {len(val)} val scenes"
            )
        tr, va = list(train[: n - n_val]), list(val[: n_val + extra])
    else:
        tr = [f"scene-{i + 1:04d}" for i in range(n) if i % 5 != 1]
        va = [f"scene-{i + 1:04d}" for i in range(n) if i % 5 == 1]
        va += [f"scene-{i + 1:04d}" for i in range(n, n + extra)]
    # Scene i is val when i % 5 == 1, so a set of n scenes is a prefix of any larger one; extra val scenes follow.
    ti, vi = iter(tr), iter(va)
    names = [next(vi) if i % 5 == 1 else next(ti) for i in range(n)] + list(vi)
    return names, {"train": tr, "val": va}


def annotate(world: World, times, ego_poses, calib, image_size) -> dict[int, list[int]]:
    """Which key frames each actor is annotated in: inside its class range (with a margin) from the ego,
    not on top of the ego, and with its centre in some camera image. Returns {actor: [sample indices]}."""
    tracks: dict[int, list[int]] = {}
    if not world.actors:
        return tracks
    rng_lim = np.array([CLASS_RANGE[a.cls] - RANGE_MARGIN for a in world.actors])
    for k, t in enumerate(times):
        centres, _ = world.states(t)
        e2g = ego_poses[k]
        dist = np.linalg.norm(centres[:, :2] - e2g[:2, 3], axis=1)
        ok = (dist <= rng_lim) & (dist >= MIN_DIST)
        ok &= visible_in_camera(centres, e2g, calib, image_size)
        for ai in np.nonzero(ok)[0]:
            tracks.setdefault(int(ai), []).append(k)
    return dict(sorted(tracks.items()))


# ----------------------------------------------------------------------------------------------
# The dataset's frame: arguments, folders, the tables every seed shares, maps, splits, summary.


def _check_request(seed, scenes, samples_per_scene, image_size) -> tuple[int, int, tuple[int, int]]:
    n_scenes = DEFAULT_SCENES if scenes is None else int(scenes)
    n_samples = DEFAULT_SAMPLES_PER_SCENE if samples_per_scene is None else int(samples_per_scene)
    W, H = (int(v) for v in image_size)
    if int(seed) < 0:
        raise Fcos3dError(f"--seed must be 0 or more (got {seed})")
    if n_samples < 1:
        raise Fcos3dError(f"--samples-per-scene must be at least 1 (got {n_samples})")
    if W < 32 or H < 32:
        raise Fcos3dError(f"image size {W}x{H} is too small: use at least 32x32")
    return n_scenes, n_samples, (W, H)


def _make_root(out: Path, version: str) -> Path:
    """The folder layout of a nuScenes root; returns <out>/<version>."""
    out_v = out / version
    out_v.mkdir(parents=True, exist_ok=True)
    for ch in (*CAMERAS, "LIDAR_TOP"):
        (out / "samples" / ch).mkdir(parents=True, exist_ok=True)
    (out / "sweeps").mkdir(exist_ok=True)
    (out / "maps").mkdir(exist_ok=True)
    return out_v


def _static_tables(out_v: Path) -> dict:
    """category, attribute, visibility, sensor: the same tokens for every seed (they depend on names only)."""
    cats = [
        {
            "token": _token("category", n),
            "name": n,
            "description": f"Synthetic {n.split('.')[-1].replace('_', ' ')}.",
            "index": i,
        }
        for i, n in enumerate(CATEGORIES)
    ]
    attrs = [
        {"token": _token("attribute", n), "name": n, "description": f"Synthetic attribute {n}."}
        for n in ATTRIBUTE_NAMES
    ]
    vis = [{"description": d, "token": t, "level": lv} for t, lv, d in VISIBILITY]
    sensors = [{"token": _token("sensor", c), "channel": c, "modality": "camera"} for c in CAMERAS]
    sensors.append({"token": _token("sensor", "LIDAR_TOP"), "channel": "LIDAR_TOP", "modality": "lidar"})
    _dump(out_v / "category.json", cats)
    _dump(out_v / "attribute.json", attrs)
    _dump(out_v / "visibility.json", vis)
    _dump(out_v / "sensor.json", sensors)
    return {
        "category": {c["name"]: c["token"] for c in cats},
        "attribute": {a["name"]: a["token"] for a in attrs},
        "sensor": {s["channel"]: s["token"] for s in sensors},
    }


def _write_maps(out: Path, maps: dict[str, list[str]]) -> list[dict]:
    """One small PNG per location under maps/; returns the map table's rows."""
    rows = []
    for location, logs in maps.items():
        token = _token("map", location)
        png = np.full((64, 64), 128, dtype=np.uint8)
        png[16:48, :] = 255  # a road through the middle: a stand-in for the semantic prior
        (out / "maps" / f"{token}.png").write_bytes(cv2.imencode(".png", png)[1].tobytes())
        rows.append({"category": "semantic_prior", "token": token, "filename": f"maps/{token}.png", "log_tokens": logs})
    return rows


def _write_splits(out_v: Path, version: str, split_of: dict[str, list[str]]) -> None:
    """splits.json for custom versions; official versions must not have one (the devkit would read it)."""
    if is_custom_version(version):
        _dump(
            out_v / "splits.json",
            {CUSTOM_SPLIT_KEYS["train"]: split_of["train"], CUSTOM_SPLIT_KEYS["val"]: split_of["val"]},
        )
    elif (out_v / "splits.json").exists():
        (out_v / "splits.json").unlink()  # left by an earlier run


def _summary(n_scenes: int, split_of, writer: _SceneWriter) -> dict:
    t = writer.tables
    summary = {
        "scenes": n_scenes,
        "train_scenes": len(split_of["train"]),
        "val_scenes": len(split_of["val"]),
        "samples": len(t["sample"]),
        "sample_data": len(t["sample_data"]),
        "instances": len(t["instance"]),
        "annotations": len(t["sample_annotation"]),
        "images": writer.done,
        "lidar_sweeps": len(t["sample"]),
    }
    summary.update({f"annotations.{c}": n for c, n in writer.class_counts.items()})
    return summary


def _token(*parts) -> str:
    return hashlib.md5("/".join(str(p) for p in parts).encode()).hexdigest()


def _f(x) -> list[float]:
    return [float(v) for v in np.asarray(x, dtype=np.float64).ravel()]


def _dump(path: Path, rows) -> None:
    path.write_text(json.dumps(rows, indent=0))


def _visibility_token(frac: float) -> str:
    if not np.isfinite(frac):
        return "1"
    return "4" if frac >= 0.8 else "3" if frac >= 0.6 else "2" if frac >= 0.4 else "1"


# ----------------------------------------------------------------------------------------------
# One scene at a time.


@dataclass
class _Simulated:
    """A simulated scene: the world, its rig, and per key frame the times, ego poses, actor states and stamps."""

    world: World
    calib: dict
    times: np.ndarray
    ego_poses: list
    states: list
    tracks: dict[int, list[int]]  # actor -> the key frames it is annotated in
    stamps: list[int]  # microseconds


class _SceneWriter:
    """Simulates one scene at a time, writes its JPEGs and lidar files, and collects its table rows."""

    def __init__(self, out: Path, seed: int, n_samples: int, size, static: dict, progress, total_images: int):
        self.out, self.seed, self.n_samples, self.size = out, seed, n_samples, size
        self.static, self.progress, self.total_images = static, progress, total_images
        self.tables = {k: [] for k in SCENE_TABLES}
        self.maps: dict[str, list[str]] = {}
        self.class_counts = {c: 0 for c in CLASSES}
        self.done = 0

    def scene(self, si: int, name: str) -> None:
        sim = self._simulate(si)
        logfile, cs_token = self._log_and_calibration(si, sim.world.location, sim.calib, sim.stamps[0])
        sample_tokens = self._scene_and_samples(si, name, sim.world, sim.stamps)
        ann_token = {(ai, k): _token(self.seed, "ann", si, ai, k) for ai, ks in sim.tracks.items() for k in ks}
        visibility = {key: 0.0 for key in ann_token}
        lidar_counts: dict = {}
        models: dict = {}
        backgrounds: dict = {}
        for k in range(self.n_samples):
            active = [ai for ai, ks in sim.tracks.items() if k in ks]
            self._sample_data(si, k, sim.stamps, sample_tokens, logfile, cs_token, sim.calib, sim.ego_poses[k])
            lidar_counts.update(self._lidar_sweep(si, k, sim, active, logfile))
            for ai, v in self._render_sample(sim, k, active, logfile, models, backgrounds).items():
                visibility[(ai, k)] = v
        self._annotations(si, sim, sample_tokens, ann_token, visibility, lidar_counts)

    def _simulate(self, si: int) -> _Simulated:
        """The world, the rig, and which objects are annotated in which key frame; all from (seed, si)."""
        seed, n = self.seed, self.n_samples
        rng = np.random.default_rng([seed, si])
        # About half of nuScenes is Boston (right-hand traffic), half Singapore (left-hand).
        location = "boston-seaport" if rng.random() < 0.5 else list(LOCATIONS)[1 + int(rng.integers(3))]
        times = np.arange(n) * KEYFRAME_US / 1e6
        world = make_world(rng, location, float(times[-1]))
        calib = make_calibration(rng, self.size)
        ego_poses = [world.ego_pose(t) for t in times]
        tracks = annotate(world, times, ego_poses, calib, self.size)
        ensure_every_class(world, rng, tracks, times)
        tracks = annotate(world, times, ego_poses, calib, self.size)  # the stand-ins replaced some actors
        states = [world.states(t) for t in times]
        start_us = (
            1_532_400_000_000_000 + (seed % 1000) * 86_400_000_000 + si * 3_600_000_000 + int(rng.integers(0, 10**9))
        )
        stamps = [start_us + k * KEYFRAME_US for k in range(n)]
        return _Simulated(world, calib, times, ego_poses, states, tracks, stamps)

    def _log_and_calibration(self, si, location, calib, start_us):
        vehicle = LOCATIONS[location][0]
        tz_h = -4 if LOCATIONS[location][1] else 8  # Boston EDT, Singapore SGT, as in nuScenes' log names
        local = datetime.fromtimestamp(start_us / 1e6, tz=timezone(timedelta(hours=tz_h)))
        logfile = f"{vehicle}-{local:%Y-%m-%d-%H-%M-%S}{local:%z}"
        log_token = _token(self.seed, "log", si)
        self.tables["log"].append(
            {
                "token": log_token,
                "logfile": logfile,
                "vehicle": vehicle,
                "date_captured": f"{local:%Y-%m-%d}",
                "location": location,
            }
        )
        self.maps.setdefault(location, []).append(log_token)
        cs_token = {}
        for ch, c in calib.items():
            cs_token[ch] = _token(self.seed, "calibrated_sensor", si, ch)
            self.tables["calibrated_sensor"].append(
                {
                    "token": cs_token[ch],
                    "sensor_token": self.static["sensor"][ch],
                    "translation": _f(c["translation"]),
                    "rotation": _f(c["rotation"]),
                    "camera_intrinsic": [_f(r) for r in c["K"]] if c["K"] is not None else [],
                }
            )
        return logfile, cs_token

    def _scene_and_samples(self, si, name, world, stamps) -> list[str]:
        n = self.n_samples
        sample_tokens = [_token(self.seed, "sample", si, k) for k in range(n)]
        scene_token = _token(self.seed, "scene", si)
        log_token = self.tables["log"][-1]["token"]
        desc = (
            f"Synthetic, {world.location}, ego {world.ego_v:.0f} m/s, "
            f"{'right' if world.right_hand else 'left'}-hand traffic, construction zone"
        )
        self.tables["scene"].append(
            {
                "token": scene_token,
                "log_token": log_token,
                "nbr_samples": n,
                "first_sample_token": sample_tokens[0],
                "last_sample_token": sample_tokens[-1],
                "name": name,
                "description": desc,
            }
        )
        for k in range(n):
            self.tables["sample"].append(
                {
                    "token": sample_tokens[k],
                    "timestamp": stamps[k],
                    "prev": sample_tokens[k - 1] if k else "",
                    "next": sample_tokens[k + 1] if k + 1 < n else "",
                    "scene_token": scene_token,
                }
            )
        return sample_tokens

    def _sample_data(self, si, k, stamps, sample_tokens, logfile, cs_token, calib, e2g) -> None:
        """One key-frame sample_data record (and its ego_pose) per sensor; all share the key frame's time."""
        W, H = self.size
        n = self.n_samples
        for ch in calib:
            token = lambda j: _token(self.seed, "sample_data", si, ch, j)  # noqa: E731
            ep_token = _token(self.seed, "ego_pose", si, ch, k)
            self.tables["ego_pose"].append(
                {
                    "token": ep_token,
                    "timestamp": stamps[k],
                    "rotation": _f(rotmat_to_quat(e2g[:3, :3])),
                    "translation": _f(e2g[:3, 3]),
                }
            )
            is_cam = ch != "LIDAR_TOP"
            self.tables["sample_data"].append(
                {
                    "token": token(k),
                    "sample_token": sample_tokens[k],
                    "ego_pose_token": ep_token,
                    "calibrated_sensor_token": cs_token[ch],
                    "timestamp": stamps[k],
                    "fileformat": "jpg" if is_cam else "pcd",
                    "is_key_frame": True,
                    "height": H if is_cam else 0,
                    "width": W if is_cam else 0,
                    "filename": f"samples/{ch}/{logfile}__{ch}__{stamps[k]}.{'jpg' if is_cam else 'pcd.bin'}",
                    "prev": token(k - 1) if k else "",
                    "next": token(k + 1) if k + 1 < n else "",
                }
            )

    def _lidar_sweep(self, si, k, sim: _Simulated, active, logfile) -> dict:
        """Write key frame k's LIDAR_TOP file; returns {(actor, k): points in its box}."""
        centres, yaws = sim.states[k]
        boxes = [(centres[ai], yaws[ai], sim.world.actors[ai].wlh) for ai in active]
        # Its own random stream, so that the sweep does not shift the world's.
        rng = np.random.default_rng([self.seed, si, k, 1])
        pts, counts = lidar_points(rng, boxes, sim.ego_poses[k], sim.calib["LIDAR_TOP"]["cam2ego"])
        (self.out / f"samples/LIDAR_TOP/{logfile}__LIDAR_TOP__{sim.stamps[k]}.pcd.bin").write_bytes(pts.tobytes())
        return {(ai, k): c for ai, c in zip(active, counts)}

    def _render_sample(self, sim: _Simulated, k, active, logfile, models, backgrounds) -> dict:
        """Render the six cameras of key frame k; returns each annotated object's best visible fraction.

        ``models`` and ``backgrounds`` carry over from frame to frame of the scene (they never change)."""
        world, size, t, e2g = sim.world, self.size, float(sim.times[k]), sim.ego_poses[k]
        centres, yaws = sim.states[k]
        ground = paint.ground_polygons(
            world.road.to_global, world.bands, world.lines, world.ego_v * t - 90, world.ego_v * t + 90
        )
        objs = []
        for ai in active:
            a = world.actors[ai]
            if ai not in models:
                models[ai] = build_model(a.cls, a.attribute, a.wlh, a.look, a.category)
            objs.append((models[ai], pose_matrix(centres[ai], yaw_to_quat(yaws[ai]))))
        best = dict.fromkeys(active, 0.0)
        for ch in CAMERAS:
            K, c2g = sim.calib[ch]["K"], e2g @ sim.calib[ch]["cam2ego"]
            if ch not in backgrounds:  # the ego stays flat, so a camera's sky and horizon never change
                backgrounds[ch] = paint.background(K, c2g, size)
            img, vis = paint.render_view(
                paint.CameraView(K=K, world_to_cam=invert_pose(c2g), size=size),
                backgrounds[ch],
                ground,
                objs,
                world.sun,
            )
            (self.out / f"samples/{ch}/{logfile}__{ch}__{sim.stamps[k]}.jpg").write_bytes(paint.encode_jpeg(img))
            for ai, v in zip(active, vis):
                if np.isfinite(v):
                    best[ai] = max(best[ai], float(v))
            self._image_done()
        return best

    def _image_done(self) -> None:
        self.done += 1
        if self.progress is not None:
            self.progress(self.done, self.total_images)

    def _annotations(self, si, sim: _Simulated, sample_tokens, ann_token, visibility, lidar_counts) -> None:
        """instance rows and sample_annotation rows with prev/next chains along each track."""
        rows = []
        for ai, ks in sim.tracks.items():
            a = sim.world.actors[ai]
            inst_token = _token(self.seed, "instance", si, ai)
            self.tables["instance"].append(
                {
                    "token": inst_token,
                    "category_token": self.static["category"][a.category],
                    "nbr_annotations": len(ks),
                    "first_annotation_token": ann_token[(ai, ks[0])],
                    "last_annotation_token": ann_token[(ai, ks[-1])],
                }
            )
            self.class_counts[a.cls] += len(ks)
            radar = np.random.default_rng([self.seed, si, ai, 2]).poisson(a.radar_rate, len(ks))
            for j, k in enumerate(ks):
                centres, yaws = sim.states[k]
                rows.append(
                    (
                        k,
                        ai,
                        {
                            "token": ann_token[(ai, k)],
                            "sample_token": sample_tokens[k],
                            "instance_token": inst_token,
                            "visibility_token": _visibility_token(visibility[(ai, k)]),
                            "attribute_tokens": [self.static["attribute"][a.attribute]] if a.attribute else [],
                            "translation": _f(centres[ai]),
                            "size": _f(a.wlh),
                            "rotation": _f(yaw_to_quat(yaws[ai])),
                            "prev": ann_token[(ai, ks[j - 1])] if j else "",
                            "next": ann_token[(ai, ks[j + 1])] if j + 1 < len(ks) else "",
                            "num_lidar_pts": int(lidar_counts[(ai, k)]),
                            "num_radar_pts": int(radar[j]),
                        },
                    )
                )
        self.tables["sample_annotation"].extend(row for _, _, row in sorted(rows, key=lambda r: (r[0], r[1])))
