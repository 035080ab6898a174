"""Data-loader throughput: images/s from the packed LMDB vs from the JPEG folder (NuscenesMonoFromImage).

Both read the same samples with the training transforms (Resize3D to 896x512, Pad, ToTensor) through a
DataLoader with 2 workers. Run: .venv/bin/python benchmarks/bench_loader.py (makes a synthetic set).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def _images_per_second(dataset, batch_size: int, num_workers: int, epochs: int) -> tuple[int, float]:
    """(images read, seconds) over ``epochs`` timed passes, after one untimed pass that starts the
    (persistent) workers and warms the page cache, as in the steady state of training."""
    from torch.utils.data import DataLoader

    from fcos3d.data.transforms import collate_fn

    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=True,
        num_workers=num_workers,
        collate_fn=collate_fn,
        persistent_workers=num_workers > 0,
    )
    for _ in loader:
        pass
    n = 0
    t0 = time.perf_counter()
    for _ in range(epochs):
        for batch in loader:
            n += batch["img"].shape[0]
    return n, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--data-root", type=Path, default=None, help="nuScenes root; default: write a synthetic set into a temp dir"
    )
    ap.add_argument("--version", default="v1.0-mini")
    ap.add_argument("--split", default="train")
    ap.add_argument("--scenes", type=int, default=None, help="synthetic scenes (default: the generator's)")
    ap.add_argument("--samples-per-scene", type=int, default=None)
    ap.add_argument("--image-size", default="800x450", help="synthetic image size WxH")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--num-workers", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=3, help="timed passes (after one warm-up pass)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    import cv2
    import torch

    # One OpenCV thread per process (the loader workers are the parallelism), set here before OpenCV
    # starts its thread pool: calling cv2.setNumThreads in a forked worker after the parent used the
    # pool deadlocks the worker (seen with opencv 4.11).
    cv2.setNumThreads(1)
    from fcos3d.data.dataset import NuscenesMonoDataset, NuscenesMonoFromImage
    from fcos3d.data.packer import pack_nuscenes
    from fcos3d.data.transforms import Pad, Resize3D, ToTensor

    torch.manual_seed(args.seed)
    with tempfile.TemporaryDirectory(prefix="bench_loader_") as tmp:
        root = args.data_root
        if root is None:
            from fcos3d.synth import write_synthetic_nuscenes

            w, h = (int(v) for v in args.image_size.split("x"))
            root = Path(tmp) / "nuscenes"
            write_synthetic_nuscenes(
                root,
                version=args.version,
                seed=args.seed,
                scenes=args.scenes,
                samples_per_scene=args.samples_per_scene,
                image_size=(w, h),
            )
        t0 = time.perf_counter()
        summary = pack_nuscenes(root, args.split, args.version, Path(tmp) / "lmdb", num_workers=args.num_workers)
        pack_s = time.perf_counter() - t0
        transforms = [Resize3D(img_scale=(896, 512)), Pad(size=(896, 512)), ToTensor()]
        sources = {
            "LMDB (NuscenesMonoDataset)": NuscenesMonoDataset(summary["path"], transforms=transforms),
            "JPEG folder (NuscenesMonoFromImage)": NuscenesMonoFromImage(
                root, args.version, args.split, transforms=transforms
            ),
        }
        rows = []
        for name, ds in sources.items():
            n, sec = _images_per_second(ds, args.batch_size, args.num_workers, args.epochs)
            rows.append((name, n, sec, n / sec))
        base = rows[1][3]
        img_h, img_w = sources["LMDB (NuscenesMonoDataset)"][0]["ori_shape"]
        print(
            f"split {args.split}: {summary['records']} images of {img_w}x{img_h}, packed in {pack_s:.1f} s "
            f"({summary['records'] / pack_s:.0f} images/s); batch {args.batch_size}, {args.num_workers} workers, "
            f"{args.epochs} timed epochs after 1 warm-up, Resize3D 896x512 + Pad + ToTensor"
        )
        print()
        print("| source | images | seconds | images/s | vs JPEG folder |")
        print("|---|---:|---:|---:|---:|")
        for name, n, sec, ips in rows:
            print(f"| {name} | {n} | {sec:.2f} | {ips:.0f} | {ips / base:.2f}x |")


if __name__ == "__main__":
    main()
