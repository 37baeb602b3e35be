"""A plain, slow ConvLSTM written gate by gate from Shi et al. 2015, for testing."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


def tf_same_pads(size: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


def pad_nd(x: torch.Tensor, pads: list[tuple[int, int]]) -> torch.Tensor:
    flat = []
    for before, after in reversed(pads):
        flat += [before, after]
    return F.pad(x, flat)


def layer_norm(z: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """Normalise each sample over channels and positions, then a per-channel affine."""
    dims = tuple(range(1, z.dim()))
    mean = z.mean(dim=dims, keepdim=True)
    var = z.var(dim=dims, unbiased=False, keepdim=True)
    shape = (1, -1) + (1,) * (z.dim() - 2)
    return (z - mean) / torch.sqrt(var + 1e-5) * weight.reshape(shape) + bias.reshape(shape)


def reference_cell_sequence(cell, x: torch.Tensor, state=None, recurrent_mask=None, reverse=False):
    """Run ``cell`` over ``x`` (B, T, C, *S) gate by gate: outputs (B, T, F, *S') and (h, c)."""
    ndim = cell.ndim
    conv = CONV[ndim]
    k, s, d = cell.kernel_size, cell.stride, cell.dilation
    spatial = x.shape[3:]
    if cell.padding == "same":
        in_pads = [tf_same_pads(n, kk, ss, dd) for n, kk, ss, dd in zip(spatial, k, s, d)]
    elif cell.padding == "valid":
        in_pads = [(0, 0)] * ndim
    else:
        in_pads = [(p, p) for p in cell.padding]
    rec_pads = [((kk - 1) // 2, kk - 1 - (kk - 1) // 2) for kk in k]
    W_x = cell.weight_ih.chunk(4, 0)
    W_h = cell.weight_hh.chunk(4, 0)
    b = cell.bias.chunk(4, 0) if cell.bias is not None else [None] * 4
    sig, act = cell.recurrent_activation, cell.activation

    def gate(n, xt, h):
        z = conv(pad_nd(xt, in_pads), W_x[n], b[n], stride=s, dilation=d) + conv(
            pad_nd(h, rec_pads), W_h[n]
        )
        if cell.layer_norm:
            z = layer_norm(z, cell.gate_norm_weight.chunk(4)[n], cell.gate_norm_bias.chunk(4)[n])
        return z

    B, T = x.shape[:2]
    probe = conv(pad_nd(x[:, 0], in_pads), W_x[0], None, stride=s, dilation=d)
    out_size = probe.shape[2:]
    if state is None:
        h = x.new_zeros(B, cell.hidden_channels, *out_size)
        c = x.new_zeros(B, cell.hidden_channels, *out_size)
    else:
        h, c = state
    if cell.peephole_weight is not None:
        w_ci, w_cf, w_co = cell.peephole_weight
    else:
        w_ci = w_cf = w_co = torch.zeros(())
    outputs = [None] * T
    steps = range(T - 1, -1, -1) if reverse else range(T)
    for t in steps:
        xt = x[:, t]
        hm = h if recurrent_mask is None else h * recurrent_mask
        z_i, z_f, z_g, z_o = (gate(n, xt, hm) for n in range(4))
        i = sig(z_i + w_ci * c)
        f = sig(z_f + w_cf * c)
        c = f * c + i * act(z_g)
        o = sig(z_o + w_co * c)
        c_out = layer_norm(c, cell.cell_norm_weight, cell.cell_norm_bias) if cell.layer_norm else c
        h = o * act(c_out)
        outputs[t] = h
    return torch.stack(outputs, 1), (h, c)


def reference_gru_sequence(cell, x: torch.Tensor, h=None, recurrent_mask=None, reverse=False):
    """Run a ConvGRU ``cell`` over ``x`` (B, T, C, *S) gate by gate (Ballas et al. 2016):
    outputs (B, T, F, *S') and the last h."""
    conv = CONV[cell.ndim]
    k, s, d = cell.kernel_size, cell.stride, cell.dilation
    if cell.padding == "same":
        in_pads = [tf_same_pads(n, kk, ss, dd) for n, kk, ss, dd in zip(x.shape[3:], k, s, d)]
    elif cell.padding == "valid":
        in_pads = [(0, 0)] * cell.ndim
    else:
        in_pads = [(p, p) for p in cell.padding]
    rec_pads = [((kk - 1) // 2, kk - 1 - (kk - 1) // 2) for kk in k]
    W_r, W_z, W_n = cell.weight_ih.chunk(3, 0)
    U_r, U_z, U_n = cell.weight_hh.chunk(3, 0)
    b_r, b_z, b_n = cell.bias.chunk(3, 0) if cell.bias is not None else [None] * 3
    sig, act = cell.recurrent_activation, cell.activation
    outputs = [None] * x.shape[1]
    for t in range(x.shape[1] - 1, -1, -1) if reverse else range(x.shape[1]):
        x_t = pad_nd(x[:, t], in_pads)

        def from_x(kernel, b, x_t=x_t):
            return conv(x_t, kernel, b, stride=s, dilation=d)

        def from_h(kernel, v):
            return conv(pad_nd(v, rec_pads), kernel)

        if h is None:
            h = x.new_zeros(x.shape[0], cell.hidden_channels, *from_x(W_r, None).shape[2:])
        h_in = h if recurrent_mask is None else h * recurrent_mask
        r = sig(from_x(W_r, b_r) + from_h(U_r, h_in))
        z = sig(from_x(W_z, b_z) + from_h(U_z, h_in))
        n = act(from_x(W_n, b_n) + from_h(U_n, r * h_in))
        h = (1 - z) * h + z * n
        outputs[t] = h
    return torch.stack(outputs, 1), h
