"""AdvectionForecaster: an encoder-forecaster ConvLSTM that moves the last frame along a
learnt motion field, for precipitation nowcasting."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..checks import check_int, int_list
from ..nn.layer import ConvLSTMNd
from .encoder_forecaster import patchify, unpatchify
from .registry import register_model


def match_ranks(frames: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Probability matching: every frame of ``frames`` ``(B, T, C, H, W)`` takes the values
    of ``reference`` ``(B, C, H, W)``, given out by rank (the largest value where the frame
    is largest), so its distribution (rain area, intensities) is the reference's and its
    pattern its own."""
    b, t, c = frames.shape[:3]
    flat = frames.reshape(b, t, c, -1)
    values = reference.reshape(b, 1, c, -1).sort(dim=-1).values.expand(-1, t, -1, -1)
    out = torch.empty_like(flat)
    out.scatter_(-1, flat.argsort(dim=-1), values.to(flat.dtype))
    return out.reshape(frames.shape)


def optical_flow_motion(frames: torch.Tensor) -> torch.Tensor:
    """pysteps' Lucas-Kanade motion of ``(B, T, 1, H, W)`` frames, ``(B, 2, H, W)`` rows then
    columns in pixels per step (zero where nothing can be tracked); ``convlstm[radar]``."""
    from ..data.radar_files import pysteps_module

    lucaskanade = pysteps_module("motion.lucaskanade")
    fields = []
    for sample in frames[:, :, 0].detach().double().cpu().numpy():
        if not (sample > 0).any():
            fields.append(np.zeros((2, *sample.shape[1:])))
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            uv = lucaskanade.dense_lucaskanade(sample, verbose=False)
        fields.append(np.nan_to_num(uv[::-1]))  # pysteps gives x (columns) first
    return torch.from_numpy(np.stack(fields)).to(frames)


def sprog_forecast(
    frames: torch.Tensor, motion: torch.Tensor, steps: int, *, ar_order: int = 2,
    cascade_levels: int = 6,
) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """pysteps' S-PROG (Seed 2003) of ``(B, T, 1, H, W)`` frames along ``motion``
    ``(B, 2, H, W)`` (rows then columns, pixels per step), in the frames' own units with
    dry at 0, and not probability-matched: each scale of the cascade fades as its AR
    model says, so the forecast loses the detail that the inputs show is short-lived.
    ``convlstm[radar]``.

    Returns the forecast ``(B, steps, 1, H, W)`` and which samples have one ``(B,)``:
    S-PROG fits its AR model on the last ``ar_order + 1`` frames, so a sample with a dry
    frame among them, or frames too alike for the fit (rain that neither moves nor
    changes: a singular system), has none (its forecast is 0).
    """
    from .nowcasting_baselines import sprog_fields

    fields = frames[:, -ar_order - 1 :, 0].detach().double().cpu().numpy()
    velocities = motion.detach().double().cpu().numpy()[:, ::-1]  # pysteps: x (columns) first
    out = np.zeros((frames.shape[0], steps, *fields.shape[-2:]))
    valid = (fields > 0).any(axis=(2, 3)).all(axis=1)
    for i in np.flatnonzero(valid):
        # dry is exactly 0 and every wet value is above 0, so any tiny threshold
        # separates them
        forecast = sprog_fields(fields[i], velocities[i], steps, precip_thr=1e-6,
                                cascade_levels=cascade_levels, ar_order=ar_order,
                                probmatching=None)  # fmt: skip
        if forecast is None:
            valid[i] = False
            continue
        out[i] = np.clip(np.nan_to_num(forecast, nan=0.0), 0.0, None)
    return (torch.from_numpy(out).unsqueeze(2).to(frames),
            torch.from_numpy(valid).to(frames.device))  # fmt: skip


def warp(frames: torch.Tensor, displacement: torch.Tensor) -> torch.Tensor:
    """Backward semi-Lagrangian advection: ``out(p) = frames(p - displacement(p))``.

    Args:
        frames: ``(N, C, H, W)``.
        displacement: ``(N, 2, H, W)``, rows then columns, in pixels. Where the source
            point is outside the frame the result is 0.
    """
    n, _, h, w = frames.shape
    rows = torch.arange(h, dtype=frames.dtype, device=frames.device).view(1, h, 1)
    cols = torch.arange(w, dtype=frames.dtype, device=frames.device).view(1, 1, w)
    src_r = rows - displacement[:, 0]
    src_c = cols - displacement[:, 1]
    # grid_sample's [-1, 1] spans the outer edges of the corner pixels (align_corners=False)
    grid = torch.stack([(2 * src_c + 1) / w - 1, (2 * src_r + 1) / h - 1], dim=-1)
    return F.grid_sample(frames, grid, mode="bilinear", padding_mode="zeros",
                         align_corners=False)  # fmt: skip


def gaussian_blur(frames: torch.Tensor, sigma: float) -> torch.Tensor:
    """``frames`` ``(N, C, H, W)`` convolved with a Gaussian of ``sigma`` pixels (separable,
    truncated at 3 sigma); outside the frame counts as 0 (dry). ``sigma = 0`` returns
    ``frames``."""
    if sigma <= 0:
        return frames
    radius = max(1, int(3 * sigma + 0.5))
    t = torch.arange(-radius, radius + 1, dtype=frames.dtype, device=frames.device)
    kernel = torch.exp(-(t**2) / (2 * sigma**2))
    kernel = (kernel / kernel.sum()).view(1, 1, 1, -1)
    c = frames.shape[1]
    rows = F.conv2d(frames, kernel.expand(c, 1, 1, -1), padding=(0, radius), groups=c)
    return F.conv2d(rows, kernel.view(1, 1, -1, 1).expand(c, 1, -1, 1), padding=(radius, 0),
                    groups=c)  # fmt: skip


@register_model("advection-forecaster")
class AdvectionForecaster(nn.Module):
    """ConvLSTM encoder-forecaster with advection built in (for nowcasting).

    An encoder stack reads the ``input_frames`` frames; a forecaster stack of the same
    widths, started from the encoder's final states, runs ``output_frames`` steps. At
    forecast step ``k`` a 1x1 convolution over the forecaster's hidden states gives a
    motion ``v_k`` (pixels per step, rows and columns) and a source term ``s_k``; the
    forecast is the last input frame moved along the accumulated displacement
    ``D_k = v_1 + ... + v_k`` plus the source::

        y_k = warp(x_last, D_k) + s_k

    Moving the *observed* frame once per lead time, rather than the previous forecast
    step by step, keeps the bilinear interpolation from smoothing the field more at
    every step. Both heads start at zero, so an untrained model is persistence. The
    forecaster's input at step ``k`` is its previous forecast (the last input frame at
    ``k = 0``). Dry is 0 in the frames' units (e.g. ``log(1 + R)``), which is what
    enters from outside the frame.

    With ``motion_prior="optical_flow"`` the motion is pysteps' Lucas-Kanade field of the
    inputs plus the learnt ``v_k`` (a correction): the untrained model is then optical-flow
    extrapolation, and the ConvLSTMs learn what it misses (needs ``convlstm[radar]``; the
    flow is computed outside autograd, so such a model cannot be exported). With
    ``probability_matching`` every forecast frame takes, in evaluation, the values of the
    last input frame by rank (:func:`match_ranks`): the ConvLSTM places the rain, the
    observation gives its area and intensities, undoing the fading of forecasts trained
    on a mean error.

    With ``smoothing_scales`` (Gaussian widths in pixels, e.g. ``[0, 1, 2, 4, 8]``) the
    moved frame is a per-pixel mixture of itself blurred at each scale, with weights
    ``w_k`` from a third head (a softmax over the scales, started at 93 % unblurred)::

        y_k = sum_s w_{k,s} * blur_s(warp(x_last, D_k)) + s_k

    so the ConvLSTM learns how much detail stays predictable at each lead and place (the
    idea of S-PROG's scale-dependent smoothing, learnt): small features decorrelate within
    minutes, and a forecast that keeps them sharp places them wrong.

    With ``sprog_prior`` (needs the optical-flow prior and a smoothing head) the mixture
    has one more candidate: pysteps' S-PROG forecast of the inputs on the same motion
    (:func:`sprog_forecast`, unmatched), whose scales fade as fast as the inputs' own
    autocorrelation says. The fixed Gaussian widths fade the same everywhere; S-PROG's
    fading is measured on each forecast's inputs, so it carries over between events and
    radar networks, and the ConvLSTM learns where and at which lead to trust it over the
    moved frame. With ``smoothing_scales: [0]`` the forecast is, per pixel, a mix of
    optical-flow extrapolation and S-PROG::

        y_k = w_k * warp(x_last, D_k) + (1 - w_k) * sprog_k

    Shapes: ``x`` ``(B, input_frames, C, H, W)`` -> ``(B, output_frames, C, H, W)``; ``H``
    and ``W`` must be divisible by ``patch_size``.

    Args:
        in_channels: channels ``C`` of a frame. Default 1.
        hidden_channels: ConvLSTM widths per layer (both stacks). Default ``[64, 64]``.
        kernel_size: int or one per layer. Default 3.
        input_frames, output_frames: Defaults 4 and 12.
        patch_size: space-to-depth factor of the ConvLSTMs (their cells are ``p x p``
            pixels; the motion is interpolated bilinearly to every pixel). Default 4.
        max_speed: bound of the motion in pixels per step (``tanh``). Default 8.
        motion_prior: ``None`` or ``"optical_flow"``. Default ``None``.
        smoothing_scales: Gaussian widths in pixels (0 = unblurred) the forecast mixes
            per pixel, or ``None`` (no smoothing head). Default ``None``.
        sprog_prior: add S-PROG's forecast to the mixture (see above; the mixture
            starts evenly split between it and the unblurred moved frame). Default False.
        source_term: learn the source ``s_k`` (growth and decay). Without it the forecast
            is the observed frame moved and smoothed. Default True.
        probability_matching: match forecasts to the last input's values in evaluation.
            Default False.
        match_in_training: also match them in training, passing the gradient straight
            through the matching (Bengio et al. 2013), so that the loss is charged on the
            forecast that is evaluated. Trained on unmatched forecasts, a mean error
            rewards blurring whatever is uncertain; after matching, a blurred field hands
            the observed rain area to the cores of the largest systems instead. On the
            three radar events of ``docs/nowcasting.md`` it lowered CSI and FSS.
            Needs ``probability_matching``. Default False.
        layer_norm, checkpoint: passed to the ConvLSTM stacks.
    """

    def __init__(
        self,
        in_channels: int = 1,
        hidden_channels: int | Sequence[int] = (64, 64),
        kernel_size: int | Sequence[int] = 3,
        input_frames: int = 4,
        output_frames: int = 12,
        *,
        patch_size: int = 4,
        max_speed: float = 8.0,
        motion_prior: str | None = None,
        probability_matching: bool = False,
        smoothing_scales: Sequence[float] | None = None,
        sprog_prior: bool = False,
        source_term: bool = True,
        match_in_training: bool = False,
        layer_norm: bool = False,
        checkpoint: bool = False,
    ) -> None:
        super().__init__()
        self.in_channels = check_int("in_channels", in_channels)
        widths = int_list("hidden_channels", hidden_channels)
        kernels = int_list("kernel_size", kernel_size, len(widths))
        self.input_frames = check_int("input_frames", input_frames)
        self.output_frames = check_int("output_frames", output_frames)
        self.patch_size = check_int("patch_size", patch_size)
        if not max_speed > 0:
            raise ValueError(f"max_speed must be > 0 pixels per step, got {max_speed!r}")
        self.max_speed = float(max_speed)
        if motion_prior not in (None, "optical_flow"):
            raise ValueError(f"motion_prior must be None or 'optical_flow', got {motion_prior!r}")
        self.motion_prior, self.probability_matching = motion_prior, bool(probability_matching)
        if match_in_training and not probability_matching:
            raise ValueError("match_in_training needs probability_matching: true")
        self.match_in_training = bool(match_in_training)
        self.ndim = 2
        channels = in_channels * patch_size**2

        def stack() -> ConvLSTMNd:
            return ConvLSTMNd(channels, widths, kernels, ndim=2, layer_norm=layer_norm,
                              checkpoint=checkpoint, return_all_layers=True)  # fmt: skip

        self.encoder, self.forecaster = stack(), stack()
        self.motion_head = nn.Conv2d(sum(widths), 2, 1)
        # Without a source term the forecast only moves and smooths the observed frame.
        self.source_head = nn.Conv2d(sum(widths), channels, 1) if source_term else None
        for head in filter(None, (self.motion_head, self.source_head)):
            nn.init.zeros_(head.weight)
            nn.init.zeros_(head.bias)
        self.smoothing_scales = None if smoothing_scales is None else [
            float(s) for s in smoothing_scales]  # fmt: skip
        self.scale_head = None
        if self.smoothing_scales is not None:
            scales = self.smoothing_scales
            if not scales or any(not s >= 0 for s in scales) or scales[0] != 0:
                raise ValueError(
                    f"smoothing_scales must be widths >= 0 in pixels starting with 0 (the "
                    f"unblurred frame), got {smoothing_scales!r}"
                )
        self.sprog_prior = bool(sprog_prior)
        if self.sprog_prior and (motion_prior != "optical_flow" or smoothing_scales is None):
            raise ValueError(
                "sprog_prior needs motion_prior: optical_flow (S-PROG moves along its "
                "motion) and smoothing_scales (its mixture), e.g. [0]"
            )
        if self.sprog_prior and input_frames < 3:
            raise ValueError(f"sprog_prior needs input_frames >= 3 (S-PROG fits an AR(2) model "
                             f"on the last three), got {input_frames}")  # fmt: skip
        if self.smoothing_scales is not None:
            # at first e^4 / (e^4 + 4) = 93 % on the unblurred frame (of five scales);
            # with S-PROG as well, e^4 / (2 e^4 + 4) = 48 % on each of the two
            blurred = len(self.smoothing_scales) - 1
            bias = [4.0] + [0.0] * blurred + [4.0] * self.sprog_prior
            self.scale_head = nn.Conv2d(sum(widths), len(bias), 1)
            nn.init.zeros_(self.scale_head.weight)
            with torch.no_grad():
                self.scale_head.bias.copy_(torch.tensor(bias))

    def forward(
        self, x: torch.Tensor, target: torch.Tensor | None = None, *,
        return_motion: bool = False,
    ):  # fmt: skip
        """Forecast ``output_frames`` frames after ``x`` ``(B, input_frames, C, H, W)``;
        ``target`` is accepted (and ignored) like other forecasters'. With
        ``return_motion`` also return the displacements ``(B, output_frames, 2, H, W)``."""
        if x.dim() != 5 or x.shape[2] != self.in_channels or x.shape[1] != self.input_frames:
            raise ValueError(
                f"x must be (B, input_frames={self.input_frames}, C={self.in_channels}, H, W), "
                f"got {tuple(x.shape)}"
            )
        b, _, c, h, w = x.shape
        p = self.patch_size
        if h % p or w % p:
            raise ValueError(f"H and W ({h}, {w}) must be divisible by patch_size={p}")
        xs = patchify(x.flatten(0, 1), p, 2).unflatten(0, (b, -1))
        _, state = self.encoder(xs)
        last = x[:, -1]
        displacement = torch.zeros(b, 2, h, w, dtype=x.dtype, device=x.device)
        prior = optical_flow_motion(x) if self.motion_prior == "optical_flow" else None
        sprog = sprog_forecast(x, prior, self.output_frames) if self.sprog_prior else None
        frames, motions, inp = [], [], xs[:, -1]
        for _ in range(self.output_frames):
            outputs, state = self.forecaster(inp.unsqueeze(1), state)
            features = torch.cat([o[:, 0] for o in outputs], dim=1)
            speed = self.max_speed * torch.tanh(self.motion_head(features) / self.max_speed)
            velocity = F.interpolate(speed, size=(h, w), mode="bilinear", align_corners=False)
            if prior is not None:
                velocity = velocity + prior
            displacement = displacement + velocity
            moved = warp(last, displacement)
            candidate = None
            if sprog is not None:  # where S-PROG has no forecast, the moved frame instead
                forecast, valid = sprog
                k = len(frames)
                candidate = torch.where(valid.view(-1, 1, 1, 1), forecast[:, k], moved)
            frame = self._smooth(moved, features, candidate)
            if self.source_head is not None:
                frame = frame + unpatchify(self.source_head(features), p, 2)
            frames.append(frame)
            motions.append(displacement)
            inp = patchify(frame, p, 2)
        out = torch.stack(frames, dim=1)
        if self.probability_matching and not self.training:
            out = match_ranks(out, last)
        elif self.match_in_training and self.training:
            out = out + (match_ranks(out.detach(), last) - out).detach()  # straight through
        return (out, torch.stack(motions, dim=1)) if return_motion else out

    @property
    def not_exportable(self) -> str | None:
        """Why the model cannot be exported to ONNX or TorchScript, or ``None``."""
        if self.motion_prior == "optical_flow":
            return ("its optical-flow prior runs pysteps (NumPy/OpenCV) outside the graph; "
                    "train with motion_prior: null for an exportable nowcaster")  # fmt: skip
        return None

    def _smooth(self, moved: torch.Tensor, features: torch.Tensor,
                sprog: torch.Tensor | None = None) -> torch.Tensor:  # fmt: skip
        """The moved frame mixed over ``smoothing_scales`` (and S-PROG's frame, last) with
        the scale head's weights."""
        if self.scale_head is None:
            return moved
        weights = torch.softmax(self.scale_head(features), dim=1)
        weights = F.interpolate(weights, size=moved.shape[-2:], mode="bilinear",
                                align_corners=False)  # fmt: skip
        candidates = [gaussian_blur(moved, sigma) for sigma in self.smoothing_scales]
        if sprog is not None:
            candidates.append(sprog)
        return sum(weights[:, i : i + 1] * c for i, c in enumerate(candidates))
