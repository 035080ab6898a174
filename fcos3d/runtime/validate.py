"""align_bpu: the board's raw outputs equal the integer simulator's bit for bit, over a split's original JPEGs.

Board (local or TVM RPC) and simulator run each original camera JPEG prepared the on-board way; every element is
compared, then the BOARD's outputs are decoded and scored (NDS/mAP). Torch-free; returns data, prints nothing.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from fcos3d.boxes.decode import group_outputs
from fcos3d.errors import Fcos3dError
from fcos3d.io import atomic_write_json, json_plain

__all__ = [
    "REPORT_FILE",
    "align_bpu",
    "camera_images",
    "collector_intrinsics",
    "complete_samples",
    "dequantize",
    "model_strides",
]

REPORT_FILE = "align_report.json"


def camera_images(dataroot, version: str, split: str = "val", limit: int | None = None) -> tuple[dict, list[dict]]:
    """(split meta for DetectionCollector, the split's camera-image infos): the packer's order, first ``limit``."""
    from fcos3d.data.devkit import check_images_exist, load_nuscenes, split_image_infos, split_meta, split_scenes

    if limit is not None and limit < 1:
        raise Fcos3dError(f"limit={limit}: validate at least one image (or no limit)")
    nusc = load_nuscenes(dataroot, version, split)
    devkit_split, scenes = split_scenes(nusc, version, split)
    infos = split_image_infos(nusc, scenes)
    meta = split_meta(version, split, devkit_split, dataroot, len(infos))
    infos = infos[:limit] if limit is not None else infos
    check_images_exist(dataroot, infos, split)
    return meta, infos


def complete_samples(infos: Sequence[Mapping]) -> list[str]:
    """The sample tokens of camera-image infos (split_image_infos' order, maybe cut short) that hold every camera
    of their sample: the samples a board that ran only these images can be scored on."""
    from fcos3d.data.classes import CAMERAS

    count = Counter(info["sample_token"] for info in infos)
    return [t for t, n in count.items() if n == len(CAMERAS)]


def _limited_metrics(whole: dict, infos: Sequence[Mapping], meta: Mapping) -> tuple[dict, dict]:
    """(the board's metrics on the samples the first images cover completely, the scope): the devkit's whole-split
    numbers would count every sample past the limit as one with nothing detected. Both kept in the report; the
    whole split's also in metrics.json."""
    from fcos3d.eval.nuscenes_metric import evaluate_on_samples

    tokens = complete_samples(infos)
    headline = ("NDS", "mAP", "mATE", "mASE", "mAOE", "mAVE", "mAAE")
    if tokens:
        board = whole["result_file"]
        scored = evaluate_on_samples({"board": board}, meta["dataroot"], meta["version"], meta["devkit_split"], tokens)
        metrics = scored["board"]
    else:
        metrics = {k: None for k in headline} | {"num_samples": 0, "num_pred_boxes": 0}
    metrics |= {"result_file": whole["result_file"], "split_metrics": {k: whole.get(k) for k in headline}}
    scope = {"images": len(infos), "split_images": meta["count"], "sample_tokens": tokens}
    return metrics, scope


def model_strides(onnx_path, output_names: Sequence[str]) -> tuple[int, ...]:
    """The head's strides: the exported ONNX's ``strides`` metadata, else the ``_s<stride>`` suffixes of the outputs."""
    import onnx

    props = {p.key: p.value for p in onnx.load(str(onnx_path), load_external_data=False).metadata_props}
    if "strides" in props:
        return tuple(int(s) for s in json.loads(props["strides"]))
    found = [int(m.group(1)) for n in output_names if (m := re.search(r"_s(\d+)$", n))]
    strides = tuple(dict.fromkeys(found))  # first-seen order, unique
    if not strides:
        raise Fcos3dError(
            f"{onnx_path}: no 'strides' metadata and no '_s<stride>' output names; export it with "
            "`fcos3d export` (fcos3d.quant.export.export_qdq_onnx)"
        )
    return strides


def dequantize(raw: Mapping[str, np.ndarray], outputs: Sequence[Mapping]) -> list[np.ndarray]:
    """Raw int outputs of one image -> float32 (C, H, W) per output in meta.json's order: ``int * scales[c]``.

    The product is taken in float64 with meta.json's scales (float64, which JSON keeps exactly), as IntInferModel
    does, then stored as float32, as predict_split hands every stage's outputs to the collector (``.float()``):
    so the board's detections are the int_infer stage's, value for value.
    """
    flat = []
    for spec in outputs:
        a = np.asarray(raw[spec["name"]])
        if a.ndim != 4 or a.shape[0] != 1:
            raise ValueError(f"output {spec['name']!r}: decode one (1, C, H, W) image at a time, got {a.shape}")
        s = np.asarray(spec["scales"], dtype=np.float64).reshape(-1, 1, 1)  # (C or 1, 1, 1)
        flat.append((a[0].astype(np.float64) * s).astype(np.float32))  # (C, H, W)
    return flat


def collector_intrinsics(cam_intrinsic) -> np.ndarray:
    """The (3, 3) intrinsics as the training pipeline's collate gives them to predict_split: float32 values."""
    return np.asarray(cam_intrinsic, dtype=np.float32)


def align_bpu(
    artifact_dir,
    onnx_path,
    dataroot,
    version: str,
    split: str = "val",
    device: str | None = None,
    limit: int | None = None,
    out_dir=None,
    progress: Callable[[int, int], None] | None = None,
    post=None,
    keep_ratio: bool = True,
    rpc_timeout: float | None = None,
) -> dict:
    """Run board and simulator on every camera image of ``split`` (the first ``limit``); compare; score the board.

    Steps, per image: JPEG bytes from the dataroot -> ``prepare_jpeg`` (the artifact's input size) -> board run
    and simulator run -> ``compare_outputs`` (accumulated per output) -> the board's ints dequantised -> grouped
    per head and level -> ``DetectionCollector`` with the prepared (scaled) intrinsics. Then the nuScenes metric.

    Returns ``{"images", "mismatches", "equal", "outputs": [{name, mismatches, total, max_abs_diff, problem,
    first: {image, file_name, index, board, sim} | None}], "metrics", "device", "artifact", "onnx"}`` and writes it
    to ``out_dir/align_report.json`` (atomically; the metric's results_nusc.json and metrics.json beside it).
    With a ``limit`` short of the split, "metrics" scores the board on the samples whose every camera image is among
    the first ``limit`` (none when ``limit`` < 6; ``split_metrics`` inside it: the devkit on the whole split) and
    ``scope`` says which ({images, split_images, sample_tokens}); without one, ``scope`` is None.
    An output the two sides cannot compare element-wise (``problem``) counts all its elements as mismatches.
    ``post``: a fcos3d.boxes.postprocess.PostProcess (default settings when None). ``rpc_timeout``: seconds the
    board may take per RPC call (execute.DEFAULT_RPC_TIMEOUT when None).
    """
    from fcos3d.eval.collect import DetectionCollector

    from .align import compare_outputs
    from .execute import DEFAULT_RPC_TIMEOUT, load_artifact
    from .preprocess import input_size_from_meta, prepare_jpeg
    from .reference.simulator import Simulator

    if out_dir is None:
        raise Fcos3dError("align_bpu needs out_dir: the folder for align_report.json and the metric's files")
    onnx_path, out_dir, root = Path(onnx_path), Path(out_dir), Path(dataroot)
    if not onnx_path.is_file():
        raise Fcos3dError(f"{onnx_path}: no such ONNX file; export it with `fcos3d export --config C`")
    timeout = DEFAULT_RPC_TIMEOUT if rpc_timeout is None else rpc_timeout
    artifact = load_artifact(artifact_dir, device=device, onnx_path=onnx_path, timeout=timeout)
    sim = Simulator(onnx_path)
    names = artifact.output_names
    strides = model_strides(onnx_path, names)
    size = input_size_from_meta(artifact.meta)  # (W, H)
    meta_of_split, infos = camera_images(root, version, split, limit)
    collector = DetectionCollector(meta_of_split, strides, post)

    stats = {
        n: {"name": n, "mismatches": 0, "total": 0, "max_abs_diff": 0, "problem": None, "first": None}
        for n in sim.output_names
    }
    for i, info in enumerate(infos):
        prepared = prepare_jpeg((root / info["file_name"]).read_bytes(), info["cam_intrinsic"], size, keep_ratio)
        board, want = artifact.run(prepared.x), sim.run(prepared.x)
        for o in compare_outputs(board, want).outputs:
            st = stats.setdefault(
                o.name, {"name": o.name, "mismatches": 0, "total": 0, "max_abs_diff": 0, "problem": None, "first": None}
            )
            st["total"] += o.total
            if o.problem is not None:
                st["mismatches"] += o.total
                st["problem"] = st["problem"] or f"image {i}: {o.problem}"
                continue
            st["mismatches"] += o.mismatches
            st["max_abs_diff"] = max(st["max_abs_diff"], o.max_abs_diff)
            if o.mismatches and st["first"] is None:
                st["first"] = {
                    "image": i,
                    "file_name": info["file_name"],
                    "index": list(o.first_index),
                    "board": o.board_value,
                    "sim": o.sim_value,
                }
        if all(n in board for n in names):  # the board's accuracy, from its own integers
            raw = group_outputs(dequantize(board, artifact.meta["outputs"]), strides)
            K = collector_intrinsics(prepared.cam_intrinsic)
            collector.add_image(raw, K, info["cam2ego"], info["ego2global"], info["sample_token"])
        if progress:
            progress(i + 1, len(infos))

    metrics = collector.evaluate(out_dir)
    scope = None
    if limit is not None and len(infos) < meta_of_split["count"]:
        metrics, scope = _limited_metrics(metrics, infos, meta_of_split)
    outputs = list(stats.values())
    mismatches = sum(s["mismatches"] for s in outputs)
    report = {
        "images": len(infos),
        "mismatches": mismatches,
        "equal": mismatches == 0,
        "outputs": outputs,
        "metrics": metrics,
        "device": artifact.device,
        # what computed the board's integers, said wherever shown: a TOSA artifact runs on the reference model
        "device_label": getattr(artifact, "label", None) or artifact.device,
        "board": artifact.meta["board"],
        "artifact": str(Path(artifact_dir)),
        "onnx": str(onnx_path),
        "split": split,
        # with --limit: the images seen and the samples whose every camera is among them (what "metrics" scores)
        "scope": scope,
        "version": version,
        "dataroot": str(root),
    }
    report = json_plain(report)
    atomic_write_json(out_dir / REPORT_FILE, report, indent=2, allow_nan=False)
    return report
