"""A short GPU benchmark (``make bench-gpu``): training and inference steps of the layers
on the benchmark suite's workload W2, reference against fast path, float32 and autocast.

    python tests/gpu/bench.py                 # CUDA; fails without it
    python tests/gpu/bench.py --device cpu    # the same table on the CPU (a dry run)

benchmarks/run.py times the CPU; it has no device option, so the GPU rows live here.
Prints one Markdown row per case: median milliseconds per iteration and the peak memory.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext

import torch

import convlstm.nn as layers
from convlstm.nn import get_fusion, set_fusion

# benchmarks/workloads.py's W2: B=8, T=10, 1x64x64 input, 64 filters, k=3, "same", sigmoid.
W2 = {"batch": 8, "steps": 10, "channels": 1, "size": 64, "filters": 64, "kernel": 3}
DTYPES = {"float32": None, "bf16-autocast": torch.bfloat16, "fp16-autocast": torch.float16}


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_it(step: Callable[[], None], device: torch.device, warmup: int, iters: int) -> float:
    """Median seconds of ``iters`` calls after ``warmup`` (compilation happens there)."""
    for _ in range(warmup):
        step()
    synchronize(device)
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        step()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def case(name: str, mode: str, fusion: str, dtype: str, device: torch.device, args) -> str:
    torch.manual_seed(0)
    layer = getattr(layers, name)(W2["channels"], W2["filters"], W2["kernel"]).to(device)
    shape = (W2["batch"], W2["steps"], W2["channels"], W2["size"], W2["size"])
    x = torch.randn(shape, device=device)
    autocast = DTYPES[dtype]
    context = nullcontext() if autocast is None else torch.autocast(device.type, autocast)

    def step() -> None:
        with context, torch.set_grad_enabled(mode == "train"):
            out = layer(x)[0]
        if mode == "train":
            out.float().square().mean().backward()

    set_fusion(fusion)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    seconds = time_it(step, device, args.warmup, args.iters)
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    memory = f"{peak:.0f}" if peak is not None else "-"
    return f"| {name} | {mode} | {fusion} | {dtype} | {seconds * 1e3:.1f} | {memory} |"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda", help="default: cuda")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--dtypes", default=",".join(DTYPES), help=f"of {list(DTYPES)}")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("bench-gpu: no CUDA device (torch.cuda.is_available() is False)", file=sys.stderr)
        return 1
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"torch {torch.__version__} on {where}; W2 = {W2}\n")
    print("| layer | mode | fusion | dtype | ms / iteration | peak MiB |")
    print("|---|---|---|---|---:|---:|")
    names = [n for n in ("ConvLSTM2d", "ConvGRU2d") if hasattr(layers, n)]
    saved = get_fusion()
    try:
        for name in names:
            for mode in ("train", "infer"):
                for dtype in args.dtypes.split(","):
                    for fusion in ("never", "auto"):
                        print(case(name, mode, fusion, dtype, device, args), flush=True)
    finally:
        set_fusion(saved)
    return 0


if __name__ == "__main__":
    sys.exit(main())
