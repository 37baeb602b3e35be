"""One layer's whole sequence, in one direction, as one autograd function (training).

Run step by step under autograd, every step of the usual cell builds two nodes (the
step convolution and the gates) and every step pays for glue between them: a fresh
``[x_t, pad(h)]`` buffer zeroed and filled, the hidden state's gradient copied out of
its padded form, the two gradients reaching ``h`` (from the output and from the next
step) added in a separate pass, and at the end the steps' outputs stacked into one
tensor. ``FusedSequence`` does what cuDNN's RNN functions do for the plain LSTM:

* forward: one ``[x_t, pad(h)]`` buffer, its zero padding written once, is refilled
  and convolved at every step (the first step of a zero state convolves ``x_t``
  alone), and the gate kernel's ``h`` is written into the output;
* backward: per step, the gate kernel (``fused_gates``) adds the output's gradient
  in its own loop, the hidden state's gradient comes unpadded from a convolution with
  the flipped kernel, the input's (when needed) likewise, and the weight gradient
  refills the buffer from the input and the saved output.

The results equal ``ConvLSTMCellNd.step`` in a loop (tests check values and
gradients). Like ``FusedGates``, it has first-order derivatives only. Like
``torch.tanh``, it saves its output: modifying the output in place before the
backward pass makes the backward raise, as for any such op.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from ._utils import empty_steps
from .functional import fusion_failed, hand_written_kind, use_fused
from .fused_gates import _backward, _compiled, _forward_infer, _forward_train, _Rows
from .step_conv import _conv_dtype, _interior, memory_format

if TYPE_CHECKING:
    from .cell import ConvLSTMCellNd, StepPlan

_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


def _pairs(flat_pad: Sequence[int]) -> list[tuple[int, int]]:
    """``F.pad`` order (last dimension first) -> ``(before, after)`` per dimension, first
    dimension first."""
    return [(flat_pad[i], flat_pad[i + 1]) for i in range(len(flat_pad) - 2, -1, -2)]


def _flipped(kernel: torch.Tensor, layout: torch.memory_format) -> torch.Tensor:
    """``(O, I, *k)`` -> ``(I, O, *k)`` with every spatial axis reversed: convolving with
    it is the transposed convolution of ``kernel``."""
    spatial = tuple(range(2, kernel.dim()))
    return kernel.flip(spatial).transpose(0, 1).contiguous(memory_format=layout)


def _transposed(dz: torch.Tensor, flipped: torch.Tensor, pad: list[tuple[int, int]]):
    """Gradient of a stride-1 convolution's input, with the input's own ``(before,
    after)`` zero padding already cut away: the output gradient padded by ``k-1-before``
    and ``k-1-after``, convolved with the flipped kernel."""
    kernel = flipped.shape[2:]
    edges = [(k - 1 - before, k - 1 - after) for k, (before, after) in zip(kernel, pad)]
    if all(lo == hi >= 0 for lo, hi in edges):
        return _CONV[dz.dim() - 2](dz, flipped, padding=[lo for lo, _ in edges])
    flat = [e for lo, hi in reversed(edges) for e in (lo, hi)]
    return _CONV[dz.dim() - 2](F.pad(dz, flat), flipped)


#: Weight gradients of inputs with at most this many channels x kernel taps are computed
#: as one matrix product with the unfolded input: oneDNN's weight gradient for a
#: 1-channel input took as long as for the 65-channel stacked one (38 ms, W2 step).
SMALL_UNFOLD = 64


def _weight_grad(
    dz: torch.Tensor, inputs: torch.Tensor, weight: torch.Tensor, has_bias: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Weight and bias gradients of the stride-1 convolution ``z = weight * inputs + b``
    from ``dz``: ``inputs`` ``(B, C, *S_padded)``, ``dz`` ``(B, O, *S)``."""
    kernel = weight.shape[2:]
    channels, taps = inputs.shape[1], math.prod(kernel)
    if channels * taps > SMALL_UNFOLD:
        ndim = dz.dim() - 2
        ones, zeros = [1] * ndim, [0] * ndim
        _, dw, db = torch.ops.aten.convolution_backward(
            dz, inputs, weight, [weight.shape[0]] if has_bias else None,
            ones, zeros, ones, False, zeros, 1, [False, True, has_bias],
        )  # fmt: skip
        return dw, db
    size = dz.shape[2:]
    shifted = [
        inputs[(slice(None), slice(None), *(slice(o, o + s) for o, s in zip(offset, size)))]
        for offset in itertools.product(*(range(k) for k in kernel))
    ]
    # (B, C, *S, taps) -> rows (B * prod(S), C * taps), in the weight's (C, *k) order
    columns = torch.stack(shifted, dim=-1).movedim(1, -2).reshape(-1, channels * taps)
    if has_bias:
        columns = torch.cat([columns, columns.new_ones(columns.shape[0], 1)], dim=1)
    grad = dz.movedim(1, -1).reshape(-1, dz.shape[1]).t() @ columns.to(dz.dtype)
    dw = grad[:, : channels * taps].reshape(weight.shape)
    return dw, (grad[:, -1] if has_bias else None)


class _Stacked:
    """One reused ``(B, C + F, *S_in_padded)`` buffer for a step's ``[x_t, pad(h)]`` (its
    zero padding written once), in the layout the convolutions run fastest in."""

    def __init__(self, x, weight, input_pad, hidden_pad, dtype) -> None:
        self.channels, ndim = x.shape[2], x.dim() - 3
        padded = [s + lo + hi for s, (lo, hi) in zip(x.shape[3:], _pairs(input_pad))]
        self.layout = memory_format(ndim, x.device)
        self.buffer = torch.empty(
            (x.shape[0], weight.shape[1], *padded),
            dtype=dtype, device=x.device, memory_format=self.layout,
        ).zero_()  # fmt: skip
        everything = (slice(None),)
        self.x_part = (*everything, slice(0, self.channels), *_interior(padded, input_pad))
        self.h_part = (*everything, slice(self.channels, None), *_interior(padded, hidden_pad))

    def fill(self, x: torch.Tensor, t: int, h: torch.Tensor | None) -> torch.Tensor:
        """The buffer holding ``[x[:, t], pad(h)]`` (``h=None``: zeros)."""
        self.buffer[self.x_part] = x[:, t]
        self.buffer[self.h_part] = 0 if h is None else h
        return self.buffer

    def inputs(self, x: torch.Tensor, t: int) -> torch.Tensor:
        """``pad(x[:, t])`` alone, ``(B, C, *S_in_padded)`` in the buffer's layout."""
        self.buffer[self.x_part] = x[:, t]
        return self.buffer[:, : self.channels].contiguous(memory_format=self.layout)


@dataclass
class _Run:
    """What ``_forward`` computed: the results, and what the backward needs."""

    output: torch.Tensor
    h_n: torch.Tensor
    c_n: torch.Tensor
    weight: torch.Tensor  # in the convolutions' dtype
    view: _Rows
    c_0: torch.Tensor  # rows
    c_dtype: torch.dtype
    cells: list[torch.Tensor]  # rows, per step (training only)
    acts: list[torch.Tensor]  # (R, 4, K) gate activations, per step (training only)


def _forward(x, h_0, c_0, weight, bias, input_pad, hidden_pad, hard, reverse, train) -> _Run:
    """The sequence's forward (see ``FusedSequence``); ``train`` keeps what the
    backward needs."""
    steps, channels = x.shape[1], x.shape[2]
    dtype = _conv_dtype(x)
    stacked = _Stacked(x, weight, input_pad, hidden_pad, dtype)
    conv_weight = weight.to(dtype)
    conv_bias = None if bias is None else bias.to(dtype)
    conv = _CONV[x.dim() - 3]
    kernel = _compiled("train", _forward_train) if train else _compiled("infer", _forward_infer)
    cells: list[torch.Tensor] = [None] * steps
    acts: list[torch.Tensor] = [None] * steps
    view = c_first = output = h = None
    order = range(steps - 1, -1, -1) if reverse else range(steps)
    for t in order:
        if h_0 is None and t == order[0]:
            # The zero state adds nothing: convolve the input's channels only.
            z = conv(stacked.inputs(x, t), conv_weight[:, :channels], conv_bias)
            z = z.contiguous(memory_format=stacked.layout)
        else:
            z = conv(stacked.fill(x, t, h_0 if h is None else h), conv_weight, conv_bias)
        if view is None:
            view = _Rows(z)
            if c_0 is None:
                c_0 = torch.empty(
                    view.shape, dtype=dtype, device=x.device, memory_format=view.format
                ).zero_()
            gates, c_first = view.inputs(z, c_0)
            c_prev = c_first
        else:
            gates = view.rows(z, 4)
        if train:
            h, c_prev, acts[t] = kernel(gates, c_prev, hard)
            cells[t] = c_prev
        else:
            h, c_prev = kernel(gates, c_prev, hard)
        h = view.unrows(h)
        if output is None:
            output = empty_steps(h, steps)
        output[:, t] = h
        # Free this step's temporaries before the next step allocates its own, so the
        # allocator hands the same blocks back (less heap fragmentation).
        del z, gates
    return _Run(output, h, view.unrows(c_prev), conv_weight, view, c_first, c_0.dtype, cells, acts)


class FusedSequence(torch.autograd.Function):
    """``output, h_n, c_n = FusedSequence.apply(x, h_0, c_0, weight, bias, input_pad,
    hidden_pad, hard, reverse)``.

    ``x`` ``(B, T, C, *S_in)``; ``h_0``, ``c_0`` ``(B, F, *S)`` or ``None`` (zeros);
    ``weight`` ``(4F, C + F, *k)`` (``[W_x, W_h]``), ``bias`` ``(4F,)`` or ``None``;
    ``input_pad`` and ``hidden_pad`` in ``F.pad`` order; stride 1, no dilation; gates
    ``tanh`` and sigmoid (``hard=False``) or Keras's hard sigmoid. Returns ``output``
    ``(B, T, F, *S)`` (time order also when ``reverse``), ``h_n`` and ``c_n`` (float32
    for reduced-precision inputs) ``(B, F, *S)``.
    """

    @staticmethod
    def forward(ctx, x, h_0, c_0, weight, bias, input_pad, hidden_pad, hard, reverse):
        ctx.set_materialize_grads(False)
        run = _forward(x, h_0, c_0, weight, bias, input_pad, hidden_pad, hard, reverse, True)
        # The output holds every h, so it is saved (as tanh's backward saves its result)
        # instead of a copy of every step's stacked input.
        ctx.save_for_backward(x, h_0, run.output, run.weight, run.c_0, *run.cells, *run.acts)
        ctx.meta = (run.view, hard, reverse, input_pad, hidden_pad, bias is not None)
        ctx.dtypes = (x.dtype, None if h_0 is None else h_0.dtype, run.c_dtype, weight.dtype)
        return run.output, run.h_n, run.c_n

    @staticmethod
    @once_differentiable
    def backward(ctx, d_output, d_h_n, d_c_n):
        x, h_0, output, weight, c_first, *saved = ctx.saved_tensors
        view, hard, reverse, input_pad, hidden_pad, has_bias = ctx.meta
        x_dtype, h_dtype, c_dtype, w_dtype = ctx.dtypes
        steps = len(saved) // 2
        cells, acts = saved[:steps], saved[steps:]
        need_x, need_h, need_c, need_w, need_b = ctx.needs_input_grad[:5]
        channels = x.shape[2]
        dtype = weight.dtype
        stacked = _Stacked(x, weight, input_pad, hidden_pad, dtype) if need_w or need_b else None
        layout = memory_format(x.dim() - 3, x.device)
        flipped_h = _flipped(weight[:, channels:], layout)
        flipped_x = _flipped(weight[:, :channels], layout) if need_x else None
        kernel = _compiled("backward", _backward)

        order = range(steps) if reverse else range(steps - 1, -1, -1)  # backward order
        hidden_pairs, input_pairs = _pairs(hidden_pad), _pairs(input_pad)
        acc_dtype = acts[0].dtype
        dh = (
            torch.zeros_like(c_first, dtype=acc_dtype)
            if d_h_n is None
            else view.rows(d_h_n.to(acc_dtype))
        )
        dc = torch.zeros_like(c_first) if d_c_n is None else view.rows(d_c_n.to(acc_dtype))
        d_weight = torch.zeros_like(weight) if need_w else None
        d_bias = weight.new_zeros(weight.shape[0]) if need_b and has_bias else None
        d_inputs: list[torch.Tensor] = [None] * steps
        for index, t in enumerate(order):
            before = t + 1 if reverse else t - 1  # the step processed before t
            c_prev = cells[before] if 0 <= before < steps else c_first
            d_out = None if d_output is None else view.strided_rows(d_output[:, t])
            dz, dc = kernel(dh, dc, acts[t], cells[t], c_prev, hard, dtype, d_out)
            del dh, d_out  # (see the forward loop)
            dz = view.ungates(dz)
            if index < steps - 1 or need_h:
                dh = view.rows(_transposed(dz, flipped_h, hidden_pairs))
            if need_x:
                d_inputs[t] = _transposed(dz, flipped_x, input_pairs)
            if stacked is not None:
                if h_0 is None and index == steps - 1:  # the hidden part of the input is 0
                    parts, inputs = slice(0, channels), stacked.inputs(x, t)
                else:
                    h_prev = output[:, before] if 0 <= before < steps else h_0
                    parts, inputs = slice(None), stacked.fill(x, t, h_prev)
                dw, db = _weight_grad(dz, inputs, weight[:, parts], has_bias)
                if need_w:
                    d_weight[:, parts] += dw
                if need_b and has_bias:
                    d_bias += db
                del dw, db
            del dz

        d_x = d_h0 = d_c0 = None
        if need_x:
            d_x = torch.stack(d_inputs, dim=1).to(x_dtype)
        if need_h:
            d_h0 = view.unrows(dh).to(h_dtype)
        if need_c:
            d_c0 = view.unrows(dc).to(c_dtype)
        if d_weight is not None:
            d_weight = d_weight.to(w_dtype)
        if d_bias is not None:
            d_bias = d_bias.to(w_dtype)
        return d_x, d_h0, d_c0, d_weight, d_bias, None, None, None, None


def run_fused_sequence(
    cell: ConvLSTMCellNd,
    x: torch.Tensor,
    state: tuple[torch.Tensor, ...] | None,
    plan: StepPlan,
    reverse: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """``(output, h_n, c_n)`` of ``cell`` over ``x`` ``(B, T, C, *S_in)`` by
    ``FusedSequence`` (or its forward alone when no gradient is recorded), or ``None``
    when it does not apply: the cell has peepholes, layer norm, attention, gates other
    than tanh with (hard) sigmoid, a strided or dilated input path, or fusion is off
    (``set_fusion``, and "auto" below ``AUTO_FUSION_MIN_ELEMENTS`` state elements)."""
    hard = hand_written_kind(cell.activation, cell.recurrent_activation)
    if (
        hard is None
        or not plan.fused
        or cell.attention is not None
        or cell.peephole_weight is not None
        or cell.layer_norm
        or x.shape[1] == 0
    ):
        return None
    state_elements = x.shape[0] * cell.hidden_channels * math.prod(plan.output_size)
    if not use_fused(state_elements, x.device):
        return None
    h_0, c_0 = (None, None) if state is None else state
    weight = cell.step_weight(plan)
    args = (x, h_0, c_0, weight, cell.bias, plan.input_pad, plan.hidden_pad, hard, reverse)
    tensors = [x, *cell.parameters(), *(state or ())]
    try:
        if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
            return FusedSequence.apply(*args)
        run = _forward(*args, train=False)
        return run.output, run.h_n, run.c_n
    except Exception as error:  # compiler missing or broken on this machine
        fusion_failed(error)
        return None
