"""Forecasting losses on frames: MSE, MAE, their sum, binary cross-entropy, SSIM, and MSE
with a gradient difference term.

Predictions and targets have the same shape, ``(B, T, C, H, W)`` or ``(N, C, H, W)``;
MSE and MAE average over every element (per pixel).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .registry import register_loss


def _check_pair(prediction: torch.Tensor, target: torch.Tensor) -> None:
    if prediction.shape != target.shape:
        raise ValueError(
            f"prediction and target must have the same shape, got {tuple(prediction.shape)} "
            f"and {tuple(target.shape)}"
        )


@register_loss("mse")
class MSELoss(nn.Module):
    """Mean squared error over all elements."""

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        _check_pair(prediction, target)
        return F.mse_loss(prediction, target)


@register_loss("mae")
class MAELoss(nn.Module):
    """Mean absolute error over all elements."""

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        _check_pair(prediction, target)
        return F.l1_loss(prediction, target)


@register_loss("frame_bce")
class FrameBCELoss(nn.Module):
    """Per-pixel binary cross-entropy for frames in [0, 1] predicted in [0, 1] (a
    ``sigmoid`` output), averaged over every element, as Srivastava et al. (2015) train
    on Moving MNIST. Unlike MSE it charges a blank prediction heavily on the few bright
    pixels, so a forecaster leaves the blank-frame plateau sooner. Computed in float32
    outside autocast; predictions are clamped to ``[eps, 1 - eps]``.

    Args:
        eps: clamp of the predictions. Default 1e-6.
    """

    def __init__(self, eps: float = 1e-6):
        super().__init__()
        if not 0 < eps < 0.5:
            raise ValueError(f"eps must be in (0, 0.5), got {eps}")
        self.eps = eps

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        _check_pair(prediction, target)
        low, high = float(target.min()), float(target.max())
        if low < 0 or high > 1:
            raise ValueError(
                f"frame_bce needs targets in [0, 1], got values in [{low:.4g}, {high:.4g}]; "
                "use mse for unnormalised frames"
            )
        with torch.autocast(prediction.device.type, enabled=False):
            p = prediction.float().clamp(self.eps, 1 - self.eps)
            return F.binary_cross_entropy(p, target.float())


@register_loss("mse+mae")
class MSEMAELoss(nn.Module):
    """``mse_weight * MSE + mae_weight * MAE``. Defaults 1, 1."""

    def __init__(self, mse_weight: float = 1.0, mae_weight: float = 1.0):
        super().__init__()
        if mse_weight < 0 or mae_weight < 0:
            raise ValueError(f"weights must be >= 0, got mse_weight={mse_weight}, "
                             f"mae_weight={mae_weight}")
        self.mse_weight, self.mae_weight = mse_weight, mae_weight

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        _check_pair(prediction, target)
        mse = F.mse_loss(prediction, target)
        return self.mse_weight * mse + self.mae_weight * F.l1_loss(prediction, target)


def gradient_difference(
    prediction: torch.Tensor, target: torch.Tensor, spatial_dims: int = 2, alpha: float = 2.0
) -> torch.Tensor:
    """Mathieu et al.'s (2016) gradient difference: along each of the last
    ``spatial_dims`` axes, the mean of ``| |d target| - |d prediction| |^alpha`` over
    the differences ``d`` of neighbouring pixels, summed over the axes.

    It compares edges where they are: the true edge costs 0, the same edge blurred in
    place costs the strength it lost. Added to a mean squared error it pushes forecasts
    towards the truth's edge strength; it does not make a sharp edge in a wrong place
    cheaper than a blur (that misses the true edge and adds one where there is none),
    so a forecast unsure of where an edge goes still spreads it.
    """
    _check_pair(prediction, target)
    if not 1 <= spatial_dims <= prediction.dim():
        raise ValueError(
            f"spatial_dims must be between 1 and the frames' {prediction.dim()} dimensions, "
            f"got {spatial_dims}"
        )
    total = prediction.new_zeros(())
    for axis in range(prediction.dim() - spatial_dims, prediction.dim()):
        if prediction.shape[axis] < 2:
            continue
        dp = prediction.diff(dim=axis).abs()
        dt = target.diff(dim=axis).abs()
        total = total + (dt - dp).abs().pow(alpha).mean()
    return total


@register_loss("mse+gdl")
class MSEGDLLoss(nn.Module):
    """``mse_weight * MSE + gdl_weight * gradient_difference`` (Mathieu et al. 2016,
    "Deep multi-scale video prediction beyond mean square error"): MSE with a term that
    charges blurred edges (see ``gradient_difference``).

    Args:
        mse_weight: weight of the MSE. Default 1.
        gdl_weight: weight of the gradient difference. Default 1.
        alpha: exponent of the gradient difference (1 or 2 in the paper). Default 2.
        spatial_dims: the frames' spatial dimensions, the last axes (2 for ``(..., H,
            W)``). Default 2.
    """

    def __init__(
        self,
        mse_weight: float = 1.0,
        gdl_weight: float = 1.0,
        alpha: float = 2.0,
        spatial_dims: int = 2,
    ):
        super().__init__()
        if mse_weight < 0 or gdl_weight < 0 or alpha <= 0:
            raise ValueError(
                f"weights must be >= 0 and alpha > 0, got mse_weight={mse_weight}, "
                f"gdl_weight={gdl_weight}, alpha={alpha}"
            )
        if spatial_dims not in (1, 2, 3):
            raise ValueError(f"spatial_dims must be 1, 2 or 3, got {spatial_dims}")
        self.mse_weight, self.gdl_weight = mse_weight, gdl_weight
        self.alpha, self.spatial_dims = alpha, spatial_dims

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        # gradient_difference checks the shapes first (F.mse_loss would broadcast them)
        gdl = gradient_difference(prediction, target, self.spatial_dims, self.alpha)
        mse = F.mse_loss(prediction, target)
        return self.mse_weight * mse + self.gdl_weight * gdl


def gaussian_window(size: int, sigma: float) -> torch.Tensor:
    """Normalised 1-D Gaussian of ``size`` taps."""
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def ssim(
    prediction: torch.Tensor,
    target: torch.Tensor,
    data_range: float = 1.0,
    window_size: int = 11,
    sigma: float = 1.5,
) -> torch.Tensor:
    """Mean structural similarity (Wang et al. 2004) of 2-D frames.

    Local means, variances and covariance come from a Gaussian window (``window_size``
    taps, ``sigma``) over the valid region of each channel, with
    ``C1 = (0.01 L)^2`` and ``C2 = (0.03 L)^2`` for ``L = data_range``::

        SSIM = (2 μx μy + C1)(2 σxy + C2) / ((μx² + μy² + C1)(σx² + σy² + C2))

    averaged over positions, channels and frames. Frames smaller than the window use
    the largest odd window that fits. Inputs ``(..., C, H, W)``; returns a scalar.
    """
    _check_pair(prediction, target)
    if prediction.dim() < 3:
        raise ValueError(f"ssim expects frames (..., C, H, W), got {tuple(prediction.shape)}")
    height, width = prediction.shape[-2:]
    size = min(window_size, height, width)
    size -= 1 - size % 2  # odd
    channels = prediction.shape[-3]
    x = prediction.reshape(-1, channels, height, width)
    y = target.reshape(-1, channels, height, width).to(x.dtype)
    g = gaussian_window(size, sigma).to(x)
    window = (g[:, None] * g[None, :]).expand(channels, 1, size, size)

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(t, window, groups=channels)

    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x**2
    var_y = blur(y * y) - mu_y**2
    cov = blur(x * y) - mu_x * mu_y
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    numerator = (2 * mu_x * mu_y + c1) * (2 * cov + c2)
    denominator = (mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2)
    return (numerator / denominator).mean()


@register_loss("ssim")
class SSIMLoss(nn.Module):
    """``1 - ssim(prediction, target)`` (see ``ssim``).

    Args:
        data_range: ``L``, the value range of the frames (1 for [0, 1]). Default 1.
        window_size: Gaussian window taps. Default 11.
        sigma: Gaussian window width. Default 1.5.
    """

    def __init__(self, data_range: float = 1.0, window_size: int = 11, sigma: float = 1.5):
        super().__init__()
        if data_range <= 0 or sigma <= 0 or window_size < 1:
            raise ValueError(
                f"data_range and sigma must be > 0 and window_size >= 1, got "
                f"data_range={data_range}, window_size={window_size}, sigma={sigma}"
            )
        self.data_range, self.window_size, self.sigma = data_range, window_size, sigma

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return 1 - ssim(prediction, target, self.data_range, self.window_size, self.sigma)
