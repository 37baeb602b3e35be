"""A small end-to-end example on generated data: ``python -m convlstm.demo``.

It trains a two-layer ConvLSTM to forecast the next frame of bouncing squares for
about a minute on a CPU, then compares its error with the naive forecast that
repeats the last frame. (The full demo, with reports, comes with the training CLI.)
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn

from .nn import ConvLSTM2d


def bouncing_squares(
    batch: int,
    steps: int,
    size: int = 32,
    square: int = 6,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """``(batch, steps, 1, size, size)`` frames of one square bouncing off the edges."""
    frames = torch.zeros(batch, steps, 1, size, size)
    free = size - square
    pos = torch.rand(batch, 2, generator=generator) * free
    vel = (torch.rand(batch, 2, generator=generator) * 2 - 1) * 2.5 + 0.5
    for t in range(steps):
        for b in range(batch):
            y, x = (round(v) for v in pos[b].tolist())
            frames[b, t, 0, y : y + square, x : x + square] = 1.0
        pos = pos + vel
        hit_low, hit_high = pos < 0, pos > free
        pos = torch.where(hit_low, -pos, torch.where(hit_high, 2 * free - pos, pos))
        vel = torch.where(hit_low | hit_high, -vel, vel)
    return frames


class NextFrame(nn.Module):
    """ConvLSTM stack and a 1x1 convolution predicting frame t+1 from frames <= t."""

    def __init__(self, hidden: int = 16) -> None:
        super().__init__()
        self.rnn = ConvLSTM2d(1, [hidden, hidden], kernel_size=5, num_layers=2)
        self.head = nn.Conv2d(hidden, 1, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x)
        b, t = out.shape[:2]
        return torch.sigmoid(self.head(out.flatten(0, 1))).reshape(b, t, 1, *x.shape[3:])


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="training time budget")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    torch.manual_seed(args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    test = bouncing_squares(64, 12, generator=torch.Generator().manual_seed(10_000 + args.seed))
    model = NextFrame()
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    start, step = time.perf_counter(), 0
    while time.perf_counter() - start < args.seconds:
        clips = bouncing_squares(16, 12, generator=generator)
        loss = nn.functional.binary_cross_entropy(model(clips[:, :-1]), clips[:, 1:])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        step += 1
        if step % 25 == 0:
            print(f"step {step:4d}  train BCE {loss.item():.4f}", flush=True)

    model.eval()
    with torch.no_grad():
        pred = model(test[:, :-1])[:, 2:]  # skip warm-up steps with too little motion history
        truth = test[:, 3:]
        mse = nn.functional.mse_loss(pred, truth).item()
        naive = nn.functional.mse_loss(test[:, 2:-1], truth).item()
    print(f"trained {step} steps in {time.perf_counter() - start:.0f} s")
    print(
        f"next-frame MSE: ConvLSTM {mse:.5f}  vs repeat-last-frame {naive:.5f} "
        f"({naive / max(mse, 1e-12):.1f}x lower error)"
    )
    return {"mse": mse, "naive_mse": naive, "steps": float(step)}


if __name__ == "__main__":
    main()
