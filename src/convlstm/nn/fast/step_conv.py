"""The fused step convolution ``W * [x_t, pad(h)] + b`` with a backward that skips work.

One convolution over the input and the padded hidden state stacked along channels is
the fastest forward here, but PyTorch's backward of it computes the input gradient for
all ``C_in + F`` channels at once, and with the odd channel counts this stacking gives
(``1 + 16``, ``1 + 64`` in the benchmarks) oneDNN takes a much slower path than for the
``F`` hidden channels alone. ``StepConv`` therefore differentiates the pieces
separately: the hidden state's gradient through ``W_h`` (``F`` channels), the input's
only when the input needs one, and the weight gradient from the saved stacked buffer
(``sequence.step_weight_grad``, as ``FusedSequence`` takes it).
"""

from __future__ import annotations

import torch

from .._utils import CONV, conv_dtype, interior, memory_format, stack_input
from ..settings import backend
from .gates import first_derivatives_only
from .sequence import step_weight_grad


class StepConv(torch.autograd.Function):
    """``z = StepConv.apply(x, h, weight, bias, hidden_pad)``: ``x`` ``(B, C_in, *S)``
    (already padded), ``h`` ``(B, F, *S')``, ``weight`` ``(4F, C_in + F, *k)``; returns
    ``(B, 4F, *S')``. Stride 1, no dilation (the fused step plan)."""

    @staticmethod
    def forward(ctx, x, h, weight, bias, hidden_pad):
        dtype = conv_dtype(x)
        buffer = stack_input(x, h, hidden_pad, dtype)
        conv_weight = weight.to(dtype)
        conv_bias = None if bias is None else bias.to(dtype)
        ctx.save_for_backward(buffer, conv_weight)
        ctx.meta = (x.shape[1], hidden_pad, bias is not None, x.dtype, h.dtype, weight.dtype)
        return CONV[x.dim() - 2](buffer, conv_weight, conv_bias)

    @staticmethod
    @first_derivatives_only
    def backward(ctx, dz):
        buffer, weight = ctx.saved_tensors
        channels, hidden_pad, has_bias, x_dtype, h_dtype, w_dtype = ctx.meta
        ndim = buffer.dim() - 2
        dz = dz.to(buffer.dtype).contiguous(memory_format=memory_format(ndim, dz.device))
        ones, zeros = [1] * ndim, [0] * ndim

        def input_grad(part: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
            # The input gradient reads only the input's shape and layout: an empty tensor.
            layout = memory_format(ndim, part.device)
            like = torch.empty(
                part.shape, dtype=part.dtype, device=part.device, memory_format=layout
            )
            kernel = kernel.contiguous(memory_format=memory_format(ndim, kernel.device))
            return torch.ops.aten.convolution_backward(
                dz, like, kernel, None, ones, zeros, ones, False, zeros, 1, [True, False, False]
            )[0]

        need_x, need_h, need_w, need_b = ctx.needs_input_grad[:4]
        dx = dh = dw = db = None
        if need_h:
            padded = input_grad(buffer[:, channels:], weight[:, channels:])
            inside = interior(padded.shape[2:], hidden_pad)
            dh = padded[(slice(None), slice(None), *inside)].to(h_dtype)
        if need_x:
            dx = input_grad(buffer[:, :channels], weight[:, :channels]).to(x_dtype)
        if need_w or need_b:
            dw, db = step_weight_grad(dz, buffer, weight, has_bias and need_b)
            dw = dw.to(w_dtype) if need_w else None
            db = None if db is None else db.to(w_dtype)
        return dx, dh, dw, db, None


def step_conv(
    x: torch.Tensor,
    h: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    hidden_pad: tuple[int, ...],
) -> torch.Tensor:
    """``W * [x, pad(h)] + b`` for one step (see ``StepConv``); plain ops when no
    gradient is needed, inside tracing (export, ``torch.compile``) and with
    ``set_fusion("never")`` (then higher-order gradients work: ``StepConv`` has
    first-order derivatives only)."""
    if torch.is_grad_enabled() and not backend.eager():
        return StepConv.apply(x, h, weight, bias, tuple(hidden_pad))
    return CONV[x.dim() - 2](stack_input(x, h, hidden_pad, conv_dtype(x)), weight, bias)
