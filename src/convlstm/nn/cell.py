"""One dimension-generic ConvLSTM cell; ``ConvLSTMCell1d/2d/3d`` name its three uses."""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.hooks import RemovableHandle

from ._utils import (
    IntOrTuple,
    Padding,
    as_tuple,
    conv_output_size,
    flat_pad,
    input_padding,
    normalize_padding,
)
from .activations import Activation, get_activation
from .functional import lstm_pointwise
from .sam import SelfAttentionMemory
from .step_conv import memory_format as _memory_format
from .step_conv import step_conv

_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
#: Unfused path: input projections for all steps at once up to this size, else per step.
BATCHED_PROJECTION_BYTES = 64 << 20


class _PerStepProjection(Sequence):
    """The input projection of step ``t``, computed when the loop asks for it."""

    def __init__(self, cell: ConvLSTMCellNd, frames: Sequence[torch.Tensor], plan: StepPlan):
        self.cell, self.frames, self.plan = cell, frames, plan

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, t):
        return self.cell.input_projection(self.frames[t], self.plan)


PEEPHOLE_MODES = (False, "channel", "pixel")

#: ``(h, c)``, or ``(h, c, m)`` with the self-attention memory ``m``.
State = tuple[torch.Tensor, ...]
ATTENTION_MODES = (None, "sam")


@dataclass(frozen=True)
class StepPlan:
    """How a cell convolves inputs of one spatial size (computed once per sequence).

    ``fused`` means the input and the padded hidden state are concatenated along
    channels and convolved by one call with the concatenated kernel: possible when
    the input path has stride 1 and dilation 1, like the recurrent path.
    """

    input_size: tuple[int, ...]
    output_size: tuple[int, ...]
    input_pad: tuple[int, ...]  # flat F.pad list for the input path
    hidden_pad: tuple[int, ...]  # flat F.pad list for the recurrent path ("same", stride 1)
    fused: bool


@dataclass(frozen=True)
class StepRecord:
    """One time step of a cell, as a step hook receives it (see
    ``ConvLSTMCellNd.register_step_hook``). ``x``, ``state``, ``plan``, ``weight`` and
    ``recurrent_mask`` are the arguments of ``ConvLSTMCellNd.step``, so
    ``cell.step(record.x, record.state, record.plan, record.weight, record.recurrent_mask)``
    recomputes the step."""

    t: int  #: the step's index in the input sequence (``T - 1`` first when ``reverse``)
    reverse: bool  #: the run goes through time backwards (a backward direction)
    x: torch.Tensor  #: the step's entry of ``prepare_inputs``
    state: State  #: the state before the step
    plan: StepPlan
    weight: torch.Tensor
    recurrent_mask: torch.Tensor | None
    new_state: State  #: what the step returned (before a layer's ``lengths`` mask)


#: ``hook(cell, record)``, called after every step; its return value is ignored.
StepHook = Callable[["ConvLSTMCellNd", StepRecord], None]


class ConvLSTMCellNd(nn.Module):
    """A ConvLSTM cell for ``ndim`` spatial dimensions (Shi et al. 2015).

    One step maps an input ``x_t`` of shape ``(B, C_in, *spatial)`` and a state
    ``(h, c)`` of shapes ``(B, F, *spatial')`` to the new ``(h, c)``. The gate
    pre-activations come from one fused convolution with ``4F`` output channels in
    gate order ``i, f, g, o`` (input, forget, candidate, output; Keras's order)::

        z = W_x * x_t + W_h * h_{t-1} + b        (* is convolution)

    The input path honours ``stride``, ``padding`` and ``dilation``; the recurrent
    path always uses stride 1, dilation 1 and "same" padding (as Keras does), so valid
    padding and strides shrink only the input path: ``spatial'`` is the size of the
    input convolution's output.

    Args:
        in_channels: ``C_in``.
        hidden_channels: ``F``, channels of the hidden and cell state.
        kernel_size: int or ``ndim``-tuple, shared by both paths.
        ndim: number of spatial dimensions (1, 2 or 3).
        stride: input-path stride. Default 1.
        padding: ``"same"`` (TensorFlow-style, odd totals padded at the end),
            ``"valid"`` or an int/tuple of symmetric padding. Default ``"same"``.
        dilation: input-path dilation. Default 1.
        bias: learn the ``4F`` gate bias. Default ``True``.
        peephole: ``False``, ``"channel"`` (one weight per channel and gate; any
            spatial size) or ``"pixel"`` (the paper's ``(F, *spatial')`` Hadamard
            weights; needs ``spatial_size``). Default ``False``.
        spatial_size: the input's spatial size ``(H, W)``; required by
            ``peephole="pixel"``, which then rejects other sizes.
        layer_norm: layer-normalise each gate's pre-activation (over its channels and
            positions) and the cell state before the output activation. Default ``False``.
        activation: ``φ`` for the candidate and the cell output. Default ``"tanh"``.
        recurrent_activation: ``σ`` for the gates; ``"hard_sigmoid"`` is Keras 3's
            ``clip(x / 6 + 0.5, 0, 1)``. Default ``"sigmoid"``.
        unit_forget_bias: initialise the forget-gate bias to 1 (Keras's default).
        attention: ``None`` or ``"sam"``: the self-attention memory of SA-ConvLSTM
            (``SelfAttentionMemory``) after every step; the state becomes ``(h, c, m)``.
        attention_options: keyword arguments of ``SelfAttentionMemory``
            (``key_channels``, ``key_stride``).

    Parameters:
        weight_ih: ``(4F, C_in, *kernel_size)``; ``weight_hh``: ``(4F, F, *kernel_size)``;
        bias: ``(4F,)``; peephole_weight: ``(3, F, 1, ...)`` or ``(3, F, *spatial')``.
    """

    def __init__(
        self,
        in_channels: int,
        hidden_channels: int,
        kernel_size: IntOrTuple,
        *,
        ndim: int,
        stride: IntOrTuple = 1,
        padding: Padding = "same",
        dilation: IntOrTuple = 1,
        bias: bool = True,
        peephole: bool | str = False,
        spatial_size: IntOrTuple | None = None,
        layer_norm: bool = False,
        activation: Activation = "tanh",
        recurrent_activation: Activation = "sigmoid",
        unit_forget_bias: bool = True,
        attention: str | None = None,
        attention_options: dict | None = None,
    ) -> None:
        super().__init__()
        if ndim not in _CONV:
            raise ValueError(f"ndim must be 1, 2 or 3, got {ndim}")
        for name, value in (("in_channels", in_channels), ("hidden_channels", hidden_channels)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if peephole is True:
            peephole = "channel"
        if peephole not in PEEPHOLE_MODES:
            raise ValueError(f'peephole must be False, "channel" or "pixel", got {peephole!r}')
        if attention not in ATTENTION_MODES:
            raise ValueError(f'attention must be None or "sam", got {attention!r}')
        self.ndim = ndim
        self.in_channels = in_channels
        self.hidden_channels = hidden_channels
        self.kernel_size = as_tuple(kernel_size, ndim, "kernel_size")
        self.stride = as_tuple(stride, ndim, "stride")
        self.dilation = as_tuple(dilation, ndim, "dilation")
        self.padding = normalize_padding(padding, ndim)
        self.peephole = peephole
        self.layer_norm = layer_norm
        self.activation_name = activation if isinstance(activation, str) else "custom"
        self.recurrent_activation_name = (
            recurrent_activation if isinstance(recurrent_activation, str) else "custom"
        )
        self.activation = get_activation(activation, "activation")
        self.recurrent_activation = get_activation(recurrent_activation, "recurrent_activation")
        self.unit_forget_bias = unit_forget_bias
        self.spatial_size = (
            None if spatial_size is None else as_tuple(spatial_size, ndim, "spatial_size")
        )
        if peephole == "pixel" and self.spatial_size is None:
            raise ValueError(
                'peephole="pixel" needs spatial_size, the input frame size (e.g. (H, W))'
            )

        gates = 4 * hidden_channels
        self.weight_ih = nn.Parameter(torch.empty(gates, in_channels, *self.kernel_size))
        self.weight_hh = nn.Parameter(torch.empty(gates, hidden_channels, *self.kernel_size))
        self.bias = nn.Parameter(torch.empty(gates)) if bias else None
        if peephole == "channel":
            self.peephole_weight = nn.Parameter(torch.empty(3, hidden_channels, *(1,) * ndim))
        elif peephole == "pixel":
            out_size = self.plan(self.spatial_size).output_size
            self.peephole_weight = nn.Parameter(torch.empty(3, hidden_channels, *out_size))
        else:
            self.peephole_weight = None
        self.attention = (
            SelfAttentionMemory(hidden_channels, ndim, **(attention_options or {}))
            if attention == "sam"
            else None
        )
        self.state_size = 2 if self.attention is None else 3
        if layer_norm:
            self.gate_norm_weight = nn.Parameter(torch.empty(gates))
            self.gate_norm_bias = nn.Parameter(torch.empty(gates))
            self.cell_norm_weight = nn.Parameter(torch.empty(hidden_channels))
            self.cell_norm_bias = nn.Parameter(torch.empty(hidden_channels))
        self._step_hooks: OrderedDict[int, StepHook] = OrderedDict()
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Keras's initialisers: Glorot-uniform input kernel, orthogonal recurrent kernel,
        zero bias (forget gate 1 with ``unit_forget_bias``), zero peepholes, unit norms
        (with layer norm, the forget gate's norm bias is 1 instead, since the norm would
        cancel the convolution's bias)."""
        F_ = self.hidden_channels
        nn.init.xavier_uniform_(self.weight_ih)
        with torch.no_grad():
            # Keras makes the (prod(k) * F, 4F) matrix orthogonal.
            flat = torch.empty(math.prod(self.kernel_size) * F_, 4 * F_)
            nn.init.orthogonal_(flat)
            kernel = flat.reshape(*self.kernel_size, F_, 4 * F_)
            self.weight_hh.copy_(kernel.permute(-1, -2, *range(self.ndim)))
        if self.bias is not None:
            nn.init.zeros_(self.bias)
            if self.unit_forget_bias:
                with torch.no_grad():
                    self.bias[F_ : 2 * F_] = 1.0
        if self.peephole_weight is not None:
            nn.init.zeros_(self.peephole_weight)
        if self.layer_norm:
            nn.init.ones_(self.gate_norm_weight)
            nn.init.zeros_(self.gate_norm_bias)
            if self.unit_forget_bias:
                # The norm removes the convolution's bias: carry the forget bias here.
                with torch.no_grad():
                    self.gate_norm_bias[F_ : 2 * F_] = 1.0
            nn.init.ones_(self.cell_norm_weight)
            nn.init.zeros_(self.cell_norm_bias)

    def extra_repr(self) -> str:
        parts = [
            f"{self.in_channels}, {self.hidden_channels}, kernel_size={self.kernel_size}",
            f"stride={self.stride}",
            f"padding={self.padding!r}",
        ]
        if any(d != 1 for d in self.dilation):
            parts.append(f"dilation={self.dilation}")
        if self.bias is None:
            parts.append("bias=False")
        if self.peephole:
            parts.append(f"peephole={self.peephole!r}")
        if self.layer_norm:
            parts.append("layer_norm=True")
        if self.attention is not None:
            parts.append('attention="sam"')
        if self.activation_name != "tanh":
            parts.append(f"activation={self.activation_name!r}")
        if self.recurrent_activation_name != "sigmoid":
            parts.append(f"recurrent_activation={self.recurrent_activation_name!r}")
        return ", ".join(parts)

    # ---------------------------------------------------------------- planning
    def plan(self, spatial: tuple[int, ...]) -> StepPlan:
        """Padding and output size for inputs of spatial size ``spatial``."""
        spatial = tuple(int(s) for s in spatial)
        pads = input_padding(self.padding, spatial, self.kernel_size, self.stride, self.dilation)
        out = conv_output_size(spatial, pads, self.kernel_size, self.stride, self.dilation)
        if any(o < 1 for o in out):
            raise ValueError(
                f"input of spatial size {spatial} is too small for kernel_size={self.kernel_size}, "
                f"stride={self.stride}, dilation={self.dilation}, padding={self.padding!r}: "
                f"the output would have size {out}"
            )
        if self.peephole == "pixel":
            expected = conv_output_size(
                self.spatial_size,
                input_padding(
                    self.padding, self.spatial_size, self.kernel_size, self.stride, self.dilation
                ),
                self.kernel_size,
                self.stride,
                self.dilation,
            )
            if out != expected:
                raise ValueError(
                    f'peephole="pixel" was built for spatial_size={self.spatial_size}; '
                    f"got an input of spatial size {spatial}"
                )
        hidden = tuple(((k - 1) // 2, k - 1 - (k - 1) // 2) for k in self.kernel_size)
        fused = all(s == 1 for s in self.stride) and all(d == 1 for d in self.dilation)
        return StepPlan(spatial, out, tuple(flat_pad(pads)), tuple(flat_pad(hidden)), fused)

    def step_weight(self, plan: StepPlan) -> torch.Tensor:
        """The kernel one step convolves with: ``[W_x, W_h]`` concatenated when fused."""
        if plan.fused:
            return torch.cat([self.weight_ih, self.weight_hh], dim=1)
        return self.weight_hh

    def init_state(self, x: torch.Tensor, plan: StepPlan) -> State:
        """Zero ``(h, c)`` (or ``(h, c, m)``) for a batch like ``x`` (``(B, C_in, *spatial)``)."""
        shape = (x.shape[0], self.hidden_channels, *plan.output_size)
        # The layout of later states (channels-last on CPU): one compiled kernel for all steps.
        layout = _memory_format(self.ndim, x.device)
        zeros = torch.empty(shape, dtype=x.dtype, device=x.device, memory_format=layout).zero_()
        return (zeros,) * self.state_size

    def input_projection(self, x: torch.Tensor, plan: StepPlan) -> torch.Tensor:
        """``W_x * x + b`` for the unfused path; ``x`` is ``(N, C_in, *spatial)``."""
        if any(plan.input_pad):
            x = F.pad(x, list(plan.input_pad))
        return _CONV[self.ndim](
            x, self.weight_ih, self.bias, stride=self.stride, dilation=self.dilation
        )

    def prepare_inputs(self, x: torch.Tensor, plan: StepPlan) -> Sequence[torch.Tensor]:
        """Per-step inputs for ``step`` from a sequence ``x`` ``(B, T, C_in, *spatial)``.

        Fused path: the sequence padded once and laid out channels-last (one copy), then
        ``unbind`` (slicing ``[:, t]`` in the loop would make the backward pass quadratic
        in ``T``). Unfused path: the input projections, batched over ``B * T`` frames
        when that tensor is small, else computed per step (a huge batched tensor misses
        the cache on a CPU and measured slower than per-step convolutions).
        """
        batch, steps = x.shape[0], x.shape[1]
        if plan.fused:
            if any(plan.input_pad):
                x = F.pad(x.flatten(0, 1), list(plan.input_pad)).unflatten(0, (batch, steps))
            layout = _memory_format(self.ndim, x.device)
            if layout is not torch.contiguous_format:
                # (B, T, C, *S) -> channels innermost, viewed back as (B, T, C, *S).
                order = (0, 1, *range(3, x.dim()), 2)
                inverse = (0, 1, x.dim() - 1, *range(2, x.dim() - 1))
                x = x.permute(order).contiguous().permute(inverse)
            return x.unbind(1)
        projected_bytes = batch * steps * 4 * self.hidden_channels * math.prod(plan.output_size)
        if x.device.type != "cpu" or projected_bytes * x.element_size() <= BATCHED_PROJECTION_BYTES:
            projected = self.input_projection(x.flatten(0, 1), plan)
            return projected.unflatten(0, (batch, steps)).unbind(1)
        return _PerStepProjection(self, x.unbind(1), plan)

    # ---------------------------------------------------------------- stepping
    def gate_preactivations(
        self,
        x: torch.Tensor,
        h: torch.Tensor,
        plan: StepPlan,
        weight: torch.Tensor,
        recurrent_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``z = W_x * x + W_h * h + b``: ``(B, 4F, *spatial')``, gate order i, f, g, o.
        ``x`` is an entry of ``prepare_inputs``; the rest as in ``step``."""
        if recurrent_mask is not None:
            h = h * recurrent_mask
        conv = _CONV[self.ndim]
        if plan.fused:
            return step_conv(x, h, weight, self.bias, plan.hidden_pad)
        h_padded = F.pad(h, list(plan.hidden_pad)) if any(plan.hidden_pad) else h
        return conv(h_padded, weight) + x

    def pointwise_options(self) -> dict:
        """The keyword arguments of ``lstm_pointwise`` for this cell."""
        norms = None, None
        if self.layer_norm:
            norms = (
                (self.gate_norm_weight, self.gate_norm_bias),
                (self.cell_norm_weight, self.cell_norm_bias),
            )
        return {
            "peephole": self.peephole_weight,
            "gate_norm": norms[0],
            "cell_norm": norms[1],
            "activation": self.activation,
            "recurrent_activation": self.recurrent_activation,
        }

    def step(
        self,
        x: torch.Tensor,
        state: State,
        plan: StepPlan,
        weight: torch.Tensor,
        recurrent_mask: torch.Tensor | None = None,
        need_weights: bool = False,
    ) -> State | tuple[State, dict[str, torch.Tensor]]:
        """One time step.

        Args:
            x: an entry of ``prepare_inputs``: the padded input ``(B, C_in, *padded)`` on
                the fused path, or the input projection ``(B, 4F, *spatial')`` otherwise.
            state: ``(h, c)`` (``(h, c, m)`` with attention), each ``(B, F, *spatial')``.
            plan, weight: from ``plan`` and ``step_weight``.
            recurrent_mask: ``(B, F, *spatial')`` recurrent-dropout mask applied to ``h``.
            need_weights: also return the attention maps (``{"hidden", "memory"}``).
        """
        gates = self.gate_preactivations(x, state[0], plan, weight, recurrent_mask)
        h, c = lstm_pointwise(gates, state[1], **self.pointwise_options())
        if self.attention is None:
            return ((h, c), {}) if need_weights else (h, c)
        result = self.attention(h, state[2].to(h.dtype), need_weights=need_weights)
        if need_weights:
            h, m, weights = result
            return (h, c, m), weights
        h, m = result
        return h, c, m

    def forward(self, x: torch.Tensor, state: State | None = None) -> State:
        """One step: ``x`` ``(B, C_in, *spatial)``, ``state`` ``(h, c)`` (``(h, c, m)`` with
        attention) or ``None`` (zeros).

        Returns:
            The new state, each tensor ``(B, F, *spatial')``.
        """
        self.check_input(x, step=True)
        plan = self.plan(tuple(x.shape[2:]))
        if state is None:
            state = self.init_state(x, plan)
        else:
            self.check_state(state, x.shape[0], plan)
        (x,) = self.prepare_inputs(x.unsqueeze(1), plan)
        state, weight = tuple(state), self.step_weight(plan)
        new = self.step(x, state, plan, weight)
        if self.has_step_hooks:
            self.call_step_hooks(StepRecord(0, False, x, state, plan, weight, None, new))
        return new

    # ---------------------------------------------------------------- step hooks
    def register_step_hook(self, hook: StepHook) -> RemovableHandle:
        """Call ``hook(cell, record)`` after every time step this cell takes, with a
        ``StepRecord`` of the step's arguments and the state it returned: in a layer's
        sequence (either direction, any path) and in ``forward`` (one step, ``t = 0``).
        Hooks run in the order they were registered; a hook sees tensors, it does not
        replace them.

        While a hook is registered, a layer runs this cell step by step through
        ``step`` instead of the fused sequence (``convlstm.nn.fused_sequence``), which
        keeps no per-step state: every recorded state is then a tensor of the autograd
        graph (a gradient with respect to it works), at the speed of the step-by-step
        path. Other cells are not affected.

        Returns:
            A handle; ``handle.remove()`` removes the hook.
        """
        if not callable(hook):
            raise TypeError(
                f"hook must be callable as hook(cell, record), got {type(hook).__name__}"
            )
        # Through __dict__: a cell pickled whole before step hooks existed has no such entry.
        hooks = self.__dict__.setdefault("_step_hooks", OrderedDict())
        handle = RemovableHandle(hooks)
        hooks[handle.id] = hook
        return handle

    @property
    def has_step_hooks(self) -> bool:
        """Whether a step hook is registered (``register_step_hook``)."""
        return bool(self.__dict__.get("_step_hooks"))

    def call_step_hooks(self, record: StepRecord) -> None:
        """Run the registered step hooks on ``record``; for code that steps the cell
        itself (a layer's loop, ``forward``)."""
        for hook in tuple(self.__dict__.get("_step_hooks", {}).values()):
            hook(self, record)

    # ---------------------------------------------------------------- checks
    def check_input(self, x: torch.Tensor, *, step: bool) -> None:
        """Check rank, dtype and channel count of a step (``step=True``) or sequence input."""
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"input must be a torch.Tensor, got {type(x).__name__}")
        rank = self.ndim + (2 if step else 3)
        layout = "(B, C, " if step else "(B, T, C, "
        layout += ", ".join("DHW"[3 - self.ndim :]) + ")"
        if x.dim() != rank:
            raise ValueError(f"expected input of rank {rank} {layout}, got shape {tuple(x.shape)}")
        if not x.is_floating_point():
            raise TypeError(f"input must be a floating-point tensor, got dtype {x.dtype}")
        channels = x.shape[1] if step else x.shape[2]
        if channels != self.in_channels:
            raise ValueError(
                f"expected {self.in_channels} input channels in {layout}, "
                f"got shape {tuple(x.shape)} with {channels}"
            )

    def check_state(self, state: State, batch: int, plan: StepPlan) -> None:
        """Check a given state against the batch size and planned output size."""
        names = ("h", "c", "m")[: self.state_size]
        if not isinstance(state, (tuple, list)) or len(state) != self.state_size:
            got = len(state) if isinstance(state, (tuple, list)) else type(state).__name__
            raise ValueError(f"state must be a tuple ({', '.join(names)}), got {got} entries")
        expected = (batch, self.hidden_channels, *plan.output_size)
        for name, value in zip(names, state):
            if not isinstance(value, torch.Tensor) or tuple(value.shape) != expected:
                got = (
                    tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
                )
                raise ValueError(f"state {name} must have shape {expected}, got {got}")


class ConvLSTMCell1d(ConvLSTMCellNd):
    """ConvLSTM cell over 1-D signals: input ``(B, C_in, L)``, state ``(B, F, L')``.

    See ``ConvLSTMCellNd`` for the arguments.
    """

    def __init__(self, in_channels: int, hidden_channels: int, kernel_size: IntOrTuple, **kwargs):
        super().__init__(in_channels, hidden_channels, kernel_size, ndim=1, **kwargs)


class ConvLSTMCell2d(ConvLSTMCellNd):
    """ConvLSTM cell over images: input ``(B, C_in, H, W)``, state ``(B, F, H', W')``.

    See ``ConvLSTMCellNd`` for the arguments.
    """

    def __init__(self, in_channels: int, hidden_channels: int, kernel_size: IntOrTuple, **kwargs):
        super().__init__(in_channels, hidden_channels, kernel_size, ndim=2, **kwargs)


class ConvLSTMCell3d(ConvLSTMCellNd):
    """ConvLSTM cell over volumes: input ``(B, C_in, D, H, W)``, state ``(B, F, D', H', W')``.

    See ``ConvLSTMCellNd`` for the arguments.
    """

    def __init__(self, in_channels: int, hidden_channels: int, kernel_size: IntOrTuple, **kwargs):
        super().__init__(in_channels, hidden_channels, kernel_size, ndim=3, **kwargs)
