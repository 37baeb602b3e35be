"""What every convolutional recurrent cell shares: the base class a new cell extends.

A cell (``ConvLSTMCellNd``, ``ConvGRUCellNd``) owns its parameters and its reference
``step``; the layer (``ConvRNNBase``) owns the loop over time, directions, ``lengths``,
the streaming state, checkpointing and the step hooks. A cell may also declare a fast
path for whole sequences (``fast_path``); the layer takes it only where the result is
the same as stepping the cell.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.hooks import RemovableHandle

from ._utils import (
    CONV,
    IntOrTuple,
    Padding,
    as_tuple,
    conv_output_size,
    flat_pad,
    input_padding,
    memory_format,
    normalize_padding,
)
from .settings import backend

#: A cell's state: ``(h, c)`` for the LSTM, ``(h,)`` for the GRU, each ``(B, F, *spatial')``.
State = tuple[torch.Tensor, ...]


@dataclass(frozen=True)
class StepPlan:
    """How a cell convolves inputs of one spatial size (computed once per sequence).

    ``stacked`` means the input and the padded hidden state are concatenated along
    channels and convolved by one call with the concatenated kernel: possible when the
    cell asks for it (``stacks_input``) and the input path has stride 1 and dilation 1,
    like the recurrent path.
    """

    input_size: tuple[int, ...]
    output_size: tuple[int, ...]
    input_pad: tuple[int, ...]  # flat F.pad list for the input path
    hidden_pad: tuple[int, ...]  # flat F.pad list for the recurrent path ("same", stride 1)
    stacked: bool


@dataclass(frozen=True)
class StepRecord:
    """One time step of a cell, as a step hook receives it (see
    ``ConvRNNCellBase.register_step_hook``). ``x``, ``state``, ``plan``, ``weight`` and
    ``recurrent_mask`` are the arguments of the cell's ``step``, so
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
StepHook = Callable[["ConvRNNCellBase", StepRecord], None]


class FastPath(Protocol):
    """A cell's whole-sequence fast path for one plan (see ``ConvRNNCellBase.fast_path``).

    ``path(x, state, reverse, checkpoint)`` runs ``x`` ``(B, T, C_in, *spatial)`` from
    ``state`` (``None``: zeros) and returns ``(output, new_state)`` with ``output``
    ``(B, T, F, *spatial')``, exactly as the step loop would. ``name`` names it in
    warnings when it fails.
    """

    name: str

    def __call__(
        self, x: torch.Tensor, state: State | None, reverse: bool, checkpoint: bool
    ) -> tuple[torch.Tensor, State]: ...


class _PerStepProjection(Sequence):
    """The input projection of step ``t``, computed when the loop asks for it."""

    def __init__(self, cell: ConvRNNCellBase, frames: Sequence[torch.Tensor], plan: StepPlan):
        self.cell, self.frames, self.plan = cell, frames, plan

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, t):
        return self.cell.input_projection(self.frames[t], self.plan)


class ConvRNNCellBase(nn.Module):
    """The shared part of a convolutional recurrent cell for ``ndim`` spatial dimensions.

    It holds the two kernels, ``weight_ih`` ``(G·F, C_in, *k)`` and ``weight_hh``
    ``(G·F, F, *k)``, and the bias ``(G·F,)`` of ``G = gates`` gate groups, plans the
    padding of both paths, prepares a sequence's per-step inputs, checks arguments and
    runs step hooks. The input path honours ``stride``, ``padding`` and ``dilation``; the
    recurrent path always uses stride 1, dilation 1 and "same" padding (as Keras does).

    A subclass sets ``gates`` and ``state_names``, creates its own extra parameters,
    calls ``reset_parameters()`` at the end of ``__init__``, and implements::

        step(x, state, plan, weight, recurrent_mask=None) -> new state

    where ``x`` is an entry of ``prepare_inputs``: the input projection
    ``W_x * x_t + b`` ``(B, G·F, *spatial')``, or with ``stacks_input`` (stride 1,
    dilation 1) the padded frame ``(B, C_in, *padded)`` that the step convolves together
    with ``h`` using ``weight = [W_x, W_h]``. It may override ``fast_path``, and
    ``output`` (a step's output from its new state and its input; ``h`` by default).

    Args:
        in_channels: ``C_in``.
        hidden_channels: ``F``, channels of the hidden state.
        kernel_size: int or ``ndim``-tuple, shared by both paths.
        ndim: number of spatial dimensions (1, 2 or 3).
        stride: input-path stride. Default 1.
        padding: ``"same"`` (TensorFlow-style, odd totals padded at the end),
            ``"valid"`` or an int/tuple of symmetric padding. Default ``"same"``.
        dilation: input-path dilation. Default 1.
        bias: learn the gate bias. Default ``True``.
        spatial_size: the input's spatial size, for cells whose parameters depend on it.
    """

    #: Gate groups of ``F`` channels in the kernels (4 for the LSTM, 3 for the GRU).
    gates: int
    #: Names of the state's tensors, in order.
    state_names: tuple[str, ...] = ("h",)
    #: Step by convolving ``[x_t, pad(h)]`` at once where the plan allows it.
    stacks_input: bool = False
    #: The methods that define a step: a subclass overriding one leaves the fast path
    #: of the class it extends (see ``_steps_like``).
    STEP_METHODS = (
        "step", "prepare_inputs", "input_projection", "step_weight", "init_state", "output"
    )  # fmt: skip

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
        spatial_size: IntOrTuple | None = None,
    ) -> None:
        super().__init__()
        if ndim not in CONV:
            raise ValueError(f"ndim must be 1, 2 or 3, got {ndim}")
        for name, value in (("in_channels", in_channels), ("hidden_channels", hidden_channels)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        self.ndim = ndim
        self.in_channels = in_channels
        self.hidden_channels = hidden_channels
        self.kernel_size = as_tuple(kernel_size, ndim, "kernel_size")
        self.stride = as_tuple(stride, ndim, "stride")
        self.dilation = as_tuple(dilation, ndim, "dilation")
        self.padding = normalize_padding(padding, ndim)
        self.spatial_size = (
            None if spatial_size is None else as_tuple(spatial_size, ndim, "spatial_size")
        )
        self.attention: nn.Module | None = None  # the LSTM's self-attention memory
        rows = self.gates * hidden_channels
        self.weight_ih = nn.Parameter(torch.empty(rows, in_channels, *self.kernel_size))
        self.weight_hh = nn.Parameter(torch.empty(rows, hidden_channels, *self.kernel_size))
        self.bias = nn.Parameter(torch.empty(rows)) if bias else None
        self._step_hooks: OrderedDict[int, StepHook] = OrderedDict()

    @property
    def state_size(self) -> int:
        """Tensors in the state."""
        return len(self.state_names)

    def reset_parameters(self) -> None:
        """Keras's initialisers: Glorot-uniform input kernel, orthogonal recurrent kernel
        (Keras makes the ``(prod(k)·F, G·F)`` matrix orthogonal), zero bias."""
        nn.init.xavier_uniform_(self.weight_ih)
        rows, hidden = self.weight_hh.shape[:2]
        with torch.no_grad():
            flat = torch.empty(math.prod(self.kernel_size) * hidden, rows)
            nn.init.orthogonal_(flat)
            kernel = flat.reshape(*self.kernel_size, hidden, rows)
            self.weight_hh.copy_(kernel.permute(-1, -2, *range(self.ndim)))
        if self.bias is not None:
            nn.init.zeros_(self.bias)

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
        hidden = tuple(((k - 1) // 2, k - 1 - (k - 1) // 2) for k in self.kernel_size)
        stacked = (
            self.stacks_input
            and backend.stack_inputs
            and all(s == 1 for s in self.stride)
            and all(d == 1 for d in self.dilation)
        )
        return StepPlan(spatial, out, tuple(flat_pad(pads)), tuple(flat_pad(hidden)), stacked)

    def step_weight(self, plan: StepPlan) -> torch.Tensor:
        """The kernel one step convolves with: ``[W_x, W_h]`` concatenated when stacked."""
        if plan.stacked:
            return torch.cat([self.weight_ih, self.weight_hh], dim=1)
        return self.weight_hh

    def init_state(self, x: torch.Tensor, plan: StepPlan) -> State:
        """A zero state for a batch like ``x`` (``(B, C_in, *spatial)``)."""
        shape = (x.shape[0], self.hidden_channels, *plan.output_size)
        # The layout of later states (channels-last on CPU): one compiled kernel for all steps.
        layout = memory_format(self.ndim, x.device)
        zeros = torch.empty(shape, dtype=x.dtype, device=x.device, memory_format=layout).zero_()
        return (zeros,) * self.state_size

    def input_projection(self, x: torch.Tensor, plan: StepPlan) -> torch.Tensor:
        """``W_x * x + b`` ``(N, G·F, *spatial')`` of ``x`` ``(N, C_in, *spatial)``."""
        if any(plan.input_pad):
            x = F.pad(x, list(plan.input_pad))
        return CONV[self.ndim](
            x, self.weight_ih, self.bias, stride=self.stride, dilation=self.dilation
        )

    def prepare_inputs(self, x: torch.Tensor, plan: StepPlan) -> Sequence[torch.Tensor]:
        """Per-step inputs for ``step`` from a sequence ``x`` ``(B, T, C_in, *spatial)``.

        Stacked plan: the sequence padded once and laid out channels-last (one copy), then
        ``unbind`` (slicing ``[:, t]`` in the loop would make the backward pass quadratic
        in ``T``). Otherwise the input projections, batched over ``B * T`` frames when
        that tensor is small, else computed per step (a huge batched tensor misses the
        cache on a CPU and runs slower than per-step convolutions).
        """
        batch, steps = x.shape[0], x.shape[1]
        if plan.stacked:
            if any(plan.input_pad):
                x = F.pad(x.flatten(0, 1), list(plan.input_pad)).unflatten(0, (batch, steps))
            layout = memory_format(self.ndim, x.device)
            if layout is not torch.contiguous_format:
                # (B, T, C, *S) -> channels innermost, viewed back as (B, T, C, *S).
                order = (0, 1, *range(3, x.dim()), 2)
                inverse = (0, 1, x.dim() - 1, *range(2, x.dim() - 1))
                x = x.permute(order).contiguous().permute(inverse)
            return x.unbind(1)
        rows = self.weight_ih.shape[0]
        projected_bytes = batch * steps * rows * math.prod(plan.output_size) * x.element_size()
        if x.device.type != "cpu" or projected_bytes <= backend.batched_projection_bytes:
            projected = self.input_projection(x.flatten(0, 1), plan)
            return projected.unflatten(0, (batch, steps)).unbind(1)
        return _PerStepProjection(self, x.unbind(1), plan)

    # ---------------------------------------------------------------- stepping
    def recurrent_conv(self, h: torch.Tensor, weight: torch.Tensor, plan: StepPlan) -> torch.Tensor:
        """``weight * h`` on the recurrent path ("same" padding, stride 1)."""
        before, after = plan.hidden_pad[0::2], plan.hidden_pad[1::2]
        if before == after:  # odd kernels: the convolution pads, without a padded copy
            return CONV[self.ndim](h, weight, padding=before[::-1])
        return CONV[self.ndim](F.pad(h, list(plan.hidden_pad)), weight)

    def step(
        self,
        x: torch.Tensor,
        state: State,
        plan: StepPlan,
        weight: torch.Tensor,
        recurrent_mask: torch.Tensor | None = None,
    ) -> State:
        """One time step (see the class docstring); ``recurrent_mask`` ``(B, F,
        *spatial')`` is the recurrent-dropout mask applied to ``h``."""
        raise NotImplementedError

    def output(self, state: State, x: torch.Tensor) -> torch.Tensor:
        """A step's output (the layer's output at that step) from its new ``state`` and
        its input ``x`` (as in ``step``): ``h``, the state's first tensor."""
        return state[0]

    def fast_path(self, plan: StepPlan) -> FastPath | None:
        """The fast path this cell's sequences may take with ``plan``, or ``None``
        (the default: the layer steps the cell). The layer takes it only in a plain
        run (no ``lengths``, step hooks, recurrent dropout or attention maps) and when
        the backend allows (``convlstm.nn.backend``)."""
        return None

    def _steps_like(self, owner: type) -> bool:
        """Whether this cell's class steps exactly as ``owner`` does: it overrides none of
        ``STEP_METHODS`` below ``owner``. A fast path declared by ``owner`` computes
        ``owner``'s step, so a subclass that changes the step must not take it."""
        cls = type(self)
        return all(getattr(cls, name) is getattr(owner, name) for name in owner.STEP_METHODS)

    def forward(self, x: torch.Tensor, state: State | None = None) -> State:
        """One step: ``x`` ``(B, C_in, *spatial)``, ``state`` as ``state_names`` or
        ``None`` (zeros).

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
        ``step`` instead of its fast path (``fast_path``), which keeps no per-step
        state: every recorded state is then a tensor of the autograd graph (a gradient
        with respect to it works), at the speed of the step-by-step path. Other cells
        are not affected.

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
        names = self.state_names
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
