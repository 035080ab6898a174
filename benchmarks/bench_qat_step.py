"""Cost of the integer-exact fake quant: one QAT training step (forward + backward) and one eval forward, with
the exact integer simulation (fcos3d/quant/qat.py) against the former float simulation (float conv with the
float bias, then torch's fake quant), on the synthetic config's model (random weights, calibrated on noise).

    .venv/bin/python benchmarks/bench_qat_step.py [--device cpu|cuda] [--batch 2] [--steps 3]

Prints the fastest step of each (seconds) and their ratio (exact / float), and how far the QAT model's raw
outputs on the device are from the int model's (CPU), in accumulator steps (float32 rounding only: < 1).
"""

from __future__ import annotations

import argparse
import copy
import time
from contextlib import contextmanager

import torch
import torch.nn.functional as F


def build(device: str, batch: int):
    from fcos3d.quant.convert import Float2Calibration, Float2QAT
    from fcos3d.trainer.config import build as build_cfg
    from fcos3d.trainer.config import load_config

    cfg = load_config("configs/fcos3d_efficientnetb0_synthetic.py", {})
    torch.manual_seed(0)
    model = build_cfg(cfg["model"], "model").eval()
    w, h = cfg["input_size"]
    img = (torch.rand(batch, 3, h, w) * 2 - 1).mul(128).round().div(128)
    q = Float2Calibration()(model)
    q.train()
    with torch.no_grad():
        q(img)
    return Float2QAT()(q).to(device), img.to(device)


@contextmanager
def float_simulation():
    """The fake quant as it was before the exact simulation: float conv + float bias + fake_quantize."""
    from fcos3d.quant import qat

    def fq(x, s):
        zero = torch.zeros((), dtype=torch.int32, device=x.device)
        return torch.fake_quantize_per_tensor_affine(x, s.float().reshape(()), zero, -128, 127)

    def conv_forward(self, x):
        if self._observe_now():
            self.weight_observer(self.weight.detach())
        w = self.quantized_weight() if self.fake_quant else self.weight
        y = self._act(F.conv2d(x, w, self.bias, self.stride, self.padding, 1, self.groups))
        if self.act_observer is not None:
            if self._observe_now():
                self.act_observer(y)
            if self.fake_quant:
                y = fq(y, self.act_observer.scale())
        return y

    def add_forward(self, a, b):
        y = a + b
        if self._observe_now():
            self.act_observer(y)
        return fq(y, self.act_observer.scale()) if self.fake_quant else y

    saved = qat.QConv2d.forward, qat.QAdd.forward
    qat.QConv2d.forward, qat.QAdd.forward = conv_forward, add_forward
    try:
        yield
    finally:
        qat.QConv2d.forward, qat.QAdd.forward = saved


def timed(fn, steps: int, device: str) -> float:
    """The fastest of ``steps`` runs after a warm-up (the minimum: the machine may be shared)."""
    fn()  # warm-up (links the sources, cudnn autotune)
    best = float("inf")
    for _ in range(steps):
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--steps", type=int, default=3)
    args = ap.parse_args()
    model, img = build(args.device, args.batch)
    opt = torch.optim.SGD(model.parameters(), lr=1e-6)

    def train_step():
        model.train()
        opt.zero_grad(set_to_none=True)
        out = model(img)
        sum(o.float().pow(2).mean() for o in out).backward()
        opt.step()

    @torch.no_grad()
    def eval_step():
        model.eval()
        model(img)

    rows = []
    for what, fn in (("train step", train_step), ("eval forward", eval_step)):
        exact = timed(fn, args.steps, args.device)
        with float_simulation():
            flt = timed(fn, args.steps, args.device)
        rows.append((what, flt, min(exact, timed(fn, args.steps, args.device))))  # exact, float, exact again
    from fcos3d.quant.intmodel import IntInferModel, QAT2Quantize

    model.eval()
    with torch.no_grad():
        got = model(img)
    int_model = QAT2Quantize((1, *img.shape[1:]))(copy.deepcopy(model).cpu())
    ref = int_model(IntInferModel.quantize_input(img.cpu()))
    scales = [torch.from_numpy(int_model.output_scales[n]).reshape(1, -1, 1, 1) for n in int_model.output_names]
    worst = max(float((g.double().cpu() / s - r).abs().max()) for g, r, s in zip(got, ref, scales))
    print(f"QAT ({args.device}) vs int model (cpu), raw outputs: max {worst:.4f} accumulator steps")
    print(f"device {args.device}, batch {args.batch}, input {tuple(img.shape[1:])}, {args.steps} steps each")
    print(f"{'':14s} {'float sim s':>12s} {'exact sim s':>12s} {'ratio':>7s}")
    for what, flt, exact in rows:
        print(f"{what:14s} {flt:12.3f} {exact:12.3f} {exact / flt:7.2f}")


if __name__ == "__main__":
    main()
