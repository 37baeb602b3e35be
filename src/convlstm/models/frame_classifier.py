"""FrameClassifier: per-frame CNN and temporal mean pooling, the no-motion baseline."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..checks import check_choice, check_int, check_probability, int_list
from ._blocks import GLOBAL_POOLS, FrameCNN, check_clip, make_head, per_step
from .registry import register_model


@register_model("frame-classifier")
class FrameClassifier(nn.Module):
    """Classify a clip from the average of its frames' CNN features.

    Each frame goes through the same small CNN and global pooling; the per-frame
    features are averaged over time (no recurrence), then a dense head::

        x (B, T, C, *S) -> CNN per frame -> (B, T, D) -> mean over T (B, D) -> logits (B, K)

    The mean over time is invariant to the order of the frames, so this model cannot
    see motion: it is the baseline that tells whether a task needs temporal modelling
    at all (on classes that differ only in motion it should stay near chance).

    Args:
        in_channels: channels ``C`` of each frame.
        num_classes: 1 (binary, one logit) or the number of classes. Default 1.
        conv_channels: CNN widths (conv -> BN -> ReLU, max pool 2 between blocks).
            Default ``[16, 32]``.
        kernel_size: CNN kernel size. Default 3.
        ndim: spatial dimensions of a frame (1, 2 or 3). Default 2.
        batch_norm: batch norm in the CNN. Default ``True``.
        frame_pool: ``"avg"`` or ``"max"`` global pooling per frame. Default ``"avg"``.
        dropout: dropout before the head. Default 0.
        head_hidden: width of a hidden dense layer in the head; 0 for none. Default 0.

    ``return_attention=True`` returns ``(logits, {})``: the model has no attention.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int = 1,
        conv_channels: int | Sequence[int] = (16, 32),
        kernel_size: int = 3,
        *,
        ndim: int = 2,
        batch_norm: bool = True,
        frame_pool: str = "avg",
        dropout: float = 0.0,
        head_hidden: int = 0,
    ) -> None:
        super().__init__()
        check_int("in_channels", in_channels)
        check_int("num_classes", num_classes)
        check_choice("ndim", ndim, (1, 2, 3))
        check_choice("frame_pool", frame_pool, GLOBAL_POOLS)
        check_probability("dropout", dropout)
        check_int("head_hidden", head_hidden, minimum=0)
        self.in_channels, self.ndim, self.num_classes = in_channels, ndim, num_classes
        widths = int_list("conv_channels", conv_channels)
        self.cnn = FrameCNN(in_channels, widths, kernel_size, ndim, batch_norm, frame_pool)
        self.embedding_dim = widths[-1]
        self.head = make_head(self.embedding_dim, num_classes, head_hidden, dropout)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The clip embedding ``(B, D)``: per-frame features averaged over time."""
        check_clip(x, self.ndim, self.in_channels)
        return per_step(self.cnn, x).mean(dim=1)

    def forward(
        self, x: torch.Tensor, *, return_attention: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``x`` ``(B, T, C, *S)`` -> logits ``(B, num_classes)``."""
        logits = self.head(self.embed(x))
        return (logits, {}) if return_attention else logits
