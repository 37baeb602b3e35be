"""The common ConvLSTM gate step as one autograd function with hand-written derivatives.

For the usual cell (``tanh`` or ``relu`` activation, gates of a ``GateKind``: the
sigmoid, Keras 3's or Keras 2's hard sigmoid; no layer norm) one step's gate arithmetic
is, written for ``tanh``,

    i, f, o = σ(z_i), σ(z_f), σ(z_o);   g = tanh(z_g)
    c = f ∘ c_prev + i ∘ g;             h = o ∘ tanh(c)

and its derivatives, with ``dc`` the total gradient reaching ``c``::

    dc     = dc_out + dh ∘ o ∘ (1 - tanh(c)²)
    dz_i   = dc ∘ g ∘ σ'(z_i)    dz_f = dc ∘ c_prev ∘ σ'(z_f)
    dz_g   = dc ∘ i ∘ (1 - g²)   dz_o = dh ∘ tanh(c) ∘ σ'(z_o)
    dc_prev = dc ∘ f

where ``σ'`` is ``σ (1 - σ)`` for the sigmoid, and a hard sigmoid's slope (``1/6`` for
Keras 3's, ``0.2`` for Keras 2's) on its linear part, else 0, its ends included or not
as autograd differentiates the reference functions (``activations``).

With peepholes (Shi et al. 2015) ``z_i``, ``z_f`` and ``z_o`` stand for ``z_i + w_i ∘
c_prev``, ``z_f + w_f ∘ c_prev`` and ``z_o + w_o ∘ c``, and their paths add to the
derivatives: ``dc += dz_o ∘ w_o``, ``dc_prev += dz_i ∘ w_i + dz_f ∘ w_f``, and ``dw_i``,
``dw_f``, ``dw_o`` are the sums of ``dz_i ∘ c_prev``, ``dz_f ∘ c_prev`` and ``dz_o ∘ c``.

With ``relu`` as the activation, ``relu`` takes the place of ``tanh``, and its slope
(1 above 0, else 0, as autograd's) that of ``1 - g²`` and ``1 - tanh(c)²``.

The forward saves only the pre-activations ``z`` (``c`` and ``c_prev`` are kept anyway
as neighbouring steps' states) and the backward recomputes the activations from them,
exactly as the forward computed them: writing the four activations out in the forward
costs more than recomputing them (``docs/performance.md``), and float16/bfloat16
pre-activations are half the size of float32 activations. Each direction is one
``torch.compile``-generated loop.

The loops run over "rows": a channels-last ``(B, 4F, *S)`` gate tensor is viewed (no
copy) as ``(B·N, 4, F)`` and a contiguous one as ``(B, 4, F·N)``, so the inner loop is
always unit-stride and vectorises; generated from the generic ``(B, 4F, *S)`` form it
does not. On x86 CPUs with AVX-512 BF16 or AVX2, float32 and bfloat16 gates with rows of
a multiple of the vector's lanes run hand-written loops instead (``fast.simd``).
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Callable

import torch
import torch.nn.functional as F

from ...runtime import announce_if_slow
from ..activations import hard_sigmoid, hard_sigmoid_keras2
from ..settings import backend
from . import simd
from ._torch import compile_kernel

_kernels: dict[str, Callable] = {}  # compiled once per process, by name


class GateKind(enum.IntFlag):
    """The activations of a cell, as the kernels (also the C++ loops of ``fast.simd``)
    take them: the recurrent activation ``σ`` of the gates (one of the first three;
    ``False``/``True`` stand for the first two), with ``RELU`` added where the cell's
    activation (of the candidate and of the cell state) is ``relu`` instead of ``tanh``."""

    SIGMOID = 0
    HARD_SIGMOID = 1  # Keras 3: relu6(x + 3) / 6
    HARD_SIGMOID_KERAS2 = 2  # Keras 2: clip(0.2 x + 0.5, 0, 1)
    RELU = 4


_GATES = 3  # the bits of σ in a GateKind

# The activations the kernels know, and their kinds.
_GATE_KINDS = {
    torch.sigmoid: GateKind.SIGMOID,
    F.hardsigmoid: GateKind.HARD_SIGMOID,
    hard_sigmoid: GateKind.HARD_SIGMOID,
    hard_sigmoid_keras2: GateKind.HARD_SIGMOID_KERAS2,
}
_CELL_KINDS = {torch.tanh: GateKind(0), torch.relu: GateKind.RELU, F.relu: GateKind.RELU}


def gate_kind(activation: Callable, recurrent_activation: Callable) -> GateKind | None:
    """For the activations these kernels know (``tanh`` or ``relu`` with the sigmoid,
    Keras 3's or Keras 2's hard sigmoid gates), their ``GateKind``; ``None`` for any
    other pair."""
    cell, gates = _CELL_KINDS.get(activation), _GATE_KINDS.get(recurrent_activation)
    return None if cell is None or gates is None else gates | cell


HIGHER_ORDER_ERROR = (
    "the fused ConvLSTM kernels have first derivatives only, and this gradient was asked "
    "with create_graph=True (a higher-order gradient); run the model with plain ops: "
    'convlstm.set_fusion("never") before the forward pass, or CONVLSTM_FUSION=never'
)


def first_derivatives_only(backward: Callable) -> Callable:
    """Decorate an autograd function's ``backward`` written with plain tensor code that
    autograd cannot differentiate again: it runs without recording, and under
    ``create_graph=True`` raises ``HIGHER_ORDER_ERROR`` at once. (``once_differentiable``
    would instead let a second derivative fail later with a message naming no cause, or,
    where no incoming gradient requires grad, silently miss this function's terms.)"""

    @functools.wraps(backward)
    def wrapper(ctx, *grads):
        if torch.is_grad_enabled():
            raise RuntimeError(HIGHER_ORDER_ERROR)
        return backward(ctx, *grads)

    return wrapper


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """float32 for float16/bfloat16 gates (the cell state stays float32), else ``dtype``."""
    return torch.promote_types(dtype, torch.float32)


def _compiled(name: str, fn: Callable) -> Callable:
    """``fn`` compiled once per process (``_torch.compile_kernel``), at its first call:
    callers that end up running a hand-written loop instead never import the compiler."""
    if name not in _kernels:
        compiled: list[Callable] = []

        def run(*args, **kwargs):
            if compiled:
                return compiled[0](*args, **kwargs)
            # The first call compiles C++ for this machine: tens of seconds on a few
            # cores with a cold cache, which a user should not mistake for a hang.
            compiled.append(compile_kernel(fn, backend.recompile_limit))
            with announce_if_slow(f"compiling the fused kernel {name!r}"):
                return compiled[0](*args, **kwargs)

        _kernels[name] = run
    return _kernels[name]


def _tanh(x: torch.Tensor) -> torch.Tensor:
    # 2σ(2x) - 1 equals tanh(x) within 2e-7 absolute in float32, and the generated
    # loop runs it faster than the vectorised tanh.
    return 2 * torch.sigmoid(2 * x) - 1


def _keras2_linear(x: torch.Tensor) -> torch.Tensor:
    # Rounded twice, as activations.hard_sigmoid_keras2 computes it: the same inputs
    # clip, and fall inside the slope's ends, as there.
    return 0.2 * x + 0.5


def _gate(x: torch.Tensor, kind: int) -> torch.Tensor:
    """``σ(x)``, computed as ``activations`` computes it."""
    if kind & _GATES == GateKind.HARD_SIGMOID:
        return torch.nn.functional.hardsigmoid(x)
    if kind & _GATES == GateKind.HARD_SIGMOID_KERAS2:
        return torch.clamp(_keras2_linear(x), 0.0, 1.0)
    return torch.sigmoid(x)


def _slope(x: torch.Tensor, a: torch.Tensor, kind: int) -> torch.Tensor:
    """``σ'(x)`` from ``x`` and ``a = σ(x)``, as autograd differentiates the reference:
    Keras 3's hard sigmoid (``hardsigmoid``) has its slope for ``-3 < x < 3`` only, Keras
    2's (``clamp``) also where ``0.2 x + 0.5`` is exactly 0 or 1."""
    if kind & _GATES == GateKind.HARD_SIGMOID:
        return ((x > -3) & (x < 3)).to(a.dtype) * (1.0 / 6.0)
    if kind & _GATES == GateKind.HARD_SIGMOID_KERAS2:
        linear = _keras2_linear(x)
        return ((linear >= 0) & (linear <= 1)).to(a.dtype) * 0.2
    return a * (1 - a)


def _act(x: torch.Tensor, kind: int) -> torch.Tensor:
    """The cell's activation ``φ(x)``: ``tanh``, or ``relu`` for a ``RELU`` kind."""
    return torch.relu(x) if kind & GateKind.RELU else _tanh(x)


def _act_slope(x: torch.Tensor, a: torch.Tensor, kind: int) -> torch.Tensor:
    """``φ'(x)`` from ``x`` and ``a = φ(x)``; ``relu``'s is 0 at 0, as autograd's."""
    return (x > 0).to(a.dtype) if kind & GateKind.RELU else 1 - a * a


def _activations(z: torch.Tensor, kind: int) -> tuple[tuple[torch.Tensor, ...], ...]:
    """``(z_i, z_f, z_g, z_o)`` in the compute dtype and ``(i, f, g, o)``."""
    z = z.to(_compute_dtype(z.dtype))
    z_i, z_f, z_g, z_o = z.unbind(-2)  # (..., 4, K)
    gates = (_gate(z_i, kind), _gate(z_f, kind), _act(z_g, kind), _gate(z_o, kind))
    return (z_i, z_f, z_g, z_o), gates


def _step_forward(z: torch.Tensor, c_prev: torch.Tensor, kind: int):
    i, f, g, o = _activations(z, kind)[1]
    c = f * c_prev + i * g
    return (o * _act(c, kind)).to(z.dtype), c


def _step_backward(
    dh: torch.Tensor,
    dc_out: torch.Tensor,
    z: torch.Tensor,
    c: torch.Tensor,
    c_prev: torch.Tensor,
    kind: int,
    dtype: torch.dtype,
    dh_more: torch.Tensor | None = None,
):
    # The activations go to the loop unstacked, and the gradients are cast before they
    # are stacked: otherwise the generated code writes either to memory and reads it back
    # in a second pass.
    pre, gates = _activations(z, kind)
    dh = dh.to(gates[0].dtype)
    if dh_more is not None:  # a second gradient reaching h (the sequence's output)
        dh = dh + dh_more.reshape(dh.shape).to(gates[0].dtype)
    dz, dc = _gate_grads(dh, dc_out, pre, gates, c, c_prev, kind)
    return torch.stack([d.to(dtype) for d in dz], dim=-2), dc * gates[1]


def _gate_grads(dh, dc_out, pre, gates, c, c_prev, kind: int, w_o=None):
    """The gradients ``(dz_i, dz_f, dz_g, dz_o)`` of one step's pre-activations ``pre``
    (with ``gates`` their activations) and the total ``dc`` reaching ``c``, in the
    compute dtype; ``w_o``: the output gate's peephole, whose path adds to ``dc``."""
    (z_i, z_f, z_g, z_o), (i, f, g, o) = pre, gates
    act_c = _act(c, kind)
    d_o = dh * act_c * _slope(z_o, o, kind)
    dc = dc_out + dh * o * _act_slope(c, act_c, kind)
    if w_o is not None:
        dc = dc + d_o * w_o
    dz = (
        dc * g * _slope(z_i, i, kind),
        dc * c_prev * _slope(z_f, f, kind),
        dc * i * _act_slope(z_g, g, kind),
        d_o,
    )
    return dz, dc


def _peephole_values(z, c_prev, kind: int, peep, c=None):
    """A step with peepholes ``peep`` ``(3, P, K)`` (``w_i, w_f, w_o``; row ``r`` of ``z``
    ``(R, 4, K)`` and ``c_prev`` ``(R, K)`` takes their row ``r % P``), each result
    ``(R / P, P, K)``: the pre-activations with the peepholes' terms ``(z_i, z_f, z_g,
    z_o)``, the gates ``(i, f, g, o)``, ``c_prev`` and ``c`` (computed, or the given
    one)."""
    weight_rows, width = peep.shape[1:]
    z = z.to(_compute_dtype(z.dtype)).reshape(-1, weight_rows, 4, width)
    c_prev = c_prev.reshape(-1, weight_rows, width)
    w_i, w_f, w_o = peep.unbind(0)
    z_i, z_f, z_g, z_o = z.unbind(-2)
    z_i, z_f = z_i + w_i * c_prev, z_f + w_f * c_prev
    i, f, g = _gate(z_i, kind), _gate(z_f, kind), _act(z_g, kind)
    c = f * c_prev + i * g if c is None else c.reshape(c_prev.shape)
    z_o = z_o + w_o * c
    return (z_i, z_f, z_g, z_o), (i, f, g, _gate(z_o, kind)), c_prev, c


def _peephole_forward(z: torch.Tensor, c_prev: torch.Tensor, kind: int, peep: torch.Tensor):
    """``_step_forward`` with peepholes (``_peephole_values``)."""
    _, (_, _, _, o), _, c = _peephole_values(z, c_prev, kind, peep)
    rows = c_prev.shape
    return (o * _act(c, kind)).reshape(rows).to(z.dtype), c.reshape(rows)


def _peephole_backward(dh, dc_out, z, c, c_prev, kind: int, dtype, peep, dh_more=None):
    """``_step_backward`` with peepholes: also the step's gradient of ``peep``."""
    pre, gates, c_prev, c = _peephole_values(z, c_prev, kind, peep, c)
    w_i, w_f, w_o = peep.unbind(0)
    dh = dh.reshape(c.shape).to(c.dtype)
    if dh_more is not None:
        dh = dh + dh_more.reshape(c.shape).to(c.dtype)
    dz, dc = _gate_grads(dh, dc_out.reshape(c.shape), pre, gates, c, c_prev, kind, w_o)
    d_i, d_f, _, d_o = dz
    dc_prev = (dc * gates[1] + d_i * w_i + d_f * w_f).reshape(-1, c.shape[-1])
    d_peep = torch.stack([(d_i * c_prev).sum(0), (d_f * c_prev).sum(0), (d_o * c).sum(0)])
    dz = torch.stack([d.to(dtype) for d in dz], dim=-2).reshape(z.shape)
    return dz, dc_prev, d_peep


def _channels_last_copy(source: torch.Tensor, out: torch.Tensor) -> None:
    """``out`` ``(B, *S, F)`` = ``source`` ``(B, F, *S)``."""
    out.copy_(source.movedim(1, -1))


def _channels_last(t: torch.Tensor) -> bool:
    if t.dim() == 4:
        return t.is_contiguous(memory_format=torch.channels_last)
    if t.dim() == 5:
        return t.is_contiguous(memory_format=torch.channels_last_3d)
    return False


def _memory_format(last: bool, dim: int) -> torch.memory_format:
    if not last:
        return torch.contiguous_format
    return torch.channels_last if dim == 4 else torch.channels_last_3d


class _Rows:
    """Views between ``(B, C, *S)`` tensors of one layout and the row form of the loops."""

    def __init__(self, gates: torch.Tensor) -> None:
        self.last = _channels_last(gates)
        self.format = _memory_format(self.last, gates.dim())
        self.shape = (gates.shape[0], gates.shape[1] // 4, *gates.shape[2:])

    def rows(self, t: torch.Tensor, groups: int = 1) -> torch.Tensor:
        """``(B, groups·F, *S)`` -> ``(R, groups, K)`` (``groups=1`` -> ``(R, K)``)."""
        t = t.contiguous(memory_format=self.format)
        batch, channels = t.shape[0], t.shape[1] // groups
        if self.last:
            t = t.movedim(1, -1).reshape(-1, groups, channels)
        else:
            t = t.reshape(batch, groups, -1)
        return t if groups > 1 else t.squeeze(1)

    def inputs(self, gates: torch.Tensor, c_prev: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The loops' inputs: gates ``(R, 4, K)`` and ``c_prev`` ``(R, K)`` in the
        compute dtype."""
        return self.rows(gates, 4), self.rows(c_prev.to(_compute_dtype(gates.dtype)))

    def strided_rows(self, t: torch.Tensor) -> torch.Tensor:
        """``(B, F, *S)`` -> ``(B, *S, F)`` (channels-last) or itself: the row order of
        ``rows`` without a copy, for a tensor dense in every dimension but the batch (a
        step of a sequence); the loops read it with ``reshape``."""
        return t.movedim(1, -1) if self.last else t

    def step_rows(self, t: torch.Tensor, buffer: list[torch.Tensor]) -> torch.Tensor:
        """``strided_rows`` of one step ``(B, F, *S)`` of a sequence. A channels-first
        step for channels-last rows (the usual gradient of a loss, whatever the output's
        layout) is first transposed into ``buffer`` (a one-element list, filled on first
        use) by a loop, faster than reading it strided inside the gate loop and than
        PyTorch's own copy: the hand-written one (``fast.simd``) where it applies, else a
        generated one. A step whose samples do not hold their rows back to back (e.g. a
        channel slice of wider channels-last features, or of a gradient that keeps each
        pixel's steps together) is copied into ``buffer`` as it is: the loops read rows
        back to back."""
        if not self.last or t.stride(1) == 1:
            rows = self.strided_rows(t)
            if not len(rows) or rows[0].is_contiguous():
                return rows
            if not buffer or buffer[0].shape != rows.shape:
                buffer[:] = [torch.empty(rows.shape, dtype=t.dtype, device=t.device)]
            return buffer[0].copy_(rows)
        if not buffer:
            shape = (t.shape[0], *t.shape[2:], t.shape[1])
            buffer.append(torch.empty(shape, dtype=t.dtype, device=t.device))
        if not simd.channels_last_copy(t, buffer[0]):
            _compiled("channels_last_copy", _channels_last_copy)(t, buffer[0])
        return buffer[0]

    def peephole_rows(self, weight: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """Peephole weights ``(3, F, 1, ...)`` (per channel) or ``(3, F, *S)`` (per pixel)
        as the loops read them, ``(3, P, K)`` of ``dtype``: row ``r`` of the rows takes
        row ``r % P`` (channels-last: ``(3, N, F)``, ``P`` the pixels; contiguous: ``(3,
        1, F·N)``). Per-channel weights are spread over the pixels, so that one loop
        serves both; ``peephole_grad`` sums their gradient back."""
        full = weight.to(dtype).expand(3, *self.shape[1:])
        if self.last:
            return full.movedim(1, -1).reshape(3, -1, self.shape[1]).contiguous()
        return full.reshape(3, 1, -1).contiguous()

    def peephole_grad(
        self, grad: torch.Tensor, shape: torch.Size, dtype: torch.dtype
    ) -> torch.Tensor:
        """The gradient of peephole weights of ``shape`` and ``dtype`` from that of their
        ``peephole_rows``."""
        channels, spatial = self.shape[1], self.shape[2:]
        if self.last:
            grad = grad.reshape(3, *spatial, channels).movedim(-1, 1)
        else:
            grad = grad.reshape(3, channels, *spatial)
        return grad.sum_to_size(shape).to(dtype)

    def unrows(self, t: torch.Tensor) -> torch.Tensor:
        """``(R, K)`` -> ``(B, F, *S)`` in this layout (a view)."""
        if self.last:
            return t.reshape(self.shape[0], *self.shape[2:], self.shape[1]).movedim(-1, 1)
        return t.reshape(self.shape)

    def ungates(self, t: torch.Tensor) -> torch.Tensor:
        """``(R, 4, K)`` -> ``(B, 4F, *S)`` in this layout (a view)."""
        batch, channels, spatial = self.shape[0], self.shape[1], self.shape[2:]
        if self.last:
            return t.reshape(batch, *spatial, 4 * channels).movedim(-1, 1)
        return t.reshape(batch, 4 * channels, *spatial)


def _forward_rows(z: torch.Tensor, c_prev: torch.Tensor, kind: int, peep=None):
    """``(h, c)`` rows of one step (``peep``: peephole weights as ``_Rows.peephole_rows``
    gives them, or ``None``): the hand-written loop where it applies, else the generated
    one."""
    result = simd.step_forward(z, c_prev, kind, peep)
    return result if result is not None else _generated_forward(peep)(z, c_prev, kind)


def _generated_forward(peep: torch.Tensor | None = None) -> Callable:
    """The generated forward loop ``(z, c_prev, kind) -> (h, c)`` rows, with the
    peepholes ``peep`` (``_Rows.peephole_rows``) or without (``None``)."""
    if peep is None:
        return _compiled("forward", _step_forward)
    kernel = _compiled("peephole forward", _peephole_forward)
    return lambda z, c_prev, kind: kernel(z, c_prev, kind, peep)


def _backward_rows(
    dh, dc_out, z, c, c_prev, kind: int, dtype: torch.dtype, dh_more=None, dz_out=None,
    peep=None, d_peep=None,
):  # fmt: skip
    """``(dz, dc_prev)`` rows of one step (``_step_backward``'s arguments; with
    peepholes ``peep``, their gradient added into ``d_peep`` of its shape and the compute
    dtype): the hand-written loop where it applies (writing ``dz`` into ``dz_out`` when
    given), else the generated one."""
    result = simd.backward(dh, dc_out, z, c, c_prev, kind, dh_more, dz_out, peep, d_peep)
    if result is not None:
        return result
    if peep is None:
        backward = _compiled("backward", _step_backward)
        return backward(dh, dc_out, z, c, c_prev, kind, dtype, dh_more)
    backward = _compiled("peephole backward", _peephole_backward)
    dz, dc_prev, step = backward(dh, dc_out, z, c, c_prev, kind, dtype, peep, dh_more)
    d_peep += step
    return dz, dc_prev


class FusedGates(torch.autograd.Function):
    """``(h, c) = FusedGates.apply(gates, c_prev, peephole, kind)``; see the module
    docstring.

    ``gates`` ``(B, 4F, *S)`` (float16/bfloat16 gates are computed in float32),
    ``c_prev`` ``(B, F, *S)``, ``peephole`` ``(3, F, 1, ...)`` or ``(3, F, *S)`` or
    ``None``; returns ``h`` in the dtype of ``gates`` and ``c`` in float32 (float64 for
    float64 gates), in the memory layout of ``gates``.
    """

    @staticmethod
    def forward(ctx, gates: torch.Tensor, c_prev: torch.Tensor, peephole, kind: int):
        view = _Rows(gates)
        z, c0 = view.inputs(gates, c_prev)
        peep = None if peephole is None else view.peephole_rows(peephole, c0.dtype)
        h, c = _forward_rows(z, c0, kind, peep)
        # c is kept anyway (the next step's c_prev, or c_n), so tanh(c) is recomputed
        # in the backward instead of stored, as are the activations.
        ctx.save_for_backward(z, c, c0, peep)
        ctx.peephole = None if peephole is None else (peephole.shape, peephole.dtype)
        ctx.view, ctx.kind, ctx.dtype = view, kind, gates.dtype
        ctx.c_dtype = c_prev.dtype
        return view.unrows(h), view.unrows(c)

    @staticmethod
    @first_derivatives_only
    def backward(ctx, dh: torch.Tensor, dc: torch.Tensor):
        z, c, c0, peep = ctx.saved_tensors
        view = ctx.view
        d_peep = None if peep is None else torch.zeros_like(peep)
        dz, dc_prev = _backward_rows(
            view.rows(dh), view.rows(dc.to(c.dtype)), z, c, c0, ctx.kind, ctx.dtype,
            peep=peep, d_peep=d_peep,
        )  # fmt: skip
        d_peephole = None
        if peep is not None and ctx.needs_input_grad[2]:
            d_peephole = view.peephole_grad(d_peep, *ctx.peephole)
        return view.ungates(dz), view.unrows(dc_prev).to(ctx.c_dtype), d_peephole, None


def fused_gates(
    gates: torch.Tensor,
    c_prev: torch.Tensor,
    kind: int = GateKind.SIGMOID,
    peephole: torch.Tensor | None = None,
):
    """One LSTM gate step (see the module docstring): ``(h, c)`` from ``gates``
    ``(B, 4F, *S)`` in order i, f, g, o and ``c_prev`` ``(B, F, *S)``, with gates of
    ``kind`` (a ``GateKind``) and peephole weights ``(3, F, 1, ...)`` (per channel) or
    ``(3, F, *S)`` (per pixel) in order ``w_i, w_f, w_o``, or ``None``."""
    kind = GateKind(kind)
    tensors = (gates, c_prev) if peephole is None else (gates, c_prev, peephole)
    if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
        return FusedGates.apply(gates, c_prev, peephole, kind)
    view = _Rows(gates)
    z, c0 = view.inputs(gates, c_prev)
    peep = None if peephole is None else view.peephole_rows(peephole, c0.dtype)
    h, c = _forward_rows(z, c0, kind, peep)
    return view.unrows(h), view.unrows(c)
