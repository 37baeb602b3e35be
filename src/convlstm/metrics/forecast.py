"""Frame-forecasting metrics: OpenSTL-style MSE/MAE, SSIM, PSNR and nowcasting skill scores.

Per-frame errors and SSIMs are kept as ``(N, T_out)`` ``cat`` states, the nowcasting
contingency counts as ``sum`` states and the per-lead counts and fractions-skill-score sums
as ``cat`` states of per-update partial sums, so under DDP torchmetrics combines all ranks
before :meth:`ForecastMetrics.compute` and the numbers equal those of one process on the
whole set.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.functional.image import structural_similarity_index_measure
from torchmetrics.utilities import dim_zero_cat


def _ratio(num: float, den: float) -> float:
    """``num / den`` with the undefined ``x / 0`` case returned as ``nan``."""
    return num / den if den else math.nan


def _contingency(pred: Tensor, target: Tensor, threshold: float) -> Tensor:
    """``[hits, misses, false alarms]`` (int64) where an event is ``value >= threshold``."""
    p, t = pred >= threshold, target >= threshold
    return torch.stack([(p & t).sum(), (~p & t).sum(), (p & ~t).sum()])


def _skill(hits: int, misses: int, false_alarms: int) -> dict[str, float]:
    return {
        "csi": _ratio(hits, hits + misses + false_alarms),
        "pod": _ratio(hits, hits + misses),
        "far": _ratio(false_alarms, hits + false_alarms),
    }


def nowcast_scores(pred: Tensor, target: Tensor, threshold: float) -> dict[str, float]:
    """Critical success index, probability of detection and false-alarm ratio at a threshold.

    Args:
        pred, target: tensors of the same (any) shape, e.g. rain rates in mm/h.
        threshold: an event is ``value >= threshold``.

    Returns:
        ``{"hits", "misses", "false_alarms", "csi", "pod", "far"}`` with
        CSI = H / (H + M + F), POD = H / (H + M), FAR = F / (H + F). A ratio whose
        denominator is zero (no event in either tensor for CSI, none observed for POD,
        none forecast for FAR) is ``nan``: the score is undefined, not perfect or zero.
    """
    if pred.shape != target.shape:
        raise ValueError(
            f"pred and target must have the same shape, got pred {tuple(pred.shape)} "
            f"and target {tuple(target.shape)}"
        )
    hits, misses, false_alarms = _contingency(pred, target, float(threshold)).tolist()
    return {
        "hits": hits,
        "misses": misses,
        "false_alarms": false_alarms,
        **_skill(hits, misses, false_alarms),
    }


def _box_fractions(events: Tensor, scale: int) -> Tensor:
    """Fraction of events in the ``scale x scale`` box around each pixel of ``(N, H, W)``,
    counting outside the frame as no event (scipy's ``uniform_filter(mode="constant")``,
    as pysteps' FSS)."""
    if scale == 1:
        return events
    before, after = scale // 2, scale - 1 - scale // 2
    # box sums from an integral image: the cost does not grow with the scale
    padded = F.pad(events, (before + 1, after, before + 1, after))
    total = padded.cumsum(-1).cumsum(-2)
    box = (total[:, scale:, scale:] - total[:, :-scale, scale:]
           - total[:, scale:, :-scale] + total[:, :-scale, :-scale])  # fmt: skip
    return box / scale**2


def _fss_sums(pred: Tensor, target: Tensor, threshold: float, scale: int) -> Tensor:
    """``[sum (Pf - Po)^2, sum Pf^2 + Po^2]`` per lead, ``(T_out, 2)`` float32, over the
    frames of ``(B, T_out, C, H, W)`` (channels as separate frames)."""
    b, t = pred.shape[:2]
    # float32 box sums of 0/1 events are exact integers (below 2^24 per frame)
    fp = _box_fractions((pred >= threshold).float().flatten(0, -3), scale)
    fo = _box_fractions((target >= threshold).float().flatten(0, -3), scale)
    # float32 on the device (MPS has no float64); compute() widens after the move to CPU
    fp, fo = fp.reshape(b, t, -1), fo.reshape(b, t, -1)
    num = (fp - fo).square().sum(dim=(0, 2))
    den = (fp.square() + fo.square()).sum(dim=(0, 2))
    return torch.stack([num, den], dim=-1)


def _check_scale(scale: Any) -> int:
    if isinstance(scale, bool) or not isinstance(scale, int) or scale < 1:
        raise ValueError(f"FSS scale must be an int >= 1 (pixels), got {scale!r}")
    return scale


def fractions_skill_score(pred: Tensor, target: Tensor, threshold: float, scale: int) -> float:
    """Fractions skill score (Roberts and Lean 2008) of ``pred`` against ``target``.

    Events are ``value >= threshold``; their fractions in ``scale x scale`` boxes are
    compared over every frame of ``(B, T, C, H, W)`` (or ``(T, H, W)``, ``(H, W)``) tensors:
    ``FSS = 1 - sum (Pf - Po)^2 / sum (Pf^2 + Po^2)``, 1 for a perfect forecast, ``nan``
    when neither has an event.
    """
    if pred.shape != target.shape:
        raise ValueError(
            f"pred and target must have the same shape, got pred {tuple(pred.shape)} "
            f"and target {tuple(target.shape)}"
        )
    scale = _check_scale(scale)
    while pred.dim() < 5:
        pred, target = pred.unsqueeze(0), target.unsqueeze(0)
    num, den = _fss_sums(pred.float(), target.float(), float(threshold), scale).sum(0).tolist()
    return 1.0 - num / den if den else math.nan


def _gradient_energy(frames: Tensor) -> Tensor:
    """Squared differences of neighbouring pixels along rows and columns, summed per
    frame: ``(B, T, C, H, W)`` -> ``(B, T)``."""
    rows = (frames[..., 1:, :] - frames[..., :-1, :]).square().sum(dim=(2, 3, 4))
    return rows + (frames[..., 1:] - frames[..., :-1]).square().sum(dim=(2, 3, 4))


class ForecastMetrics(Metric):
    """MSE, MAE, SSIM, PSNR, sharpness, per-lead-time curves and CSI/POD/FAR over a
    forecast set.

    Args:
        data_range: value range of the frames (``max - min``), used by SSIM and PSNR.
        thresholds: event thresholds for nowcasting scores (e.g. rain rates in mm/h).
        fss_scales: box sizes in pixels of the fractions skill score at each threshold.

    ``update(pred, target)`` takes ``(B, T_out, C, H, W)`` tensors of the same shape.

    ``compute()`` returns python floats and lists (``N`` sequences of ``T_out`` frames):
        * ``mse``, ``mae``: OpenSTL's convention, the per-frame SUM of squared / absolute
          errors over ``C*H*W``, averaged over the ``N*T_out`` frames.
        * ``mse_per_pixel``, ``mae_per_pixel``: plain means over every value
          (``mse == mse_per_pixel * C*H*W``).
        * ``ssim``: mean SSIM of the ``N*T_out`` frames taken as ``C``-channel images
          (torchmetrics' SSIM: 11x11 Gaussian window, sigma 1.5; frames smaller than 11
          pixels use a uniform window of the largest odd size that fits, at least 3).
        * ``psnr``: mean per-frame PSNR ``10*log10(data_range**2 / frame_mse)``; a frame's
          MSE is floored at ``1e-10 * data_range**2`` so perfect frames count 100 dB, not inf.
        * ``mse_per_lead``, ``mae_per_lead`` (per-frame sums, as ``mse``/``mae``) and
          ``ssim_per_lead``: lists of length ``T_out``, lead time 1 first.
        * for each threshold ``thr`` (key suffix ``str(float(thr))``, e.g. ``csi@0.5``):
          ``csi@thr``, ``pod@thr``, ``far@thr`` from hits/misses/false alarms summed over
          the whole set (see :func:`nowcast_scores`; ``0/0`` is ``nan``), and
          ``csi@thr_per_lead``, ``pod@thr_per_lead``, ``far@thr_per_lead`` per lead time.
        * for each threshold and FSS scale ``s``: ``fss@thr_spx`` (e.g. ``fss@1.0_5px``)
          over the set and ``fss@thr_spx_per_lead`` (see :func:`fractions_skill_score`).
        * ``mae_per_pixel_per_lead``: the mean absolute error per value at each lead.
        * ``sharpness`` and ``sharpness_per_lead``: the forecasts' gradient energy (squared
          differences of neighbouring pixels along rows and columns, summed) over the
          truths': 1 as sharp as the truth, below 1 blurred (a forecast that hedges
          between places spreads its contrast), above 1 noisier. A low MSE and a
          sharpness near 1 together mean the detail is there and in the right place;
          ``nan`` where the truth is uniform.
        * with ``last_input`` given to every ``update``: ``baseline_mse_zero`` and
          ``baseline_mse_persistence``, the ``mse`` of two trivial forecasts (all-zero
          frames, and the last input frame repeated), to judge ``mse`` against.
        * ``num_sequences``.
    """

    is_differentiable = False
    higher_is_better = None
    full_state_update = False

    def __init__(
        self,
        data_range: float = 1.0,
        thresholds: Sequence[float] | None = None,
        fss_scales: Sequence[int] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not data_range > 0:
            raise ValueError(f"data_range must be > 0, got {data_range}")
        self.data_range = float(data_range)
        self.thresholds = [float(t) for t in (thresholds or [])]
        self.fss_scales = [_check_scale(s) for s in (fss_scales or [])]
        if self.fss_scales and not self.thresholds:
            raise ValueError("fss_scales needs thresholds: the FSS is computed at each of them")
        # per update: (1, thresholds, T_out, 3) counts and (1, thresholds, scales, T_out, 2)
        self.add_state("lead_contingency", default=[], dist_reduce_fx="cat")
        self.add_state("lead_fss", default=[], dist_reduce_fx="cat")
        for name in ("frame_se", "frame_ae", "frame_ssim", "frame_psnr", "zero_se", "last_se",
                     "frame_energy"):  # fmt: skip
            self.add_state(name, default=[], dist_reduce_fx="cat")
        self.add_state("pixels", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        counts = torch.zeros(len(self.thresholds), 3, dtype=torch.long)
        self.add_state("contingency", default=counts, dist_reduce_fx="sum")

    def update(self, pred: Tensor, target: Tensor, last_input: Tensor | None = None) -> None:
        """Add a batch of forecasts ``pred`` and truths ``target``, both ``(B, T_out, C, H, W)``;
        ``last_input`` ``(B, C, H, W)``, the last observed frame, adds the baselines."""
        if pred.dim() != 5 or pred.shape != target.shape:
            raise ValueError(
                "pred and target must both have shape (B, T_out, C, H, W), got pred "
                f"{tuple(pred.shape)} and target {tuple(target.shape)}"
            )
        if last_input is not None:
            expected = (target.shape[0], *target.shape[2:])
            if tuple(last_input.shape) != expected:
                raise ValueError(
                    f"last_input must have shape {expected} (B, C, H, W), "
                    f"got {tuple(last_input.shape)}"
                )
            truth = target.detach().float()
            self.zero_se.append(truth.square().sum(dim=(2, 3, 4)))
            last = last_input.detach().float().unsqueeze(1)
            self.last_se.append((last - truth).square().sum(dim=(2, 3, 4)))
        if self.frame_se and self.frame_se[0].shape[1] != pred.shape[1]:
            raise ValueError(
                f"T_out changed between updates: first {self.frame_se[0].shape[1]}, "
                f"now {pred.shape[1]} (pred {tuple(pred.shape)})"
            )
        pred, target = pred.detach().float(), target.detach().float()
        diff = pred - target
        # Per-frame sums stay float32 on the device (MPS has no float64); compute() adds
        # them up in float64 on the CPU.
        frame_se = diff.square().sum(dim=(2, 3, 4))
        self.frame_se.append(frame_se)
        self.frame_ae.append(diff.abs().sum(dim=(2, 3, 4)))
        self.frame_ssim.append(self._ssim(pred, target))
        energies = [_gradient_energy(pred), _gradient_energy(target)]
        self.frame_energy.append(torch.stack(energies, dim=-1))
        range2 = self.data_range**2
        frame_mse = (frame_se / diff[0, 0].numel()).clamp_min(1e-10 * range2)
        self.frame_psnr.append(10 * torch.log10(range2 / frame_mse))
        self.pixels += diff.numel()
        for i, thr in enumerate(self.thresholds):
            self.contingency[i] += _contingency(pred, target, thr)
        if self.thresholds:
            per_lead = [
                torch.stack([_contingency(pred[:, k], target[:, k], thr)
                             for k in range(pred.shape[1])])
                for thr in self.thresholds
            ]  # fmt: skip
            self.lead_contingency.append(torch.stack(per_lead)[None])
        if self.fss_scales:
            sums = [[_fss_sums(pred, target, thr, s) for s in self.fss_scales]
                    for thr in self.thresholds]  # fmt: skip
            self.lead_fss.append(torch.stack([torch.stack(row) for row in sums])[None])

    def _ssim(self, pred: Tensor, target: Tensor) -> Tensor:
        """SSIM per frame, ``(B, T_out)``: Gaussian window (sigma 1.5, 11x11) or, for frames
        smaller than 11 pixels, a uniform window of the largest odd size that fits."""
        b, t, c, h, w = pred.shape
        side = min(h, w)
        if side < 3:
            raise ValueError(f"SSIM needs frames of at least 3x3 pixels, got H={h}, W={w}")
        window = {"gaussian_kernel": True}
        if side < 11:
            window = {"gaussian_kernel": False, "kernel_size": side - (1 - side % 2)}
        values = structural_similarity_index_measure(
            pred.reshape(b * t, c, h, w),
            target.reshape(b * t, c, h, w),
            data_range=self.data_range,
            reduction="none",
            **window,
        )
        return values.reshape(b, t)

    def compute(self) -> dict[str, Any]:
        """All metrics over every sequence seen since the last reset (all ranks under DDP)."""
        if isinstance(self.frame_se, list) and not self.frame_se:
            raise ValueError(
                "ForecastMetrics.compute(): no samples were evaluated (update() was never "
                "called since the last reset); is the evaluation data set or split empty?"
            )
        states = (self.frame_se, self.frame_ae, self.frame_ssim, self.frame_psnr)
        se, ae, ssim, psnr = (dim_zero_cat(s).cpu().double() for s in states)
        out: dict[str, Any] = {
            "num_sequences": int(se.shape[0]),
            "mse": float(se.mean()),
            "mae": float(ae.mean()),
            "mse_per_pixel": float(se.sum() / int(self.pixels)),
            "mae_per_pixel": float(ae.sum() / int(self.pixels)),
            "ssim": float(ssim.mean()),
            "psnr": float(psnr.mean()),
            "mse_per_lead": se.mean(dim=0).tolist(),
            "mae_per_lead": ae.mean(dim=0).tolist(),
            "ssim_per_lead": ssim.mean(dim=0).tolist(),
            "mae_per_pixel_per_lead": (ae.sum(dim=0) * se.shape[1] / int(self.pixels)).tolist(),
        }
        energy = dim_zero_cat(self.frame_energy).cpu().double().sum(0)  # (T_out, 2)
        out["sharpness"] = _ratio(*energy.sum(0).tolist())
        out["sharpness_per_lead"] = [_ratio(p, t) for p, t in energy.tolist()]
        zero_se, last_se = (
            dim_zero_cat(s).cpu().double() if not (isinstance(s, list) and not s) else None
            for s in (self.zero_se, self.last_se)
        )
        if zero_se is not None and zero_se.shape == se.shape:
            out["baseline_mse_zero"] = float(zero_se.mean())
            out["baseline_mse_persistence"] = float(last_se.mean())
        for thr, (hits, misses, false_alarms) in zip(self.thresholds, self.contingency.tolist()):
            for name, value in _skill(hits, misses, false_alarms).items():
                out[f"{name}@{thr}"] = value
        if self.thresholds:
            counts = dim_zero_cat(self.lead_contingency).sum(0).tolist()  # (thr, T_out, 3)
            for thr, leads in zip(self.thresholds, counts):
                scores = [_skill(*lead) for lead in leads]
                for name in ("csi", "pod", "far"):
                    out[f"{name}@{thr}_per_lead"] = [s[name] for s in scores]
        if self.fss_scales:
            sums = dim_zero_cat(self.lead_fss).cpu().double().sum(0)  # (thr, scales, T_out, 2)
            for i, thr in enumerate(self.thresholds):
                for j, scale in enumerate(self.fss_scales):
                    num, den = sums[i, j, :, 0], sums[i, j, :, 1]
                    total = float(den.sum())
                    key = f"fss@{thr}_{scale}px"
                    out[key] = 1.0 - float(num.sum()) / total if total else math.nan
                    out[f"{key}_per_lead"] = [
                        1.0 - n / d if d else math.nan for n, d in zip(num.tolist(), den.tolist())
                    ]
        return out
