"""ClipInputs: channels derived from a clip inside the model (frame differences, coordinates).

Computed by the model, not by the data pipeline, so that a trained run's ``predict``,
``evaluate --data`` and ``export`` give the model the same inputs it was trained on
without any preprocessing step to remember.
"""

from __future__ import annotations

import torch
from torch import nn

from ..checks import check_choice, check_int


class ClipInputs(nn.Module):
    """Add derived channels to every frame of a clip ``(B, T, C, *S)``.

    * ``frame_differences``: ``x_t - x_{t-1}`` per channel (zero for the first frame).
      A static background cancels and only what moved remains, so the first layer sees
      a step of any size as the band the object left and entered, instead of having to
      compare two frames through its recurrent state with a kernel smaller than the step.
    * ``coordinates``: one channel per spatial axis holding the position in ``[-1, 1]``
      (CoordConv, Liu et al. 2018): a convolution followed by global pooling can then
      still tell *where* a feature was.

    Output channels, in this order: the frames (unless ``keep_frames=False``), their
    differences, the coordinates; ``out_channels`` gives the count. With no option set
    the module is the identity.

    Args:
        in_channels: channels ``C`` of each frame.
        ndim: spatial dimensions of a frame (1, 2 or 3). Default 2.
        frame_differences: add the differences of consecutive frames. Default ``False``.
        coordinates: add the coordinate channels. Default ``False``.
        keep_frames: keep the frames themselves (``False`` needs ``frame_differences``
            or ``coordinates``). Default ``True``.
    """

    def __init__(
        self,
        in_channels: int,
        ndim: int = 2,
        *,
        frame_differences: bool = False,
        coordinates: bool = False,
        keep_frames: bool = True,
    ) -> None:
        super().__init__()
        check_int("in_channels", in_channels)
        check_choice("ndim", ndim, (1, 2, 3))
        if not (keep_frames or frame_differences or coordinates):
            raise ValueError(
                "keep_frames=False needs frame_differences=True or coordinates=True "
                "(the model would get no input channels)"
            )
        self.in_channels, self.ndim = in_channels, ndim
        self.frame_differences, self.coordinates = bool(frame_differences), bool(coordinates)
        self.keep_frames = bool(keep_frames)
        self.out_channels = (
            in_channels * (int(self.keep_frames) + int(self.frame_differences))
            + ndim * int(self.coordinates)
        )

    @property
    def identity(self) -> bool:
        return self.keep_frames and not (self.frame_differences or self.coordinates)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, T, C, *S)`` -> ``(B, T, out_channels, *S)``."""
        if self.identity:
            return x
        parts = [x] if self.keep_frames else []
        if self.frame_differences:
            parts.append(torch.cat([torch.zeros_like(x[:, :1]), x[:, 1:] - x[:, :-1]], dim=1))
        if self.coordinates:
            batch, steps, _, *size = x.shape
            axes = [torch.linspace(-1, 1, n, dtype=x.dtype, device=x.device) for n in size]
            grid = torch.stack(torch.meshgrid(*axes, indexing="ij"))  # (ndim, *S)
            parts.append(grid.expand(batch, steps, *grid.shape))
        return torch.cat(parts, dim=2)

    def extra_repr(self) -> str:
        return (f"in_channels={self.in_channels}, frame_differences={self.frame_differences}, "
                f"coordinates={self.coordinates}, keep_frames={self.keep_frames}")  # fmt: skip
