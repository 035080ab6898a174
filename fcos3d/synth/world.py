"""The synthetic world: a seeded road with the ego, traffic, parked vehicles, cyclists, people and a construction
zone; make_world lays it out in named steps for right-hand traffic and mirrors it for left-hand traffic."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..boxes.geometry import pose_matrix, yaw_to_quat
from ..data.classes import CLASSES

LOCATIONS = {  # location: (vehicle id, traffic drives on the right?)
    "boston-seaport": ("n008", True),
    "singapore-onenorth": ("n015", False),
    "singapore-queenstown": ("n015", False),
    "singapore-hollandvillage": ("n015", False),
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
    "car": "vehicle.car",
    "truck": "vehicle.truck",
    "bus": "vehicle.bus.rigid",
    "trailer": "vehicle.trailer",
    "construction_vehicle": "vehicle.construction",
    "bicycle": "vehicle.bicycle",
    "motorcycle": "vehicle.motorcycle",
    "pedestrian": "human.pedestrian.adult",
    "traffic_cone": "movable_object.trafficcone",
    "barrier": "movable_object.barrier",
}
# Mean radar returns per key frame (num_radar_pts): small and slow things reflect little.
RADAR_RATE = {"pedestrian": 0.3, "traffic_cone": 0.2, "barrier": 0.5, "bicycle": 0.5}
DEFAULT_RADAR_RATE = 2.5

# The road cross-section, in metres left of the centre line for traffic that drives on the right (it is
# mirrored for left-hand traffic): two lanes each way, then bike lane, parking strip and sidewalk.
LANE_W = 3.5
LANES = (-1.5 * LANE_W, -0.5 * LANE_W, 0.5 * LANE_W, 1.5 * LANE_W)
ROAD_EDGE, BIKE_EDGE, PARK_EDGE, WALK_EDGE = 7.0, 8.5, 11.0, 15.5
# Rows on the sidewalk, far enough apart that nothing in one row can touch the next: bicycle racks,
# walkers (one row per direction), then people standing or seated at the back.
RACK_D, WALK_D, STAND_D = 12.1, (13.3, 14.0), 14.95
PARK_D = (BIKE_EDGE + PARK_EDGE) / 2
LOT_D = (17.0, 24.0)
ZONE_MARGIN = 3.0  # metres of s before and after the construction zone that its verge also takes

# What drives in the lanes ("rig": a truck towing a trailer) and what parks along the kerb.
TRAFFIC_MIX = (
    ("car", 0.70),
    ("truck", 0.12),
    ("bus", 0.05),
    ("rig", 0.05),
    ("motorcycle", 0.06),
    ("construction_vehicle", 0.02),
)
PARKED_MIX = (("car", 0.8), ("truck", 0.06), ("trailer", 0.04), ("motorcycle", 0.07), ("construction_vehicle", 0.03))


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


@dataclass(frozen=True)
class Band:
    """A strip of ground between lateral offsets d0 < d1 (metres left of the road centre), from s0 to s1."""

    d0: float
    d1: float
    s0: float
    s1: float
    kind: str


@dataclass(frozen=True)
class Line:
    """A painted line centred at lateral offset d; dashed when dash = (on, period) metres."""

    d: float
    width: float
    s0: float
    s1: float
    kind: str
    dash: tuple[float, float] | None = None


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


@dataclass(frozen=True)
class Zone:
    """The construction zone: beside the road on one side (sign of d), from s0 to s1."""

    side: float
    s0: float
    s1: float

    def blocks(self, side: float, s_a: float, s_b: float) -> bool:
        """Whether [s_a, s_b] on that side runs into the zone or its verge."""
        return side == self.side and s_b > self.s0 - ZONE_MARGIN and s_a < self.s1 + ZONE_MARGIN


@dataclass
class _Layout:
    """What the placing steps share: the world being filled, its random stream, and where to fill it."""

    rng: np.random.Generator
    world: World
    duration: float
    density: float
    zone: Zone
    s_min: float  # the s-window the ego can see during the scene
    s_max: float

    def add(self, cls, s0, d0, vs=0.0, vd=0.0, yaw_rel=0.0, attribute="", category=None, wlh=None) -> Actor:
        category = category or CLASS_CATEGORY[cls]
        wlh = wlh or _size(self.rng, cls, attribute, category)
        actor = Actor(
            cls,
            category,
            wlh,
            attribute,
            float(s0),
            float(d0),
            float(vs),
            float(vd),
            float(yaw_rel),
            _look(self.rng),
            _radar_rate(cls),
        )
        self.world.actors.append(actor)
        return actor


# ----------------------------------------------------------------------------------------------
# make_world and its steps, in the order they draw from the random stream (a seed's world depends on it).


def make_world(rng: np.random.Generator, location: str, duration: float, density: float | None = None) -> World:
    """A random scene: the ego in a lane of a gently curving road with traffic, parked vehicles, cyclists,
    pedestrians on the sidewalks and a construction zone near the ego's path.

    Everything is laid out for traffic on the right and mirrored at the end for left-hand traffic.
    """
    road, ego_v, ego_lane = _road_and_ego(rng)
    dens = density if density is not None else float(rng.uniform(0.7, 1.2))
    world = World(
        road=road, ego_d=ego_lane, ego_v=ego_v, location=location, right_hand=LOCATIONS[location][1], sun=_sun(rng)
    )
    zone = _plan_zone(rng, ego_v, duration)
    lay = _Layout(rng, world, duration, dens, zone, -60.0, ego_v * duration + 60.0)
    for lane_d in LANES:
        _lane_traffic(lay, lane_d)
    for side in (-1.0, 1.0):
        _parking_strip(lay, side)
        _parking_lot(lay, side)
        _bike_lane(lay, side)
        _bike_racks(lay, side)
        _walkers(lay, side)
        _people_standing_or_seated(lay, side)
    _zone_cones_and_barriers(lay)
    _zone_machines(lay)
    _zone_workers(lay)
    world.bands, world.lines = _road_layout(zone, lay.s_min - 100, lay.s_max + 100)
    world.zone_side = zone.side
    if not world.right_hand:
        _mirror(world)
    return world


def _road_and_ego(rng) -> tuple[Road, float, float]:
    """The road (a straight line or a gentle arc), the ego's speed (stopped 15% of the time) and lane."""
    road = Road(
        x0=float(rng.uniform(300, 1800)),
        y0=float(rng.uniform(600, 1800)),
        heading0=float(rng.uniform(-np.pi, np.pi)),
        curvature=float(rng.choice([0.0, 1.0]) * rng.uniform(-1 / 250, 1 / 250)),
    )
    ego_v = 0.0 if rng.random() < 0.15 else float(rng.uniform(3.0, 11.0))
    ego_lane = -LANE_W / 2 if rng.random() < 0.6 else -1.5 * LANE_W
    return road, ego_v, ego_lane


def _sun(rng) -> np.ndarray:
    """Unit vector towards the sun: any azimuth, 30 to 60 degrees up."""
    sun_az, sun_el = rng.uniform(-np.pi, np.pi), rng.uniform(0.5, 1.1)
    return np.array([np.cos(sun_el) * np.cos(sun_az), np.cos(sun_el) * np.sin(sun_az), np.sin(sun_el)])


def _plan_zone(rng, ego_v: float, duration: float) -> Zone:
    """The construction zone sits beside the road near the ego's path, on a random side."""
    side = float(rng.choice([-1.0, 1.0]))
    length = float(rng.uniform(18, 32))
    s0 = float(rng.uniform(-20.0, max(-19.0, ego_v * duration + 15.0 - length)))
    return Zone(side, s0, s0 + length)


def _lane_traffic(lay: _Layout, lane_d: float) -> None:
    """One lane of traffic. Vehicles in a lane share its speed, so they never run into each other."""
    rng, ego = lay.rng, lay.world
    direction = 1.0 if lane_d < 0 else -1.0
    v = _lane_speed(rng, lane_d == ego.ego_d, direction, ego.ego_v)
    v_s = direction * v
    lo, hi = lay.s_min - max(v_s, 0) * lay.duration, lay.s_max - min(v_s, 0) * lay.duration
    names, probs = zip(*TRAFFIC_MIX)
    attr = _vehicle_attr(v)
    s = lo + rng.uniform(0, 20)
    while s < hi:
        kind = names[rng.choice(len(names), p=probs)]
        gap = rng.uniform(3.0, 22.0) if v == 0 else rng.uniform(15.0, 60.0) / lay.density
        members, total = _lane_vehicle(rng, kind, attr, s, direction)
        # The ego's own lane stays clear around the ego.
        if lane_d != ego.ego_d or (s + total < -9.0 or s > 9.0):
            for cls, sc, wlh in members:
                cattr = "cycle.with_rider" if cls == "motorcycle" else attr
                yaw = 0.0 if direction > 0 else np.pi
                lay.add(cls, sc, lane_d + rng.normal(0, 0.12), vs=v_s, yaw_rel=yaw, attribute=cattr, wlh=wlh)
        s += total + gap


def _lane_speed(rng, ego_lane: bool, direction: float, ego_v: float) -> float:
    """The ego's lane moves with the ego; the others are stopped now and then, or roughly at the ego's pace."""
    if ego_lane:
        v = ego_v
    elif direction > 0:
        v = 0.0 if (ego_v == 0.0 or rng.random() < 0.15) else max(0.0, ego_v + rng.uniform(-3, 3))
    else:
        v = 0.0 if rng.random() < 0.12 else float(rng.uniform(4, 12))
    return 0.0 if v < 0.5 else float(v)  # a crawling lane is a stopped one: the attribute must match


def _lane_vehicle(rng, kind: str, attr: str, s: float, direction: float):
    """The vehicle (or truck and trailer) whose back end is at s: [(cls, centre s, wlh)] and its total length."""
    if kind != "rig":
        wlh = _size(rng, kind, "cycle.with_rider" if kind == "motorcycle" else attr)
        return [(kind, s + wlh[1] / 2, wlh)], wlh[1]
    tw = _size(rng, "truck")
    tw = (tw[0], min(tw[1], 6.5), tw[2])
    tr = _size(rng, "trailer")
    total = tw[1] + 0.6 + tr[1]
    front = s + total if direction > 0 else s
    back = s if direction > 0 else s + total
    return [("truck", front - direction * tw[1] / 2, tw), ("trailer", back + direction * tr[1] / 2, tr)], total


def _parking_strip(lay: _Layout, side: float) -> None:
    """Vehicles parked along the kerb, mostly with the traffic on that side, with gaps; none by the zone."""
    rng = lay.rng
    facing = 0.0 if side < 0 else np.pi
    park_d = side * PARK_D
    pn, pp = zip(*PARKED_MIX)
    s = lay.s_min - 5 + rng.uniform(0, 6)
    while s < lay.s_max + 5:
        if rng.random() < 0.7 / lay.density:
            s += rng.uniform(5, 30)
            continue
        cls = pn[rng.choice(len(pn), p=pp)]
        attr = "cycle.without_rider" if cls == "motorcycle" else "vehicle.parked"
        wlh = _size(rng, cls, attr)
        if not lay.zone.blocks(side, s, s + wlh[1]):
            yaw = facing if rng.random() < 0.85 else facing + np.pi
            lay.add(cls, s + wlh[1] / 2, park_d + side * rng.normal(0, 0.1), yaw_rel=yaw, attribute=attr, wlh=wlh)
        s += wlh[1] + rng.uniform(0.8, 5.0)


def _parking_lot(lay: _Layout, side: float) -> None:
    """Now and then a parking lot beyond the sidewalk, cars parked across it (varied yaws)."""
    rng = lay.rng
    if not (rng.random() < 0.35 and side != lay.zone.side):
        return
    lot_a = rng.uniform(lay.s_min + 10, max(lay.s_min + 11, lay.s_max - 50))
    lot_len = rng.uniform(25, 60)
    for s in np.arange(lot_a, lot_a + lot_len, 2.8):
        if rng.random() < 0.5:
            cls = "car" if rng.random() < 0.92 else "truck"
            w, l, h = _size(rng, cls)
            lay.add(
                cls,
                s,
                side * sum(LOT_D) / 2,
                yaw_rel=float(rng.choice([np.pi / 2, -np.pi / 2]) + rng.normal(0, 0.05)),
                attribute="vehicle.parked",
                wlh=(w, min(l, 6.0), h),
            )


def _bike_lane(lay: _Layout, side: float) -> None:
    """Cyclists riding with the traffic; none on the zone's side, where they would ride into it."""
    if side == lay.zone.side:
        return
    rng, duration = lay.rng, lay.duration
    direction = -side
    v = float(rng.uniform(2.5, 6.0))
    s = lay.s_min - v * duration + rng.uniform(0, 30)
    while s < lay.s_max + v * duration:
        lay.add(
            "bicycle",
            s,
            side * (ROAD_EDGE + BIKE_EDGE) / 2,
            vs=direction * v,
            yaw_rel=0.0 if direction > 0 else np.pi,
            attribute="cycle.with_rider",
        )
        s += rng.uniform(30, 120) / lay.density


def _bike_racks(lay: _Layout, side: float) -> None:
    """Racks of two to four parked bicycles across the sidewalk; racks never touch each other or the zone."""
    rng = lay.rng
    rack_end = -np.inf
    for s in np.sort(rng.uniform(lay.s_min, lay.s_max, rng.poisson((lay.s_max - lay.s_min) / 150 * lay.density))):
        n_bikes = int(rng.integers(2, 5))
        if lay.zone.blocks(side, s - 3, s + 3) or s < rack_end + 1.0:
            continue
        yaw = float(rng.choice([np.pi / 2, -np.pi / 2]))
        for k in range(n_bikes):
            lay.add(
                "bicycle",
                s + 0.75 * k,
                side * RACK_D,
                yaw_rel=yaw + rng.normal(0, 0.08),
                attribute="cycle.without_rider",
            )
        rack_end = s + 0.75 * n_bikes


def _walkers(lay: _Layout, side: float) -> None:
    """Walkers in two rows, one per direction; nobody whose walk would cross the zone."""
    rng, duration = lay.rng, lay.duration
    for row_d, direction in ((WALK_D[0], -side), (WALK_D[1], side)):
        v = float(rng.uniform(1.0, 1.5))
        s = lay.s_min - v * duration + rng.uniform(0, 10)
        while s < lay.s_max + v * duration:
            s_end = s + direction * v * duration
            if not lay.zone.blocks(side, min(s, s_end), max(s, s_end)):
                cat = _pick_pedestrian(rng)
                lay.add(
                    "pedestrian",
                    s,
                    side * row_d,
                    vs=direction * (v + rng.uniform(-0.06, 0.06)),
                    yaw_rel=0.0 if direction > 0 else np.pi,
                    attribute="pedestrian.moving",
                    category=cat,
                )
            s += rng.uniform(3.5 + 0.2 * duration, 110) / lay.density


def _people_standing_or_seated(lay: _Layout, side: float) -> None:
    """People standing at the back of the sidewalk, facing anywhere, or seated on benches facing the road."""
    rng = lay.rng
    s = lay.s_min + rng.uniform(0, 10)
    while s < lay.s_max:
        if not lay.zone.blocks(side, s - 1, s + 1):
            sitting = rng.random() < 0.3
            cat = _pick_pedestrian(rng)
            if sitting:
                lay.add(
                    "pedestrian",
                    s,
                    side * STAND_D,
                    yaw_rel=-side * np.pi / 2 + rng.normal(0, 0.2),
                    attribute="pedestrian.sitting_lying_down",
                    category="human.pedestrian.adult",
                )
            else:
                lay.add(
                    "pedestrian",
                    s,
                    side * STAND_D,
                    yaw_rel=rng.uniform(-np.pi, np.pi),
                    attribute="pedestrian.standing",
                    category=cat,
                )
        s += rng.uniform(8, 60) / lay.density


def _zone_cones_and_barriers(lay: _Layout) -> None:
    """Cones along the lane edge by the zone, and a row of barriers behind them."""
    rng, z = lay.rng, lay.zone
    for s in np.arange(z.s0 - 4, z.s1 + 0.1, rng.uniform(3.5, 5.0)):
        lay.add("traffic_cone", s, z.side * (ROAD_EDGE + 0.35), yaw_rel=rng.uniform(-np.pi, np.pi))
    for s in np.arange(z.s0 + 1.4, z.s1 - 1.2, rng.uniform(2.6, 3.0)):
        lay.add("barrier", s, z.side * (ROAD_EDGE + 1.1), yaw_rel=np.pi / 2 + rng.normal(0, 0.03))


def _zone_machines(lay: _Layout) -> None:
    """One or two machines inside the zone, one after another; a moving one's whole path stays inside."""
    rng, z, duration = lay.rng, lay.zone, lay.duration
    s = z.s0 + rng.uniform(1, 4)
    for _ in range(int(rng.integers(1, 3))):
        attr = str(rng.choice(["vehicle.parked", "vehicle.stopped", "vehicle.moving"], p=[0.5, 0.3, 0.2]))
        wlh = _size(rng, "construction_vehicle")
        yaw = float(rng.choice([0.0, np.pi, rng.uniform(-np.pi, np.pi)]))
        ext_s, ext_d = _half_extents(yaw, wlh)
        vs = 0.0
        if attr == "vehicle.moving":  # moving machines drive along the road
            yaw = float(rng.choice([0.0, np.pi]))
            ext_s, ext_d = wlh[1] / 2, wlh[0] / 2
            vs = np.cos(yaw) * rng.uniform(0.6, 1.2)
        sc = s + ext_s + (max(0, -vs) * duration)
        if sc + ext_s + max(0, vs) * duration > z.s1 + 4:
            break
        lay.add("construction_vehicle", sc, z.side * (10.2 + ext_d), vs=vs, yaw_rel=yaw, attribute=attr, wlh=wlh)
        s = sc + ext_s + abs(vs) * duration + rng.uniform(1.5, 5)


def _zone_workers(lay: _Layout) -> None:
    """Workers in the strip between the barriers and the machines; each one's path stays clear of the next."""
    rng, z, duration = lay.rng, lay.zone, lay.duration
    busy_until = -np.inf
    for sw in np.sort(rng.uniform(z.s0 + 1, z.s1 - 1, int(rng.integers(1, 4)))):
        if sw < busy_until + 1.0:
            continue
        v = min(0.7, (z.s1 - 1 - sw) / max(duration, 0.5)) if rng.random() < 0.4 else 0.0
        v = v if v > 0.3 else 0.0
        lay.add(
            "pedestrian",
            sw,
            z.side * 9.3,
            vs=v,
            yaw_rel=0.0 if v else rng.uniform(-np.pi, np.pi),
            attribute="pedestrian.moving" if v else "pedestrian.standing",
            category="human.pedestrian.construction_worker",
        )
        busy_until = sw + v * duration


def _road_layout(zone: Zone, s_lo: float, s_hi: float) -> tuple[list[Band], list[Line]]:
    """Bands and painted lines of the cross-section; the construction zone replaces one side's verge."""
    bands, lines = [], []
    bands.append(Band(-ROAD_EDGE, ROAD_EDGE, s_lo, s_hi, "asphalt"))
    for side in (-1.0, 1.0):

        def strip(a, b, kind, s0=s_lo, s1=s_hi):
            d0, d1 = sorted((side * a, side * b))
            bands.append(Band(d0, d1, s0, s1, kind))

        if side == zone.side:
            z0, z1 = zone.s0 - ZONE_MARGIN, zone.s1 + ZONE_MARGIN
            for s0, s1 in ((s_lo, z0), (z1, s_hi)):
                strip(ROAD_EDGE, BIKE_EDGE, "bike", s0, s1)
                strip(BIKE_EDGE, PARK_EDGE, "parking", s0, s1)
                strip(PARK_EDGE, WALK_EDGE, "sidewalk", s0, s1)
            strip(ROAD_EDGE, WALK_EDGE + 3, "zone", z0, z1)
        else:
            strip(ROAD_EDGE, BIKE_EDGE, "bike")
            strip(BIKE_EDGE, PARK_EDGE, "parking")
            strip(PARK_EDGE, WALK_EDGE, "sidewalk")
            strip(*LOT_D, "lot")
        lines.append(Line(side * LANE_W, 0.15, s_lo, s_hi, "white", dash=(3.0, 12.0)))
        lines.append(Line(side * (ROAD_EDGE - 0.15), 0.15, s_lo, s_hi, "white"))
    lines.append(Line(-0.12, 0.12, s_lo, s_hi, "yellow"))
    lines.append(Line(0.12, 0.12, s_lo, s_hi, "yellow"))
    return bands, lines


def _mirror(world: World) -> None:
    """Left-hand traffic: reflect the layout across the centre line (d -> -d, relative yaw -> -yaw)."""
    world.ego_d = -world.ego_d
    world.zone_side = -world.zone_side
    for a in world.actors:
        a.d0, a.vd, a.yaw_rel = -a.d0, -a.vd, -a.yaw_rel
    world.bands = [Band(-b.d1, -b.d0, b.s0, b.s1, b.kind) for b in world.bands]
    world.lines = [Line(-ln.d, ln.width, ln.s0, ln.s1, ln.kind, ln.dash) for ln in world.lines]


# ----------------------------------------------------------------------------------------------
# After annotation: every class in every scene.


def ensure_every_class(world: World, rng, tracks: dict[int, list[int]], times) -> None:
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
        attr, d, yaw = _stand_in_pose(rng, cls)
        if (side < 0) != world.right_hand:
            yaw += np.pi  # parked along that side's traffic
        new = Actor(
            cls,
            CLASS_CATEGORY[cls],
            _size(rng, cls, attr),
            attr,
            s_mid,
            side * d,
            0.0,
            0.0,
            yaw,
            _look(rng),
            _radar_rate(cls),
        )
        if d == PARK_D:
            ext = _half_extents(new.yaw_rel, new.wlh)[0] + 0.5
            k = len(forced) % 2  # alternate ahead and behind
            new.s0 = cursor[0] + ext if k == 0 else cursor[1] - ext
            cursor[k] = new.s0 + ext if k == 0 else new.s0 - ext
        else:
            new.s0 = s_mid + float(rng.uniform(-4, 4))
        world.actors[:] = [a for a in world.actors if id(a) in forced or a.vs or a.vd or not _overlaps(a, new)]
        world.actors.append(new)
        forced.add(id(new))


def _stand_in_pose(rng, cls: str) -> tuple[str, float, float]:
    """Attribute, distance of its row from the centre line, and yaw of a class's stand-in: people stand at
    the back of the sidewalk, bicycles in a rack, the rest park."""
    if cls == "pedestrian":
        return "pedestrian.standing", STAND_D, float(rng.uniform(-np.pi, np.pi))
    if cls == "bicycle":
        return "cycle.without_rider", RACK_D, np.pi / 2
    if cls == "motorcycle":
        return "cycle.without_rider", PARK_D, 0.0
    if cls in ("traffic_cone", "barrier"):
        return "", PARK_D, np.pi / 2 if cls == "barrier" else 0.0
    return "vehicle.parked", PARK_D, 0.0


# ----------------------------------------------------------------------------------------------
# Small helpers.


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


def _look(rng) -> int:
    """The seed of an object's colours (see models.build_model)."""
    return int(rng.integers(2**31))


def _radar_rate(cls: str) -> float:
    return RADAR_RATE.get(cls, DEFAULT_RADAR_RATE)


def _vehicle_attr(speed: float) -> str:
    return "vehicle.moving" if abs(speed) > 0.3 else "vehicle.stopped"


def _pick_pedestrian(rng) -> str:
    r = rng.random()
    return (
        "human.pedestrian.child"
        if r < 0.08
        else ("human.pedestrian.police_officer" if r < 0.11 else "human.pedestrian.adult")
    )


def _half_extents(yaw: float, wlh) -> tuple[float, float]:
    """Half extents along s and d of a footprint turned by yaw from the road direction."""
    c, sn = abs(np.cos(yaw)), abs(np.sin(yaw))
    w, l = wlh[0], wlh[1]
    return c * l / 2 + sn * w / 2, sn * l / 2 + c * w / 2


def _overlaps(a: Actor, b: Actor, margin: float = 0.3) -> bool:
    (sa, da), (sb, db) = _half_extents(a.yaw_rel, a.wlh), _half_extents(b.yaw_rel, b.wlh)
    return abs(a.s0 - b.s0) < sa + sb + margin and abs(a.d0 - b.d0) < da + db + margin
