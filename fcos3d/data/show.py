"""A picture of one packed record: GT 3D boxes drawn on the image, beside a bird's-eye view.

For people checking a packed LMDB (or, later, predictions): `fcos3d data show` writes it as a PNG.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..boxes.geometry import camera_box_corners, project_points
from ..boxes.image_box import BOX_EDGES, clip_segments_to_depth
from ..errors import Fcos3dError
from ..io import atomic_writer
from .classes import CLASSES

__all__ = ["show_record", "show_detections", "figure_size", "CLASS_COLORS"]

# One colour per class (matplotlib's tab10, in CLASSES order) so pictures of any stage look alike.
CLASS_COLORS = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
)
_MIN_HEIGHT = 540  # small images are drawn enlarged, so thin lines and labels stay readable
_DPI = 100
_FRONT_EDGES = (0, 1, 2, 3)  # indices into BOX_EDGES of the front face (corners 0-3)
_BOTTOM = (2, 3, 7, 6)  # corner indices of the bottom face (local z = -h/2), in polygon order


def figure_size(img_h: int, img_w: int) -> tuple[int, int]:
    """(width, height) in pixels of the PNG for an image of img_h x img_w: the image panel, scaled to
    at least _MIN_HEIGHT pixels high, then a square bird's-eye panel of the same height."""
    s = max(1.0, _MIN_HEIGHT / img_h)
    ph, pw = int(round(img_h * s)), int(round(img_w * s))
    return pw + ph, ph


def _draw_image_panel(ax, sample: dict, title: str) -> None:
    from matplotlib.collections import LineCollection

    img = sample["img"]  # (H, W, 3) uint8 RGB
    h, w = img.shape[:2]
    K = sample["cam_intrinsic"]
    anns = sample["anns"]
    ax.imshow(img, extent=(0, w, h, 0), interpolation="antialiased")
    ax.set_xlim(0, w)
    ax.set_ylim(h, 0)
    ax.set_axis_off()
    for i in range(len(anns["labels"])):
        color = CLASS_COLORS[int(anns["labels"][i])]
        corners = camera_box_corners(anns["centers3d"][i], anns["dims"][i], float(anns["rot_y"][i]))  # (8, 3)
        # Cut edges at the near plane so parts behind the camera are not projected through it (mirrored).
        q0, q1, keep = clip_segments_to_depth(corners[BOX_EDGES[:, 0]], corners[BOX_EDGES[:, 1]])
        uv0, _ = project_points(K, q0)
        uv1, _ = project_points(K, q1)
        segs = np.stack([uv0, uv1], axis=1)  # (12, 2, 2)
        front = np.zeros(len(BOX_EDGES), dtype=bool)
        front[list(_FRONT_EDGES)] = True
        ax.add_collection(LineCollection(segs[keep & ~front], colors=color, linewidths=1.2))
        ax.add_collection(LineCollection(segs[keep & front], colors=color, linewidths=2.4))
        # A cross on the front face marks the heading (only when the whole face is in front of the camera).
        if np.all(corners[:4, 2] > 0.1):
            uv, _ = project_points(K, corners[:4])
            ax.add_collection(LineCollection([uv[[0, 2]], uv[[1, 3]]], colors=color, linewidths=0.8))
        u, v = anns["centers2d"][i]
        ax.plot([u], [v], marker="o", markersize=3, color=color, zorder=4)  # above the labels (zorder 3)
        x1, y1 = anns["bboxes2d"][i][:2]
        text = CLASSES[int(anns["labels"][i])]
        if "scores" in anns:  # predictions carry their score
            text = f"{text} {float(anns['scores'][i]):.2f}"
        ax.text(
            x1,
            y1,
            text,
            color="white",
            fontsize=7,
            va="bottom",
            bbox={"facecolor": color, "edgecolor": "none", "pad": 1, "alpha": 0.8},
            clip_on=True,
        )
    ax.text(
        4,
        4,
        title,
        color="white",
        fontsize=9,
        va="top",
        ha="left",
        bbox={"facecolor": "black", "edgecolor": "none", "alpha": 0.6, "pad": 3},
    )


def _draw_bev_panel(ax, sample: dict) -> None:
    from matplotlib.patches import Circle, Polygon

    anns = sample["anns"]
    K = sample["cam_intrinsic"]
    w = sample["img"].shape[1]
    depth = float(np.max(anns["depths"])) if len(anns["depths"]) else 0.0
    r = float(np.clip(np.ceil(depth * 1.15 / 10.0) * 10.0, 20.0, 80.0))  # shown range, metres
    ax.set_facecolor("#f7f7f7")
    for ring in np.arange(10.0, r * 1.5, 10.0):
        ax.add_patch(Circle((0, 0), ring, fill=False, color="#bbbbbb", linewidth=0.8, zorder=0))
        ax.text(ring * 0.7071, ring * 0.7071, f"{ring:.0f} m", color="#888888", fontsize=7, zorder=0, clip_on=True)
    # The camera's field of view: the rays through the left and right image borders.
    for u in (0.0, float(w)):
        dx = (u - K[0, 2]) / K[0, 0]  # x / z of the ray
        ax.plot([0, dx * 2 * r], [0, 2 * r], color="#999999", linestyle="--", linewidth=0.8, zorder=0)
    ax.plot([0], [0], marker="^", markersize=9, color="black", zorder=3)
    seen = {}
    for i in range(len(anns["labels"])):
        label = int(anns["labels"][i])
        color = CLASS_COLORS[label]
        corners = camera_box_corners(anns["centers3d"][i], anns["dims"][i], float(anns["rot_y"][i]))  # (8, 3)
        foot = corners[list(_BOTTOM)][:, [0, 2]]  # (4, 2) x right, z forward
        patch = Polygon(foot, closed=True, facecolor=color, edgecolor=color, alpha=0.35, linewidth=1.2)
        ax.add_patch(patch)
        ax.add_patch(Polygon(foot, closed=True, fill=False, edgecolor=color, linewidth=1.2))
        c = anns["centers3d"][i][[0, 2]]
        f = corners[:4].mean(axis=0)[[0, 2]]  # centre of the front face: the heading
        ax.plot([c[0], f[0]], [c[1], f[1]], color=color, linewidth=1.6)
        seen.setdefault(label, patch)
    if seen:
        ax.legend(
            [seen[k] for k in sorted(seen)],
            [CLASSES[k] for k in sorted(seen)],
            loc="upper right",
            fontsize=7,
            framealpha=0.8,
        )
    ax.set_xlim(-r / 2, r / 2)
    ax.set_ylim(-0.05 * r, 0.95 * r)
    ax.set_aspect("equal")
    ax.tick_params(labelsize=7)
    ax.set_xlabel("x (m, right)", fontsize=8)
    ax.set_ylabel("z (m, forward)", fontsize=8)
    ax.set_title("bird's-eye view, camera frame", fontsize=9)


def show_record(data_path, index: int, save_path) -> Path:
    """Draw record ``index`` of the LMDB at ``data_path`` and save it as a PNG at ``save_path``.

    Left: the image with each GT box's 12 edges (class colour, front face bold with a cross, edges cut
    at the near plane), its projected centre and class. Right: the boxes' footprints seen from above
    in the camera frame (x right, z forward, camera at the origin) with heading lines, range rings and
    the field of view. Size: figure_size(). Written atomically (temp file + rename); returns the path.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from .dataset import NuscenesMonoDataset

    ds = NuscenesMonoDataset(data_path)
    if not 0 <= index < len(ds):
        raise Fcos3dError(
            f"--index {index} is out of range: {ds.data_path} holds {len(ds)} records (0 to {len(ds) - 1})"
        )
    sample = ds[index]
    h, w = sample["img"].shape[:2]
    out_w, out_h = figure_size(h, w)
    fig = Figure(figsize=(out_w / _DPI, out_h / _DPI), dpi=_DPI)
    FigureCanvasAgg(fig)
    panel_w = (out_w - out_h) / out_w
    title = (
        f"{sample['cam']}  sample {sample['sample_token'][:8]}  record {index}  {len(sample['anns']['labels'])} boxes"
    )
    _draw_image_panel(fig.add_axes((0.0, 0.0, panel_w, 1.0)), sample, title)
    bev_w = 1.0 - panel_w  # the square panel, with margins for the axis labels and title
    _draw_bev_panel(fig.add_axes((panel_w + 0.12 * bev_w, 0.08, 0.84 * bev_w, 0.86)), sample)

    return _save_png(fig, save_path)


def _save_png(fig, save_path) -> Path:
    """Write a figure as PNG atomically (temp file + rename); returns the absolute path."""
    save_path = Path(save_path).expanduser().absolute()
    with atomic_writer(save_path) as f:
        fig.savefig(f, format="png", dpi=_DPI)
    return save_path


def show_detections(img, cam_intrinsic, pred: dict, save_path, gt: dict | None = None, title: str = "") -> Path:
    """Predicted 3D boxes (class colours, scores) on the image beside a bird's-eye view; with ``gt``, a
    second row shows the ground truth the same way. Boxes are camera-frame dicts with the annotation
    fields labels, centers3d, dims, rot_y, centers2d, bboxes2d (and scores for predictions), in the
    pixel frame of ``img`` (H, W, 3) RGB. Written atomically; returns the path.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = [("prediction", pred)] + ([("ground truth", gt)] if gt is not None else [])
    h, w = img.shape[:2]
    row_w, row_h = figure_size(h, w)
    fig = Figure(figsize=(row_w / _DPI, row_h * len(rows) / _DPI), dpi=_DPI)
    FigureCanvasAgg(fig)
    panel_w = (row_w - row_h) / row_w
    bev_w = 1.0 - panel_w
    for r, (name, anns) in enumerate(rows):
        y0, hh = 1.0 - (r + 1) / len(rows), 1.0 / len(rows)
        sample = {"img": img, "cam_intrinsic": np.asarray(cam_intrinsic, dtype=np.float64), "anns": anns}
        _draw_image_panel(fig.add_axes((0.0, y0, panel_w, hh)), sample, f"{title}  {name}: {len(anns['labels'])} boxes")
        _draw_bev_panel(fig.add_axes((panel_w + 0.12 * bev_w, y0 + 0.08 * hh, 0.84 * bev_w, 0.86 * hh)), sample)
    return _save_png(fig, save_path)
