"""Spatial and temporal attention over ConvLSTM hidden states.

``SpatialAttention`` weights the positions of one hidden state ``(B, F, *spatial)`` with
a learned map ``a`` of shape ``(B, 1, *spatial)``; ``TemporalAttention`` weights the
steps of a hidden-state sequence ``(B, T, F, *spatial)`` with ``(B, T)`` weights and
returns their weighted sum, a context ``(B, F, *spatial)``. Both return their weights so
that they can be plotted. (The self-attention memory of SA-ConvLSTM is a cell option of
the core layer: ``ConvLSTM2d(..., attention="sam")``, see ``convlstm.nn.sam``.)
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

_CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
SPATIAL_MODES = ("softmax", "sigmoid")
TEMPORAL_QUERIES = ("last", "learned")


def _check_positive(name: str, value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")


class SpatialAttention(nn.Module):
    """A learned map over positions that re-weights a hidden state.

    The score of each position comes from a small convolutional network,
    ``s = W_2 * tanh(W_1 * h)`` (``W_1``: ``kernel_size``, ``F -> hidden``; ``W_2``: 1x1,
    ``hidden -> 1``), and the map is

    - ``"softmax"``: ``a = softmax(s)`` over all ``N`` positions (sums to one per sample);
      the output is ``N * a * h``, so a uniform map leaves ``h`` unchanged and global
      average pooling of the output is the attention-weighted sum ``sum_n a_n h_n``;
    - ``"sigmoid"``: ``a = sigmoid(s)`` per position (gating); the output is ``a * h``.

    Args:
        channels: ``F``, channels of ``h``.
        mode: ``"softmax"`` or ``"sigmoid"``. Default ``"softmax"``.
        hidden_channels: channels of the scoring network. Default ``max(1, F // 2)``.
        kernel_size: kernel of the first scoring convolution. Default 3.
        ndim: spatial dimensions (1, 2 or 3). Default 2.

    Shapes:
        ``h``: ``(B, F, *spatial)`` -> ``(output, a)`` with ``output`` like ``h`` and
        ``a``: ``(B, 1, *spatial)``.
    """

    def __init__(
        self,
        channels: int,
        mode: str = "softmax",
        hidden_channels: int | None = None,
        kernel_size: int = 3,
        ndim: int = 2,
    ) -> None:
        super().__init__()
        _check_positive("channels", channels)
        if mode not in SPATIAL_MODES:
            raise ValueError(f"mode must be one of {SPATIAL_MODES}, got {mode!r}")
        if ndim not in _CONV:
            raise ValueError(f"ndim must be 1, 2 or 3, got {ndim!r}")
        hidden_channels = hidden_channels or max(1, channels // 2)
        _check_positive("hidden_channels", hidden_channels)
        _check_positive("kernel_size", kernel_size)
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd (to keep the size), got {kernel_size}")
        conv = _CONV[ndim]
        self.mode = mode
        self.ndim = ndim
        self.score = nn.Sequential(
            conv(channels, hidden_channels, kernel_size, padding=kernel_size // 2),
            nn.Tanh(),
            conv(hidden_channels, 1, 1),
        )

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}"

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if h.dim() != self.ndim + 2:
            raise ValueError(
                f"SpatialAttention expects (B, F, *spatial) with {self.ndim} spatial dims, "
                f"got shape {tuple(h.shape)}"
            )
        scores = self.score(h)  # (B, 1, *spatial)
        if self.mode == "sigmoid":
            a = torch.sigmoid(scores)
            return h * a, a
        positions = scores[0, 0].numel()
        a = torch.softmax(scores.flatten(1), dim=1).view_as(scores)
        return h * (a * positions), a


class TemporalAttention(nn.Module):
    """Bahdanau-style attention over the steps of a hidden-state sequence.

    Each step's state is average-pooled over positions to ``p_t`` (``(B, F)``) and scored
    against a query ``q``::

        e_t = v^T tanh(W_k p_t + W_q q)        w = softmax_t(e)        context = sum_t w_t h_t

    The query is the pooled last state (``query="last"``; the last valid step when
    ``lengths`` are given) or a learned vector (``query="learned"``). With
    ``query="last"``, ``forward`` also takes an outside query state instead, e.g. a
    decoder's current state attending over the encoder's steps.

    Args:
        channels: ``F``, channels of each state.
        attention_dim: width of the scoring layer. Default ``max(8, F)``.
        query: ``"last"`` or ``"learned"``. Default ``"last"``.
        query_channels: channels of an outside query state. Default ``channels``.

    Shapes:
        ``seq``: ``(B, T, F, *spatial)``; ``lengths``: optional ``(B,)`` valid steps
        (later steps get weight 0); ``query``: optional outside query state
        ``(B, F_q, *spatial_q)`` or ``(B, F_q)`` (pooled like the steps) ->
        ``(context, w)`` with ``context``: ``(B, F, *spatial)`` and ``w``: ``(B, T)``,
        summing to one over ``T``.
    """

    def __init__(
        self,
        channels: int,
        attention_dim: int | None = None,
        query: str = "last",
        query_channels: int | None = None,
    ) -> None:
        super().__init__()
        _check_positive("channels", channels)
        if query not in TEMPORAL_QUERIES:
            raise ValueError(f"query must be one of {TEMPORAL_QUERIES}, got {query!r}")
        attention_dim = attention_dim or max(8, channels)
        _check_positive("attention_dim", attention_dim)
        self.query_mode = query
        self.key = nn.Linear(channels, attention_dim, bias=True)
        self.score = nn.Linear(attention_dim, 1, bias=False)
        if query == "last":
            query_channels = query_channels or channels
            _check_positive("query_channels", query_channels)
            self.query = nn.Linear(query_channels, attention_dim, bias=False)
        else:
            self.query = nn.Parameter(torch.zeros(attention_dim))

    def extra_repr(self) -> str:
        return f"query={self.query_mode!r}"

    def forward(
        self,
        seq: torch.Tensor,
        lengths: torch.Tensor | Sequence[int] | None = None,
        query: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if seq.dim() < 3:
            raise ValueError(f"TemporalAttention expects (B, T, F, ...), got {tuple(seq.shape)}")
        batch, steps = seq.shape[:2]
        pooled = seq.flatten(3).mean(-1) if seq.dim() > 3 else seq  # (B, T, F)
        mask = None
        if lengths is not None:
            lengths = torch.as_tensor(lengths, device=seq.device)
            if lengths.shape != (batch,):
                raise ValueError(f"lengths must have shape ({batch},), got {tuple(lengths.shape)}")
            mask = torch.arange(steps, device=seq.device) < lengths.unsqueeze(1)  # (B, T)
        if query is not None:
            if self.query_mode != "last":
                raise ValueError('an outside query needs query="last" (not a learned query)')
            state = query.flatten(2).mean(-1) if query.dim() > 2 else query
            query = self.query(state).unsqueeze(1)
        elif self.query_mode == "last":
            last = (
                pooled[:, -1]
                if lengths is None
                else pooled[torch.arange(batch, device=seq.device), lengths - 1]
            )
            query = self.query(last).unsqueeze(1)
        else:
            query = self.query
        scores = self.score(torch.tanh(self.key(pooled) + query)).squeeze(-1)  # (B, T)
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        weights = torch.softmax(scores, dim=1)
        context = (weights.view(batch, steps, *(1,) * (seq.dim() - 2)) * seq).sum(1)
        return context, weights
