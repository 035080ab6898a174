"""The 3D object models: each class built of shaded axis-aligned parts and decals in the box's local frame, with
fronts and attributes made visible (lights, faces, riders, poses) so that a camera model can learn them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Face f of an axis-aligned part: axis f // 2, outward sign + for even f; the in-plane axes follow.
_FACE_AXES = ((0, 1, 2), (0, 1, 2), (1, 0, 2), (1, 0, 2), (2, 0, 1), (2, 0, 1))


@dataclass
class ObjectModel:
    """A box-shaped object built of axis-aligned parts in its local frame (origin at the box centre)."""

    lo: np.ndarray  # (P, 3) part minima
    hi: np.ndarray  # (P, 3) part maxima
    face_rgb: np.ndarray  # (P, 6, 3) base colour per part face
    decal_pts: np.ndarray  # (D, 4, 3) coplanar quads slightly outside a face
    decal_face: np.ndarray  # (D, 2) int: (part, face) the decal sits on
    decal_rgb: np.ndarray  # (D, 3)
    half: np.ndarray  # (3,) half extents of the whole box (l/2, w/2, h/2)

    def __post_init__(self):
        P = len(self.lo)
        pts = np.empty((P, 6, 4, 3))
        for f, (a, b, c) in enumerate(_FACE_AXES):
            fixed = self.hi[:, a] if f % 2 == 0 else self.lo[:, a]
            for k, (ub, uc) in enumerate(((0, 0), (1, 0), (1, 1), (0, 1))):
                pts[:, f, k, a] = fixed
                pts[:, f, k, b] = self.hi[:, b] if ub else self.lo[:, b]
                pts[:, f, k, c] = self.hi[:, c] if uc else self.lo[:, c]
        self.face_pts = pts
        l2, w2, h2 = self.half * 1.06
        self.footprint = np.array(
            [[l2, w2, -self.half[2]], [l2, -w2, -self.half[2]], [-l2, -w2, -self.half[2]], [-l2, w2, -self.half[2]]]
        )
        # Pairs of parts whose painter's order depends on where the camera is (see paint._part_order).
        self.part_pairs = [(i, j) for i in range(P) for j in range(i + 1, P)]
        self.decals_on = {}  # (part, face) -> decal indices
        for d, (p, f) in enumerate(self.decal_face.tolist()):
            self.decals_on.setdefault((p, f), []).append(d)


class ModelBuilder:
    """Collects parts and decals in metres of the local frame, z measured up from the ground."""

    def __init__(self, wlh):
        self.w, self.l, self.h = (float(v) for v in wlh)
        self.lo, self.hi, self.rgb, self.decals = [], [], [], []

    def part(self, x0, x1, y0, y1, z0, z1, rgb, faces=None) -> int:
        """Add a part; x/y in metres from the centre, z in metres above the ground. faces: {f: rgb} overrides."""
        self.lo.append((x0, y0, z0 - self.h / 2))
        self.hi.append((x1, y1, z1 - self.h / 2))
        cols = np.tile(np.asarray(rgb, dtype=np.float64), (6, 1))
        for f, c in (faces or {}).items():
            cols[f] = c
        self.rgb.append(cols)
        return len(self.lo) - 1

    def decal(self, part: int, face: int, u0, u1, v0, v1, rgb) -> None:
        """A rectangle on a face: u, v are fractions along the face's two in-plane axes (see _FACE_AXES)."""
        self.decals.append((part, face, u0, u1, v0, v1, rgb))

    def build(self) -> ObjectModel:
        lo, hi = np.array(self.lo, dtype=np.float64), np.array(self.hi, dtype=np.float64)
        pts, pf, rgb = [], [], []
        for p, f, u0, u1, v0, v1, c in self.decals:
            a, b, cc = _FACE_AXES[f]
            fixed = hi[p, a] + 0.004 if f % 2 == 0 else lo[p, a] - 0.004
            bb = lo[p, b] + np.array([u0, u1]) * (hi[p, b] - lo[p, b])
            vv = lo[p, cc] + np.array([v0, v1]) * (hi[p, cc] - lo[p, cc])
            quad = np.zeros((4, 3))
            quad[:, a] = fixed
            quad[:, b] = [bb[0], bb[1], bb[1], bb[0]]
            quad[:, cc] = [vv[0], vv[0], vv[1], vv[1]]
            pts.append(quad)
            pf.append((p, f))
            rgb.append(c)
        return ObjectModel(
            lo=lo,
            hi=hi,
            face_rgb=np.array(self.rgb),
            decal_pts=np.array(pts).reshape(-1, 4, 3),
            decal_face=np.array(pf, dtype=np.int64).reshape(-1, 2),
            decal_rgb=np.array(rgb, dtype=np.float64).reshape(-1, 3),
            half=np.array([self.l / 2, self.w / 2, self.h / 2]),
        )


# ----------------------------------------------------------------------------------------------
# Class models. Attributes are made visible: lit/unlit/brake lights for vehicles, riders on cycles,
# stride for walking pedestrians and a folded pose for sitting ones.

_CAR_PAINT = (
    (200, 30, 30),
    (30, 60, 160),
    (210, 210, 215),
    (235, 235, 235),
    (25, 25, 28),
    (120, 124, 130),
    (20, 100, 60),
    (150, 110, 60),
)
_GLASS = (58, 74, 94)
_DARK = (26, 26, 28)
_HEAD_ON, _HEAD_OFF = (255, 250, 205), (150, 150, 140)
_AMBER = (255, 150, 10)
_TAIL = {"vehicle.moving": (205, 35, 30), "vehicle.stopped": (255, 70, 60), "vehicle.parked": (95, 40, 38)}
_CLOTHES = ((40, 50, 110), (150, 30, 40), (40, 40, 44), (220, 220, 210), (60, 110, 60), (200, 150, 40), (110, 70, 130))
_SKIN = ((236, 190, 160), (198, 140, 100), (140, 90, 60), (90, 60, 40))
_HAIR = ((30, 24, 20), (80, 50, 30), (200, 170, 100), (20, 20, 20))


def _lights(m: ModelBuilder, part: int, attribute: str, z0: float, z1: float, lit_front=True) -> None:
    """Headlights on the front face (+x), tail lights on the back (-x): the heading is never ambiguous."""
    head = _HEAD_ON if attribute in ("vehicle.moving", "vehicle.stopped") else _HEAD_OFF
    tail = _TAIL.get(attribute, _TAIL["vehicle.parked"])
    if lit_front:
        m.decal(part, 0, 0.06, 0.24, z0, z1, head)
        m.decal(part, 0, 0.76, 0.94, z0, z1, head)
    m.decal(part, 1, 0.05, 0.2, z0, z1, tail)
    m.decal(part, 1, 0.8, 0.95, z0, z1, tail)
    if attribute == "vehicle.stopped":  # a third, central brake light, and hazard lights seen from the front
        m.decal(part, 1, 0.42, 0.58, z1 + 0.05, min(z1 + 0.15, 0.98), tail)
        _hazards(m, part, attribute, z0, z1)


def _hazards(m: ModelBuilder, part: int, attribute: str, z0: float, z1: float) -> None:
    """Amber hazard lights at the front corners: "stopped" differs from "moving" seen from the front too."""
    if attribute == "vehicle.stopped":
        m.decal(part, 0, 0.0, 0.05, z0, z1, _AMBER)
        m.decal(part, 0, 0.95, 1.0, z0, z1, _AMBER)


def _car(m, attr, rng):
    l, w, h = m.l, m.w, m.h
    paint = _CAR_PAINT[rng.integers(len(_CAR_PAINT))]
    wz = 0.2 * h
    for x0, x1 in ((0.22, 0.36), (-0.36, -0.22)):
        m.part(x0 * l, x1 * l, -0.47 * w, 0.47 * w, 0, wz, _DARK)
    body = m.part(-l / 2, l / 2, -w / 2, w / 2, wz, 0.57 * h, paint)
    # The greenhouse sits behind the bonnet: glass with pillars, then the roof.
    glass = m.part(-0.34 * l, 0.17 * l, -0.44 * w, 0.44 * w, 0.57 * h, 0.9 * h, _GLASS, faces={4: paint})
    for f in (2, 3):
        for u0, u1 in ((0.0, 0.07), (0.47, 0.53), (0.93, 1.0)):
            m.decal(glass, f, u0, u1, 0.0, 1.0, paint)
    for f in (0, 1):
        m.decal(glass, f, 0.0, 0.06, 0.0, 1.0, paint)
        m.decal(glass, f, 0.94, 1.0, 0.0, 1.0, paint)
    m.part(-0.32 * l, 0.12 * l, -0.42 * w, 0.42 * w, 0.9 * h, h, paint)
    _lights(m, body, attr, 0.55, 0.85)
    m.decal(body, 0, 0.32, 0.68, 0.2, 0.6, (40, 40, 44))  # grille
    m.decal(body, 1, 0.3, 0.7, 0.25, 0.5, (235, 235, 225))  # number plate


def _truck(m, attr, rng):
    l, w, h = m.l, m.w, m.h
    cab = _CAR_PAINT[rng.integers(len(_CAR_PAINT))]
    cargo = ((236, 236, 232), (190, 190, 186), (170, 120, 70), (60, 90, 140))[rng.integers(4)]
    for x0, x1 in ((0.32, 0.42), (-0.42, -0.32), (-0.28, -0.18)):
        m.part((x0 - 0.0) * l, x1 * l, -0.46 * w, 0.46 * w, 0, 0.13 * h, _DARK)
    m.part(-l / 2, l / 2, -0.44 * w, 0.44 * w, 0.13 * h, 0.22 * h, (60, 60, 62))
    c = m.part(0.24 * l, l / 2, -w / 2, w / 2, 0.22 * h, 0.82 * h, cab)
    m.decal(c, 0, 0.06, 0.94, 0.5, 0.9, _GLASS)
    m.decal(c, 2, 0.45, 0.92, 0.5, 0.88, _GLASS)
    m.decal(c, 3, 0.45, 0.92, 0.5, 0.88, _GLASS)
    m.decal(c, 0, 0.06, 0.22, 0.08, 0.22, _HEAD_ON if attr != "vehicle.parked" else _HEAD_OFF)
    m.decal(c, 0, 0.78, 0.94, 0.08, 0.22, _HEAD_ON if attr != "vehicle.parked" else _HEAD_OFF)
    _hazards(m, c, attr, 0.08, 0.22)
    box = m.part(-l / 2, 0.22 * l, -w / 2, w / 2, 0.22 * h, h, cargo)
    tail = _TAIL.get(attr, _TAIL["vehicle.parked"])
    m.decal(box, 1, 0.04, 0.16, 0.03, 0.12, tail)
    m.decal(box, 1, 0.84, 0.96, 0.03, 0.12, tail)
    m.decal(box, 1, 0.495, 0.505, 0.05, 0.95, (60, 60, 60))  # door seam


def _bus(m, attr, rng):
    l, w, h = m.l, m.w, m.h
    paint = ((200, 40, 40), (40, 90, 170), (240, 190, 30), (236, 236, 236), (40, 140, 90))[rng.integers(5)]
    for x0, x1 in ((0.28, 0.38), (-0.36, -0.26)):
        m.part(x0 * l, x1 * l, -0.47 * w, 0.47 * w, 0, 0.12 * h, _DARK)
    b = m.part(-l / 2, l / 2, -w / 2, w / 2, 0.12 * h, h, paint)
    for f in (2, 3):
        m.decal(b, f, 0.04, 0.93, 0.45, 0.85, _GLASS)
    m.decal(b, 0, 0.05, 0.95, 0.38, 0.9, _GLASS)
    m.decal(b, 0, 0.2, 0.8, 0.92, 0.98, (255, 150, 20))  # destination sign
    _lights(m, b, attr, 0.06, 0.16)
    m.decal(b, 1, 0.15, 0.85, 0.65, 0.88, _GLASS)


def _trailer(m, attr, rng):
    l, w, h = m.l, m.w, m.h
    paint = ((232, 232, 228), (180, 184, 190), (70, 90, 120), (170, 60, 40), (60, 110, 80))[rng.integers(5)]
    m.part(-0.46 * l, -0.26 * l, -0.46 * w, 0.46 * w, 0, 0.27 * h, _DARK)  # rear axles
    m.part(0.22 * l, 0.27 * l, -0.4 * w, 0.4 * w, 0, 0.27 * h, (110, 110, 110))  # landing legs
    b = m.part(-l / 2, l / 2, -w / 2, w / 2, 0.27 * h, h, paint)
    m.decal(b, 0, 0.1, 0.9, 0.04, 0.2, (50, 50, 54))  # front bulkhead plate: no headlights on a trailer
    m.decal(b, 0, 0.02, 0.1, 0.88, 0.97, (255, 170, 40))
    m.decal(b, 0, 0.9, 0.98, 0.88, 0.97, (255, 170, 40))
    stripe = _CAR_PAINT[rng.integers(len(_CAR_PAINT))]
    for f in (2, 3):
        m.decal(b, f, 0.03, 0.97, 0.38, 0.48, stripe)
    tail = _TAIL.get(attr, _TAIL["vehicle.parked"])
    m.decal(b, 1, 0.04, 0.16, 0.02, 0.09, tail)
    m.decal(b, 1, 0.84, 0.96, 0.02, 0.09, tail)
    m.decal(b, 1, 0.49, 0.51, 0.1, 0.95, (70, 70, 70))


def _construction(m, attr, rng):
    l, w, h = m.l, m.w, m.h
    paint = ((240, 180, 20), (235, 120, 20), (220, 200, 40))[rng.integers(3)]
    for y0, y1 in ((0.26, 0.5), (-0.5, -0.26)):
        m.part(-0.48 * l, 0.28 * l, y0 * w, y1 * w, 0, 0.2 * h, _DARK)  # tracks
    body = m.part(-0.48 * l, 0.28 * l, -0.5 * w, 0.5 * w, 0.2 * h, 0.5 * h, paint)
    cab = m.part(-0.12 * l, 0.24 * l, 0.0, 0.48 * w, 0.5 * h, h, paint)
    for f, u in ((0, (0.1, 0.9)), (2, (0.1, 0.9)), (3, (0.1, 0.9))):
        m.decal(cab, f, u[0], u[1], 0.3, 0.9, _GLASS)
    beacon = (255, 160, 0) if attr != "vehicle.parked" else (120, 90, 40)
    m.decal(cab, 4, 0.4, 0.6, 0.4, 0.6, beacon)
    eng = m.part(-0.48 * l, -0.16 * l, -0.5 * w, 0.5 * w, 0.5 * h, 0.72 * h, paint)
    for k in range(4):
        m.decal(eng, 1, k / 4 + 0.02, k / 4 + 0.12, 0.1, 0.9, (20, 20, 20))  # hazard stripes at the back
    m.part(0.3 * l, 0.4 * l, -0.1 * w, 0.1 * w, 0.28 * h, 0.85 * h, paint)  # boom
    m.part(0.4 * l, 0.5 * l, -0.42 * w, 0.42 * w, 0, 0.3 * h, (90, 90, 92))  # bucket
    m.decal(body, 0, 0.1, 0.3, 0.5, 0.8, _HEAD_ON if attr != "vehicle.parked" else _HEAD_OFF)
    m.decal(body, 0, 0.7, 0.9, 0.5, 0.8, _HEAD_ON if attr != "vehicle.parked" else _HEAD_OFF)
    _hazards(m, body, attr, 0.5, 0.8)


def _person(m, x_c, z0, height, rng, pose="standing", scale_w=1.0, vest=None):
    """A pedestrian or rider standing on z0 (metres), facing +x; the face is the head's front."""
    cloth, legs = _CLOTHES[rng.integers(len(_CLOTHES))], _CLOTHES[rng.integers(len(_CLOTHES))]
    skin, hair = _SKIN[rng.integers(len(_SKIN))], _HAIR[rng.integers(len(_HAIR))]
    hw = 0.2 * scale_w
    if pose == "walking":
        m.part(x_c + 0.05, x_c + 0.2, 0.01, 0.13 * scale_w, z0, z0 + 0.47 * height, legs)
        m.part(x_c - 0.2, x_c - 0.05, -0.13 * scale_w, -0.01, z0, z0 + 0.47 * height, legs)
    elif pose == "standing":
        m.part(x_c - 0.08, x_c + 0.08, -0.13 * scale_w, 0.13 * scale_w, z0, z0 + 0.47 * height, legs)
    torso = m.part(x_c - 0.12, x_c + 0.12, -hw, hw, z0 + 0.47 * height, z0 + 0.83 * height, vest or cloth)
    if vest is not None:
        m.decal(torso, 0, 0.1, 0.9, 0.5, 0.6, (230, 230, 230))
        m.decal(torso, 1, 0.1, 0.9, 0.5, 0.6, (230, 230, 230))
    head = m.part(x_c - 0.1, x_c + 0.1, -0.09, 0.09, z0 + 0.85 * height, z0 + height, hair)
    m.decal(head, 0, 0.1, 0.9, 0.0, 0.7, skin)


def _pedestrian(m, attr, rng, category=""):
    vest = (
        (250, 140, 20)
        if category.endswith("construction_worker")
        else ((30, 40, 90) if category.endswith("police_officer") else None)
    )
    if attr == "pedestrian.sitting_lying_down":
        h = m.h
        legs, cloth = _CLOTHES[rng.integers(len(_CLOTHES))], _CLOTHES[rng.integers(len(_CLOTHES))]
        m.part(0.16, 0.3, -0.15, 0.15, 0, 0.42, legs)  # shins
        m.part(-0.12, 0.3, -0.16, 0.16, 0.42, 0.56, legs)  # thighs, forward
        m.part(-0.32, -0.14, -0.3, 0.3, 0.0, 0.45, (110, 80, 50))  # the seat under the person
        m.part(-0.22, 0.04, -0.2, 0.2, 0.56, h - 0.2, vest or cloth)  # torso
        head = m.part(-0.18, 0.02, -0.09, 0.09, h - 0.18, h, _HAIR[rng.integers(len(_HAIR))])
        m.decal(head, 0, 0.1, 0.9, 0.0, 0.7, _SKIN[rng.integers(len(_SKIN))])
        return
    pose = "walking" if attr == "pedestrian.moving" else "standing"
    _person(m, 0.0, 0.0, m.h, rng, pose=pose, scale_w=m.w / 0.67, vest=vest)


def _cycle(m, attr, rng, motor: bool):
    l, w, h = m.l, m.w, m.h
    paint = ((30, 110, 60), (200, 40, 40), (40, 60, 150), (20, 20, 22), (220, 220, 225))[rng.integers(5)]
    r = 0.62 if motor else 0.66  # wheel diameter
    tw = 0.07 if motor else 0.025  # half tyre width
    m.part(-l / 2, -l / 2 + r, -tw, tw, 0, r, _DARK)
    m.part(l / 2 - r, l / 2, -tw, tw, 0, r, _DARK)
    bar_x = l / 2 - r
    frame_w = 0.17 if motor else 0.04
    m.part(-l / 2 + r, bar_x, -frame_w, frame_w, 0.25 if motor else 0.3, 0.85 if motor else 0.8, paint)
    bar = m.part(
        bar_x - 0.08,
        bar_x + 0.04,
        -w / 2,
        w / 2,
        r + 0.25 if motor else 0.82,
        r + 0.38 if motor else 0.95,
        (40, 40, 40),
    )
    m.decal(bar, 0, 0.38, 0.62, 0.0, 1.0, _HEAD_ON)
    if attr == "cycle.with_rider":
        seat_z = 0.85 if motor else 0.8
        # Legs on both sides of the frame, then torso and head above the seat.
        m.part(-0.2, 0.1, frame_w + 0.01, frame_w + 0.13, 0.3, seat_z, _CLOTHES[rng.integers(len(_CLOTHES))])
        m.part(-0.2, 0.1, -frame_w - 0.13, -frame_w - 0.01, 0.3, seat_z, _CLOTHES[rng.integers(len(_CLOTHES))])
        torso_top = seat_z + 0.62 * (h - seat_z)
        m.part(
            -0.25,
            0.05,
            -0.2,
            0.2,
            max(seat_z, 0.96 if not motor else 0.86),
            torso_top,
            _CLOTHES[rng.integers(len(_CLOTHES))],
        )
        head = m.part(
            -0.18, 0.04, -0.11, 0.11, torso_top + 0.02, h, (250, 250, 250) if motor else _HAIR[rng.integers(len(_HAIR))]
        )
        m.decal(head, 0, 0.1, 0.9, 0.1, 0.7, (30, 30, 40) if motor else _SKIN[rng.integers(len(_SKIN))])


def _cone(m, attr, rng):
    w, h = m.w, m.h
    orange = (250, 100, 20)
    m.part(-w / 2, w / 2, -w / 2, w / 2, 0, 0.06 * h, (50, 40, 36))
    mid = m.part(-0.3 * w, 0.3 * w, -0.3 * w, 0.3 * w, 0.06 * h, 0.55 * h, orange)
    top = m.part(-0.17 * w, 0.17 * w, -0.17 * w, 0.17 * w, 0.55 * h, h, orange)
    for f in range(4):
        m.decal(mid, f, 0.0, 1.0, 0.55, 0.85, (240, 240, 240))
        m.decal(top, f, 0.0, 1.0, 0.2, 0.5, (240, 240, 240))


def _barrier(m, attr, rng):
    l, w, h = m.l, m.w, m.h
    concrete = rng.random() < 0.5
    base_c = (170, 168, 160) if concrete else (235, 235, 235)
    m.part(-l / 2, l / 2, -w / 2, w / 2, 0, 0.3 * h, base_c)
    top = m.part(-0.28 * l, 0.28 * l, -w / 2, w / 2, 0.3 * h, h, base_c)
    if not concrete:
        for f in (0, 1):
            for k in range(0, 6, 2):
                m.decal(top, f, k / 6, (k + 1) / 6, 0.05, 0.95, (215, 30, 30))
    else:
        for f in (0, 1):
            m.decal(top, f, 0.0, 1.0, 0.75, 0.85, (250, 200, 40))


_BUILDERS = {
    "car": _car,
    "truck": _truck,
    "bus": _bus,
    "trailer": _trailer,
    "construction_vehicle": _construction,
    "bicycle": lambda m, a, r: _cycle(m, a, r, motor=False),
    "motorcycle": lambda m, a, r: _cycle(m, a, r, motor=True),
    "traffic_cone": _cone,
    "barrier": _barrier,
}


def build_model(cls: str, attribute: str, wlh, look: int, category: str = "") -> ObjectModel:
    """The model of one object; ``look`` seeds its colours so that an instance looks the same every frame."""
    m = ModelBuilder(wlh)
    rng = np.random.default_rng(look)
    if cls == "pedestrian":
        _pedestrian(m, attribute, rng, category)
    else:
        _BUILDERS[cls](m, attribute, rng)
    return m.build()
