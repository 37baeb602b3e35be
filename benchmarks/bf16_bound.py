"""How close a bfloat16-autocast training step can come to 2x float32 (issue 20, item 2).

A training step of the benchmarks (``worker.py``: forward, MSE against zeros on the
output cast to float32, backward, SGD) spends part of its time outside the layer: the
cast of the output to float32, the MSE and its gradient back to the output. That part
runs on output-sized tensors whatever the layer does, and is slower with autocast (the
cast and its gradient come on top). Measured here in one process, the two precisions
alternating step by step, the median of ``--rounds`` steps each:

- the whole step in float32 and in bfloat16 autocast;
- the part outside the layer alone, on an output-sized tensor of the layer's dtype;
- the layer's own speed-up (the step minus the part outside), and the step's speed-up if
  the layer ran exactly 2x faster in bfloat16, the hardware's ratio of the two peaks;
- the layer's speed-up a 2x step would need.

    python benchmarks/bf16_bound.py --workload W1
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from worker import make_input
from workloads import WORKLOADS


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workload", choices=sorted(WORKLOADS), default="W1")
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    import convlstm

    wl = WORKLOADS[args.workload]
    torch.manual_seed(0)
    layer = convlstm.ConvLSTM2d(
        wl.channels, wl.filters, wl.kernel, padding=wl.padding, bias=wl.bias,
        recurrent_activation=wl.recurrent_activation,
    )  # fmt: skip
    x = torch.from_numpy(make_input(wl))
    optimizer = torch.optim.SGD(layer.parameters(), lr=0.01)
    with torch.no_grad():
        target = torch.zeros(layer(x)[0].shape)  # as worker.py: zeros of the output's shape

    def step(bf16: bool) -> float:
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = layer(x)[0]
        F.mse_loss(out.float(), target).backward()
        optimizer.step()
        return time.perf_counter() - start

    def outside(bf16: bool) -> float:
        out = torch.randn(target.shape, dtype=torch.bfloat16 if bf16 else torch.float32)
        out.requires_grad_(True)
        start = time.perf_counter()
        F.mse_loss(out.float(), target).backward()
        return time.perf_counter() - start

    times: dict[tuple[str, bool], list[float]] = {}
    for bf16 in (False, True):  # warm-up
        step(bf16)
        step(bf16)
    for _ in range(args.rounds):
        for bf16 in (False, True):
            times.setdefault(("step", bf16), []).append(step(bf16))
            times.setdefault(("outside", bf16), []).append(outside(bf16))
    m = {key: statistics.median(values) for key, values in times.items()}
    step32, step16 = m["step", False], m["step", True]
    out32, out16 = m["outside", False], m["outside", True]
    layer32, layer16 = step32 - out32, step16 - out16
    print(f"{wl.name}: step float32 {step32:.3f} s, bfloat16 {step16:.3f} s "
          f"({step32 / step16:.2f}x); outside the layer {out32:.3f} / {out16:.3f} s; "
          f"the layer {layer32:.3f} / {layer16:.3f} s ({layer32 / layer16:.2f}x); "
          f"with the layer at 2x the step would be {step32 / (layer32 / 2 + out16):.2f}x; "
          f"a 2x step needs the layer at {layer32 / (step32 / 2 - out16):.2f}x")  # fmt: skip


if __name__ == "__main__":
    main()
