"""Multi-layer, optionally bidirectional convolutional RNNs with the ``torch.nn.LSTM``
conventions: ``ConvRNNBase`` runs any cell (``ConvRNNCellBase``); ``ConvLSTMNd`` and
``ConvLSTM1d/2d/3d`` run the ConvLSTM cell."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint as checkpoint_fn
from torch.utils.checkpoint import set_checkpoint_early_stop

from ._utils import IntOrTuple, Padding, empty_steps, steps_last
from .activations import Activation
from .cell import ConvLSTMCellNd
from .fast import run_fast_path
from .recurrent import ConvRNNCellBase, StepRecord

#: ``(h_n, c_n)`` (``(h_n, c_n, m_n)`` with ``attention="sam"``; ``(h_n,)`` for the GRU):
#: stacked tensors, or lists.
State = tuple[torch.Tensor, ...] | tuple[list[torch.Tensor], ...]


def _per_layer(value: Any, num_layers: int, name: str) -> list[Any]:
    """A ``list`` gives one value per layer; anything else (an int, a tuple) is shared."""
    if isinstance(value, list):
        if len(value) != num_layers:
            raise ValueError(
                f"{name} given as a list must have one entry per layer ({num_layers}), "
                f"got {len(value)}: {value!r}"
            )
        return list(value)
    return [value] * num_layers


class ConvRNNBase(nn.Module):
    """Stacked convolutional RNN of any cell over sequences of ``ndim``-dimensional frames.

    Shapes (``batch_first=True``; otherwise ``T`` and ``B`` swap)::

        input   x     (B, T, C_in, *spatial)
        state   each  (num_layers * D, B, F, *spatial')    D = 2 if bidirectional else 1
        output        (B, T, D * F, *spatial')             the last layer's hidden states

    The state is a tuple with one entry per name of the cell's ``state_names``
    (``(h, c)`` for the LSTM, ``(h,)`` for the GRU). ``spatial'`` is the last layer's
    output size (smaller than ``spatial`` with valid padding or strides). When layers
    differ in ``F`` or spatial size, each entry of the state (also of an input
    ``state``) is a list with one ``(B, F_l, *spatial_l)`` tensor per layer and
    direction instead, in the order layer 0 forward, layer 0 backward, ...

    Args:
        in_channels: channels of each input frame.
        hidden_channels: ``F`` per layer (an int, or a list with one entry per layer).
        kernel_size: int, ``ndim``-tuple, or a per-layer list of them.
        num_layers: stacked layers; taken from list arguments when those are longer.
        ndim: spatial dimensions (1, 2 or 3).
        cell: the cell class (a ``ConvRNNCellBase``), built once per layer and direction.
        stride, padding, dilation: the input path of each layer (see
            ``ConvRNNCellBase``); a ``list`` gives one value per layer.
        bias: learn gate biases. Default ``True``.
        batch_first: input and output are ``(B, T, ...)``. Default ``True``.
        bidirectional: add a backward-in-time direction per layer. Default ``False``.
        dropout: dropout on the outputs of every layer but the last (training only).
        recurrent_dropout: Keras-style dropout on the hidden state entering the
            recurrent convolution, one mask per sequence reused at every step.
        spatial_size: input frame size, for cells whose parameters depend on it.
        return_all_layers: ``output`` is a list of every layer's output sequence.
        checkpoint: gradient checkpointing through time (training only): a cell's fast
            path checkpoints in its own way; otherwise every step is recomputed from
            its state in the backward.
        **cell_options: further keyword arguments of ``cell``.

    A cell's fast path (``ConvRNNCellBase.fast_path``) runs a direction's whole
    sequence at once; the layer takes it when no ``lengths``, recurrent dropout, step
    hook or attention map asks for every step. To see every step (its inputs, state
    and gates' inputs), register a step hook on a cell
    (``layer.cell(l).register_step_hook``); that cell then runs step by step.
    """

    def __init__(
        self,
        in_channels: int,
        hidden_channels: int | list[int],
        kernel_size: IntOrTuple | list[IntOrTuple],
        num_layers: int = 1,
        *,
        ndim: int,
        cell: type[ConvRNNCellBase],
        stride: IntOrTuple | list[IntOrTuple] = 1,
        padding: Padding | list[Padding] = "same",
        dilation: IntOrTuple | list[IntOrTuple] = 1,
        bias: bool = True,
        batch_first: bool = True,
        bidirectional: bool = False,
        dropout: float = 0.0,
        recurrent_dropout: float = 0.0,
        spatial_size: IntOrTuple | None = None,
        return_all_layers: bool = False,
        checkpoint: bool = False,
        **cell_options: Any,
    ) -> None:
        super().__init__()
        if not (isinstance(cell, type) and issubclass(cell, ConvRNNCellBase)):
            raise TypeError(f"cell must be a subclass of ConvRNNCellBase, got {cell!r}")
        if not isinstance(num_layers, int) or num_layers < 1:
            raise ValueError(f"num_layers must be a positive int, got {num_layers!r}")
        per_layer = {
            "hidden_channels": hidden_channels,
            "kernel_size": kernel_size,
            "stride": stride,
            "padding": padding,
            "dilation": dilation,
        }
        for name, value in per_layer.items():
            if isinstance(value, list) and not value:
                raise ValueError(f"{name} given as a list needs one entry per layer, got []")
        list_lengths = [len(v) for v in per_layer.values() if isinstance(v, list)]
        if num_layers == 1 and list_lengths:
            num_layers = list_lengths[0]
        for name, p in (("dropout", dropout), ("recurrent_dropout", recurrent_dropout)):
            if not 0.0 <= p < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {p}")
        self.ndim = ndim
        self.in_channels = in_channels
        self.num_layers = num_layers
        self.hidden_channels = _per_layer(hidden_channels, num_layers, "hidden_channels")
        self.batch_first = batch_first
        self.bidirectional = bidirectional
        self.num_directions = 2 if bidirectional else 1
        self.dropout = dropout
        self.recurrent_dropout = recurrent_dropout
        self.return_all_layers = return_all_layers
        self.checkpoint = checkpoint

        per_layer = {k: _per_layer(v, num_layers, k) for k, v in per_layer.items()}
        self.cells = nn.ModuleList()
        layer_in, layer_size = in_channels, spatial_size
        for layer in range(num_layers):
            options = {k: v[layer] for k, v in per_layer.items()}
            options.update(ndim=ndim, bias=bias, spatial_size=layer_size, **cell_options)
            for _ in range(self.num_directions):
                self.cells.append(cell(layer_in, **options))
            if layer_size is not None:
                layer_size = self.cells[-1].plan(self.cells[-1].spatial_size).output_size
            layer_in = self.hidden_channels[layer] * self.num_directions
        self.state_size = self.cells[0].state_size

    def extra_repr(self) -> str:
        return (
            f"num_layers={self.num_layers}, batch_first={self.batch_first}, "
            f"bidirectional={self.bidirectional}, dropout={self.dropout}, "
            f"recurrent_dropout={self.recurrent_dropout}, checkpoint={self.checkpoint}"
        )

    def cell(self, layer: int, direction: int = 0) -> ConvRNNCellBase:
        """The cell of ``layer`` (0-based) and ``direction`` (0 forward, 1 backward)."""
        return self.cells[layer * self.num_directions + direction]

    def output_size(self, spatial: Sequence[int]) -> tuple[int, ...]:
        """Spatial size of the output for input frames of size ``spatial``."""
        size = tuple(spatial)
        for layer in range(self.num_layers):
            size = self.cell(layer).plan(size).output_size
        return size

    # ---------------------------------------------------------------- forward
    def forward(
        self,
        x: torch.Tensor,
        state: State | None = None,
        *,
        lengths: torch.Tensor | Sequence[int] | None = None,
        reverse: bool = False,
        return_attention: bool = False,
    ):
        """Run the whole sequence.

        Args:
            x: ``(B, T, C_in, *spatial)`` (``(T, B, ...)`` unless ``batch_first``).
            state: the initial state as returned (``(h_0, c_0)`` for the LSTM), or
                ``None`` for zeros. Passing the returned state to the next chunk of a long
                sequence gives the same result as one pass over the whole sequence.
            lengths: ``(B,)`` valid steps per sequence (1..T). Later steps leave the state
                unchanged and output zeros; the final state is taken at each sequence's
                last valid step, and the backward direction starts there.
            reverse: process time backwards (last step first). Outputs stay aligned with
                the input: ``output[:, t]`` is the state after steps ``T-1 ... t``.
            return_attention: with ``attention="sam"``, also return the attention maps:
                a dict with keys ``"layer{l}.hidden"`` and ``"layer{l}.memory"`` (suffix
                ``".reverse"`` for the backward direction), each ``(B, T, N, N_k)`` over
                the ``N`` positions of the layer's hidden state.

        Returns:
            ``(output, state)`` (``(output, (h_n, c_n))`` for the LSTM) as described in
            the class docstring, and the attention dict as a third element when
            ``return_attention`` is set.
        """
        first = self.cell(0)
        first.check_input(x, step=False)
        time_dim = 1 if self.batch_first else 0
        if x.shape[time_dim] == 0:
            raise ValueError(
                "input must have at least one time step (T >= 1), got T = 0 in shape "
                f"{tuple(x.shape)}"
            )
        if not self.batch_first:
            x = x.transpose(0, 1)
        batch, steps = x.shape[0], x.shape[1]
        mask = self._step_mask(lengths, batch, steps, x.device)
        states = self._split_state(state, x, batch)

        finals: list[tuple[torch.Tensor, ...]] = []
        outputs: list[torch.Tensor] = []
        attention: dict[str, torch.Tensor] = {}
        layer_input = x
        for layer in range(self.num_layers):
            directions = []
            for direction in range(self.num_directions):
                index = layer * self.num_directions + direction
                backwards = (direction == 1) != reverse
                out, final, maps = self._run_direction(
                    self.cells[index], layer_input, states[index], mask, backwards, return_attention
                )
                directions.append(out)
                finals.append(final)
                suffix = ".reverse" if direction == 1 else ""
                attention.update({f"layer{layer}.{k}{suffix}": v for k, v in maps.items()})
            layer_output = directions[0] if len(directions) == 1 else torch.cat(directions, dim=2)
            outputs.append(layer_output)
            if self.dropout > 0 and self.training and layer < self.num_layers - 1:
                layer_output = F.dropout(layer_output, self.dropout, training=True)
            layer_input = layer_output

        if not self.batch_first:
            outputs = [o.transpose(0, 1) for o in outputs]
        output = outputs if self.return_all_layers else outputs[-1]
        merged = self._merge_state(finals)
        if return_attention:
            return output, merged, attention
        return output, merged

    def _run_direction(
        self,
        cell: ConvRNNCellBase,
        x: torch.Tensor,
        state: tuple[torch.Tensor, ...] | None,
        mask: torch.Tensor | None,
        backwards: bool,
        need_weights: bool,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...], dict[str, torch.Tensor]]:
        steps = x.shape[1]
        plan = cell.plan(tuple(x.shape[3:]))
        use_checkpoint = self.checkpoint and self.training and torch.is_grad_enabled()
        need_weights = need_weights and cell.attention is not None
        dropping = self.recurrent_dropout > 0 and self.training
        # A fast path keeps no per-step state for a step hook to see.
        hooked = cell.has_step_hooks
        if mask is None and not (need_weights or dropping or hooked):
            fast = run_fast_path(cell, x, state, plan, backwards, use_checkpoint)
            if fast is not None:
                return fast[0], tuple(fast[1]), {}
        if state is None:
            state = cell.init_state(x[:, 0], plan)
        recurrent_mask = None
        if dropping:
            keep = 1.0 - self.recurrent_dropout
            recurrent_mask = state[0].new_empty(state[0].shape).bernoulli_(keep) / keep
        inputs = cell.prepare_inputs(x, plan)
        weight = cell.step_weight(plan)

        order = range(steps - 1, -1, -1) if backwards else range(steps)
        outputs: list[torch.Tensor | None] = [None] * steps
        # Without autograd, each step's output goes straight into the result: peak memory
        # holds one copy of the sequence instead of the steps plus their stacked copy.
        into: torch.Tensor | None = None
        maps: list[dict[str, torch.Tensor] | None] = [None] * steps
        for t in order:
            args = (inputs[t], state, plan, weight, recurrent_mask)
            if need_weights:  # only cells with attention take (and need) the flag
                args = (*args, True)
            if use_checkpoint:
                # Early stop of the recomputation trips over the compiled gate kernel.
                with set_checkpoint_early_stop(False):
                    new = checkpoint_fn(cell.step, *args, use_reentrant=False)
            else:
                new = cell.step(*args)
            if need_weights:
                new, maps[t] = new
            if hooked:
                cell.call_step_hooks(StepRecord(t, backwards, *args[:5], new))
            if mask is None:
                state = new
                output = cell.output(new, args[0])
            else:
                valid = mask[t]
                state = tuple(torch.where(valid, n, s) for n, s in zip(new, state))
                output = cell.output(new, args[0]) * valid
            if torch.is_grad_enabled():
                outputs[t] = output
            else:
                if into is None:
                    into = empty_steps(output, steps)
                into[:, t] = output
        weights = {}
        if need_weights:
            weights = {key: torch.stack([m[key] for m in maps], dim=1) for key in maps[0]}
        return (_stack_steps(outputs) if into is None else into), state, weights

    # ---------------------------------------------------------------- helpers
    def _step_mask(
        self,
        lengths: torch.Tensor | Sequence[int] | None,
        batch: int,
        steps: int,
        device: torch.device,
    ) -> torch.Tensor | None:
        """``(T, B, 1, ...)`` booleans, True where step t is within sequence b's length."""
        if lengths is None:
            return None
        lengths = torch.as_tensor(lengths, device=device)
        if lengths.dim() != 1 or lengths.shape[0] != batch:
            raise ValueError(f"lengths must have shape ({batch},), got {tuple(lengths.shape)}")
        if lengths.is_floating_point() or lengths.dtype == torch.bool:
            raise TypeError(f"lengths must hold integers, got dtype {lengths.dtype}")
        if not torch.jit.is_tracing() and (lengths.min() < 1 or lengths.max() > steps):
            raise ValueError(
                f"lengths must lie in [1, T={steps}], got min {int(lengths.min())} "
                f"and max {int(lengths.max())}"
            )
        time = torch.arange(steps, device=device).unsqueeze(1)
        mask = time < lengths.unsqueeze(0)
        return mask.reshape(steps, batch, 1, *(1,) * self.ndim)

    def _split_state(
        self, state: State | None, x: torch.Tensor, batch: int
    ) -> list[tuple[torch.Tensor, ...] | None]:
        """Turn a user state into one state tuple per cell, checking every shape."""
        count = self.num_layers * self.num_directions
        if state is None:
            return [None] * count
        names = tuple(f"{name}_0" for name in self.cells[0].state_names)
        if not isinstance(state, (tuple, list)) or len(state) != self.state_size:
            raise TypeError(
                f"state must be a tuple ({', '.join(names)}) as returned by forward, got "
                + (
                    f"{len(state)} entries"
                    if isinstance(state, (tuple, list))
                    else type(state).__name__
                )
            )
        per_cell: list[list[torch.Tensor]] = []
        for name, value in zip(names, state):
            if isinstance(value, torch.Tensor):
                if value.dim() < 1 or value.shape[0] != count:
                    raise ValueError(
                        f"state {name} must have shape (num_layers * num_directions = {count}, "
                        f"B, F, ...), got {tuple(value.shape)}"
                    )
                per_cell.append(list(value.unbind(0)))
            else:
                if len(value) != count:
                    raise ValueError(
                        f"state {name} as a list must hold num_layers * num_directions = {count} "
                        f"tensors, got {len(value)}"
                    )
                per_cell.append(list(value))
        size = tuple(x.shape[3:])
        pairs: list[tuple[torch.Tensor, ...] | None] = []
        for layer in range(self.num_layers):
            plan = self.cell(layer).plan(size)
            for direction in range(self.num_directions):
                index = layer * self.num_directions + direction
                cell_state = tuple(part[index] for part in per_cell)
                self.cells[index].check_state(cell_state, batch, plan)
                pairs.append(cell_state)
            size = plan.output_size
        return pairs

    @staticmethod
    def _merge_state(finals: list[tuple[torch.Tensor, ...]]) -> State:
        """Stack the per-cell final states when their shapes and dtypes agree, else lists."""
        merged = []
        for part in zip(*finals):
            same = all(p.shape == part[0].shape and p.dtype == part[0].dtype for p in part)
            merged.append(torch.stack(part) if same else list(part))
        if any(isinstance(p, list) for p in merged):
            merged = [list(p) for p in merged]
        return tuple(merged)


def _stack_steps(outputs: list[torch.Tensor]) -> torch.Tensor:
    """``T`` tensors ``(B, F, *S)`` -> ``(B, T, F, *S)``, keeping channels innermost when
    the steps are channels-last (stacking them as they are takes a slow strided copy)."""
    first = outputs[0]
    if steps_last(first):
        to_last = (0, *range(2, first.dim()), 1)
        stacked = torch.stack([o.permute(to_last) for o in outputs], dim=1)
        return stacked.permute(0, 1, first.dim(), *range(2, first.dim()))
    return torch.stack(outputs, dim=1)


class ConvLSTMNd(ConvRNNBase):
    """Stacked ConvLSTM over sequences of ``ndim``-dimensional frames.

    Shapes (``batch_first=True``; otherwise ``T`` and ``B`` swap)::

        input   x     (B, T, C_in, *spatial)
        state   h, c  (num_layers * D, B, F, *spatial')    D = 2 if bidirectional else 1
        output        (B, T, D * F, *spatial')             the last layer's hidden states

    ``spatial'`` is the last layer's output size (smaller than ``spatial`` with valid
    padding or strides). When layers differ in ``F`` or spatial size, ``h_n``/``c_n``
    (and an input ``state``) are lists with one ``(B, F_l, *spatial_l)`` tensor per
    layer and direction instead, in the order layer 0 forward, layer 0 backward, ...

    Args:
        in_channels: channels of each input frame.
        hidden_channels: ``F`` per layer (an int, or a list with one entry per layer).
        kernel_size: int, ``ndim``-tuple, or a per-layer list of them.
        num_layers: stacked layers; taken from list arguments when those are longer.
        ndim: spatial dimensions (1, 2 or 3).
        stride, padding, dilation: the input path of each layer (see
            ``ConvLSTMCellNd``); a ``list`` gives one value per layer.
        bias: learn gate biases. Default ``True``.
        batch_first: input and output are ``(B, T, ...)``. Default ``True``.
        bidirectional: add a backward-in-time direction per layer. Default ``False``.
        dropout: dropout on the outputs of every layer but the last (training only).
        recurrent_dropout: Keras-style dropout on the hidden state entering the
            recurrent convolution, one mask per sequence reused at every step.
        peephole: ``False``, ``"channel"`` or ``"pixel"`` (Shi et al.'s terms).
        spatial_size: input frame size; needed for ``peephole="pixel"``.
        layer_norm: layer norm on the gate pre-activations and the cell state.
        activation, recurrent_activation: as in Keras (``"tanh"``, ``"sigmoid"``,
            ``"hard_sigmoid"``, ...).
        unit_forget_bias: forget-gate bias initialised to 1.
        return_all_layers: ``output`` is a list of every layer's output sequence.
        checkpoint: gradient checkpointing through time (training only). For the usual
            cell (see below) the sequence runs in segments of about ``sqrt(T)`` steps:
            the forward keeps the output and one cell state per segment, and the
            backward recomputes one segment's cell states at a time and each step's
            gates when it reaches the step (two more convolutions per step), so memory
            beyond the output grows as ``sqrt(T)`` cell states. Other cells (masks,
            recurrent dropout, attention, layer norm) recompute every step from its
            state.
        attention: ``None`` or ``"sam"`` (SA-ConvLSTM's self-attention memory in every
            cell; the state gains a memory: ``(h, c, m)``).
        attention_options: ``SelfAttentionMemory`` keyword arguments (``key_channels``,
            ``key_stride``).
        cell: the cell class, ``ConvLSTMCellNd`` or a subclass; it receives every
            argument above that ``ConvLSTMCellNd`` takes.

    Gates use one convolution with ``4F`` output channels in order ``i, f, g, o``.
    For the usual cell (see ``convlstm.nn.fast.sequence``) a direction's whole sequence
    is one autograd function that saves its output, as ``torch.tanh`` does: modify the
    output in place only after ``backward()``, else autograd raises. To see every step
    (its inputs, state and gates' inputs), register a step hook on a cell
    (``layer.cell(l).register_step_hook``); that cell then runs step by step.
    """

    def __init__(
        self,
        in_channels: int,
        hidden_channels: int | list[int],
        kernel_size: IntOrTuple | list[IntOrTuple],
        num_layers: int = 1,
        *,
        ndim: int,
        stride: IntOrTuple | list[IntOrTuple] = 1,
        padding: Padding | list[Padding] = "same",
        dilation: IntOrTuple | list[IntOrTuple] = 1,
        bias: bool = True,
        batch_first: bool = True,
        bidirectional: bool = False,
        dropout: float = 0.0,
        recurrent_dropout: float = 0.0,
        peephole: bool | str = False,
        spatial_size: IntOrTuple | None = None,
        layer_norm: bool = False,
        activation: Activation = "tanh",
        recurrent_activation: Activation = "sigmoid",
        unit_forget_bias: bool = True,
        return_all_layers: bool = False,
        checkpoint: bool = False,
        attention: str | None = None,
        attention_options: dict | None = None,
        cell: type[ConvLSTMCellNd] = ConvLSTMCellNd,
    ) -> None:
        super().__init__(
            in_channels, hidden_channels, kernel_size, num_layers, ndim=ndim, cell=cell,
            stride=stride, padding=padding, dilation=dilation, bias=bias,
            batch_first=batch_first, bidirectional=bidirectional, dropout=dropout,
            recurrent_dropout=recurrent_dropout, spatial_size=spatial_size,
            return_all_layers=return_all_layers, checkpoint=checkpoint, peephole=peephole,
            layer_norm=layer_norm, activation=activation,
            recurrent_activation=recurrent_activation, unit_forget_bias=unit_forget_bias,
            attention=attention, attention_options=attention_options,
        )  # fmt: skip

    def cell(self, layer: int, direction: int = 0) -> ConvLSTMCellNd:
        """The cell of ``layer`` (0-based) and ``direction`` (0 forward, 1 backward)."""
        return self.cells[layer * self.num_directions + direction]


class ConvLSTM1d(ConvLSTMNd):
    """ConvLSTM over sequences of 1-D signals: input ``(B, T, C_in, L)``.

    See ``ConvLSTMNd`` for arguments and shapes.
    """

    def __init__(self, in_channels, hidden_channels, kernel_size, num_layers: int = 1, **kwargs):
        super().__init__(in_channels, hidden_channels, kernel_size, num_layers, ndim=1, **kwargs)


class ConvLSTM2d(ConvLSTMNd):
    """ConvLSTM over sequences of images: input ``(B, T, C_in, H, W)``.

    Example::

        >>> layer = ConvLSTM2d(3, 16, kernel_size=3, num_layers=2)
        >>> out, (h_n, c_n) = layer(torch.randn(4, 10, 3, 32, 32))
        >>> out.shape, h_n.shape
        (torch.Size([4, 10, 16, 32, 32]), torch.Size([2, 4, 16, 32, 32]))

    See ``ConvLSTMNd`` for arguments and shapes.
    """

    def __init__(self, in_channels, hidden_channels, kernel_size, num_layers: int = 1, **kwargs):
        super().__init__(in_channels, hidden_channels, kernel_size, num_layers, ndim=2, **kwargs)


class ConvLSTM3d(ConvLSTMNd):
    """ConvLSTM over sequences of volumes: input ``(B, T, C_in, D, H, W)``.

    See ``ConvLSTMNd`` for arguments and shapes.
    """

    def __init__(self, in_channels, hidden_channels, kernel_size, num_layers: int = 1, **kwargs):
        super().__init__(in_channels, hidden_channels, kernel_size, num_layers, ndim=3, **kwargs)
