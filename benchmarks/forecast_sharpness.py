"""Which forecaster keeps MovingDigits' two digits sharp within the demo's step budget?

The study behind "Sharp digits at the demo's budget" in ``docs/forecasting.md``: each
forecaster trains ``--steps`` steps (batch 8, AdamW, one-cycle learning rate, gradient
clipped at 1) on fresh MovingDigits sequences, free running, and is scored on the fixed
test split (256 sequences): MSE per frame and per lead time (OpenSTL's sum over the
64x64 frame), SSIM per lead (``convlstm.losses.forecasting.ssim``: Gaussian window over
the valid region, so not the ``metrics.json`` SSIM of the tables there) and sharpness
per lead (the forecasts' gradient energy over the truths', as ``ForecastMetrics``
computes it: 1 as sharp as the truth, below 1 blurred).

Forecasters (``--model``), all on ConvLSTM stacks of ``--width`` channels over 4x4
patches:

* ``ef``: the package's ``EncoderForecaster`` with a clamp output (the bundled recipe
  without ``predict_inputs``).
* ``flow``: the last input frame moved along a learnt motion (backward warping, one
  bilinear interpolation per lead), the motion per 4x4 cell and interpolated, or per
  pixel (``--pixel-motion``).
* ``motion-flow``: ``flow`` whose ConvLSTMs also see ``motion-dna``'s cost volume.
* ``dna``: Finn et al. (2016)'s dynamic neural advection: every pixel a softmax-weighted
  sum of a ``--kernel`` square neighbourhood of the previous frame; ``--generate`` mixes
  in generated pixels through a learnt mask.
* ``motion-dna``: ``dna`` whose ConvLSTMs also see, per 4x4 cell, a softmax over how well
  each displacement of the kernel square matches a frame to the previous one (a cost
  volume, as optical-flow networks correlate frames); ``--pixels`` generates the frames
  with ``ef``'s head instead of moving pixels.
* ``cdna``: Finn et al.'s CDNA: ``--kernels`` kernels per step, each applied to the
  whole previous frame, composited per pixel with a black background.
* ``advection``: the package's ``AdvectionForecaster`` with pysteps' Lucas-Kanade motion
  as a prior and a learnt correction (``convlstm[radar]``); ``--steps 0`` scores the
  untrained model, i.e. optical-flow extrapolation.

``--hard`` (``dna``, ``motion-dna``) also scores the forecast that copies every pixel
from its likeliest tap instead of the softmax-weighted sum.

``--multiscale 1,4,8`` adds the MSE of 4x4 and 8x8 average-pooled frames to the loss,
which reaches further than a bilinear warp's one-pixel gradient. ``--gdl W`` adds
Mathieu et al.'s gradient difference (``convlstm.losses.gradient_difference``) with
weight ``W``, as the ``mse+gdl`` loss does.

    OMP_NUM_THREADS=1 python benchmarks/forecast_sharpness.py --model ef --tag ef
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from convlstm.data.moving_digits import MovingDigits
from convlstm.losses.forecasting import gradient_difference, ssim
from convlstm.models.advection_forecaster import AdvectionForecaster, warp
from convlstm.models.encoder_forecaster import EncoderForecaster, patchify, unpatchify
from convlstm.nn.layer import ConvLSTMNd

PATCH, FRAMES, MAX_SPEED = 4, 10, 8.0


def straight_through_clamp(frame: torch.Tensor, training: bool) -> torch.Tensor:
    if not training:
        return frame.clamp(0, 1)
    return frame + (frame.clamp(0, 1) - frame).detach()


class _Stacks(nn.Module):
    """An encoder and a forecaster ConvLSTM stack over patched frames, and the loop that
    feeds the forecaster its own previous frame; subclasses make each frame."""

    def __init__(self, width: int, channels: int = PATCH**2) -> None:
        super().__init__()
        widths = [width, width]

        def stack() -> ConvLSTMNd:
            return ConvLSTMNd(channels, widths, [3, 3], ndim=2, return_all_layers=True)

        self.encoder, self.forecaster = stack(), stack()
        self.features = sum(widths)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        before = torch.cat([x[:, :1], x[:, :-1]], 1)  # each input's previous frame
        xs = torch.stack([self.inputs(x[:, t], before[:, t]) for t in range(x.shape[1])], 1)
        _, state = self.encoder(xs)
        self.start(x)
        frames, inp, previous = [], xs[:, -1], x[:, -1]
        for _ in range(FRAMES):
            outputs, state = self.forecaster(inp.unsqueeze(1), state)
            features = torch.cat([o[:, 0] for o in outputs], 1)
            frame = self.frame(features, previous)
            frames.append(frame)
            inp = self.inputs(frame, previous)
            previous = frame
        return torch.stack(frames, 1)

    def inputs(self, frame: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
        """What the ConvLSTMs read of ``frame`` (``previous``: the frame before it)."""
        return patchify(frame, PATCH, 2)

    def start(self, x: torch.Tensor) -> None:
        """Called once per forecast with the inputs ``(B, T, 1, H, W)``."""

    def frame(self, features: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class Flow(_Stacks):
    """The last input frame warped along the accumulated learnt motion."""

    def __init__(self, width: int, pixel_motion: bool, channels: int = PATCH**2) -> None:
        super().__init__(width, channels)
        self.pixel_motion = pixel_motion
        self.motion = nn.Conv2d(self.features, 2 * (PATCH**2 if pixel_motion else 1), 1)
        nn.init.zeros_(self.motion.weight)
        nn.init.zeros_(self.motion.bias)

    def start(self, x: torch.Tensor) -> None:
        b, _, _, h, w = x.shape
        self.last = x[:, -1]
        self.displacement = torch.zeros(b, 2, h, w)

    def frame(self, features: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
        speed = MAX_SPEED * torch.tanh(self.motion(features) / MAX_SPEED)
        if self.pixel_motion:
            velocity = unpatchify(speed, PATCH, 2)
        else:
            velocity = F.interpolate(speed, size=self.last.shape[-2:], mode="bilinear",
                                     align_corners=False)  # fmt: skip
        self.displacement = self.displacement + velocity
        return straight_through_clamp(warp(self.last, self.displacement), self.training)


class DNA(_Stacks):
    """Every pixel a softmax-weighted sum of a K x K neighbourhood of the previous frame,
    optionally mixed with generated pixels."""

    def __init__(self, width: int, kernel: int, generate: bool, channels: int = PATCH**2) -> None:
        super().__init__(width, channels)
        self.kernel = kernel
        self.head = nn.Conv2d(self.features, kernel**2 * PATCH**2, 1)
        nn.init.zeros_(self.head.weight)
        with torch.no_grad():  # start as persistence: the centre tap weighted e^4
            bias = torch.zeros(kernel**2, PATCH**2)
            bias[kernel**2 // 2] = 4.0
            self.head.bias.copy_(bias.flatten())
        self.generate = nn.Conv2d(self.features, 2 * PATCH**2, 1) if generate else None
        self.hard = False

    def frame(self, features: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
        b, _, h, w = previous.shape
        k = self.kernel
        weights = torch.softmax(unpatchify(self.head(features), PATCH, 2), 1)
        if self.hard and not self.training:  # each pixel copied from its likeliest tap
            weights = F.one_hot(weights.argmax(1), k * k).movedim(-1, 1).to(weights.dtype)
        neighbours = F.unfold(previous, k, padding=k // 2).view(b, k * k, h, w)
        frame = (weights * neighbours).sum(1, keepdim=True)
        if self.generate is not None:
            generated = unpatchify(self.generate(features), PATCH, 2)
            mask = torch.sigmoid(generated[:, :1] + 4.0)
            frame = mask * frame + (1 - mask) * generated[:, 1:]
        return straight_through_clamp(frame, self.training)


class MotionDNA(DNA):
    """``DNA`` whose ConvLSTM stacks also see, per 4x4 cell, how well each displacement
    of a ``kernel`` square matches each frame to the previous one (a cost volume, as
    optical-flow networks correlate frames), as a softmax over the displacements."""

    def __init__(self, width: int, kernel: int, pixels: bool, temperature: float = 0.02) -> None:
        super().__init__(width, kernel, False, PATCH**2 + kernel**2)
        self.temperature = temperature  # a cell's mean squared difference, in [0, 1]
        # --pixels: the frame generated per cell (the ``ef`` head) instead of moved
        self.pixels = nn.Conv2d(self.features, PATCH**2, 1) if pixels else None

    def frame(self, features: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
        if self.pixels is None:
            return super().frame(features, previous)
        return straight_through_clamp(unpatchify(self.pixels(features), PATCH, 2), self.training)

    def cost(self, frame: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
        b, _, h, w = frame.shape
        k = self.kernel
        neighbours = F.unfold(previous, k, padding=k // 2).view(b, k * k, h, w)
        cost = F.avg_pool2d((frame - neighbours).square(), PATCH)
        return torch.softmax(-cost / self.temperature, 1)

    def inputs(self, frame: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
        return torch.cat([patchify(frame, PATCH, 2), self.cost(frame, previous)], 1)


class MotionFlow(Flow):
    """``Flow`` whose ConvLSTM stacks also see ``MotionDNA``'s cost volume."""

    def __init__(self, width: int, pixel_motion: bool, kernel: int) -> None:
        super().__init__(width, pixel_motion, PATCH**2 + kernel**2)
        self.kernel, self.temperature = kernel, 0.02

    cost = MotionDNA.cost
    inputs = MotionDNA.inputs


class CDNA(_Stacks):
    """N kernels per step, each moving the whole previous frame, composited per pixel
    (with a black background) by a softmax mask."""

    def __init__(self, width: int, kernel: int, kernels: int) -> None:
        super().__init__(width)
        self.kernel, self.kernels = kernel, kernels
        self.head = nn.Linear(self.features, kernels * kernel**2)
        nn.init.zeros_(self.head.weight)
        with torch.no_grad():  # near persistence, the kernels told apart by noise
            bias = torch.zeros(kernels, kernel**2)
            bias[:, kernel**2 // 2] = 2.0
            self.head.bias.copy_(bias.flatten() + 0.01 * torch.randn(kernels * kernel**2))
        self.mask = nn.Conv2d(self.features, (kernels + 1) * PATCH**2, 1)

    def frame(self, features: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
        b, _, h, w = previous.shape
        k, n = self.kernel, self.kernels
        logits = self.head(features.mean((2, 3))).view(b * n, k * k)
        kernels = torch.softmax(logits, 1).view(b * n, 1, k, k)
        moved = F.conv2d(previous.view(1, b, h, w), kernels.flip(-1, -2), padding=k // 2,
                         groups=b).view(b, n, h, w)  # fmt: skip
        masks = torch.softmax(unpatchify(self.mask(features), PATCH, 2), 1)
        return (masks[:, 1:] * moved).sum(1, keepdim=True)


def build(args: argparse.Namespace) -> nn.Module:
    if args.model == "ef":
        return EncoderForecaster(
            1, [args.width, args.width], 3, FRAMES, FRAMES, patch_size=PATCH,
            output_activation="clamp", predict_inputs=False, scheduled_sampling="free_running",
        )  # fmt: skip
    if args.model == "flow":
        return Flow(args.width, args.pixel_motion)
    if args.model == "motion-flow":
        return MotionFlow(args.width, args.pixel_motion, args.kernel)
    if args.model == "dna":
        return DNA(args.width, args.kernel, args.generate)
    if args.model == "motion-dna":
        return MotionDNA(args.width, args.kernel, args.pixels)
    if args.model == "cdna":
        return CDNA(args.width, args.kernel, args.kernels)
    return AdvectionForecaster(1, [args.width, args.width], 3, FRAMES, FRAMES,
                               patch_size=PATCH, motion_prior="optical_flow",
                               source_term=False)  # fmt: skip


def gradient_energy(frames: torch.Tensor) -> torch.Tensor:
    rows = (frames[..., 1:, :] - frames[..., :-1, :]).square().sum()
    return rows + (frames[..., 1:] - frames[..., :-1]).square().sum()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    models = ("ef", "flow", "motion-flow", "dna", "motion-dna", "cdna", "advection")
    p.add_argument("--model", choices=models, required=True)
    p.add_argument("--steps", type=int, default=1100, help="training steps (the demo's)")
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--width", type=int, default=32)
    p.add_argument("--pixel-motion", action="store_true", help="flow: a motion per pixel")
    p.add_argument("--kernel", type=int, default=9, help="dna, cdna: kernel side")
    p.add_argument("--generate", action="store_true", help="dna: mix in generated pixels")
    p.add_argument("--hard", action="store_true", help="dna: also score each pixel's likeliest tap")
    p.add_argument("--pixels", action="store_true", help="motion-dna: generate the frames")
    p.add_argument("--kernels", type=int, default=2, help="cdna: kernels per step")
    p.add_argument("--multiscale", default="1", help="pooling factors the loss compares at")
    p.add_argument("--gdl", type=float, default=0.0, help="weight of the gradient difference")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tag", required=True, help="name of the result files")
    p.add_argument("--out", type=Path, default=Path("results/forecast_sharpness"))
    args = p.parse_args()
    torch.manual_seed(args.seed)
    model = build(args)
    scales = [int(s) for s in args.multiscale.split(",")]

    def loss_fn(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        pred, target = pred.flatten(0, 1), target.flatten(0, 1)
        loss = sum(F.mse_loss(F.avg_pool2d(pred, s), F.avg_pool2d(target, s)) if s > 1
                   else F.mse_loss(pred, target) for s in scales)  # fmt: skip
        return loss + args.gdl * gradient_difference(pred, target) if args.gdl else loss

    train = MovingDigits("train", num_samples=2000)
    test = MovingDigits("test", num_samples=256)
    test_x = torch.stack([test[i][0] for i in range(len(test))])
    test_y = torch.stack([test[i][1] for i in range(len(test))])
    step, epoch, start = 0, 0, time.time()
    if args.steps:
        optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0)
        schedule = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=args.lr, total_steps=args.steps, pct_start=0.2
        )
    while step < args.steps:
        train.set_epoch(epoch)
        epoch += 1
        order = torch.randperm(len(train))
        for i in range(0, len(train) - 7, 8):
            batch = [train[int(j)] for j in order[i : i + 8]]
            x = torch.stack([b[0] for b in batch])
            y = torch.stack([b[1] for b in batch])
            model.train()
            loss = loss_fn(model(x, y) if args.model == "ef" else model(x), y)
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            step += 1
            if step % 100 == 0:
                print(step, f"loss {loss.item():.5f}", f"{time.time() - start:.0f} s", flush=True)
            if step >= args.steps:
                break
    model.eval()
    args.out.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), args.out / f"{args.tag}.pt")
    seconds = time.time() - start
    for hard in (False, True) if args.hard else (False,):
        model.hard = hard
        with torch.no_grad():
            preds = torch.cat([model(test_x[i : i + 32]) for i in range(0, len(test), 32)])
        preds = preds.clamp(0, 1)
        tag = args.tag + ("_hard" if hard else "")
        mse = ((preds - test_y) ** 2).sum((-1, -2, -3)).mean(0)
        leads = range(FRAMES)
        result = {
            "tag": tag, "args": vars(args) | {"out": str(args.out)},
            "seconds": seconds, "steps": step,
            "mse": float(mse.mean()),
            "sharpness": float(gradient_energy(preds) / gradient_energy(test_y)),
            "mse_per_lead": [round(float(v), 1) for v in mse],
            "ssim_per_lead": [round(float(ssim(preds[:, k], test_y[:, k])), 3) for k in leads],
            "sharpness_per_lead": [
                round(float(gradient_energy(preds[:, k]) / gradient_energy(test_y[:, k])), 2)
                for k in leads
            ],
        }  # fmt: skip
        print(json.dumps(result), flush=True)
        (args.out / f"{tag}.json").write_text(json.dumps(result, indent=1))
        np.save(args.out / f"{tag}_forecasts.npy", preds[:4].numpy())  # for a strip


if __name__ == "__main__":
    main()
