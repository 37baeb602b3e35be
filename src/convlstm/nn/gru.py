"""ConvGRU (Ballas et al. 2016): its cell and its layers for 1-D, 2-D and 3-D frames."""

from __future__ import annotations

import torch

from ._utils import IntOrTuple
from .activations import Activation, get_activation
from .layer import ConvRNNBase
from .recurrent import ConvRNNCellBase, State, StepPlan


class ConvGRUCellNd(ConvRNNCellBase):
    """A ConvGRU cell for ``ndim`` spatial dimensions (Ballas et al. 2016, eq. 4-7).

    One step maps an input ``x_t`` ``(B, C_in, *spatial)`` and a state ``(h,)`` of
    shape ``(B, F, *spatial')`` to the new ``(h,)``, with ``*`` a convolution, ``∘`` the
    elementwise product, ``σ`` the recurrent activation and ``φ`` the activation::

        r_t = σ(W_r * x_t + U_r * h_{t-1} + b_r)              reset gate
        z_t = σ(W_z * x_t + U_z * h_{t-1} + b_z)              update gate
        n_t = φ(W_n * x_t + U_n * (r_t ∘ h_{t-1}) + b_n)      candidate
        h_t = (1 - z_t) ∘ h_{t-1} + z_t ∘ n_t

    As in the paper, the reset gate acts on ``h`` before the candidate's convolution
    (``torch.nn.GRU`` applies it after), and ``z_t`` weights the candidate. The input
    projections of all steps are computed at once; a step then convolves ``h`` for
    ``r`` and ``z``, and ``r ∘ h`` for the candidate. Padding, stride and dilation act
    on the input path as in ``ConvLSTMCellNd``; the recurrent path is "same", stride 1.

    In float16/bfloat16 (autocast's or the model's) the convolutions run in that dtype
    and the rest in float32: the state ``h``, the GRU's only memory, is float32 as the
    LSTM's cell state is (a slow update ``z ∘ (n - h)`` would round away), and the
    layer's output is ``h`` in the convolutions' dtype, as the LSTM's (``output``).

    Args:
        in_channels, hidden_channels, kernel_size, ndim, stride, padding, dilation,
            bias, spatial_size: as in ``ConvRNNCellBase``.
        activation: ``φ`` for the candidate. Default ``"tanh"``.
        recurrent_activation: ``σ`` for the gates. Default ``"sigmoid"``.

    Parameters:
        weight_ih: ``(3F, C_in, *kernel_size)`` (``W_r, W_z, W_n``); weight_hh:
        ``(3F, F, *kernel_size)`` (``U_r, U_z, U_n``); bias: ``(3F,)``.
    """

    gates = 3
    state_names = ("h",)

    def __init__(
        self,
        in_channels: int,
        hidden_channels: int,
        kernel_size: IntOrTuple,
        *,
        ndim: int,
        activation: Activation = "tanh",
        recurrent_activation: Activation = "sigmoid",
        **options,
    ) -> None:
        super().__init__(in_channels, hidden_channels, kernel_size, ndim=ndim, **options)
        self.activation_names = tuple(
            a if isinstance(a, str) else "custom" for a in (activation, recurrent_activation)
        )
        self.activation = get_activation(activation, "activation")
        self.recurrent_activation = get_activation(recurrent_activation, "recurrent_activation")
        self.reset_parameters()

    def step(
        self,
        x: torch.Tensor,
        state: State,
        plan: StepPlan,
        weight: torch.Tensor,
        recurrent_mask: torch.Tensor | None = None,
    ) -> State:
        """One time step: ``x`` the input projection ``(B, 3F, *spatial')`` (an entry of
        ``prepare_inputs``), ``state`` ``(h,)``, ``weight`` ``weight_hh``; ``recurrent_mask``
        is the recurrent-dropout mask applied to ``h`` in both recurrent convolutions."""
        (h,) = state
        h_in = h if recurrent_mask is None else h * recurrent_mask
        hidden = self.hidden_channels
        # float16/bfloat16 convolutions; gate arithmetic and the new h in float32
        wide = torch.promote_types(h.dtype, torch.float32)
        x_r, x_z, x_n = x.to(wide).split(hidden, dim=1)
        conv = weight.dtype  # the float32 h of a float16/bfloat16 model (autocast casts)
        r_z = self.recurrent_conv(h_in.to(conv), weight[: 2 * hidden], plan).to(wide)
        r = self.recurrent_activation(x_r + r_z[:, :hidden])
        z = self.recurrent_activation(x_z + r_z[:, hidden:])
        u_n = self.recurrent_conv((r * h_in).to(conv), weight[2 * hidden :], plan).to(wide)
        n = self.activation(x_n + u_n)
        return (h.to(wide) + z * (n - h),)

    def output(self, state: State, x: torch.Tensor) -> torch.Tensor:
        """``h`` in the dtype of the convolutions, that of the input projection ``x``."""
        return state[0].to(x.dtype)

    def extra_repr(self) -> str:
        activations = ""
        if self.activation_names != ("tanh", "sigmoid"):
            activations = ", activation={!r}, recurrent_activation={!r}".format(
                *self.activation_names
            )
        return super().extra_repr() + activations


class ConvGRUNd(ConvRNNBase):
    """Stacked ConvGRU over sequences of ``ndim``-dimensional frames: ``ConvRNNBase``
    with ``cell=ConvGRUCellNd``. The state is ``(h,)``: ``output, (h_n,) = layer(x)``.

    Args: as ``ConvRNNBase``, and ``activation`` and ``recurrent_activation`` of
    ``ConvGRUCellNd``. ``cell`` may be a subclass of ``ConvGRUCellNd``.
    """

    def __init__(
        self,
        in_channels: int,
        hidden_channels: int | list[int],
        kernel_size: IntOrTuple | list[IntOrTuple],
        num_layers: int = 1,
        *,
        ndim: int,
        cell: type[ConvGRUCellNd] = ConvGRUCellNd,
        **options,
    ) -> None:
        super().__init__(
            in_channels, hidden_channels, kernel_size, num_layers, ndim=ndim, cell=cell, **options
        )


class ConvGRU1d(ConvGRUNd):
    """ConvGRU over sequences of 1-D signals: input ``(B, T, C_in, L)``. See ``ConvGRUNd``."""

    def __init__(self, in_channels, hidden_channels, kernel_size, num_layers: int = 1, **kwargs):
        super().__init__(in_channels, hidden_channels, kernel_size, num_layers, ndim=1, **kwargs)


class ConvGRU2d(ConvGRUNd):
    """ConvGRU over sequences of images: input ``(B, T, C_in, H, W)``. See ``ConvGRUNd``.

    Example::

        >>> layer = ConvGRU2d(3, 16, kernel_size=3, num_layers=2)
        >>> out, (h_n,) = layer(torch.randn(4, 10, 3, 32, 32))
        >>> out.shape, h_n.shape
        (torch.Size([4, 10, 16, 32, 32]), torch.Size([2, 4, 16, 32, 32]))
    """

    def __init__(self, in_channels, hidden_channels, kernel_size, num_layers: int = 1, **kwargs):
        super().__init__(in_channels, hidden_channels, kernel_size, num_layers, ndim=2, **kwargs)


class ConvGRU3d(ConvGRUNd):
    """ConvGRU over sequences of volumes: input ``(B, T, C_in, D, H, W)``. See ``ConvGRUNd``."""

    def __init__(self, in_channels, hidden_channels, kernel_size, num_layers: int = 1, **kwargs):
        super().__init__(in_channels, hidden_channels, kernel_size, num_layers, ndim=3, **kwargs)
