"""The synthetic camera renderer: sky, road and object models painted with OpenCV (near-plane clipping, back
faces culled, painter's order), plus each object's visible fraction. Conventions: fcos3d/boxes/geometry.py."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .models import ObjectModel

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
    "asphalt": (88, 88, 92),
    "parking": (76, 76, 80),
    "bike": (120, 70, 64),
    "sidewalk": (158, 154, 146),
    "zone": (128, 108, 84),
    "lot": (96, 96, 98),
    "yellow": (222, 184, 40),
    "white": (232, 232, 228),
}


@dataclass(frozen=True)
class CameraView:
    K: np.ndarray  # (3, 3) intrinsics at the image size
    world_to_cam: np.ndarray  # (4, 4) global -> camera
    size: tuple[int, int]  # (width, height)


# ----------------------------------------------------------------------------------------------
# Ground, sky and drawing.


def ground_polygons(to_global, bands, lines, s_lo: float, s_hi: float, step: float = 5.0):
    """Road quads (Q, 4, 3) in the global frame (z = 0) and their colours (Q, 3), bands before lines.

    ``bands`` and ``lines`` are world.Band / world.Line; ``to_global(s, d)`` maps arrays of arc length and
    lateral offset to global (x, y). Segment edges sit on a world-anchored grid, so the road texture moves
    consistently with the ego.
    """
    cells = [_band_cells(b, s_lo, s_hi, step) for b in bands] + [_line_cells(ln, s_lo, s_hi, step) for ln in lines]
    cells = [c for c in cells if c is not None]
    if not cells:
        return np.zeros((0, 4, 3)), np.zeros((0, 3))
    s, d = np.concatenate([c[0] for c in cells]), np.concatenate([c[1] for c in cells])
    xy = to_global(s.ravel(), d.ravel()).reshape(-1, 4, 2)
    quads = np.concatenate([xy, np.zeros(xy.shape[:2] + (1,))], axis=2)
    return quads, np.concatenate([c[2] for c in cells])


def _band_cells(b, s_lo: float, s_hi: float, step: float):
    """One band's grid cells inside [s_lo, s_hi] as (s (n, 4), d (n, 4), colours (n, 3)), or None."""
    lo, hi = max(s_lo, b.s0), min(s_hi, b.s1)
    if lo >= hi:
        return None
    k = np.arange(np.floor(lo / step), np.ceil(hi / step))
    s_a, s_b = np.clip(k * step, lo, hi), np.clip((k + 1) * step, lo, hi)
    keep = s_b > s_a
    # A fixed pseudo-random tone per grid cell: texture that stays put in the world.
    tone = 0.94 + 0.06 * np.abs(np.sin(k[keep] * 12.9898 + b.d0 * 78.233))
    return _cells(s_a[keep], s_b[keep], b.d0, b.d1, GROUND_COLOURS[b.kind], tone)


def _line_cells(ln, s_lo: float, s_hi: float, step: float):
    """One painted line's segments (its dashes, when dashed) inside [s_lo, s_hi], as _band_cells."""
    lo, hi = max(s_lo, ln.s0), min(s_hi, ln.s1)
    if lo >= hi:
        return None
    if ln.dash is None:
        k = np.arange(np.floor(lo / step), np.ceil(hi / step))
        s_a, s_b = np.clip(k * step, lo, hi), np.clip((k + 1) * step, lo, hi)
    else:
        on, period = ln.dash
        k = np.arange(np.floor(lo / period), np.ceil(hi / period))
        s_a, s_b = np.clip(k * period, lo, hi), np.clip(k * period + on, lo, hi)
    keep = s_b > s_a
    return _cells(
        s_a[keep], s_b[keep], ln.d - ln.width / 2, ln.d + ln.width / 2, GROUND_COLOURS[ln.kind], np.ones(keep.sum())
    )


def _cells(s_a, s_b, d0, d1, rgb, tone):
    n = len(s_a)
    return (
        np.stack([s_a, s_b, s_b, s_a], axis=1),
        np.tile([d0, d0, d1, d1], (n, 1)),
        np.asarray(rgb, dtype=np.float64)[None, :] * tone[:, None],
    )


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
    onscreen = (
        front & (px.max(axis=1) >= 0).all(axis=1) & (px.min(axis=1) <= np.array([W << SHIFT, H << SHIFT])).all(axis=1)
    )
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
    for i, j in model.part_pairs:
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
    K = np.asarray(view.K, dtype=np.float64)
    img = bg.copy()
    _paint_ground(img, K, view.world_to_cam, ground, view.size)
    prepared = _objects_in_view(K, view.world_to_cam, objects, view.size)
    if prepared:  # contact shadows first: objects sit on the ground
        fps = np.stack([p[2].footprint @ p[4][:3, :3].T + p[4][:3, 3] for p in prepared])
        _polygons(img, K, fps, [SHADOW] * len(fps), view.size)
    return img, _paint_objects(img, K, prepared, len(objects), sun, view.size)


def _paint_ground(img, K, world_to_cam, ground, size) -> None:
    """Road quads in front of the near plane, hazed with distance."""
    quads, cols = ground
    if not len(quads):
        return
    R, t = world_to_cam[:3, :3], world_to_cam[:3, 3]
    pc = (quads.reshape(-1, 3) @ R.T + t).reshape(-1, 4, 3)
    keep = pc[:, :, 2].max(axis=1) > NEAR
    pc, qcols = pc[keep], cols[keep]
    _polygons(img, K, pc, _fog(qcols, np.linalg.norm(pc.mean(axis=1), axis=1)), size)


def _objects_in_view(K, T, objects, size) -> list:
    """Objects that may reach the image, far to near by the distance from the camera to the nearest point
    of each box: [(dist, index, model, obj_to_world, obj_to_cam, camera position in the object frame)]."""
    if not objects:
        return []
    R, t = T[:3, :3], T[:3, 3]
    cam_world = -R.T @ t
    o2ws = np.stack([o[1] for o in objects])
    centres = o2ws[:, :3, 3] @ R.T + t
    radii = np.array([float(np.linalg.norm(o[0].half)) for o in objects])
    prepared = []
    for idx in np.nonzero(_in_frustum(K, centres, radii, size))[0]:
        model, o2w = objects[idx]
        cam_local = o2w[:3, :3].T @ (cam_world - o2w[:3, 3])
        dist = float(np.linalg.norm(cam_local - np.clip(cam_local, -model.half, model.half)))
        prepared.append((dist, int(idx), model, o2w, T @ o2w, cam_local))
    prepared.sort(key=lambda p: (-p[0], p[1]))
    return prepared


def _paint_objects(img, K, prepared, n_objects: int, sun, size) -> np.ndarray:
    """Paint the prepared objects far to near; returns each object's visible fraction (NaN: off-image).

    Each object's painted hull goes into a small id-buffer, so nearer objects overwrite what they hide.
    """
    W, H = size
    small = np.zeros((H // VIS_SCALE + 1, W // VIS_SCALE + 1), dtype=np.uint16)
    hull_area = np.zeros(n_objects)
    rect = np.array([[0, 0], [W, 0], [W, H], [0, H]], dtype=np.float32)
    for dist, idx, model, o2w, oc, cam_local in prepared:
        drawn = _draw_object(img, K, model, o2w, oc, cam_local, dist, sun, size)
        if drawn:
            pts = np.concatenate(drawn).astype(np.float32) / (1 << SHIFT)
            hull = cv2.convexHull(pts)
            area, _ = cv2.intersectConvexConvex(hull, rect)
            if area > 0:
                hull_area[idx] = area
                cv2.fillConvexPoly(small, np.round(hull[:, 0] / VIS_SCALE).astype(np.int32), int(idx + 1))
    counts = np.bincount(small.ravel(), minlength=n_objects + 1)[1:] * float(VIS_SCALE * VIS_SCALE)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(hull_area > 0, np.clip(counts / hull_area, 0, 1), np.nan)


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
    pts = np.concatenate(
        [model.face_pts.reshape(n_faces, 4, 3), model.decal_pts.reshape(-1, 4, 3)]
    )  # faces, then decals
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
