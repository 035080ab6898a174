"""Synthetic nuScenes: a seeded world of roads, traffic and people, written in the devkit's exact format.

Tables go to <out>/<version>/*.json, JPEGs (drawn by render.py) to samples/CAM_*/, lidar to samples/LIDAR_TOP/.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import cv2
import numpy as np

from ..boxes.geometry import invert_pose, pose_matrix, rotmat_to_quat, yaw_to_quat
from ..errors import Fcos3dError
from . import render
from .classes import CAMERAS, CLASSES
from .splits import CUSTOM_SPLIT_KEYS, is_custom_version

__all__ = ["write_synthetic_nuscenes", "scene_plan", "CLASS_RANGE"]

DEFAULT_SCENES = 10
DEFAULT_SAMPLES_PER_SCENE = 20
KEYFRAME_US = 500_000  # nuScenes key frames come at 2 Hz
MINI_SCENES = 10

# The devkit's detection_cvpr_2019 class ranges (metres from the ego, in x-y); annotated objects stay
# RANGE_MARGIN inside them so that the evaluator's range filter never drops ground truth.
CLASS_RANGE = {
    "car": 50, "truck": 50, "bus": 50, "trailer": 50, "construction_vehicle": 50,
    "pedestrian": 40, "motorcycle": 40, "bicycle": 40, "traffic_cone": 30, "barrier": 30,
}
RANGE_MARGIN = 2.0
MIN_DIST = 3.0  # nothing is annotated (or drawn) closer than this to the ego's origin

# The nuScenes rig: position in the ego frame (x forward, y left, z up; metres), yaw (degrees, + = left)
# and fx at 1600x900. The side cameras look 55 / 110 degrees out; CAM_BACK has the wide lens.
CAMERA_RIG = {
    "CAM_FRONT": ((1.70, 0.016, 1.51), 0.0, 1266.4),
    "CAM_FRONT_RIGHT": ((1.55, -0.493, 1.50), -55.0, 1260.8),
    "CAM_FRONT_LEFT": ((1.52, 0.495, 1.51), 55.0, 1272.6),
    "CAM_BACK": ((0.03, 0.003, 1.58), 180.0, 809.2),
    "CAM_BACK_LEFT": ((1.04, 0.485, 1.59), 110.0, 1256.7),
    "CAM_BACK_RIGHT": ((1.01, -0.481, 1.56), -110.0, 1259.5),
}
LIDAR_POSE = ((0.943, 0.0, 1.84), -90.0)  # LIDAR_TOP: x right, y forward in the sensor frame

# nuScenes' full category list (category.json), with our short descriptions.
CATEGORIES = (
    "human.pedestrian.adult", "human.pedestrian.child", "human.pedestrian.wheelchair",
    "human.pedestrian.stroller", "human.pedestrian.personal_mobility", "human.pedestrian.police_officer",
    "human.pedestrian.construction_worker", "animal", "vehicle.car", "vehicle.motorcycle", "vehicle.bicycle",
    "vehicle.bus.bendy", "vehicle.bus.rigid", "vehicle.truck", "vehicle.construction",
    "vehicle.emergency.ambulance", "vehicle.emergency.police", "vehicle.trailer", "movable_object.barrier",
    "movable_object.trafficcone", "movable_object.pushable_pullable", "movable_object.debris",
    "static_object.bicycle_rack",
)
ATTRIBUTE_NAMES = (
    "vehicle.moving", "vehicle.stopped", "vehicle.parked", "cycle.with_rider", "cycle.without_rider",
    "pedestrian.sitting_lying_down", "pedestrian.standing", "pedestrian.moving",
)
VISIBILITY = (("1", "v0-40", "visibility of whole object is between 0 and 40%"),
              ("2", "v40-60", "visibility of whole object is between 40 and 60%"),
              ("3", "v60-80", "visibility of whole object is between 60 and 80%"),
              ("4", "v80-100", "visibility of whole object is between 80 and 100%"))
LOCATIONS = {  # location: (vehicle id, traffic drives on the right?)
    "boston-seaport": ("n008", True), "singapore-onenorth": ("n015", False),
    "singapore-queenstown": ("n015", False), "singapore-hollandvillage": ("n015", False),
}

# Mean and spread of [width, length, height] in metres (close to nuScenes' per-class statistics).
SIZES = {
    "car": ((1.95, 4.62, 1.73), (0.12, 0.35, 0.14)),
    "truck": ((2.5, 7.0, 2.9), (0.2, 1.2, 0.4)),
    "bus": ((2.95, 11.4, 3.4), (0.08, 0.8, 0.15)),
    "trailer": ((2.9, 12.0, 3.9), (0.1, 1.4, 0.2)),
    "construction_vehicle": ((2.8, 6.4, 3.1), (0.25, 0.8, 0.35)),
    "bicycle": ((0.62, 1.72, 1.1), (0.04, 0.06, 0.05)),
    "motorcycle": ((0.8, 2.1, 1.2), (0.05, 0.1, 0.05)),
    "pedestrian": ((0.67, 0.73, 1.76), (0.05, 0.06, 0.08)),
    "traffic_cone": ((0.42, 0.42, 0.9), (0.03, 0.03, 0.1)),
    "barrier": ((2.5, 0.5, 1.0), (0.12, 0.04, 0.06)),
}
CLASS_CATEGORY = {
    "car": "vehicle.car", "truck": "vehicle.truck", "bus": "vehicle.bus.rigid", "trailer": "vehicle.trailer",
    "construction_vehicle": "vehicle.construction", "bicycle": "vehicle.bicycle",
    "motorcycle": "vehicle.motorcycle", "pedestrian": "human.pedestrian.adult",
    "traffic_cone": "movable_object.trafficcone", "barrier": "movable_object.barrier",
}

# The road cross-section, in metres left of the centre line for traffic that drives on the right (it is
# mirrored for left-hand traffic): two lanes each way, then bike lane, parking strip and sidewalk.
LANE_W = 3.5
ROAD_EDGE, BIKE_EDGE, PARK_EDGE, WALK_EDGE = 7.0, 8.5, 11.0, 15.5
# Rows on the sidewalk, far enough apart that nothing in one row can touch the next: bicycle racks,
# walkers (one row per direction), then people standing or seated at the back.
RACK_D, WALK_D, STAND_D = 12.1, (13.3, 14.0), 14.95
PARK_D = (BIKE_EDGE + PARK_EDGE) / 2
LOT_D = (17.0, 24.0)


# ----------------------------------------------------------------------------------------------
# Scene names and splits.

def scene_plan(version: str, n: int) -> tuple[list[str], dict[str, list[str]]]:
    """Scene names for ``n`` scenes of ``version`` and the split each belongs to ({"train": [...], "val": [...]}).

    mini versions use official mini names, interleaved so that any n >= 2 has a val scene; trainval
    versions use official train/val names (about 80/20); other versions get generic names whose split
    goes to splits.json.
    """
    if n < 1:
        raise Fcos3dError(f"--scenes must be at least 1 (got {n})")
    n_val = sum(1 for i in range(n) if i % 5 == 1)  # ~20% val, and a val scene in any n >= 2
    if version.endswith("mini"):
        from nuscenes.utils.splits import mini_train, mini_val

        if n > MINI_SCENES:
            raise Fcos3dError(
                f"--scenes {n} is too many for {version}: the mini split has {MINI_SCENES} scenes; use --scenes"
                f" {MINI_SCENES} or less, or a version such as v1.0-trainval or v1.0-synth for more")
        tr, va = list(mini_train[: n - n_val]), list(mini_val[:n_val])
    elif version.endswith("trainval"):
        from nuscenes.utils.splits import train, val

        if n - n_val > len(train) or n_val > len(val):
            raise Fcos3dError(f"--scenes {n} is too many for {version}: the devkit names {len(train) + len(val)} train/val scenes")
        tr, va = list(train[: n - n_val]), list(val[:n_val])
    else:
        tr = [f"scene-{i + 1:04d}" for i in range(n) if i % 5 != 1]
        va = [f"scene-{i + 1:04d}" for i in range(n) if i % 5 == 1]
    # Scene i is val when i % 5 == 1, so a set of n scenes is a prefix of any larger one.
    ti, vi = iter(tr), iter(va)
    names = [next(vi) if i % 5 == 1 else next(ti) for i in range(n)]
    return names, {"train": tr, "val": va}


# ----------------------------------------------------------------------------------------------
# The world: a road, the ego on it, and actors moving in (s, d) road coordinates.

@dataclass(frozen=True)
class Road:
    """A constant-curvature road: arc length s along the centre line, lateral offset d (left positive)."""

    x0: float
    y0: float
    heading0: float
    curvature: float

    def heading(self, s):
        return self.heading0 + self.curvature * np.asarray(s, dtype=np.float64)

    def to_global(self, s, d) -> np.ndarray:
        s = np.asarray(s, dtype=np.float64)
        d = np.asarray(d, dtype=np.float64)
        h = self.heading(s)
        k = self.curvature
        if abs(k) < 1e-12:
            cx = self.x0 + s * np.cos(self.heading0)
            cy = self.y0 + s * np.sin(self.heading0)
        else:
            cx = self.x0 + (np.sin(h) - np.sin(self.heading0)) / k
            cy = self.y0 - (np.cos(h) - np.cos(self.heading0)) / k
        return np.stack([cx - d * np.sin(h), cy + d * np.cos(h)], axis=-1)


@dataclass
class Actor:
    """One object instance: s(t) = s0 + vs t, d(t) = d0 + vd t; yaw = road heading + yaw_rel."""

    cls: str
    category: str
    wlh: tuple[float, float, float]
    attribute: str
    s0: float
    d0: float
    vs: float = 0.0
    vd: float = 0.0
    yaw_rel: float = 0.0
    look: int = 0
    radar_rate: float = 0.0


@dataclass
class World:
    road: Road
    ego_d: float
    ego_v: float
    location: str
    right_hand: bool
    sun: np.ndarray
    actors: list[Actor] = field(default_factory=list)
    bands: list = field(default_factory=list)
    lines: list = field(default_factory=list)
    zone_side: float = 1.0  # the side of the construction zone (sign of d)

    def ego_pose(self, t: float) -> np.ndarray:
        """4x4 ego -> global at time t (seconds from the scene start); the ego is flat on z = 0."""
        s = self.ego_v * t
        xy = self.road.to_global(s, self.ego_d)
        return pose_matrix([xy[0], xy[1], 0.0], yaw_to_quat(float(self.road.heading(s))))

    def states(self, t: float):
        """Centres (N, 3) and yaws (N,) of all actors at time t."""
        a = self.actors
        s = np.array([x.s0 + x.vs * t for x in a])
        d = np.array([x.d0 + x.vd * t for x in a])
        xy = self.road.to_global(s, d).reshape(-1, 2)
        z = np.array([x.wlh[2] / 2 for x in a])
        yaw = self.road.heading(s) + np.array([x.yaw_rel for x in a])
        return np.concatenate([xy, z[:, None]], axis=1), yaw


def _size(rng, cls: str, attribute: str = "", category: str = "") -> tuple[float, float, float]:
    mean, std = SIZES[cls]
    mean = list(mean)
    if cls in ("bicycle", "motorcycle") and attribute == "cycle.with_rider":
        mean[2] = 1.7 if cls == "bicycle" else 1.62  # the box holds the rider (nuScenes' rule)
    if cls == "pedestrian":
        if category == "human.pedestrian.child":
            mean = [0.5, 0.5, 1.25]
        if attribute == "pedestrian.sitting_lying_down":
            mean[1], mean[2] = 0.85, 1.28
    out = np.asarray(mean) + rng.normal(0, 1, 3) * np.asarray(std)
    return tuple(float(v) for v in np.clip(out, 0.75 * np.asarray(mean), 1.25 * np.asarray(mean)))


def _vehicle_attr(speed: float) -> str:
    return "vehicle.moving" if abs(speed) > 0.3 else "vehicle.stopped"


def make_world(rng: np.random.Generator, location: str, duration: float, density: float | None = None) -> World:
    """A random scene: the ego in a lane of a gently curving road with traffic, parked vehicles, cyclists,
    pedestrians on the sidewalks and a construction zone near the ego's path.

    Everything is laid out for traffic on the right and mirrored at the end for left-hand traffic.
    """
    right_hand = LOCATIONS[location][1]
    road = Road(
        x0=float(rng.uniform(300, 1800)), y0=float(rng.uniform(600, 1800)),
        heading0=float(rng.uniform(-np.pi, np.pi)),
        curvature=float(rng.choice([0.0, 1.0]) * rng.uniform(-1 / 250, 1 / 250)),
    )
    ego_v = 0.0 if rng.random() < 0.15 else float(rng.uniform(3.0, 11.0))
    ego_lane = -LANE_W / 2 if rng.random() < 0.6 else -1.5 * LANE_W
    dens = density if density is not None else float(rng.uniform(0.7, 1.2))
    sun_az, sun_el = rng.uniform(-np.pi, np.pi), rng.uniform(0.5, 1.1)
    sun = np.array([np.cos(sun_el) * np.cos(sun_az), np.cos(sun_el) * np.sin(sun_az), np.sin(sun_el)])
    world = World(road=road, ego_d=ego_lane, ego_v=ego_v, location=location, right_hand=right_hand, sun=sun)
    A, B = -60.0, ego_v * duration + 60.0  # the s-window the ego can see during the scene
    look = lambda: int(rng.integers(2**31))  # noqa: E731

    def add(cls, s0, d0, vs=0.0, vd=0.0, yaw_rel=0.0, attribute="", category=None, wlh=None):
        category = category or CLASS_CATEGORY[cls]
        wlh = wlh or _size(rng, cls, attribute, category)
        radar = {"pedestrian": 0.3, "traffic_cone": 0.2, "barrier": 0.5, "bicycle": 0.5}.get(cls, 2.5)
        world.actors.append(Actor(cls, category, wlh, attribute, float(s0), float(d0), float(vs), float(vd),
                                  float(yaw_rel), look(), radar))
        return world.actors[-1]

    # The construction zone sits beside the road near the ego's path, on a random side.
    z_side = float(rng.choice([-1.0, 1.0]))
    z_len = float(rng.uniform(18, 32))
    z0 = float(rng.uniform(-20.0, max(-19.0, ego_v * duration + 15.0 - z_len)))
    z1 = z0 + z_len

    def in_zone(side, s_a, s_b):
        return side == z_side and s_b > z0 - 3 and s_a < z1 + 3

    # Lane traffic: vehicles in a lane share its speed, so they never run into each other.
    mix = (("car", 0.70), ("truck", 0.12), ("bus", 0.05), ("rig", 0.05), ("motorcycle", 0.06), ("construction_vehicle", 0.02))
    names, probs = zip(*mix)
    for lane_d in (-1.5 * LANE_W, -0.5 * LANE_W, 0.5 * LANE_W, 1.5 * LANE_W):
        direction = 1.0 if lane_d < 0 else -1.0
        if lane_d == ego_lane:
            v = ego_v
        elif direction > 0:
            v = 0.0 if (ego_v == 0.0 or rng.random() < 0.15) else max(0.0, ego_v + rng.uniform(-3, 3))
        else:
            v = 0.0 if rng.random() < 0.12 else float(rng.uniform(4, 12))
        v = 0.0 if v < 0.5 else float(v)  # a crawling lane is a stopped one: the attribute must match
        v_s = direction * v
        lo, hi = A - max(v_s, 0) * duration, B - min(v_s, 0) * duration
        s = lo + rng.uniform(0, 20)
        while s < hi:
            kind = names[rng.choice(len(names), p=probs)]
            attr = _vehicle_attr(v)
            gap = rng.uniform(3.0, 22.0) if v == 0 else rng.uniform(15.0, 60.0) / dens
            if kind == "rig":
                tw = _size(rng, "truck")
                tw = (tw[0], min(tw[1], 6.5), tw[2])
                tr = _size(rng, "trailer")
                total = tw[1] + 0.6 + tr[1]
                front = s + total if direction > 0 else s
                back = s if direction > 0 else s + total
                members = [("truck", front - direction * tw[1] / 2, tw), ("trailer", back + direction * tr[1] / 2, tr)]
            else:
                cattr = "cycle.with_rider" if kind == "motorcycle" else attr
                wlh = _size(rng, kind, cattr)
                total = wlh[1]
                members = [(kind, s + total / 2, wlh)]
            ego_clear = lane_d != ego_lane or (s + total < -9.0 or s > 9.0)
            if ego_clear:
                for cls, sc, wlh in members:
                    cattr = "cycle.with_rider" if cls == "motorcycle" else attr
                    yaw = 0.0 if direction > 0 else np.pi
                    add(cls, sc, lane_d + rng.normal(0, 0.12), vs=v_s, yaw_rel=yaw, attribute=cattr, wlh=wlh)
            s += total + gap

    for side in (-1.0, 1.0):
        facing = 0.0 if side < 0 else np.pi  # parked with the traffic on that side
        # Parking strip.
        park_d = side * PARK_D
        s = A - 5 + rng.uniform(0, 6)
        pmix = (("car", 0.8), ("truck", 0.06), ("trailer", 0.04), ("motorcycle", 0.07), ("construction_vehicle", 0.03))
        pn, pp = zip(*pmix)
        while s < B + 5:
            if rng.random() < 0.7 / dens:
                s += rng.uniform(5, 30)
                continue
            cls = pn[rng.choice(len(pn), p=pp)]
            attr = "cycle.without_rider" if cls == "motorcycle" else "vehicle.parked"
            wlh = _size(rng, cls, attr)
            if not in_zone(side, s, s + wlh[1]):
                yaw = facing if rng.random() < 0.85 else facing + np.pi
                add(cls, s + wlh[1] / 2, park_d + side * rng.normal(0, 0.1), yaw_rel=yaw, attribute=attr, wlh=wlh)
            s += wlh[1] + rng.uniform(0.8, 5.0)
        # A parking lot with cars parked across, beyond the sidewalk (varied yaws).
        if rng.random() < 0.35 and side != z_side:
            lot_a = rng.uniform(A + 10, max(A + 11, B - 50))
            lot_len = rng.uniform(25, 60)
            for s in np.arange(lot_a, lot_a + lot_len, 2.8):
                if rng.random() < 0.5:
                    cls = "car" if rng.random() < 0.92 else "truck"
                    w, l, h = _size(rng, cls)
                    add(cls, s, side * sum(LOT_D) / 2, yaw_rel=float(rng.choice([np.pi / 2, -np.pi / 2]) + rng.normal(0, 0.05)),
                        attribute="vehicle.parked", wlh=(w, min(l, 6.0), h))
        # Cyclists in the bike lane (not on the zone's side: they would ride into it).
        if side != z_side:
            direction = -side
            v = float(rng.uniform(2.5, 6.0))
            s = A - v * duration + rng.uniform(0, 30)
            while s < B + v * duration:
                add("bicycle", s, side * (ROAD_EDGE + BIKE_EDGE) / 2, vs=direction * v, yaw_rel=0.0 if direction > 0 else np.pi,
                    attribute="cycle.with_rider")
                s += rng.uniform(30, 120) / dens
        # Bicycle racks: parked bicycles across the sidewalk.
        rack_end = -np.inf
        for s in np.sort(rng.uniform(A, B, rng.poisson((B - A) / 150 * dens))):
            n_bikes = int(rng.integers(2, 5))
            if in_zone(side, s - 3, s + 3) or s < rack_end + 1.0:
                continue
            yaw = float(rng.choice([np.pi / 2, -np.pi / 2]))
            for k in range(n_bikes):
                add("bicycle", s + 0.75 * k, side * RACK_D, yaw_rel=yaw + rng.normal(0, 0.08), attribute="cycle.without_rider")
            rack_end = s + 0.75 * n_bikes
        # Walkers in two rows (one per direction), and standing or sitting people on the far row.
        for row_d, direction in ((WALK_D[0], -side), (WALK_D[1], side)):
            v = float(rng.uniform(1.0, 1.5))
            s = A - v * duration + rng.uniform(0, 10)
            while s < B + v * duration:
                s_end = s + direction * v * duration
                if not in_zone(side, min(s, s_end), max(s, s_end)):
                    cat = _pick_pedestrian(rng)
                    add("pedestrian", s, side * row_d, vs=direction * (v + rng.uniform(-0.06, 0.06)),
                        yaw_rel=0.0 if direction > 0 else np.pi, attribute="pedestrian.moving", category=cat)
                s += rng.uniform(3.5 + 0.2 * duration, 110) / dens
        s = A + rng.uniform(0, 10)
        while s < B:
            if not in_zone(side, s - 1, s + 1):
                sitting = rng.random() < 0.3
                cat = _pick_pedestrian(rng)
                if sitting:
                    # Seated on a bench at the back of the sidewalk, facing the road.
                    add("pedestrian", s, side * STAND_D, yaw_rel=-side * np.pi / 2 + rng.normal(0, 0.2),
                        attribute="pedestrian.sitting_lying_down", category="human.pedestrian.adult")
                else:
                    add("pedestrian", s, side * STAND_D, yaw_rel=rng.uniform(-np.pi, np.pi), attribute="pedestrian.standing", category=cat)
            s += rng.uniform(8, 60) / dens

    # The construction zone: cones at the lane edge, barriers behind them, machines and workers inside.
    for s in np.arange(z0 - 4, z1 + 0.1, rng.uniform(3.5, 5.0)):
        add("traffic_cone", s, z_side * (ROAD_EDGE + 0.35), yaw_rel=rng.uniform(-np.pi, np.pi))
    for s in np.arange(z0 + 1.4, z1 - 1.2, rng.uniform(2.6, 3.0)):
        add("barrier", s, z_side * (ROAD_EDGE + 1.1), yaw_rel=np.pi / 2 + rng.normal(0, 0.03))
    s = z0 + rng.uniform(1, 4)
    for _ in range(int(rng.integers(1, 3))):
        attr = str(rng.choice(["vehicle.parked", "vehicle.stopped", "vehicle.moving"], p=[0.5, 0.3, 0.2]))
        wlh = _size(rng, "construction_vehicle")
        yaw = float(rng.choice([0.0, np.pi, rng.uniform(-np.pi, np.pi)]))
        # The footprint's extent along s and d for this yaw, to keep machines apart and inside the zone.
        ext_s = abs(np.cos(yaw)) * wlh[1] / 2 + abs(np.sin(yaw)) * wlh[0] / 2
        ext_d = abs(np.sin(yaw)) * wlh[1] / 2 + abs(np.cos(yaw)) * wlh[0] / 2
        vs = 0.0
        if attr == "vehicle.moving":
            yaw = float(rng.choice([0.0, np.pi]))
            ext_s, ext_d = wlh[1] / 2, wlh[0] / 2
            vs = np.cos(yaw) * rng.uniform(0.6, 1.2)
        sc = s + ext_s + (max(0, -vs) * duration)
        if sc + ext_s + max(0, vs) * duration > z1 + 4:
            break
        add("construction_vehicle", sc, z_side * (10.2 + ext_d), vs=vs, yaw_rel=yaw, attribute=attr, wlh=wlh)
        s = sc + ext_s + abs(vs) * duration + rng.uniform(1.5, 5)
    # Workers in the strip between the barriers and the machines; each one's path stays clear of the next.
    busy_until = -np.inf
    for sw in np.sort(rng.uniform(z0 + 1, z1 - 1, int(rng.integers(1, 4)))):
        if sw < busy_until + 1.0:
            continue
        v = min(0.7, (z1 - 1 - sw) / max(duration, 0.5)) if rng.random() < 0.4 else 0.0
        v = v if v > 0.3 else 0.0
        add("pedestrian", sw, z_side * 9.3, vs=v, yaw_rel=0.0 if v else rng.uniform(-np.pi, np.pi),
            attribute="pedestrian.moving" if v else "pedestrian.standing", category="human.pedestrian.construction_worker")
        busy_until = sw + v * duration

    world.bands, world.lines = _road_layout(z_side, z0, z1, A - 100, B + 100)
    world.zone_side = z_side
    if not right_hand:
        _mirror(world)
    return world


def _pick_pedestrian(rng) -> str:
    r = rng.random()
    return "human.pedestrian.child" if r < 0.08 else ("human.pedestrian.police_officer" if r < 0.11 else "human.pedestrian.adult")


def _road_layout(z_side, z0, z1, s_lo, s_hi):
    """Bands and painted lines of the cross-section; the construction zone replaces one side's verge."""
    bands, lines = [], []
    bands.append(render.Band(-ROAD_EDGE, ROAD_EDGE, s_lo, s_hi, "asphalt"))
    for side in (-1.0, 1.0):
        def strip(a, b, kind, s0=s_lo, s1=s_hi):
            d0, d1 = sorted((side * a, side * b))
            bands.append(render.Band(d0, d1, s0, s1, kind))
        if side == z_side:
            for s0, s1 in ((s_lo, z0 - 3), (z1 + 3, s_hi)):
                strip(ROAD_EDGE, BIKE_EDGE, "bike", s0, s1)
                strip(BIKE_EDGE, PARK_EDGE, "parking", s0, s1)
                strip(PARK_EDGE, WALK_EDGE, "sidewalk", s0, s1)
            strip(ROAD_EDGE, WALK_EDGE + 3, "zone", z0 - 3, z1 + 3)
        else:
            strip(ROAD_EDGE, BIKE_EDGE, "bike")
            strip(BIKE_EDGE, PARK_EDGE, "parking")
            strip(PARK_EDGE, WALK_EDGE, "sidewalk")
            strip(*LOT_D, "lot")
        lines.append(render.Line(side * LANE_W, 0.15, s_lo, s_hi, "white", dash=(3.0, 12.0)))
        lines.append(render.Line(side * (ROAD_EDGE - 0.15), 0.15, s_lo, s_hi, "white"))
    lines.append(render.Line(-0.12, 0.12, s_lo, s_hi, "yellow"))
    lines.append(render.Line(0.12, 0.12, s_lo, s_hi, "yellow"))
    return bands, lines


def _mirror(world: World) -> None:
    """Left-hand traffic: reflect the layout across the centre line (d -> -d, relative yaw -> -yaw)."""
    world.ego_d = -world.ego_d
    world.zone_side = -world.zone_side
    for a in world.actors:
        a.d0, a.vd, a.yaw_rel = -a.d0, -a.vd, -a.yaw_rel
    world.bands = [render.Band(-b.d1, -b.d0, b.s0, b.s1, b.kind) for b in world.bands]
    world.lines = [render.Line(-ln.d, ln.width, ln.s0, ln.s1, ln.kind, ln.dash) for ln in world.lines]


# ----------------------------------------------------------------------------------------------
# Sensors.

def camera_rotation(yaw_deg: float, pitch_deg: float) -> np.ndarray:
    """Camera -> ego rotation for a camera looking at yaw (left of forward) and pitched down, no roll.

    Columns are the camera axes in the ego frame: x right, y down, z forward.
    """
    psi, p = np.radians(yaw_deg), np.radians(pitch_deg)
    z = np.array([np.cos(psi) * np.cos(p), np.sin(psi) * np.cos(p), -np.sin(p)])
    x = np.array([np.sin(psi), -np.cos(psi), 0.0])
    y = np.cross(z, x)
    return np.stack([x, y, z], axis=1)


def make_calibration(rng, image_size) -> dict:
    """Per-log calibration: the nuScenes rig with small per-log differences; intrinsics scaled to image_size."""
    W, H = image_size
    sx, sy = W / 1600.0, H / 900.0
    cams = {}
    for name in CAMERAS:
        pos, yaw, fx = CAMERA_RIG[name]
        pos = np.asarray(pos) + rng.normal(0, 0.01, 3)
        R = camera_rotation(yaw + rng.normal(0, 0.3), 0.6 + rng.normal(0, 0.3))
        f = fx * (1 + rng.normal(0, 0.004))
        K = np.array([[f * sx, 0, (800 + rng.normal(0, 8)) * sx], [0, f * sy, (480 + rng.normal(0, 10)) * sy], [0, 0, 1.0]])
        cams[name] = {"translation": pos, "rotation": rotmat_to_quat(R), "K": K, "cam2ego": pose_matrix(pos, rotmat_to_quat(R))}
    pos, yaw = LIDAR_POSE
    q = yaw_to_quat(np.radians(yaw))
    cams["LIDAR_TOP"] = {"translation": np.asarray(pos, dtype=np.float64), "rotation": q, "K": None, "cam2ego": pose_matrix(pos, q)}
    return cams


def visible_in_camera(centres: np.ndarray, ego2global, calib, image_size) -> np.ndarray:
    """(N,) bool: the centre projects inside at least one camera image, in front of it."""
    W, H = image_size
    seen = np.zeros(len(centres), dtype=bool)
    for name in CAMERAS:
        T = invert_pose(ego2global @ calib[name]["cam2ego"])
        pc = centres @ T[:3, :3].T + T[:3, 3]
        z = pc[:, 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            uv = pc @ calib[name]["K"].T
            u, v = uv[:, 0] / z, uv[:, 1] / z
        seen |= (z > 0.5) & (u >= 0) & (u < W) & (v >= 0) & (v < H)
    return seen


def lidar_points(rng, boxes, ego2global, lidar2ego):
    """A small LIDAR_TOP sweep (M, 5) float32 [x, y, z, intensity, ring] in the sensor frame.

    Ground returns around the car plus returns on the faces of each box that face the sensor, with a
    density that falls with distance; returns how many points fell in each box (num_lidar_pts).
    """
    lidar2global = ego2global @ lidar2ego
    sensor = lidar2global[:3, 3]
    pts, counts = [], []
    for centre, yaw, wlh in boxes:
        w, l, h = wlh
        dist = max(np.linalg.norm(centre[:2] - sensor[:2]), 1.0)
        n = int(np.clip(round(2500.0 * (l * h + w * h) / dist**2), 3, 400))
        c, s = np.cos(yaw), np.sin(yaw)
        R = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
        local_sensor = R.T @ (sensor - centre)
        half = np.array([l, w, h]) / 2
        # Faces towards the sensor, weighted by area; points 2 cm inside so they count as in the box.
        faces, areas = [], []
        for a in range(3):
            for sign in (1.0, -1.0):
                if sign * local_sensor[a] > half[a]:
                    faces.append((a, sign))
                    others = [k for k in range(3) if k != a]
                    areas.append(4 * half[others[0]] * half[others[1]])
        if not faces:
            faces, areas = [(2, 1.0)], [1.0]
        pick = rng.choice(len(faces), size=n, p=np.asarray(areas) / sum(areas))
        local = rng.uniform(-1, 1, (n, 3)) * (half - 0.02)
        for k, (a, sign) in enumerate(faces):
            local[pick == k, a] = sign * (half[a] - 0.02)
        pts.append(local @ R.T + centre)
        counts.append(n)
    n_ground = 1200
    r = np.exp(rng.uniform(np.log(2.5), np.log(60.0), n_ground))
    th = rng.uniform(-np.pi, np.pi, n_ground)
    # A little below z = 0, where the boxes' bottoms are, so that no ground return counts as inside a box.
    ground_ego = np.stack([r * np.cos(th), r * np.sin(th), np.full(n_ground, -0.03)], axis=1)
    ground = ground_ego @ ego2global[:3, :3].T + ego2global[:3, 3]
    allpts = np.concatenate(pts + [ground]) if pts else ground
    g2l = invert_pose(lidar2global)
    local = allpts @ g2l[:3, :3].T + g2l[:3, 3]
    intensity = np.concatenate([rng.uniform(15, 100, sum(counts)), rng.uniform(1, 12, n_ground)])
    elev = np.degrees(np.arctan2(local[:, 2], np.linalg.norm(local[:, :2], axis=1)))
    ring = np.clip(np.round((elev + 30.67) / 1.33), 0, 31)  # 32 beams from -30.67 to +10.67 degrees
    out = np.concatenate([local, intensity[:, None], ring[:, None]], axis=1).astype(np.float32)
    return out, counts


# ----------------------------------------------------------------------------------------------
# Writing.

def _token(*parts) -> str:
    return hashlib.md5("/".join(str(p) for p in parts).encode()).hexdigest()


def _f(x) -> list[float]:
    return [float(v) for v in np.asarray(x, dtype=np.float64).ravel()]


def _dump(path: Path, rows) -> None:
    path.write_text(json.dumps(rows, indent=0))


def _static_tables(out_v: Path) -> dict:
    """category, attribute, visibility, sensor: the same tokens for every seed (they depend on names only)."""
    cats = [{"token": _token("category", n), "name": n, "description": f"Synthetic {n.split('.')[-1].replace('_', ' ')}.", "index": i}
            for i, n in enumerate(CATEGORIES)]
    attrs = [{"token": _token("attribute", n), "name": n, "description": f"Synthetic attribute {n}."} for n in ATTRIBUTE_NAMES]
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


def _visibility_token(frac: float) -> str:
    if not np.isfinite(frac):
        return "1"
    return "4" if frac >= 0.8 else "3" if frac >= 0.6 else "2" if frac >= 0.4 else "1"


def write_synthetic_nuscenes(out, version: str = "v1.0-mini", seed: int = 0, scenes: int | None = None,
                             samples_per_scene: int | None = None, image_size=(800, 450), progress=None) -> dict:
    """Write a synthetic dataset in nuScenes' on-disk format under ``out``; returns a summary of counts.

    The same seed gives byte-identical files. Scene i depends only on (seed, i), so a smaller set is a
    prefix of a larger one. ``progress(done, total)`` is called after each camera image.
    """
    # 1. Check the request and plan the scenes and their splits.
    n_scenes = DEFAULT_SCENES if scenes is None else int(scenes)
    n_samples = DEFAULT_SAMPLES_PER_SCENE if samples_per_scene is None else int(samples_per_scene)
    W, H = (int(v) for v in image_size)
    if int(seed) < 0:
        raise Fcos3dError(f"--seed must be 0 or more (got {seed})")
    if n_samples < 1:
        raise Fcos3dError(f"--samples-per-scene must be at least 1 (got {n_samples})")
    if W < 32 or H < 32:
        raise Fcos3dError(f"image size {W}x{H} is too small: use at least 32x32")
    names, split_of = scene_plan(version, n_scenes)

    # 2. The folder layout of a nuScenes root.
    out = Path(out)
    out_v = out / version
    out_v.mkdir(parents=True, exist_ok=True)
    for ch in (*CAMERAS, "LIDAR_TOP"):
        (out / "samples" / ch).mkdir(parents=True, exist_ok=True)
    (out / "sweeps").mkdir(exist_ok=True)
    (out / "maps").mkdir(exist_ok=True)

    # 3. Scenes: simulate, render, and collect the table rows.
    writer = _SceneWriter(out, seed, n_samples, (W, H), _static_tables(out_v), progress, n_scenes * n_samples * len(CAMERAS))
    for si, name in enumerate(names):
        writer.scene(si, name)

    # 4. Maps (one small PNG per location), the tables, and splits.json for custom versions.
    map_rows = []
    for location, logs in writer.maps.items():
        token = _token("map", location)
        png = np.full((64, 64), 128, dtype=np.uint8)
        png[16:48, :] = 255  # a road through the middle: a stand-in for the semantic prior
        (out / "maps" / f"{token}.png").write_bytes(cv2.imencode(".png", png)[1].tobytes())
        map_rows.append({"category": "semantic_prior", "token": token, "filename": f"maps/{token}.png", "log_tokens": logs})
    for key, rows in writer.tables.items():
        _dump(out_v / f"{key}.json", rows)
    _dump(out_v / "map.json", map_rows)
    if is_custom_version(version):
        _dump(out_v / "splits.json", {CUSTOM_SPLIT_KEYS["train"]: split_of["train"], CUSTOM_SPLIT_KEYS["val"]: split_of["val"]})
    elif (out_v / "splits.json").exists():
        (out_v / "splits.json").unlink()  # left by an earlier run: the devkit would read it

    t = writer.tables
    summary = {
        "scenes": n_scenes, "train_scenes": len(split_of["train"]), "val_scenes": len(split_of["val"]),
        "samples": len(t["sample"]), "sample_data": len(t["sample_data"]), "instances": len(t["instance"]),
        "annotations": len(t["sample_annotation"]), "images": writer.done, "lidar_sweeps": len(t["sample"]),
    }
    summary.update({f"annotations.{c}": n for c, n in writer.class_counts.items()})
    return summary


class _SceneWriter:
    """Simulates one scene at a time, writes its JPEGs and lidar files, and collects its table rows."""

    def __init__(self, out: Path, seed: int, n_samples: int, size, static: dict, progress, total_images: int):
        self.out, self.seed, self.n_samples, self.size = out, seed, n_samples, size
        self.static, self.progress, self.total_images = static, progress, total_images
        self.tables = {k: [] for k in ("instance", "calibrated_sensor", "ego_pose", "log", "scene", "sample",
                                       "sample_data", "sample_annotation")}
        self.maps: dict[str, list[str]] = {}
        self.class_counts = {c: 0 for c in CLASSES}
        self.done = 0

    def scene(self, si: int, name: str) -> None:
        seed, n, size = self.seed, self.n_samples, self.size
        # The world, the rig, and which objects are annotated in which key frame.
        rng = np.random.default_rng([seed, si])
        # About half of nuScenes is Boston (right-hand traffic), half Singapore (left-hand).
        location = "boston-seaport" if rng.random() < 0.5 else list(LOCATIONS)[1 + int(rng.integers(3))]
        times = np.arange(n) * KEYFRAME_US / 1e6
        world = make_world(rng, location, float(times[-1]))
        calib = make_calibration(rng, size)
        ego_poses = [world.ego_pose(t) for t in times]
        tracks = _annotate(world, times, ego_poses, calib, size)
        _ensure_classes(world, rng, tracks, times)
        tracks = _annotate(world, times, ego_poses, calib, size)
        states = [world.states(t) for t in times]
        start_us = 1_532_400_000_000_000 + (seed % 1000) * 86_400_000_000 + si * 3_600_000_000 + int(rng.integers(0, 10**9))
        stamps = [start_us + k * KEYFRAME_US for k in range(n)]

        logfile, cs_token = self._log_and_calibration(si, location, calib, start_us)
        sample_tokens = self._scene_and_samples(si, name, world, stamps, logfile)
        ann_token = {(ai, k): _token(seed, "ann", si, ai, k) for ai, ks in tracks.items() for k in ks}
        visibility = {key: 0.0 for key in ann_token}
        lidar_counts: dict = {}
        models: dict = {}
        backgrounds: dict = {}
        for k in range(n):
            active = [ai for ai, ks in tracks.items() if k in ks]
            self._sample_data(si, k, stamps, sample_tokens, logfile, cs_token, calib, ego_poses[k])
            centres, yaws = states[k]
            boxes = [(centres[ai], yaws[ai], world.actors[ai].wlh) for ai in active]
            pts, counts = lidar_points(np.random.default_rng([seed, si, k, 1]), boxes, ego_poses[k], calib["LIDAR_TOP"]["cam2ego"])
            (self.out / f"samples/LIDAR_TOP/{logfile}__LIDAR_TOP__{stamps[k]}.pcd.bin").write_bytes(pts.tobytes())
            lidar_counts.update({(ai, k): c for ai, c in zip(active, counts)})
            for ai, v in self._render_sample(world, k, float(times[k]), states[k], active, calib, ego_poses[k], logfile,
                                             stamps[k], models, backgrounds).items():
                visibility[(ai, k)] = v
        self._annotations(si, world, tracks, states, sample_tokens, ann_token, visibility, lidar_counts)

    def _log_and_calibration(self, si, location, calib, start_us):
        vehicle = LOCATIONS[location][0]
        tz_h = -4 if LOCATIONS[location][1] else 8  # Boston EDT, Singapore SGT, as in nuScenes' log names
        local = datetime.fromtimestamp(start_us / 1e6, tz=timezone(timedelta(hours=tz_h)))
        logfile = f"{vehicle}-{local:%Y-%m-%d-%H-%M-%S}{local:%z}"
        log_token = _token(self.seed, "log", si)
        self.tables["log"].append({"token": log_token, "logfile": logfile, "vehicle": vehicle,
                                   "date_captured": f"{local:%Y-%m-%d}", "location": location})
        self.maps.setdefault(location, []).append(log_token)
        cs_token = {}
        for ch, c in calib.items():
            cs_token[ch] = _token(self.seed, "calibrated_sensor", si, ch)
            self.tables["calibrated_sensor"].append({
                "token": cs_token[ch], "sensor_token": self.static["sensor"][ch],
                "translation": _f(c["translation"]), "rotation": _f(c["rotation"]),
                "camera_intrinsic": [_f(r) for r in c["K"]] if c["K"] is not None else [],
            })
        return logfile, cs_token

    def _scene_and_samples(self, si, name, world, stamps, logfile) -> list[str]:
        n = self.n_samples
        sample_tokens = [_token(self.seed, "sample", si, k) for k in range(n)]
        scene_token = _token(self.seed, "scene", si)
        log_token = self.tables["log"][-1]["token"]
        desc = (f"Synthetic, {world.location}, ego {world.ego_v:.0f} m/s, "
                f"{'right' if world.right_hand else 'left'}-hand traffic, construction zone")
        self.tables["scene"].append({"token": scene_token, "log_token": log_token, "nbr_samples": n,
                                     "first_sample_token": sample_tokens[0], "last_sample_token": sample_tokens[-1],
                                     "name": name, "description": desc})
        for k in range(n):
            self.tables["sample"].append({"token": sample_tokens[k], "timestamp": stamps[k],
                                          "prev": sample_tokens[k - 1] if k else "",
                                          "next": sample_tokens[k + 1] if k + 1 < n else "", "scene_token": scene_token})
        return sample_tokens

    def _sample_data(self, si, k, stamps, sample_tokens, logfile, cs_token, calib, e2g) -> None:
        """One key-frame sample_data record (and its ego_pose) per sensor; all share the key frame's time."""
        W, H = self.size
        n = self.n_samples
        for ch in calib:
            token = lambda j: _token(self.seed, "sample_data", si, ch, j)  # noqa: E731
            ep_token = _token(self.seed, "ego_pose", si, ch, k)
            self.tables["ego_pose"].append({"token": ep_token, "timestamp": stamps[k],
                                            "rotation": _f(rotmat_to_quat(e2g[:3, :3])), "translation": _f(e2g[:3, 3])})
            is_cam = ch != "LIDAR_TOP"
            self.tables["sample_data"].append({
                "token": token(k), "sample_token": sample_tokens[k], "ego_pose_token": ep_token,
                "calibrated_sensor_token": cs_token[ch], "timestamp": stamps[k],
                "fileformat": "jpg" if is_cam else "pcd", "is_key_frame": True,
                "height": H if is_cam else 0, "width": W if is_cam else 0,
                "filename": f"samples/{ch}/{logfile}__{ch}__{stamps[k]}.{'jpg' if is_cam else 'pcd.bin'}",
                "prev": token(k - 1) if k else "", "next": token(k + 1) if k + 1 < n else "",
            })

    def _render_sample(self, world, k, t, state, active, calib, e2g, logfile, stamp, models, backgrounds) -> dict:
        """Render the six cameras of key frame k; returns each annotated object's best visible fraction."""
        size = self.size
        centres, yaws = state
        ground = render.ground_polygons(world.road.to_global, world.bands, world.lines, world.ego_v * t - 90, world.ego_v * t + 90)
        objs = []
        for ai in active:
            a = world.actors[ai]
            if ai not in models:
                models[ai] = render.build_model(a.cls, a.attribute, a.wlh, a.look, a.category)
            objs.append((models[ai], pose_matrix(centres[ai], yaw_to_quat(yaws[ai]))))
        best = dict.fromkeys(active, 0.0)
        for ch in CAMERAS:
            c2g = e2g @ calib[ch]["cam2ego"]
            if ch not in backgrounds:  # the ego stays flat, so a camera's sky and horizon never change
                backgrounds[ch] = render.background(calib[ch]["K"], c2g, size)
            view = render.CameraView(K=calib[ch]["K"], world_to_cam=invert_pose(c2g), size=size)
            img, vis = render.render_view(view, backgrounds[ch], ground, objs, world.sun)
            (self.out / f"samples/{ch}/{logfile}__{ch}__{stamp}.jpg").write_bytes(render.encode_jpeg(img))
            for ai, v in zip(active, vis):
                if np.isfinite(v):
                    best[ai] = max(best[ai], float(v))
            self.done += 1
            if self.progress is not None:
                self.progress(self.done, self.total_images)
        return best

    def _annotations(self, si, world, tracks, states, sample_tokens, ann_token, visibility, lidar_counts) -> None:
        """instance rows and sample_annotation rows with prev/next chains along each track."""
        rows = []
        for ai, ks in tracks.items():
            a = world.actors[ai]
            inst_token = _token(self.seed, "instance", si, ai)
            self.tables["instance"].append({"token": inst_token, "category_token": self.static["category"][a.category],
                                            "nbr_annotations": len(ks), "first_annotation_token": ann_token[(ai, ks[0])],
                                            "last_annotation_token": ann_token[(ai, ks[-1])]})
            self.class_counts[a.cls] += len(ks)
            radar = np.random.default_rng([self.seed, si, ai, 2]).poisson(a.radar_rate, len(ks))
            for j, k in enumerate(ks):
                centres, yaws = states[k]
                rows.append((k, ai, {
                    "token": ann_token[(ai, k)], "sample_token": sample_tokens[k], "instance_token": inst_token,
                    "visibility_token": _visibility_token(visibility[(ai, k)]),
                    "attribute_tokens": [self.static["attribute"][a.attribute]] if a.attribute else [],
                    "translation": _f(centres[ai]), "size": _f(a.wlh), "rotation": _f(yaw_to_quat(yaws[ai])),
                    "prev": ann_token[(ai, ks[j - 1])] if j else "",
                    "next": ann_token[(ai, ks[j + 1])] if j + 1 < len(ks) else "",
                    "num_lidar_pts": int(lidar_counts[(ai, k)]), "num_radar_pts": int(radar[j]),
                }))
        self.tables["sample_annotation"].extend(row for _, _, row in sorted(rows, key=lambda r: (r[0], r[1])))


def _annotate(world: World, times, ego_poses, calib, image_size) -> dict[int, list[int]]:
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


def _extent(a: Actor) -> tuple[float, float]:
    """Half extents of an actor's footprint along s and d."""
    c, sn = abs(np.cos(a.yaw_rel)), abs(np.sin(a.yaw_rel))
    w, l = a.wlh[0], a.wlh[1]
    return c * l / 2 + sn * w / 2, sn * l / 2 + c * w / 2


def _overlaps(a: Actor, b: Actor, margin: float = 0.3) -> bool:
    (sa, da), (sb, db) = _extent(a), _extent(b)
    return abs(a.s0 - b.s0) < sa + sb + margin and abs(a.d0 - b.d0) < da + db + margin


def _ensure_classes(world: World, rng, tracks, times) -> None:
    """Make every class appear in every scene: each missing class gets a parked (or standing) object
    beside the ego's path at mid-scene, away from the construction zone, in place of any static
    object that stood there. Vehicles, cones and barriers go one after another along the parking strip."""
    present = {world.actors[ai].cls for ai, ks in tracks.items() if len(ks) >= min(2, len(times))}
    s_mid = world.ego_v * times[len(times) // 2]
    side = -world.zone_side
    cursor = [s_mid, s_mid]  # free parking-strip positions ahead of and behind s_mid
    forced: set[int] = set()
    for cls in CLASSES:
        if cls in present:
            continue
        if cls == "pedestrian":
            attr, d, yaw = "pedestrian.standing", STAND_D, float(rng.uniform(-np.pi, np.pi))
        elif cls == "bicycle":
            attr, d, yaw = "cycle.without_rider", RACK_D, np.pi / 2
        elif cls == "motorcycle":
            attr, d, yaw = "cycle.without_rider", PARK_D, 0.0
        elif cls in ("traffic_cone", "barrier"):
            attr, d, yaw = "", PARK_D, np.pi / 2 if cls == "barrier" else 0.0
        else:
            attr, d, yaw = "vehicle.parked", PARK_D, 0.0
        if (side < 0) != world.right_hand:
            yaw += np.pi  # parked along that side's traffic
        radar = {"pedestrian": 0.3, "traffic_cone": 0.2, "barrier": 0.5, "bicycle": 0.5}.get(cls, 2.5)
        new = Actor(cls, CLASS_CATEGORY[cls], _size(rng, cls, attr), attr, s_mid, side * d, 0.0, 0.0, yaw,
                    int(rng.integers(2**31)), radar)
        if d == PARK_D:
            ext = _extent(new)[0] + 0.5
            k = len(forced) % 2  # alternate ahead and behind
            new.s0 = cursor[0] + ext if k == 0 else cursor[1] - ext
            cursor[k] = new.s0 + ext if k == 0 else new.s0 - ext
        else:
            new.s0 = s_mid + float(rng.uniform(-4, 4))
        world.actors[:] = [a for a in world.actors if id(a) in forced or a.vs or a.vd or not _overlaps(a, new)]
        world.actors.append(new)
        forced.add(id(new))
