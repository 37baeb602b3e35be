"""The ConvLSTM cell for 1-D, 2-D and 3-D frames; ``ConvLSTMCell1d/2d/3d`` name its uses."""

from __future__ import annotations

import torch
from torch import nn

from ._utils import IntOrTuple, Padding, conv_output_size, input_padding
from .activations import Activation, get_activation
from .fast import lstm_pointwise, step_conv
from .fast.gates import gate_kind
from .fast.sequence import LSTMSequence
from .recurrent import ConvRNNCellBase, FastPath, State, StepHook, StepPlan, StepRecord
from .sam import SelfAttentionMemory

__all__ = [
    "ConvLSTMCell1d",
    "ConvLSTMCell2d",
    "ConvLSTMCell3d",
    "ConvLSTMCellNd",
    "State",
    "StepHook",
    "StepPlan",
    "StepRecord",
]

PEEPHOLE_MODES = (False, "channel", "pixel")
ATTENTION_MODES = (None, "sam")


class ConvLSTMCellNd(ConvRNNCellBase):
    """A ConvLSTM cell for ``ndim`` spatial dimensions (Shi et al. 2015).

    One step maps an input ``x_t`` of shape ``(B, C_in, *spatial)`` and a state
    ``(h, c)`` of shapes ``(B, F, *spatial')`` to the new ``(h, c)``. The gate
    pre-activations come from one convolution with ``4F`` output channels in
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

    gates = 4
    stacks_input = True
    STEP_METHODS = (*ConvRNNCellBase.STEP_METHODS, "gate_preactivations", "pointwise_options")

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
        super().__init__(
            in_channels, hidden_channels, kernel_size, ndim=ndim, stride=stride,
            padding=padding, dilation=dilation, bias=bias, spatial_size=spatial_size,
        )  # fmt: skip
        if peephole is True:
            peephole = "channel"
        if peephole not in PEEPHOLE_MODES:
            raise ValueError(f'peephole must be False, "channel" or "pixel", got {peephole!r}')
        if attention not in ATTENTION_MODES:
            raise ValueError(f'attention must be None or "sam", got {attention!r}')
        self.peephole = peephole
        self.layer_norm = layer_norm
        self.activation_name = activation if isinstance(activation, str) else "custom"
        self.recurrent_activation_name = (
            recurrent_activation if isinstance(recurrent_activation, str) else "custom"
        )
        self.activation = get_activation(activation, "activation")
        self.recurrent_activation = get_activation(recurrent_activation, "recurrent_activation")
        self.unit_forget_bias = unit_forget_bias
        if peephole == "pixel" and self.spatial_size is None:
            raise ValueError(
                'peephole="pixel" needs spatial_size, the input frame size (e.g. (H, W))'
            )
        if peephole == "channel":
            self.peephole_weight = nn.Parameter(torch.empty(3, hidden_channels, *(1,) * ndim))
        elif peephole == "pixel":
            out_size = self.plan(self.spatial_size).output_size
            self.peephole_weight = nn.Parameter(torch.empty(3, hidden_channels, *out_size))
        else:
            self.peephole_weight = None
        if attention == "sam":
            self.attention = SelfAttentionMemory(hidden_channels, ndim, **(attention_options or {}))
        if layer_norm:
            gates = 4 * hidden_channels
            self.gate_norm_weight = nn.Parameter(torch.empty(gates))
            self.gate_norm_bias = nn.Parameter(torch.empty(gates))
            self.cell_norm_weight = nn.Parameter(torch.empty(hidden_channels))
            self.cell_norm_bias = nn.Parameter(torch.empty(hidden_channels))
        self.reset_parameters()

    @property
    def state_names(self) -> tuple[str, ...]:
        """``("h", "c")``, or ``("h", "c", "m")`` with the self-attention memory."""
        return ("h", "c") if self.attention is None else ("h", "c", "m")

    def reset_parameters(self) -> None:
        """Keras's initialisers: Glorot-uniform input kernel, orthogonal recurrent kernel,
        zero bias (forget gate 1 with ``unit_forget_bias``), zero peepholes, unit norms
        (with layer norm, the forget gate's norm bias is 1 instead, since the norm would
        cancel the convolution's bias)."""
        super().reset_parameters()
        F_ = self.hidden_channels
        if self.bias is not None and self.unit_forget_bias:
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
        parts = [super().extra_repr()]
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
        """Padding and output size for inputs of spatial size ``spatial``; with
        ``peephole="pixel"``, only the size the cell was built for."""
        plan = super().plan(spatial)
        if self.peephole == "pixel":
            args = (self.kernel_size, self.stride, self.dilation)
            pads = input_padding(self.padding, self.spatial_size, *args)
            if plan.output_size != conv_output_size(self.spatial_size, pads, *args):
                raise ValueError(
                    f'peephole="pixel" was built for spatial_size={self.spatial_size}; '
                    f"got an input of spatial size {plan.input_size}"
                )
        return plan

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
        if plan.stacked:
            return step_conv(x, h, weight, self.bias, plan.hidden_pad)
        return self.recurrent_conv(h, weight, plan) + x

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
                a stacked plan, or the input projection ``(B, 4F, *spatial')`` otherwise.
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

    def fast_path(self, plan: StepPlan) -> FastPath | None:
        """``FusedSequence`` (``convlstm.nn.fast.sequence``) for the usual cell: ``tanh``
        with gates of a ``GateKind`` (the sigmoid, Keras 3's or Keras 2's hard sigmoid),
        with or without peepholes, no layer norm or attention, a stacked plan, and this
        class's step."""
        kind = gate_kind(self.activation, self.recurrent_activation)
        plain = not self.layer_norm and self.attention is None
        if kind is None or not plain or not plan.stacked or not self._steps_like(ConvLSTMCellNd):
            return None
        return LSTMSequence(self, plan, kind)


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
