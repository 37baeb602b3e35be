"""Self-attention memory (SAM) of SA-ConvLSTM (Lin et al., AAAI 2020)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

_CONV_MODULE = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
_AVG_POOL = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> torch.Tensor:
    """``(softmax(q k^T * scale) v)^T`` ``(B, F, N)`` for ``q`` ``(B, N, d)``, ``k``
    ``(B, N_k, d)`` and ``v`` ``(B, N_k, F)``, without forming the ``(B, N, N_k)``
    weights: PyTorch's fused attention keeps O(N) for the backward where the weights are
    O(N * N_k) (10.7 GB for one layer of 10 steps of 64x64 at batch 8). Its fused CPU
    kernel wants queries, keys and values of one width and dense rows (else PyTorch
    forms the weights after all), so the narrower are padded with zeros, which add
    nothing to a dot product."""
    channels = v.shape[-1]
    width = max(q.shape[-1], channels)
    q, k, v = (F.pad(t, (0, width - t.shape[-1])).contiguous()[:, None] for t in (q, k, v))
    out = F.scaled_dot_product_attention(q, k, v, scale=scale)[:, 0]  # (B, N, width)
    return out[..., :channels].transpose(1, 2)


class SelfAttentionMemory(nn.Module):
    """The SAM block: attention over all positions of the hidden state and of a memory.

    With ``N`` positions, queries come from ``h`` and keys/values from ``h`` and from the
    memory ``m``::

        Z_h = V_h softmax(Q_h^T K_h)        Z_m = V_m softmax(Q_h^T K_m)
        Z   = W_z [Z_h; Z_m]
        i', g', o' = σ, tanh, σ of W [Z; h] + b
        m_t = (1 - i') ∘ m_{t-1} + i' ∘ g'
        h_t = o' ∘ m_t

    Cost: time grows as ``O(N * N_k)``; for a 64x64 frame that is 16.8 M weights per
    map and sample. Memory grows as ``O(N)``: the maps are formed only when asked for
    (``need_weights=True``); otherwise PyTorch's fused attention computes the same
    without them. Set ``key_stride`` > 1 to average-pool keys and values
    (``N_k = N / key_stride^ndim``) for large frames.

    Args:
        channels: ``F``, channels of ``h`` and ``m``.
        ndim: spatial dimensions (1, 2 or 3).
        key_channels: channels of queries and keys. Default ``max(1, F // 4)``.
        key_stride: pooling of keys and values. Default 1 (full attention, as the paper).

    Shapes:
        ``h``, ``m``: ``(B, F, *spatial)``; returns ``(h_t, m_t)`` of the same shape and,
        with ``need_weights=True``, the maps ``(B, N, N_k)`` over ``h`` and over ``m``.
    """

    def __init__(
        self, channels: int, ndim: int = 2, key_channels: int | None = None, key_stride: int = 1
    ) -> None:
        super().__init__()
        if key_stride < 1:
            raise ValueError(f"key_stride must be >= 1, got {key_stride}")
        conv = _CONV_MODULE[ndim]
        self.ndim = ndim
        self.channels = channels
        self.key_channels = key_channels or max(1, channels // 4)
        self.key_stride = key_stride
        d = self.key_channels
        # Q, K, V from h in one 1x1 conv; K_m, V_m from m in another.
        self.qkv_h = conv(channels, 2 * d + channels, 1)
        self.kv_m = conv(channels, d + channels, 1)
        self.fuse = conv(2 * channels, channels, 1)
        self.gates = conv(2 * channels, 3 * channels, 1)

    def extra_repr(self) -> str:
        return (
            f"channels={self.channels}, key_channels={self.key_channels}, "
            f"key_stride={self.key_stride}"
        )

    def _pool(self, x: torch.Tensor) -> torch.Tensor:
        if self.key_stride == 1:
            return x
        return _AVG_POOL[self.ndim](x, self.key_stride, ceil_mode=True)

    def forward(
        self, h: torch.Tensor, m: torch.Tensor, need_weights: bool = False
    ) -> (
        tuple[torch.Tensor, torch.Tensor]
        | tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]
    ):
        d, channels = self.key_channels, self.channels
        batch, spatial = h.shape[0], h.shape[2:]
        q, k_h, v_h = self.qkv_h(h).split([d, d, channels], dim=1)
        k_h, v_h = self._pool(k_h), self._pool(v_h)
        k_m, v_m = self._pool(self.kv_m(m)).split([d, channels], dim=1)
        q = q.flatten(2).transpose(1, 2)  # (B, N, d)
        scale = d**-0.5
        maps = {}
        if need_weights:
            a_h = torch.softmax(q @ k_h.flatten(2) * scale, dim=-1)  # (B, N, N_k)
            a_m = torch.softmax(q @ k_m.flatten(2) * scale, dim=-1)
            z_h = (a_h @ v_h.flatten(2).transpose(1, 2)).transpose(1, 2)  # (B, F, N)
            z_m = (a_m @ v_m.flatten(2).transpose(1, 2)).transpose(1, 2)
            maps = {"hidden": a_h, "memory": a_m}
        else:
            z_h, z_m = (
                _attend(q, k.flatten(2).transpose(1, 2), v.flatten(2).transpose(1, 2), scale)
                for k, v in ((k_h, v_h), (k_m, v_m))
            )
        z = self.fuse(torch.cat([z_h, z_m], dim=1).reshape(batch, 2 * channels, *spatial))
        i, g, o = self.gates(torch.cat([z, h], dim=1)).chunk(3, dim=1)
        i = torch.sigmoid(i)
        m_new = (1 - i) * m + i * torch.tanh(g)
        h_new = torch.sigmoid(o) * m_new
        if need_weights:
            return h_new, m_new, maps
        return h_new, m_new
