"""One layer's whole sequence, in one direction, as one autograd function (training).

Run step by step under autograd, every step of the usual cell builds two nodes (the
step convolution and the gates) and every step pays for glue between them: a fresh
``[x_t, pad(h)]`` buffer zeroed and filled, the hidden state's gradient copied out of
its padded form, the two gradients reaching ``h`` (from the output and from the next
step) added in a separate pass, and at the end the steps' outputs stacked into one
tensor. ``FusedSequence`` does what cuDNN's RNN functions do for the plain LSTM (here
also with Shi et al.'s peepholes, whose gradient the gate loop sums over the steps):

* forward: one ``[x_t, pad(h)]`` buffer, its zero padding written once, is refilled
  and convolved at every step (the first step of a zero state convolves ``x_t``
  alone), and the gate loop writes ``h`` into the output (``fast.simd``'s on CPUs
  with AVX-512 BF16, else ``fast.gates``'s). In training the convolution adds each
  step's gates into that step's slot of one block (oneDNN's sum post-op), kept for
  the backward; the block, one for the cells and the output are memory of
  ``fast.pool``, outside malloc's heap;
* backward: per step, the gate loop (``fast.gates``) recomputes the activations
  from the kept gates and adds the output's gradient in its own loop, the hidden
  state's gradient comes unpadded from a convolution with the flipped kernel, the
  input's (when needed) likewise, and the weight gradient refills the buffer from the
  input and the saved output;
* checkpointed (``segment``, the layer's ``checkpoint=True``): the forward keeps only
  the output and the cell after every segment of steps. Going back, the backward
  recomputes one segment's cells at a time from the cell before it, and then, at
  every step, the step's gates again: a step's gates are one convolution of the kept
  output, while keeping them costs four cells' memory per step of the segment.

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

from .._utils import CONV, conv_dtype, empty_steps, interior, memory_format
from ..settings import backend
from . import simd
from ._torch import convolution_add_
from .gates import GateKind, _backward_rows, _generated_forward, _Rows, first_derivatives_only
from .pool import _empty, _step_block

if TYPE_CHECKING:
    from ..cell import ConvLSTMCellNd
    from ..recurrent import StepPlan

_DENSE = torch.contiguous_format


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
        return CONV[dz.dim() - 2](dz, flipped, padding=[lo for lo, _ in edges])
    flat = [e for lo, hi in reversed(edges) for e in (lo, hi)]
    return CONV[dz.dim() - 2](F.pad(dz, flat), flipped)


def _add_conv_(out: torch.Tensor, inputs: torch.Tensor, weight: torch.Tensor, bias) -> None:
    """``out += conv(inputs, weight) + bias`` in place (stride 1, no padding). On a CPU,
    oneDNN adds the convolution into ``out`` as it writes its result (as fast as the
    convolution alone), so a step's gates land in memory the caller chose; elsewhere a
    convolution and an add."""
    ndim = inputs.dim() - 2
    if not (
        out.device.type == "cpu"
        and out.dtype in (torch.float32, torch.bfloat16)
        and ndim in (2, 3)
        and out.is_contiguous(memory_format=memory_format(ndim, out.device))
        and convolution_add_(out, inputs, weight, bias)
    ):
        out.add_(CONV[ndim](inputs, weight, bias))


def _takes_slot(nbytes: int, device: torch.device) -> bool:
    """Whether a step's tensor of ``nbytes`` that the step uses up (inference gates, a
    backward's gate gradient) goes into one reused slot of the mapped pool instead of a
    fresh tensor per step (``backend.fresh_gate_bytes``)."""
    return device.type == "cpu" and nbytes >= backend.fresh_gate_bytes


def step_weight_grad(
    dz: torch.Tensor, inputs: torch.Tensor, weight: torch.Tensor, has_bias: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Weight and bias gradients of the stride-1 convolution ``z = weight * inputs + b``
    from ``dz``: ``inputs`` ``(B, C, *S_padded)``, ``dz`` ``(B, O, *S)``. Inputs of at most
    ``backend.small_unfold`` channels x kernel taps take the hand-written loop where it
    applies (``simd.weight_grad``), else a matrix product with the unfolded input:
    oneDNN's weight gradient of a 1-channel input costs as much as of a 65-channel one.
    Larger inputs take oneDNN's, or the loop where it is the faster one at every size
    (``simd.weight_grad_at_any_size``: AVX2)."""
    kernel = weight.shape[2:]
    channels, taps = inputs.shape[1], math.prod(kernel)
    small = channels * taps <= backend.small_unfold
    if small or simd.weight_grad_at_any_size():
        fast = simd.weight_grad(dz, inputs, kernel, has_bias)
        if fast is not None:
            return fast
    if not small:
        ndim = dz.dim() - 2
        ones, zeros = [1] * ndim, [0] * ndim
        _, dw, db = torch.ops.aten.convolution_backward(
            dz, inputs, weight, [weight.shape[0]] if has_bias else None,
            ones, zeros, ones, False, zeros, 1, [False, True, has_bias],
        )  # fmt: skip
        return dw, db
    batch, size = dz.shape[0], dz.shape[2:]
    shifted = [
        inputs[(slice(None), slice(None), *(slice(o, o + s) for o, s in zip(offset, size)))]
        for offset in itertools.product(*(range(k) for k in kernel))
    ]
    # (B, C, *S, taps) -> (B, prod(S), C * taps), in the weight's (C, *k) order
    columns = torch.stack(shifted, dim=-1).movedim(1, -2).reshape(batch, -1, channels * taps)
    if has_bias:
        columns = torch.cat([columns, columns.new_ones(*columns.shape[:2], 1)], dim=2)
    # Per sample (C·taps, prod(S)) @ (prod(S), O), summed in float32 and transposed: one
    # product over all B·prod(S) rows runs on one thread, and MKL is much slower for
    # dz^T @ columns.
    rows = dz.movedim(1, -1).reshape(batch, -1, dz.shape[1])
    products = torch.bmm(columns.to(dz.dtype).transpose(1, 2), rows)
    grad = products.sum(0, dtype=torch.promote_types(dz.dtype, torch.float32)).t()
    dw = grad[:, : channels * taps].reshape(weight.shape)
    return dw, (grad[:, -1] if has_bias else None)


def _split_weight_grad(weight: torch.Tensor, channels: int) -> bool:
    """Whether ``FusedSequence``'s backward computes the weight gradient in two parts: in
    float16/bfloat16 on a CPU, for a stacked input whose channel count is not a multiple
    of 16 while its hidden part's is, and whose input part unfolds to at most
    ``backend.split_input_columns`` columns, the hidden part by oneDNN from a dense
    buffer of its own and the input part as a matrix product (``step_weight_grad``): oneDNN's
    reduced-precision weight gradient is slower for 17 channels than for 16. In float32
    17 channels are not slower, and it is off."""
    hidden = weight.shape[1] - channels
    return (
        weight.device.type == "cpu"
        and weight.dtype in (torch.float16, torch.bfloat16)
        and weight.shape[1] % 16 != 0
        and hidden % 16 == 0
        and channels * math.prod(weight.shape[2:]) <= backend.split_input_columns
    )


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
        self.x_part = (*everything, slice(0, self.channels), *interior(padded, input_pad))
        self.h_part = (*everything, slice(self.channels, None), *interior(padded, hidden_pad))
        # each part alone in a dense buffer of its own: its interior, and the buffer
        self.alone_part = [(*everything, *everything, *interior(padded, pad))
                           for pad in (input_pad, hidden_pad)]  # fmt: skip
        self.alone: list[torch.Tensor | None] = [None, None]

    def fill(self, x: torch.Tensor, t: int, h: torch.Tensor | None) -> torch.Tensor:
        """The buffer holding ``[x[:, t], pad(h)]`` (``h=None``: zeros)."""
        self.buffer[self.x_part] = x[:, t]
        self.buffer[self.h_part] = 0 if h is None else h
        return self.buffer

    def _alone(self, part: int, value: torch.Tensor) -> torch.Tensor:
        """``value`` padded as part ``part`` (0: input, 1: hidden state) of the stacked
        buffer, in a reused dense buffer of its own (its zero padding written once)."""
        if self.alone[part] is None:
            channels = slice(0, self.channels) if part == 0 else slice(self.channels, None)
            like = self.buffer[:, channels]
            self.alone[part] = torch.zeros_like(like, memory_format=self.layout)
        self.alone[part][self.alone_part[part]] = value
        return self.alone[part]

    def inputs(self, x: torch.Tensor, t: int) -> torch.Tensor:
        """``pad(x[:, t])`` alone, ``(B, C, *S_in_padded)`` (overwritten by the next call)."""
        return self._alone(0, x[:, t])

    def hidden(self, h: torch.Tensor) -> torch.Tensor:
        """``pad(h)`` alone, ``(B, F, *S_in_padded)`` (overwritten by the next call)."""
        return self._alone(1, h)


class _GateConv:
    """A step's gate pre-activations ``conv([x_t, pad(h)]) + b`` through a ``_Stacked``
    buffer (``h=None``: the zero state, whose step convolves the input's channels
    alone), in the buffer's layout: the forward's, and the checkpointed backward's
    recomputation of them."""

    def __init__(self, stacked: _Stacked, weight: torch.Tensor, bias, dtype) -> None:
        channels, layout = stacked.channels, stacked.layout
        self.stacked, self.layout = stacked, layout
        self.weights = [w.contiguous(memory_format=layout) for w in (weight[:, :channels], weight)]
        self.bias = None if bias is None else bias.to(dtype)
        self.conv = CONV[weight.dim() - 2]

    def _inputs(self, x, t, h) -> tuple[torch.Tensor, torch.Tensor]:
        if h is None:
            return self.stacked.inputs(x, t), self.weights[0]
        return self.stacked.fill(x, t, h), self.weights[1]

    def __call__(self, x: torch.Tensor, t: int, h: torch.Tensor | None) -> torch.Tensor:
        inputs, weight = self._inputs(x, t, h)
        return self.conv(inputs, weight, self.bias).contiguous(memory_format=self.layout)

    def add_(self, out: torch.Tensor, x: torch.Tensor, t: int, h: torch.Tensor | None) -> None:
        """Writes the gates into ``out`` (a slot of a kept block) instead."""
        inputs, weight = self._inputs(x, t, h)
        _add_conv_(out.zero_(), inputs, weight, self.bias)


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
    gates: list[torch.Tensor]  # (R, 4, K) pre-activations per step (training only)
    boundaries: list[torch.Tensor]  # rows: the cell after every ``keep_every`` steps
    peep: torch.Tensor | None  # the peephole weights as the loops read them


def _forward(
    x, h_0, c_0, weight, bias, input_pad, hidden_pad, kind, reverse, train,
    *, keep_every: int | None = None, peephole: torch.Tensor | None = None,
) -> _Run:  # fmt: skip
    """The sequence's forward (see ``FusedSequence``) in the convolutions' dtype
    (autocast's or ``x``'s); ``train`` keeps what the backward needs, every step's gates
    and cell; ``keep_every=k`` keeps only the cell after every ``k`` steps (in processing
    order) and the output in the mapped pool, for a backward that recomputes the rest;
    ``peephole``: the cell's peephole weights, or ``None``."""
    steps = x.shape[1]
    dtype = conv_dtype(x)
    stacked = _Stacked(x, weight, input_pad, hidden_pad, dtype)
    layout = stacked.layout
    conv_weight = weight.to(dtype)  # saved for the backward
    gate_conv = _GateConv(stacked, conv_weight, bias, dtype)
    # Training keeps every step's gates and cell for the backward (which recomputes the
    # activations): the convolution adds a step's gates into its slot of one block; the
    # cells go to another. Inference of large gates on a CPU reuses one slot for every
    # step (``backend.fresh_gate_bytes``: W2's gates are exactly 32 MiB); a checkpointed
    # forward keeps taking them from the heap, which frees them for the backward.
    size = [n - k + 1 for n, k in zip(stacked.buffer.shape[2:], weight.shape[2:])]
    gate_shape = (x.shape[0], weight.shape[0], *size)
    block = None
    if train:
        block = _step_block(gate_shape, dtype, x.device, layout, steps)
    elif not keep_every and _takes_slot(math.prod(gate_shape) * dtype.itemsize, x.device):
        block = _step_block(gate_shape, dtype, x.device, layout, 1)
    cells: list[torch.Tensor] = [None] * steps
    saved_gates: list[torch.Tensor] = [None] * steps
    boundaries: list[torch.Tensor] = []
    view = c_first = output = cell_block = peep = None
    h = h_0
    order = range(steps - 1, -1, -1) if reverse else range(steps)
    for index, t in enumerate(order):
        if block is None:
            z = gate_conv(x, t, h)
        else:
            z = block[t if train else 0]
            gate_conv.add_(z, x, t, h)
        if view is None:
            view = _Rows(z)
            if c_0 is None:
                c_0 = torch.empty(
                    view.shape, dtype=dtype, device=x.device, memory_format=view.format
                ).zero_()
            gates, c_first = view.inputs(z, c_0)
            c_prev = c_first
            if peephole is not None:
                peep = view.peephole_rows(peephole, c_first.dtype)
        else:
            gates = view.rows(z, 4)
        if output is None:
            like = empty_steps(view.unrows(c_prev.to("meta", gates.dtype)), steps)
            if train or keep_every:  # kept for the backward: mapped
                output = _empty(like.shape, like.stride(), like.dtype, x.device)
            else:
                output = torch.empty_strided(
                    like.shape, like.stride(), dtype=like.dtype, device=x.device
                )
        if train:
            if cell_block is None:
                cell_block = _step_block(c_prev.shape, c_prev.dtype, x.device, _DENSE, steps)
            c_next = cell_block[t]
        else:  # the cell is updated in place, after a first one of its own
            c_next = torch.empty_like(c_prev) if c_prev is c_first else c_prev
        # The next step reads h back from the output: each step's h goes straight there.
        h = output[:, t]
        if not simd.forward(gates, c_prev, kind, view.strided_rows(h), c_next, peep):
            h_rows, c_new = _generated_forward(peep)(gates, c_prev, kind)
            h.copy_(view.unrows(h_rows))
            if train:
                c_next.copy_(c_new)
            else:
                c_next = c_new
            del h_rows, c_new
        c_prev = c_next
        if train:
            saved_gates[t], cells[t] = gates, c_prev
        if keep_every and (index + 1) % keep_every == 0 and index < steps - 1:
            boundaries.append(_empty(c_prev.shape, c_prev.stride(), c_prev.dtype, x.device))
            boundaries[-1].copy_(c_prev)  # kept for the backward: mapped, as the output
        del z, gates
    c_n = view.unrows(c_prev)
    h_n = h.clone()  # not a view of the output, which the caller may modify in place
    return _Run(
        output, h_n, c_n, conv_weight, view, c_first, c_0.dtype, cells, saved_gates, boundaries,
        peep,
    )  # fmt: skip


def checkpoint_segment(steps: int) -> int:
    """Steps per recomputed segment for ``FusedSequence(..., segment)``: ``round(sqrt(T))``.
    What a checkpointed sequence keeps beyond its output is a cell per segment boundary
    (``T/k - 1``) and, in the backward, the ``k`` cells of one segment (its gates are
    recomputed one step at a time); ``k = sqrt(T)`` minimises their sum."""
    return max(1, min(steps, round(math.sqrt(steps))))


def _add_weight_grad(
    d_weight, d_bias, stacked: _Stacked, dz, x, t: int, h_prev, weight, has_bias, split
) -> None:
    """Add step ``t``'s weight and bias gradients (``None`` where not needed) from its
    gates' gradient ``dz`` and input ``[x_t, pad(h_prev)]`` (``h_prev=None``: zeros)."""
    channels = stacked.channels
    x_part = slice(0, channels)
    if h_prev is None:  # the hidden part of the input is 0
        pieces = [(x_part, stacked.inputs(x, t))]
    elif split:
        h_part = slice(channels, None)
        pieces = [(x_part, stacked.inputs(x, t)), (h_part, stacked.hidden(h_prev))]
    else:
        pieces = [(slice(None), stacked.fill(x, t, h_prev))]
    for k, (parts, inputs) in enumerate(pieces):
        dw, db = step_weight_grad(dz, inputs, weight[:, parts], has_bias and k == 0)
        if d_weight is not None:
            d_weight[:, parts] += dw
        if d_bias is not None and db is not None:
            d_bias += db


class _Recompute:
    """The checkpointed backward's recomputation. A segment's cells come from the cell
    before it, each step's gates from a convolution of the kept output (the ``h`` the
    step started from): kept are the segment's cells and one step's ``h`` (mapped, as
    the forward's kept tensors), and the gates of one step at a time, convolved again
    when the backward reaches the step."""

    def __init__(self, stacked, weight, bias, dtype, c_first, kind, segment: int, peep) -> None:
        self.gates = _GateConv(stacked, weight, bias, dtype)
        self.kind, self.peep = kind, peep
        device = weight.device
        self.block = _step_block(c_first.shape, c_first.dtype, device, _DENSE, segment)
        self.h = _empty(c_first.shape, c_first.stride(), dtype, device)  # recomputed, unused

    def cells(self, x, seg: list[int], c_start, h_before, view: _Rows, cells: list) -> None:
        """Fills ``cells[t]`` for every step ``t`` of ``seg`` (in processing order), from
        the cell ``c_start`` before it."""
        c_prev = c_start
        for j, t in enumerate(seg):
            z = view.rows(self.gates(x, t, h_before(t)), 4)
            c_next = self.block[j]
            if not simd.forward(z, c_prev, self.kind, self.h, c_next, self.peep):
                c_next.copy_(_generated_forward(self.peep)(z, c_prev, self.kind)[1])
            cells[t] = c_prev = c_next
            del z


class FusedSequence(torch.autograd.Function):
    """``output, h_n, c_n = FusedSequence.apply(x, h_0, c_0, weight, bias, input_pad,
    hidden_pad, kind, reverse, segment=None, peephole=None)``.

    ``x`` ``(B, T, C, *S_in)``; ``h_0``, ``c_0`` ``(B, F, *S)`` or ``None`` (zeros);
    ``weight`` ``(4F, C + F, *k)`` (``[W_x, W_h]``), ``bias`` ``(4F,)`` or ``None``;
    ``input_pad`` and ``hidden_pad`` in ``F.pad`` order; stride 1, no dilation; gates
    ``tanh`` and those of ``kind`` (a ``GateKind``); ``peephole`` ``(3, F, 1, ...)`` or
    ``(3, F, *S)`` (per channel or per pixel, ``w_i, w_f, w_o``) or ``None``. Returns ``output``
    ``(B, T, F, *S)`` (time order also when ``reverse``), ``h_n`` and ``c_n`` (float32
    for reduced-precision inputs) ``(B, F, *S)``.

    ``segment=k`` checkpoints through time: the forward keeps the output and the cell
    after every ``k`` steps only, and the backward recomputes the cells of one segment
    of ``k`` steps at a time, and each step's gates as it reaches the step (two more
    convolutions and one more gate loop per step; see ``checkpoint_segment`` for ``k``).
    """

    @staticmethod
    def forward(
        ctx, x, h_0, c_0, weight, bias, input_pad, hidden_pad, kind, reverse, segment=None,
        peephole=None,
    ):  # fmt: skip
        ctx.set_materialize_grads(False)
        kind = GateKind(kind)
        args = (x, h_0, c_0, weight, bias, input_pad, hidden_pad, kind, reverse)
        if segment is None:
            run = _forward(*args, True, peephole=peephole)
            kept = (*run.cells, *run.gates)
        else:
            run = _forward(*args, False, keep_every=segment, peephole=peephole)
            kept = run.boundaries
        # The output holds every h, so it is saved (as tanh's backward saves its result)
        # instead of a copy of every step's stacked input.
        # The bias only for the recomputation: saved, it may no longer change in place.
        recompute_bias = None if segment is None else bias
        ctx.save_for_backward(
            x, h_0, run.output, run.weight, recompute_bias, run.peep, run.c_0, *kept
        )  # fmt: skip
        ctx.meta = (run.view, kind, reverse, input_pad, hidden_pad, bias is not None, segment)
        ctx.peephole = None if peephole is None else (peephole.shape, peephole.dtype)
        ctx.dtypes = (x.dtype, None if h_0 is None else h_0.dtype, run.c_dtype, weight.dtype)
        return run.output, run.h_n, run.c_n

    @staticmethod
    @first_derivatives_only
    def backward(ctx, d_output, d_h_n, d_c_n):
        x, h_0, output, weight, bias, peep, c_first, *saved = ctx.saved_tensors
        view, kind, reverse, input_pad, hidden_pad, has_bias, segment = ctx.meta
        x_dtype, h_dtype, c_dtype, w_dtype = ctx.dtypes
        steps = x.shape[1]
        order = list(range(steps - 1, -1, -1) if reverse else range(steps))  # forward's
        need_x, need_h, need_c, need_w, need_b = ctx.needs_input_grad[:5]
        channels = x.shape[2]
        dtype = weight.dtype
        stacked = None
        if need_w or need_b or segment is not None:
            stacked = _Stacked(x, weight, input_pad, hidden_pad, dtype)
        if segment is None:  # one segment, everything kept
            segments, starts = [order], [c_first]
            cells, gates = list(saved[:steps]), list(saved[steps:])
        else:
            segments = [order[i : i + segment] for i in range(0, steps, segment)]
            starts = [c_first, *saved]  # the cell before each segment
            cells, gates = [None] * steps, None
            recompute = _Recompute(stacked, weight, bias, dtype, c_first, kind, segment, peep)
        layout = memory_format(x.dim() - 3, x.device)
        flipped_h = _flipped(weight[:, channels:], layout)
        flipped_x = _flipped(weight[:, :channels], layout) if need_x else None

        def h_before(t: int) -> torch.Tensor | None:
            """The hidden state step ``t`` started from."""
            before = t + 1 if reverse else t - 1  # the step processed before t
            return output[:, before] if 0 <= before < steps else h_0

        hidden_pairs, input_pairs = _pairs(hidden_pad), _pairs(input_pad)
        acc_dtype = c_first.dtype
        # The hidden state's gradient in the convolutions' dtype, as every later step's
        # is (a convolution of the gate gradient) and as the loop reads it; the cell's
        # in float32.
        dh = torch.zeros_like(c_first, dtype=dtype) if d_h_n is None else view.rows(d_h_n.to(dtype))
        dc = torch.zeros_like(c_first) if d_c_n is None else view.rows(d_c_n.to(acc_dtype))
        # Summed over the steps in float32 also for float16/bfloat16 convolutions.
        sum_dtype = torch.promote_types(dtype, torch.float32)
        d_weight = torch.zeros_like(weight, dtype=sum_dtype) if need_w else None
        d_bias = weight.new_zeros(weight.shape[0], dtype=sum_dtype) if need_b and has_bias else None
        d_peep = None if peep is None else torch.zeros_like(peep)  # summed over the steps
        split = _split_weight_grad(weight, channels)
        # A step's gate gradient is used up within the step: from the size glibc's
        # default malloc maps afresh, every step writes it into one slot (as inference
        # does its gates, ``backend.fresh_gate_bytes``).
        dz_slot = None
        d_inputs: list[torch.Tensor] = [None] * steps
        d_step: list[torch.Tensor] = []  # the output's gradient at a step, if transposed
        index = 0  # steps gone back through
        for number in range(len(segments) - 1, -1, -1):
            seg = segments[number]
            if segment is not None:
                recompute.cells(x, seg, starts[number], h_before, view, cells)
            for t in reversed(seg):
                before = t + 1 if reverse else t - 1
                c_prev = starts[number] if t == seg[0] else cells[before]
                if segment is None:
                    z = gates[t]
                else:
                    z = view.rows(recompute.gates(x, t, h_before(t)), 4)
                d_out = None if d_output is None else view.step_rows(d_output[:, t], d_step)
                if dz_slot is None and _takes_slot(z.numel() * z.element_size(), x.device):
                    dz_slot = _empty(z.shape, z.stride(), z.dtype, x.device)
                dz, dc = _backward_rows(
                    dh, dc, z, cells[t], c_prev, kind, dtype, d_out, dz_slot, peep, d_peep
                )  # fmt: skip
                del dh, d_out, z  # (see the forward loop)
                dz = view.ungates(dz)
                if index < steps - 1 or need_h:
                    dh = view.rows(_transposed(dz, flipped_h, hidden_pairs))
                if need_x:
                    d_inputs[t] = _transposed(dz, flipped_x, input_pairs)
                if need_w or need_b:
                    _add_weight_grad(
                        d_weight, d_bias, stacked, dz, x, t, h_before(t), weight, has_bias, split
                    )  # fmt: skip
                del dz
                index += 1

        d_x = d_h0 = d_c0 = d_peephole = None
        if peep is not None and ctx.needs_input_grad[10]:
            d_peephole = view.peephole_grad(d_peep, *ctx.peephole)
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
        return d_x, d_h0, d_c0, d_weight, d_bias, None, None, None, None, None, d_peephole


class LSTMSequence:
    """The LSTM cell's fast path (``ConvLSTMCellNd.fast_path``): ``FusedSequence``
    (checkpointed through time in segments of ``checkpoint_segment`` steps when
    ``checkpoint``), or its forward alone when no gradient is recorded."""

    name = "FusedSequence"

    def __init__(self, cell: ConvLSTMCellNd, plan: StepPlan, kind: GateKind) -> None:
        self.cell, self.plan, self.kind = cell, plan, kind

    def __call__(self, x, state, reverse: bool, checkpoint: bool):
        cell, plan = self.cell, self.plan
        h_0, c_0 = (None, None) if state is None else state
        weight = cell.step_weight(plan)
        args = (x, h_0, c_0, weight, cell.bias, plan.input_pad, plan.hidden_pad, self.kind)
        tensors = [x, *cell.parameters(), *(state or ())]
        peephole = cell.peephole_weight
        if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
            segment = checkpoint_segment(x.shape[1]) if checkpoint else None
            output, h_n, c_n = FusedSequence.apply(*args, reverse, segment, peephole)
        else:
            run = _forward(*args, reverse, train=False, peephole=peephole)
            output, h_n, c_n = run.output, run.h_n, run.c_n
        return output, (h_n, c_n)
