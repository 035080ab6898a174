"""The synthetic camera renderer: shaded part-built models of the ten classes on a road, painted with OpenCV.

Geometry is clipped at a near plane, back faces culled, parts and objects painted far to near; fronts and
attributes are made visible (lights, faces, riders, poses). Conventions: fcos3d/boxes/geometry.py.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

NEAR = 0.05  # metres: the near clipping plane
FOG_M = 250.0  # e-folding distance of the haze
SHIFT = 4  # fixed-point bits for cv2's sub-pixel polygon vertices
VIS_SCALE = 2  # the visibility id-buffer is this much smaller than the image

# Colours are RGB; the image is converted to BGR only for JPEG encoding.
SKY = np.array([118.0, 160.0, 215.0])
HAZE = np.array([196.0, 204.0, 210.0])
TERRAIN = np.array([104.0, 116.0, 84.0])
SHADOW = (38, 40, 36)
GROUND_COLOURS = {
    "asphalt": (88, 88, 92), "parking": (76, 76, 80), "bike": (120, 70, 64), "sidewalk": (158, 154, 146),
    "zone": (128, 108, 84), "lot": (96, 96, 98), "yellow": (222, 184, 40), "white": (232, 232, 228),
}

# Face f of an axis-aligned part: axis f // 2, outward sign + for even f; the in-plane axes follow.
_FACE_AXES = ((0, 1, 2), (0, 1, 2), (1, 0, 2), (1, 0, 2), (2, 0, 1), (2, 0, 1))


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


@dataclass(frozen=True)
class CameraView:
    K: np.ndarray  # (3, 3) intrinsics at the image size
    world_to_cam: np.ndarray  # (4, 4) global -> camera
    size: tuple[int, int]  # (width, height)


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
        self.footprint = np.array([[l2, w2, -self.half[2]], [l2, -w2, -self.half[2]], [-l2, -w2, -self.half[2]], [-l2, w2, -self.half[2]]])
        # Painter's order of the parts as a function of where the camera is (see _part_order).
        self._pairs = [(i, j) for i in range(P) for j in range(i + 1, P)]
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
            lo=lo, hi=hi, face_rgb=np.array(self.rgb),
            decal_pts=np.array(pts).reshape(-1, 4, 3), decal_face=np.array(pf, dtype=np.int64).reshape(-1, 2),
            decal_rgb=np.array(rgb, dtype=np.float64).reshape(-1, 3),
            half=np.array([self.l / 2, self.w / 2, self.h / 2]),
        )


# ----------------------------------------------------------------------------------------------
# Class models. Attributes are made visible: lit/unlit/brake lights for vehicles, riders on cycles,
# stride for walking pedestrians and a folded pose for sitting ones.

_CAR_PAINT = ((200, 30, 30), (30, 60, 160), (210, 210, 215), (235, 235, 235), (25, 25, 28), (120, 124, 130), (20, 100, 60), (150, 110, 60))
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
    vest = (250, 140, 20) if category.endswith("construction_worker") else (
        (30, 40, 90) if category.endswith("police_officer") else None)
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
    bar = m.part(bar_x - 0.08, bar_x + 0.04, -w / 2, w / 2, r + 0.25 if motor else 0.82, r + 0.38 if motor else 0.95, (40, 40, 40))
    m.decal(bar, 0, 0.38, 0.62, 0.0, 1.0, _HEAD_ON)
    if attr == "cycle.with_rider":
        seat_z = 0.85 if motor else 0.8
        # Legs on both sides of the frame, then torso and head above the seat.
        m.part(-0.2, 0.1, frame_w + 0.01, frame_w + 0.13, 0.3, seat_z, _CLOTHES[rng.integers(len(_CLOTHES))])
        m.part(-0.2, 0.1, -frame_w - 0.13, -frame_w - 0.01, 0.3, seat_z, _CLOTHES[rng.integers(len(_CLOTHES))])
        torso_top = seat_z + 0.62 * (h - seat_z)
        m.part(-0.25, 0.05, -0.2, 0.2, max(seat_z, 0.96 if not motor else 0.86), torso_top, _CLOTHES[rng.integers(len(_CLOTHES))])
        head = m.part(-0.18, 0.04, -0.11, 0.11, torso_top + 0.02, h, (250, 250, 250) if motor else _HAIR[rng.integers(len(_HAIR))])
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
    "car": _car, "truck": _truck, "bus": _bus, "trailer": _trailer, "construction_vehicle": _construction,
    "bicycle": lambda m, a, r: _cycle(m, a, r, motor=False), "motorcycle": lambda m, a, r: _cycle(m, a, r, motor=True),
    "traffic_cone": _cone, "barrier": _barrier,
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


# ----------------------------------------------------------------------------------------------
# Ground, sky and drawing.

def ground_polygons(to_global, bands, lines, s_lo: float, s_hi: float, step: float = 5.0):
    """Road quads (Q, 4, 3) in the global frame (z = 0) and their colours (Q, 3), bands before lines.

    ``to_global(s, d)`` maps arrays of arc length and lateral offset to global (x, y). Segment edges sit
    on a world-anchored grid, so the road texture moves consistently with the ego.
    """
    ss, dd, cols = [], [], []

    def add(s_a, s_b, d0, d1, rgb, tone):
        n = len(s_a)
        ss.append(np.stack([s_a, s_b, s_b, s_a], axis=1))
        dd.append(np.tile([d0, d0, d1, d1], (n, 1)))
        cols.append(np.asarray(rgb, dtype=np.float64)[None, :] * tone[:, None])

    for b in bands:
        lo, hi = max(s_lo, b.s0), min(s_hi, b.s1)
        if lo >= hi:
            continue
        k = np.arange(np.floor(lo / step), np.ceil(hi / step))
        s_a, s_b = np.clip(k * step, lo, hi), np.clip((k + 1) * step, lo, hi)
        keep = s_b > s_a
        # A fixed pseudo-random tone per grid cell: texture that stays put in the world.
        tone = 0.94 + 0.06 * np.abs(np.sin(k[keep] * 12.9898 + b.d0 * 78.233))
        add(s_a[keep], s_b[keep], b.d0, b.d1, GROUND_COLOURS[b.kind], tone)
    for ln in lines:
        lo, hi = max(s_lo, ln.s0), min(s_hi, ln.s1)
        if lo >= hi:
            continue
        if ln.dash is None:
            k = np.arange(np.floor(lo / step), np.ceil(hi / step))
            s_a, s_b = np.clip(k * step, lo, hi), np.clip((k + 1) * step, lo, hi)
        else:
            on, period = ln.dash
            k = np.arange(np.floor(lo / period), np.ceil(hi / period))
            s_a, s_b = np.clip(k * period, lo, hi), np.clip(k * period + on, lo, hi)
        keep = s_b > s_a
        add(s_a[keep], s_b[keep], ln.d - ln.width / 2, ln.d + ln.width / 2, GROUND_COLOURS[ln.kind], np.ones(keep.sum()))
    if not ss:
        return np.zeros((0, 4, 3)), np.zeros((0, 3))
    s, d = np.concatenate(ss), np.concatenate(dd)
    xy = to_global(s.ravel(), d.ravel()).reshape(-1, 4, 2)
    quads = np.concatenate([xy, np.zeros(xy.shape[:2] + (1,))], axis=2)
    return quads, np.concatenate(cols)


def background(K, cam_to_world, size) -> np.ndarray:
    """Sky above the horizon and hazy terrain below, row by row (the cameras have no roll)."""
    W, H = size
    v = np.arange(H) + 0.5
    rays = np.linalg.inv(K) @ np.stack([np.full(H, W / 2.0), v, np.ones(H)])  # (3, H)
    d = cam_to_world[:3, :3] @ rays
    dz = d[2] / np.linalg.norm(d, axis=0)
    height = cam_to_world[2, 3]
    with np.errstate(divide="ignore"):
        dist = np.where(dz < 0, height / np.maximum(-dz, 1e-9), np.inf)
    fog = 1.0 - np.exp(-dist / FOG_M)
    ground = TERRAIN[None] * (1 - fog[:, None]) + HAZE[None] * fog[:, None]
    t = np.clip(dz / 0.35, 0, 1)[:, None]
    sky = HAZE[None] * (1 - t) + SKY[None] * t
    rows = np.where((dz < 0)[:, None], ground, sky)
    return np.ascontiguousarray(np.broadcast_to(np.round(rows).astype(np.uint8)[:, None, :], (H, W, 3)))


def _clip_near(poly: np.ndarray) -> np.ndarray:
    """Sutherland-Hodgman clip of a camera-frame polygon (n, 3) to z >= NEAR."""
    out = []
    n = len(poly)
    for i in range(n):
        p, q = poly[i], poly[(i + 1) % n]
        pin, qin = p[2] >= NEAR, q[2] >= NEAR
        if pin:
            out.append(p)
        if pin != qin:
            t = (NEAR - p[2]) / (q[2] - p[2])
            out.append(p + t * (q - p))
    return np.array(out).reshape(-1, 3)


def _to_pixels(K, pts) -> np.ndarray:
    """Fixed-point pixel coordinates (..., 2) int32 for cv2 of camera-frame points (..., 3) in front of the camera."""
    uvw = pts @ K.T
    uv = uvw[..., :2] / uvw[..., 2:3]
    # Vertices close to the near plane land far off-screen: clamp them (still off-screen, no overflow).
    return np.round(np.clip(uv, -1e5, 1e5) * (1 << SHIFT)).astype(np.int32)


def _fill(img, K, pts_cam, rgb) -> np.ndarray | None:
    """Clip at the near plane, project and fill one convex polygon; returns its pixel vertices or None."""
    if pts_cam[:, 2].min() < NEAR:
        pts_cam = _clip_near(pts_cam)
        if len(pts_cam) < 3:
            return None
    px = _to_pixels(K, pts_cam)
    cv2.fillConvexPoly(img, px, rgb, cv2.LINE_AA, SHIFT)
    return px


def _fog(rgb, dist):
    """Blend colours (..., 3) towards the haze with distance (...,); returns int lists for cv2."""
    f = (1.0 - np.exp(-np.asarray(dist, dtype=np.float64) / FOG_M))[..., None]
    return np.round(np.clip(np.asarray(rgb) * (1 - f) + HAZE * f, 0, 255)).astype(np.int64).tolist()


def _project(K, pts, size):
    """Pixel vertices (N, k, 2) of polygons (N, k, 3), which are wholly in front of the near plane
    (front), and which of those reach the image (onscreen)."""
    W, H = size
    front = pts[:, :, 2].min(axis=1) >= NEAR
    px = _to_pixels(K, np.where(front[:, None, None], pts, 1.0))
    onscreen = front & (px.max(axis=1) >= 0).all(axis=1) & (px.min(axis=1) <= np.array([W << SHIFT, H << SHIFT])).all(axis=1)
    return px, front, onscreen


def _draw(img, K, i, pts, px, front, onscreen, colour, out) -> None:
    """Fill polygon i of a projected batch; polygons crossing the near plane are clipped first."""
    if onscreen[i]:
        cv2.fillConvexPoly(img, px[i], colour, cv2.LINE_AA, SHIFT)
        out.append(px[i])
    elif not front[i] and pts[i, :, 2].max() > NEAR:
        q = _fill(img, K, pts[i], colour)
        if q is not None:
            out.append(q)


def _polygons(img, K, pts, colours, size) -> list:
    """Fill polygons pts (N, k, 3) in the camera frame with colours (N lists); returns pixel vertices."""
    px, front, onscreen = _project(K, pts, size)
    out = []
    for i in np.nonzero(onscreen | ~front)[0]:
        _draw(img, K, i, pts, px, front, onscreen, colours[i], out)
    return out


def _in_frustum(K, centres, radii, size) -> np.ndarray:
    """(N,) bool: spheres (camera frame) that may reach the image (the four side planes and the near plane)."""
    W, H = size
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    normals = np.array([[fx, 0, cx], [-fx, 0, W - cx], [0, fy, cy], [0, -fy, H - cy]], dtype=np.float64)
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    inside = (centres @ normals.T >= -radii[:, None]).all(axis=1)
    return inside & (centres[:, 2] > NEAR - radii)


def _part_order(model: ObjectModel, cam_local: np.ndarray) -> list[int]:
    """Painter's order of a model's parts (depth order by centres fails for stacked parts).

    Two disjoint boxes separated by a plane: the one on the camera's side can never be hidden by the
    other, so it is drawn later. If several separating planes disagree, neither can hide the other and
    the pair is left free. Ties and any remaining cycle go far to near.
    """
    P = len(model.lo)
    later = [set() for _ in range(P)]  # later[i]: parts that must be drawn after i
    for i, j in model._pairs:
        orders = set()
        for a in range(3):
            if model.hi[i, a] <= model.lo[j, a] + 1e-9:  # j lies on the + side of i along axis a
                orders.add((i, j) if cam_local[a] > model.hi[i, a] else (j, i))
            elif model.hi[j, a] <= model.lo[i, a] + 1e-9:
                orders.add((j, i) if cam_local[a] > model.hi[j, a] else (i, j))
        if len(orders) == 1:
            first, last = orders.pop()
            later[first].add(last)
    indeg = [0] * P
    for i in range(P):
        for j in later[i]:
            indeg[j] += 1
    far = np.linalg.norm((model.lo + model.hi) / 2 - cam_local, axis=1)
    order, left = [], set(range(P))
    while left:
        ready = [i for i in left if indeg[i] == 0] or list(left)  # a cycle: break it far to near
        i = max(ready, key=lambda k: (far[k], -k))
        order.append(i)
        left.discard(i)
        for j in later[i]:
            indeg[j] -= 1
    return order


def render_view(view: CameraView, bg: np.ndarray, ground, objects, sun: np.ndarray):
    """Render one camera image (H, W, 3) uint8 RGB and the visible fraction of each object.

    ground: (quads (Q, 4, 3), colours (Q, 3)) from ground_polygons; objects: list of (ObjectModel,
    obj_to_world 4x4). Returns (image, visible) with visible (N,) in [0, 1], NaN where the object does
    not reach the image.
    """
    W, H = view.size
    K = np.asarray(view.K, dtype=np.float64)
    T = view.world_to_cam
    R, t = T[:3, :3], T[:3, 3]
    cam_world = -R.T @ t
    img = bg.copy()

    quads, cols = ground
    if len(quads):
        pc = (quads.reshape(-1, 3) @ R.T + t).reshape(-1, 4, 3)
        keep = pc[:, :, 2].max(axis=1) > NEAR
        pc, qcols = pc[keep], cols[keep]
        _polygons(img, K, pc, _fog(qcols, np.linalg.norm(pc.mean(axis=1), axis=1)), (W, H))

    # Objects in view, far to near by the distance from the camera to the nearest point of each box.
    prepared = []
    if objects:
        o2ws = np.stack([o[1] for o in objects])
        centres = o2ws[:, :3, 3] @ R.T + t
        radii = np.array([float(np.linalg.norm(o[0].half)) for o in objects])
        for idx in np.nonzero(_in_frustum(K, centres, radii, (W, H)))[0]:
            model, o2w = objects[idx]
            cam_local = o2w[:3, :3].T @ (cam_world - o2w[:3, 3])
            dist = float(np.linalg.norm(cam_local - np.clip(cam_local, -model.half, model.half)))
            prepared.append((dist, int(idx), model, o2w, T @ o2w, cam_local))
    prepared.sort(key=lambda p: (-p[0], p[1]))

    if prepared:  # contact shadows first: objects sit on the ground
        fps = np.stack([p[2].footprint @ p[4][:3, :3].T + p[4][:3, 3] for p in prepared])
        _polygons(img, K, fps, [SHADOW] * len(fps), (W, H))

    small = np.zeros((H // VIS_SCALE + 1, W // VIS_SCALE + 1), dtype=np.uint16)
    hull_area = np.zeros(len(objects))
    rect = np.array([[0, 0], [W, 0], [W, H], [0, H]], dtype=np.float32)
    for dist, idx, model, o2w, oc, cam_local in prepared:
        drawn = _draw_object(img, K, model, o2w, oc, cam_local, dist, sun, (W, H))
        if drawn:
            pts = np.concatenate(drawn).astype(np.float32) / (1 << SHIFT)
            hull = cv2.convexHull(pts)
            area, _ = cv2.intersectConvexConvex(hull, rect)
            if area > 0:
                hull_area[idx] = area
                cv2.fillConvexPoly(small, np.round(hull[:, 0] / VIS_SCALE).astype(np.int32), int(idx + 1))
    counts = np.bincount(small.ravel(), minlength=len(objects) + 1)[1:] * float(VIS_SCALE * VIS_SCALE)
    with np.errstate(divide="ignore", invalid="ignore"):
        visible = np.where(hull_area > 0, np.clip(counts / hull_area, 0, 1), np.nan)
    return img, visible


def _draw_object(img, K, model, o2w, oc, cam_local, dist, sun, size) -> list:
    """Paint one object's visible faces and decals, parts in painter's order; returns pixel vertices."""
    P = len(model.lo)
    vis = np.empty((P, 6), dtype=bool)  # front faces: the camera is outside the face's plane
    vis[:, 0::2] = cam_local[None, :] > model.hi
    vis[:, 1::2] = cam_local[None, :] < model.lo
    # Lambert shading of the six face directions under the sun, with sky light on the tops.
    ls = o2w[:3, :3].T @ sun
    shade = 0.52 + 0.48 * np.maximum(0.0, np.stack([ls, -ls], axis=1).ravel())
    shade[4] = min(1.12, shade[4] + 0.1)
    face_cols = _fog(model.face_rgb * shade[None, :, None], dist)
    Rc, tc = oc[:3, :3], oc[:3, 3]
    n_faces = P * 6
    pts = np.concatenate([model.face_pts.reshape(n_faces, 4, 3), model.decal_pts.reshape(-1, 4, 3)])  # faces, then decals
    pts = (pts.reshape(-1, 3) @ Rc.T + tc).reshape(-1, 4, 3)
    px, front, onscreen = _project(K, pts, size)
    if len(model.decal_pts):
        dshade = shade[model.decal_face[:, 1]]
        decal_cols = _fog(np.minimum(model.decal_rgb * (0.45 + 0.65 * dshade)[:, None], 255), dist)
    drawn = []
    for p in _part_order(model, cam_local):
        for f in np.nonzero(vis[p])[0].tolist():
            _draw(img, K, p * 6 + f, pts, px, front, onscreen, face_cols[p][f], drawn)
            for d in model.decals_on.get((p, f), ()):
                _draw(img, K, n_faces + d, pts, px, front, onscreen, decal_cols[d], [])
    return drawn


def encode_jpeg(img_rgb: np.ndarray, quality: int = 90) -> bytes:
    """JPEG bytes of an RGB image (deterministic for the same pixels)."""
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(img_rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("cv2.imencode failed to encode a JPEG")
    return buf.tobytes()
