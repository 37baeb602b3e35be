"""CNNLSTMClassifier: a per-frame CNN followed by an LSTM over the clip's time axis."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from ..checks import check_choice, check_int, check_probability, int_list
from ._blocks import FRAME_POOLS, FrameCNN, check_clip, make_head, per_step
from .inputs import ClipInputs
from .registry import register_model


@register_model("cnn-lstm")
class CNNLSTMClassifier(nn.Module):
    """The CNN+LSTM baseline, done right: CNN per frame, LSTM over real time.

    A small CNN with shared weights turns every frame into a feature vector (convolutions,
    then global pooling); an ``nn.LSTM`` reads the ``T`` vectors in time order; its last
    hidden state goes to a dense head::

        x (B, T, C, *S) -> CNN per frame -> (B, T, D) -> LSTM -> h_T (B, H) -> logits (B, K)

    Why this and not the common mistakes: an LSTM models how a sequence evolves *in
    time*, so its sequence axis must be the clip's frames. Feeding it a single image's
    feature map with the channels (or the rows, or the pixels) as the "time" steps makes
    it scan an arbitrary order of features of one moment: it cannot see motion at all,
    and its "sequence" has no temporal meaning. Stacking frames as channels of one CNN
    input loses the recurrence instead. Here every time step is a frame.

    Unlike a ConvLSTM, the recurrence sees only pooled per-frame features, not where in
    the frame they are; small motions that leave the pooled features unchanged are lost.
    Three ways to keep the motion: ``frame_pool="flatten"`` (no global pooling: the LSTM
    reads the whole last feature map, so position is kept; needs ``spatial_size``),
    ``coordinates=True`` (position channels, so pooled features can encode where things
    are) and ``frame_differences=True`` (the CNN sees what moved between frames).

    Args:
        in_channels: channels ``C`` of each frame.
        num_classes: 1 (binary: one logit, probability ``sigmoid``) or the number of
            classes (softmax logits). Default 1.
        conv_channels: widths of the CNN blocks (conv -> BN -> ReLU, max pool 2 between
            blocks). Default ``[16, 32]``.
        kernel_size: CNN kernel size. Default 3.
        lstm_hidden: LSTM width ``H``. Default 64.
        lstm_layers: stacked LSTM layers. Default 1.
        bidirectional: bidirectional LSTM (the embedding is then ``2H``). Default ``False``.
        ndim: spatial dimensions of a frame (1, 2 or 3). Default 2.
        batch_norm: batch norm in the CNN. Default ``True``.
        frame_pool: ``"avg"`` or ``"max"`` global pooling per frame, or ``"flatten"``
            (the last feature map flattened, ``conv_channels[-1] * h * w`` features per
            frame). Default ``"avg"``.
        spatial_size: frame size ``S`` (int or one per axis); needed by
            ``frame_pool="flatten"`` only. Default ``None``.
        dropout: dropout between LSTM layers and before the head. Default 0.
        head_hidden: width of a hidden dense layer in the head; 0 for none. Default 0.
        frame_differences, coordinates, keep_frames: derived input channels (see
            ``ClipInputs``): the differences of consecutive frames, the position of each
            pixel, and whether the frames themselves are kept. Defaults ``False``,
            ``False``, ``True``.

    ``return_attention=True`` returns ``(logits, {})``: the model has no attention.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int = 1,
        conv_channels: int | Sequence[int] = (16, 32),
        kernel_size: int = 3,
        lstm_hidden: int = 64,
        lstm_layers: int = 1,
        *,
        bidirectional: bool = False,
        ndim: int = 2,
        batch_norm: bool = True,
        frame_pool: str = "avg",
        spatial_size: int | Sequence[int] | None = None,
        dropout: float = 0.0,
        head_hidden: int = 0,
        frame_differences: bool = False,
        coordinates: bool = False,
        keep_frames: bool = True,
    ) -> None:
        super().__init__()
        check_int("in_channels", in_channels)
        check_int("num_classes", num_classes)
        check_int("lstm_hidden", lstm_hidden)
        check_int("lstm_layers", lstm_layers)
        check_choice("ndim", ndim, (1, 2, 3))
        check_choice("frame_pool", frame_pool, FRAME_POOLS)
        check_probability("dropout", dropout)
        check_int("head_hidden", head_hidden, minimum=0)
        self.in_channels, self.ndim, self.num_classes = in_channels, ndim, num_classes
        widths = int_list("conv_channels", conv_channels)
        self.inputs = ClipInputs(
            in_channels, ndim, frame_differences=frame_differences, coordinates=coordinates,
            keep_frames=keep_frames,
        )  # fmt: skip
        self.cnn = FrameCNN(
            self.inputs.out_channels, widths, kernel_size, ndim, batch_norm, frame_pool
        )
        features = widths[-1]
        if frame_pool == "flatten":
            if spatial_size is None:
                raise ValueError('frame_pool="flatten" needs spatial_size (the frame size)')
            size = self.cnn.map_size(int_list("spatial_size", spatial_size, ndim))
            features *= math.prod(size)
        self.spatial_size = None if spatial_size is None else int_list(
            "spatial_size", spatial_size, ndim
        )  # fmt: skip
        self.lstm = nn.LSTM(
            features,
            lstm_hidden,
            lstm_layers,
            batch_first=True,
            bidirectional=bidirectional,
            dropout=dropout if lstm_layers > 1 else 0.0,
        )
        self.embedding_dim = lstm_hidden * (2 if bidirectional else 1)
        self.head = make_head(self.embedding_dim, num_classes, head_hidden, dropout)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The clip embedding ``(B, embedding_dim)``: the LSTM's final hidden state (both
        directions' final states with ``bidirectional``)."""
        check_clip(x, self.ndim, self.in_channels)
        if self.cnn.pool == "flatten" and list(x.shape[3:]) != self.spatial_size:
            raise ValueError(
                f'frame_pool="flatten" was built for frames of size {self.spatial_size}, '
                f"got {list(x.shape[3:])}"
            )
        features = per_step(self.cnn, self.inputs(x))  # (B, T, D)
        _, (h_n, _) = self.lstm(features)
        last = h_n[-2:] if self.lstm.bidirectional else h_n[-1:]
        return last.transpose(0, 1).flatten(1)

    def forward(
        self, x: torch.Tensor, *, return_attention: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``x`` ``(B, T, C, *S)`` -> logits ``(B, num_classes)``."""
        logits = self.head(self.embed(x))
        return (logits, {}) if return_attention else logits
