"""ClipClassifier: stacked ConvLSTM layers and a dense head; the fish-video presets."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..checks import check_choice, check_int, check_probability, int_list
from ..nn.attention import SPATIAL_MODES, TEMPORAL_QUERIES, SpatialAttention, TemporalAttention
from ..nn.layer import ConvLSTMNd
from ._blocks import (
    BATCH_NORM,
    GLOBAL_POOLS,
    MAX_POOL,
    check_clip,
    global_pool,
    make_head,
    per_step,
)
from .inputs import ClipInputs
from .registry import create_model, register_model

ATTENTION_KINDS = ("sam", "spatial", "temporal")


def _attention_set(attention: str | Sequence[str] | None) -> set[str]:
    if attention is None:
        return set()
    if isinstance(attention, str):
        kinds = [attention]
    elif isinstance(attention, Sequence):
        kinds = list(attention)
    else:
        raise ValueError(
            f"attention must be None, one of {list(ATTENTION_KINDS)} or a list of them, "
            f"got {attention!r}"
        )
    for kind in kinds:
        check_choice("attention", kind, ATTENTION_KINDS)
    return set(kinds)


@register_model("clip-classifier")
class ClipClassifier(nn.Module):
    """Classify a clip with stacked ConvLSTM layers.

    Layer ``l`` runs over the whole clip; between layers every step is max-pooled and
    batch-normalised (Keras's ``TimeDistributed(MaxPooling)`` then ``BatchNormalization``).
    The last layer's final hidden state (or the temporal-attention context) is globally
    pooled and passed to a dense head::

        x (B, T, C, *S) -> (ClipInputs: + frame differences, coordinates)
          -> [ConvLSTM -> (spatial attention) -> per-step pool -> BN] x (L-1)
          -> ConvLSTM -> (spatial attention) -> last state or temporal context (B, F, *S')
          -> (BN) -> global max/avg pool (B, F) -> dropout -> dense -> logits (B, K)

    Options: ``residual`` adds a layer's input to its output sequence for layers
    ``l >= 1`` of equal input and output width (needs ``padding="same"``);
    ``multiscale`` concatenates the pooled features of every layer (each layer's last
    state, or its temporal context) before the head.

    Outputs are logits ``(B, num_classes)``: with ``num_classes=1`` one logit for a
    binary task (probability ``sigmoid(logit)``; the head of the Keras originals is
    ``Dense(1, activation="sigmoid")``), otherwise softmax logits.

    Args:
        in_channels: channels ``C`` of each frame.
        hidden_channels: ConvLSTM widths, one per layer. Default ``[16, 32]``.
        kernel_size: int or one per layer. Default 3.
        num_classes: 1 for binary, else the number of classes. Default 1.
        ndim: spatial dimensions of a frame (1, 2 or 3). Default 2.
        padding: ``"same"`` or ``"valid"`` for every ConvLSTM layer. Default ``"same"``.
        bias, activation, recurrent_activation, peephole, layer_norm, recurrent_dropout,
            checkpoint: passed to every ConvLSTM layer (see ``convlstm.ConvLSTM2d``).
        spatial_size: the frame size ``S``; needed only by ``peephole="pixel"`` (each
            layer's size then follows from padding and pooling). Default ``None``.
        pool_size: per-step max pooling between layers; 1 turns it off. Default 2.
        batch_norm: batch norm between layers. Default ``True``.
        batch_norm_affine: learn the norm's scale and shift (Keras ``center``/``scale``).
        batch_norm_eps, batch_norm_momentum: PyTorch conventions (Keras's 1e-3 and 0.99
            are ``eps=1e-3, momentum=0.01``). Defaults 1e-5, 0.1.
        final_batch_norm: batch norm of the last feature map before global pooling.
        residual: skip connections between layers of equal width. Default ``False``.
        multiscale: concatenate every layer's pooled features. Default ``False``.
        attention: ``None``, or one or a list of ``"sam"`` (self-attention memory in every
            ConvLSTM cell), ``"spatial"`` (``SpatialAttention`` on each layer's hidden
            state at every step), ``"temporal"`` (``TemporalAttention`` context instead
            of the last state). Default ``None``.
        spatial_attention: ``"softmax"`` or ``"sigmoid"``. Default ``"softmax"``.
        temporal_query: ``"last"`` or ``"learned"``. Default ``"last"``.
        attention_options: ``SelfAttentionMemory`` options (``key_channels``,
            ``key_stride``) for ``"sam"``.
        global_pool: ``"max"`` or ``"avg"``. Default ``"max"``.
        dropout: dropout before (and inside) the head. Default 0.
        head_hidden: width of a hidden dense layer in the head; 0 for none. Default 0.
        frame_differences: also feed ``x_t - x_{t-1}`` to the first layer (see
            ``ClipInputs``): motion as a band the first kernel can see whatever the
            step size. Default ``False``.
        coordinates: also feed the position of every pixel (``ClipInputs``). Default
            ``False``.
        keep_frames: feed the frames themselves (``False``: only the derived channels).
            Default ``True``.
        dilation: the first layer's input dilation (int), e.g. 2 for a 3x3 kernel that
            spans 5 px per step. Default 1.

    Attention dict (``return_attention=True``), each entry for layer ``l``:
        ``"layer{l}.spatial"``: ``(B, T, 1, *S_l)``; ``"layer{l}.temporal"``: ``(B, T)``
        (every layer with ``multiscale``, else the last); ``"layer{l}.hidden"`` and
        ``"layer{l}.memory"``: SAM maps ``(B, T, N_l, N_k)`` over the ``N_l`` positions.
    """

    def __init__(
        self,
        in_channels: int,
        hidden_channels: int | Sequence[int] = (16, 32),
        kernel_size: int | Sequence[int] = 3,
        num_classes: int = 1,
        *,
        ndim: int = 2,
        padding: str = "same",
        bias: bool = True,
        activation: str = "tanh",
        recurrent_activation: str = "sigmoid",
        peephole: bool | str = False,
        spatial_size: int | Sequence[int] | None = None,
        layer_norm: bool = False,
        recurrent_dropout: float = 0.0,
        checkpoint: bool = False,
        pool_size: int = 2,
        batch_norm: bool = True,
        batch_norm_affine: bool = True,
        batch_norm_eps: float = 1e-5,
        batch_norm_momentum: float = 0.1,
        final_batch_norm: bool = False,
        residual: bool = False,
        multiscale: bool = False,
        attention: str | Sequence[str] | None = None,
        spatial_attention: str = "softmax",
        temporal_query: str = "last",
        attention_options: dict | None = None,
        global_pool: str = "max",
        dropout: float = 0.0,
        head_hidden: int = 0,
        frame_differences: bool = False,
        coordinates: bool = False,
        keep_frames: bool = True,
        dilation: int = 1,
    ) -> None:
        super().__init__()
        check_int("in_channels", in_channels)
        check_int("dilation", dilation)
        check_choice("ndim", ndim, (1, 2, 3))
        widths = int_list("hidden_channels", hidden_channels)
        kernels = int_list("kernel_size", kernel_size, len(widths))
        check_int("num_classes", num_classes)
        check_choice("padding", padding, ("same", "valid"))
        check_int("pool_size", pool_size)
        check_choice("global_pool", global_pool, GLOBAL_POOLS)
        check_choice("spatial_attention", spatial_attention, SPATIAL_MODES)
        check_choice("temporal_query", temporal_query, TEMPORAL_QUERIES)
        check_probability("dropout", dropout)
        check_int("head_hidden", head_hidden, minimum=0)
        if residual and padding != "same":
            raise ValueError('residual=True needs padding="same" (valid padding changes sizes)')
        kinds = _attention_set(attention)
        self.ndim, self.in_channels, self.num_classes = ndim, in_channels, num_classes
        self.pool_mode, self.multiscale = global_pool, multiscale
        self.attention_kinds = sorted(kinds)

        self.inputs = ClipInputs(
            in_channels, ndim, frame_differences=frame_differences, coordinates=coordinates,
            keep_frames=keep_frames,
        )  # fmt: skip
        self.layers = nn.ModuleList()
        self.between = nn.ModuleList()
        self.residual = []
        layer_in, size = self.inputs.out_channels, spatial_size
        if size is not None:
            size = int_list("spatial_size", size, ndim)
        for l, (width, kernel) in enumerate(zip(widths, kernels)):
            self.layers.append(
                ConvLSTMNd(
                    layer_in, width, kernel, ndim=ndim, padding=padding, bias=bias,
                    dilation=dilation if l == 0 else 1,
                    activation=activation, recurrent_activation=recurrent_activation,
                    peephole=peephole, spatial_size=size, layer_norm=layer_norm,
                    recurrent_dropout=recurrent_dropout, checkpoint=checkpoint,
                    attention="sam" if "sam" in kinds else None,
                    attention_options=attention_options,
                )
            )
            self.residual.append(residual and l > 0 and layer_in == width)
            if size is not None:
                size = [s // pool_size for s in self.layers[-1].output_size(size)]
            block: list[nn.Module] = []
            if l < len(widths) - 1:
                if pool_size > 1:
                    block.append(MAX_POOL[ndim](pool_size))
                if batch_norm:
                    block.append(
                        BATCH_NORM[ndim](width, batch_norm_eps, batch_norm_momentum,
                                         affine=batch_norm_affine)
                    )
            self.between.append(nn.Sequential(*block))
            layer_in = width
        last = len(widths) - 1
        self.spatial = nn.ModuleList(
            SpatialAttention(w, spatial_attention, ndim=ndim)
            if "spatial" in kinds
            else nn.Identity()
            for w in widths
        )
        self.temporal = nn.ModuleDict(
            {
                str(l): TemporalAttention(w, query=temporal_query)
                for l, w in enumerate(widths)
                if "temporal" in kinds and (multiscale or l == last)
            }
        )
        self.final_norm = (
            BATCH_NORM[ndim](widths[-1], batch_norm_eps, batch_norm_momentum,
                             affine=batch_norm_affine)
            if final_batch_norm
            else nn.Identity()
        )
        if residual and not any(self.residual):
            raise ValueError(
                "residual=True needs two consecutive layers of equal width, "
                f"got hidden_channels={widths}"
            )
        self.embedding_dim = sum(widths) if multiscale else widths[-1]
        self.head = make_head(self.embedding_dim, num_classes, head_hidden, dropout)

    def embed(
        self, x: torch.Tensor, *, return_attention: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The pooled clip embedding ``(B, embedding_dim)`` the head classifies.

        Use it with metric losses (triplet, supervised contrastive):
        ``z = model.embed(x); logits = model.head(z)``.
        """
        check_clip(x, self.ndim, self.in_channels)
        maps: dict[str, torch.Tensor] = {}
        pooled: list[torch.Tensor] = []
        seq = self.inputs(x)
        last = len(self.layers) - 1
        for l, layer in enumerate(self.layers):
            if return_attention and "sam" in self.attention_kinds:
                out, _, sam = layer(seq, return_attention=True)
                maps.update({f"layer{l}.{k.split('.', 1)[1]}": v for k, v in sam.items()})
            else:
                out, _ = layer(seq)
            if self.residual[l]:
                out = out + seq
            if isinstance(self.spatial[l], SpatialAttention):
                steps = out.shape[:2]
                out, a = self.spatial[l](out.flatten(0, 1))
                out, maps[f"layer{l}.spatial"] = out.unflatten(0, steps), a.unflatten(0, steps)
            if l == last or self.multiscale:
                if str(l) in self.temporal:
                    features, maps[f"layer{l}.temporal"] = self.temporal[str(l)](out)
                else:
                    features = out[:, -1]
                if l == last:
                    features = self.final_norm(features)
                pooled.append(global_pool(features, self.pool_mode))
            if l < last:
                seq = per_step(self.between[l], out)
        embedding = torch.cat(pooled, dim=1)
        return (embedding, maps) if return_attention else embedding

    def forward(
        self, x: torch.Tensor, *, return_attention: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``x`` ``(B, T, C, *S)`` -> logits ``(B, num_classes)`` (and the attention dict)."""
        if return_attention:
            embedding, maps = self.embed(x, return_attention=True)
            return self.head(embedding), maps
        return self.head(self.embed(x))


# The two published fish-video models (Keras): 30 slices of 4 stacked frames, 120x160.
# They were trained with TF 2.3 / Keras 2.4, whose "hard_sigmoid" is clip(0.2 x + 0.5, 0, 1):
# with Keras 3's relu6(x + 3) / 6 the published weights give outputs up to 0.32 away.
FISH_COMMON = dict(
    in_channels=4,
    kernel_size=3,
    num_classes=1,
    padding="valid",
    bias=False,
    recurrent_activation="hard_sigmoid_keras2",
    batch_norm_affine=False,
    batch_norm_eps=1e-3,
    batch_norm_momentum=0.01,
    global_pool="max",
)


@register_model("fish-2layer")
def fish_2layer(**overrides) -> ClipClassifier:
    """ConvLSTM(16, k3, valid, hard_sigmoid, no bias, sequences) -> per-step MaxPool(2)
    -> BatchNorm (no affine) -> ConvLSTM(32, ..., last state) -> GlobalMaxPool
    -> Dense(1) on ``(B, 30, 4, 120, 160)``; 66,849 trainable parameters and 32
    batch-norm statistics, as the Keras original.

    The gates use Keras 2's hard sigmoid, ``clip(0.2 x + 0.5, 0, 1)``
    (``"hard_sigmoid_keras2"``), because the published models were trained with Keras 2
    and their weights only reproduce the published outputs with it;
    ``recurrent_activation="hard_sigmoid"`` selects Keras 3's ``relu6(x + 3) / 6``.
    ``overrides`` change any ``ClipClassifier`` argument."""
    config = {**FISH_COMMON, "hidden_channels": [16, 32], "pool_size": 2, "batch_norm": True}
    return create_model("clip-classifier", **{**config, **overrides})


@register_model("fish-1layer")
def fish_1layer(**overrides) -> ClipClassifier:
    """ConvLSTM(16, k3, valid, hard_sigmoid, no bias, last state) -> BatchNorm (no affine)
    -> GlobalMaxPool -> Dense(1) on ``(B, 30, 4, 120, 160)``; 11,537 trainable parameters
    and 32 batch-norm statistics, as the Keras original.

    Gates: Keras 2's hard sigmoid by default, Keras 3's with
    ``recurrent_activation="hard_sigmoid"`` (see ``fish_2layer``)."""
    config = {**FISH_COMMON, "hidden_channels": [16], "final_batch_norm": True}
    return create_model("clip-classifier", **{**config, **overrides})
