"""EncoderForecaster: Shi et al.'s encoder-forecaster ConvLSTM for frame prediction."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from ..checks import check_choice, check_int, int_list
from ..nn.activations import get_activation
from ..nn.attention import TemporalAttention
from ..nn.layer import ConvLSTMNd
from ._blocks import CONV, check_clip
from .clip_classifier import _attention_set
from .registry import register_model

SCHEDULES = ("linear", "reverse", "teacher_forcing", "free_running")


def patchify(x: torch.Tensor, patch_size: int, ndim: int) -> torch.Tensor:
    """Space-to-depth: ``(N, C, *S)`` -> ``(N, C * p^ndim, *S/p)`` (PyTorch's
    ``pixel_unshuffle`` channel order for 2-D)."""
    if patch_size == 1:
        return x
    p, spatial = patch_size, x.shape[2:]
    if any(s % p for s in spatial):
        raise ValueError(f"spatial size {tuple(spatial)} must be divisible by patch_size={p}")
    shape = [x.shape[0], x.shape[1]]
    for s in spatial:
        shape += [s // p, p]
    x = x.reshape(shape)
    order = [0, 1, *range(3, 3 + 2 * ndim, 2), *range(2, 2 + 2 * ndim, 2)]
    return x.permute(order).reshape(x.shape[0], -1, *(s // p for s in spatial))


def unpatchify(x: torch.Tensor, patch_size: int, ndim: int) -> torch.Tensor:
    """Inverse of ``patchify``: ``(N, C * p^ndim, *S/p)`` -> ``(N, C, *S)``."""
    if patch_size == 1:
        return x
    p, spatial = patch_size, x.shape[2:]
    x = x.reshape(x.shape[0], -1, *(p,) * ndim, *spatial)
    order = [0, 1]
    for i in range(ndim):
        order += [2 + ndim + i, 2 + i]
    return x.permute(order).reshape(x.shape[0], x.shape[1], *(s * p for s in spatial))


def sampling_ratios(schedule: str, step: int, start: int, steps: int) -> tuple[float, float]:
    """``(encoder_ratio, decoder_ratio)``: the probabilities of feeding a true frame.

    - ``"linear"`` (scheduled sampling, Bengio et al. 2015, as PredRNN uses it): the
      decoder ratio falls linearly from 1 at ``start`` to 0 at ``start + steps``; the
      encoder always sees true frames.
    - ``"reverse"`` (reverse scheduled sampling, PredRNN-V2): the decoder ratio falls
      linearly from 0.5 to 0 while the encoder ratio rises from 0.5 to 1 as
      ``1 - 0.5 exp(-(step - start) / (steps / 5))``, between ``start`` and
      ``start + steps``.
    - ``"teacher_forcing"``: ``(1, 1)``; ``"free_running"``: ``(1, 0)``.
    """
    check_choice("scheduled_sampling", schedule, SCHEDULES)
    progress = min(max((step - start) / steps, 0.0), 1.0)
    if schedule == "linear":
        return 1.0, 1.0 - progress
    if schedule == "reverse":
        if progress >= 1.0:
            return 1.0, 0.0
        return 1.0 - 0.5 * math.exp(-5.0 * progress), 0.5 * (1.0 - progress)
    return 1.0, 1.0 if schedule == "teacher_forcing" else 0.0


class StraightThroughClamp(nn.Module):
    """``clamp(x, low, high)`` whose gradient is the identity's (a straight-through
    estimator): the output activation ``"clamp"``.

    A forecast of frames in [0, 1] then has exact zeros where the frame is empty, which
    a sigmoid only approaches (a haze of 0.01 over a black frame lowers its SSIM from
    about 0.78 to 0.41), and a pixel clipped to 0 whose target is bright still gets the
    loss's gradient (``clamp``'s own gradient there is 0), as does a sigmoid's only
    weakly (its slope ``p(1 - p)`` vanishes with ``p``). A pixel clipped at the value
    its target has gets no gradient (with ``mse``), so the empty background is left
    alone once below 0. Pair it with ``mse`` or ``mae``, not ``frame_bce``.
    """

    def __init__(self, low: float = 0.0, high: float = 1.0) -> None:
        super().__init__()
        if not low < high:
            raise ValueError(f"low must be below high, got low={low}, high={high}")
        self.low, self.high = float(low), float(high)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + (x.clamp(self.low, self.high) - x).detach()

    def extra_repr(self) -> str:
        return f"low={self.low}, high={self.high}"


@register_model("encoder-forecaster")
class EncoderForecaster(nn.Module):
    """Encoder-forecaster ConvLSTM (Shi et al. 2015) for frame prediction.

    The encoder stack reads ``input_frames`` frames; its final states initialise a
    forecaster stack of the same widths (layer ``l`` from layer ``l``), which runs for
    ``output_frames`` steps. At each step a 1x1 convolution over the concatenated hidden
    states of all forecaster layers gives the next frame, through ``output_activation``.
    The forecaster's input at step ``k`` is the previous frame: the last input frame at
    ``k = 0``, then the true frame ``k - 1`` (teacher forcing) or the model's own
    prediction (free running); during training each sample picks the true frame with
    probability ``decoder_ratio`` (scheduled sampling). At inference the forecaster
    always runs free. With ``predict_inputs`` the encoder also predicts each next input
    frame (from ``encoder_head``) and ``return_encoder_predictions`` returns these
    predictions of input frames ``2 .. input_frames``, which ``ForecastingTask`` then
    scores with the same loss as the forecast (all ``input_frames + output_frames - 1``
    frames, as PredRNN and OpenSTL train): twice the supervised steps for nearly the
    same compute. With ``scheduled_sampling="reverse"`` (which implies
    ``predict_inputs``) the encoder also mixes in these predictions in place of true
    input frames, with probability ``1 - encoder_ratio``, as PredRNN-V2 does.

    With ``share_weights`` one ConvLSTM stack and one output head run over the whole
    sequence (PredRNN's layout instead of Shi et al.'s two stacks): the encoder's output
    after the last input frame is the first forecast, and the same stack then reads its
    own previous forecast for the remaining ``output_frames - 1`` steps.

    Shapes::

        x       (B, input_frames, C, *S)
        target  (B, output_frames, C, *S)      (training only; optional)
        output  (B, output_frames, C, *S)

    Args:
        in_channels: channels ``C`` of a frame (predictions have the same channels).
        hidden_channels: ConvLSTM widths per layer (both stacks). Default ``[64, 64]``.
        kernel_size: int or one per layer. Default 3.
        input_frames, output_frames: sequence lengths. Defaults 10, 10.
        ndim: spatial dimensions (1, 2 or 3). Default 2.
        patch_size: space-to-depth patching of every frame by ``p`` (PredRNN/OpenSTL);
            ``S`` must be divisible by ``p``; the ConvLSTMs then run on ``S / p`` with
            ``C p^ndim`` channels. Default 1 (off).
        output_activation: ``"sigmoid"`` or ``"clamp"`` (``StraightThroughClamp``:
            exact zeros on an empty background) for images in [0, 1], ``"identity"`` for
            physical units, or any name of ``convlstm.nn.get_activation``.
        attention: ``None``, or one or a list of ``"sam"`` (self-attention memory in
            every cell) and ``"temporal"`` (at every forecast step, ``TemporalAttention``
            over the encoder's top-layer states with the forecaster's top state as the
            query; the context ``(B, F, *S)`` joins the hidden states the 1x1 output
            convolution reads).
        attention_options: ``SelfAttentionMemory`` options (``key_channels``, ``key_stride``).
        activation, recurrent_activation, peephole, layer_norm, checkpoint: passed to the
            ConvLSTM stacks.
        spatial_size: the frame size ``S``; needed only by ``peephole="pixel"``.
        scheduled_sampling: ``"linear"``, ``"reverse"``, ``"teacher_forcing"`` or
            ``"free_running"`` (see ``sampling_ratios``). Default ``"linear"``.
        sampling_start, sampling_steps: where the schedule starts and how many training
            steps it lasts. Defaults 0, 10000. Set the step with ``set_sampling_step``
            (a run with ``scheduler.over: time`` stretches the schedule, start included,
            over its time budget).
        predict_inputs: the encoder predicts every next input frame too, and training
            scores these predictions (see above). Default ``None``: on with
            ``scheduled_sampling="reverse"``, else off.
        share_weights: one stack and head for the encoder and the forecaster (see
            above; not with ``attention="temporal"``). Default ``False``.

    Attention dict (``return_attention=True``): with ``"sam"``,
        ``"encoder.layer{l}.hidden"``/``".memory"``: ``(B, input_frames, N, N_k)`` and
        ``"forecaster.layer{l}.hidden"``/``".memory"``: ``(B, output_frames, N, N_k)``,
        over the ``N`` positions of the (patched) hidden state; with ``"temporal"``,
        ``"forecaster.temporal"``: ``(B, output_frames, input_frames)``, the weights of
        each forecast step over the encoder steps.
    """

    def __init__(
        self,
        in_channels: int = 1,
        hidden_channels: int | Sequence[int] = (64, 64),
        kernel_size: int | Sequence[int] = 3,
        input_frames: int = 10,
        output_frames: int = 10,
        *,
        ndim: int = 2,
        patch_size: int = 1,
        output_activation: str = "sigmoid",
        attention: str | Sequence[str] | None = None,
        attention_options: dict | None = None,
        activation: str = "tanh",
        recurrent_activation: str = "sigmoid",
        peephole: bool | str = False,
        spatial_size: int | Sequence[int] | None = None,
        layer_norm: bool = False,
        checkpoint: bool = False,
        scheduled_sampling: str = "linear",
        sampling_start: int = 0,
        sampling_steps: int = 10000,
        predict_inputs: bool | None = None,
        share_weights: bool = False,
    ) -> None:
        super().__init__()
        check_int("in_channels", in_channels)
        check_choice("ndim", ndim, (1, 2, 3))
        widths = int_list("hidden_channels", hidden_channels)
        kernels = int_list("kernel_size", kernel_size, len(widths))
        for name, value in (("input_frames", input_frames), ("output_frames", output_frames)):
            check_int(name, value)
        check_int("patch_size", patch_size)
        kinds = _attention_set(attention)
        if "spatial" in kinds:
            raise ValueError('attention must be None, "sam", "temporal" or a list of them')
        check_choice("scheduled_sampling", scheduled_sampling, SCHEDULES)
        check_int("sampling_start", sampling_start, minimum=0)
        check_int("sampling_steps", sampling_steps)
        if predict_inputs is None:
            predict_inputs = scheduled_sampling == "reverse"
        for name, value in (("predict_inputs", predict_inputs), ("share_weights", share_weights)):
            if not isinstance(value, bool):
                raise ValueError(f"{name} must be True or False, got {value!r}")
        if scheduled_sampling == "reverse" and not predict_inputs:
            raise ValueError(
                'scheduled_sampling="reverse" feeds the encoder its own predictions: it '
                "needs predict_inputs=True (the default with it)"
            )
        if share_weights and "temporal" in kinds:
            raise ValueError('share_weights does not combine with attention="temporal"')
        self.predict_inputs, self.share_weights = predict_inputs, share_weights
        self.output_activation_name = output_activation
        if output_activation in (None, "identity", "linear"):
            self.output_activation = nn.Identity()
        elif output_activation == "clamp":
            self.output_activation = StraightThroughClamp()
        else:
            self.output_activation = get_activation(output_activation, "output_activation")
        self.in_channels, self.ndim, self.patch_size = in_channels, ndim, patch_size
        self.input_frames, self.output_frames = input_frames, output_frames
        self.schedule = scheduled_sampling
        self.sampling_start, self.sampling_steps = sampling_start, sampling_steps
        self.sampling_step = 0
        channels = in_channels * patch_size**ndim
        if spatial_size is not None:
            spatial_size = [s // patch_size for s in int_list("spatial_size", spatial_size, ndim)]

        def stack() -> ConvLSTMNd:
            return ConvLSTMNd(
                channels, widths, kernels, ndim=ndim, activation=activation,
                recurrent_activation=recurrent_activation, peephole=peephole,
                spatial_size=spatial_size,
                layer_norm=layer_norm, checkpoint=checkpoint,
                attention="sam" if "sam" in kinds else None,
                attention_options=attention_options, return_all_layers=True,
            )

        self.encoder = stack()
        # With shared weights the forecaster is the encoder, not registered twice (a
        # state dict with two names for one tensor cannot be saved as safetensors).
        self.forecaster = None if share_weights else stack()
        self.temporal = (
            TemporalAttention(widths[-1], query="last") if "temporal" in kinds else None
        )
        context = widths[-1] if self.temporal is not None else 0
        self.head = CONV[ndim](sum(widths) + context, channels, 1)
        self.encoder_head = (
            CONV[ndim](sum(widths), channels, 1)
            if predict_inputs and not share_weights
            else None
        )

    @property
    def forecast_stack(self) -> ConvLSTMNd:
        """The stack that runs the forecast steps (the encoder with ``share_weights``)."""
        return self.encoder if self.forecaster is None else self.forecaster

    @property
    def input_head(self) -> nn.Module | None:
        """The 1x1 convolution predicting the next input frame (``None`` without
        ``predict_inputs`` and ``share_weights``)."""
        return self.head if self.share_weights else self.encoder_head

    def set_sampling_step(self, step: int) -> None:
        """Set the training step the sampling schedule is evaluated at."""
        self.sampling_step = check_int("step", step, minimum=0)

    def sampling_ratios(self) -> tuple[float, float]:
        """``(encoder_ratio, decoder_ratio)`` at the current ``sampling_step``."""
        return sampling_ratios(
            self.schedule, self.sampling_step, self.sampling_start, self.sampling_steps
        )

    def _frame(self, head: nn.Module, features: list[torch.Tensor]) -> torch.Tensor:
        """Concatenated hidden states (and context) of one step -> a (patched) frame."""
        return self.output_activation(head(torch.cat(features, dim=1)))

    def _unroll(
        self,
        stack: ConvLSTMNd,
        head: nn.Module | None,
        first: torch.Tensor,
        truth: torch.Tensor | None,
        ratio: float,
        state,
        steps: int,
        maps: dict[str, list[torch.Tensor]] | None,
        prefix: str,
        memory: torch.Tensor | None = None,
        done: list[torch.Tensor] | None = None,
    ):
        """Run ``stack`` one step at a time; the input of step ``k > 0`` is ``truth[:, k-1]``
        with probability ``ratio`` per sample (always when ``ratio`` is 1, never when it is 0
        or ``truth`` is None), else the prediction of step ``k - 1``. With ``memory``
        (the encoder's top states) each step attends over it. ``done`` holds frames
        predicted already (steps ``0 .. len(done) - 1``), from which the loop goes on.
        Returns the predicted frames, the final state and the top layer's hidden state of
        every step."""
        frames, tops, inp = list(done or []), [], first
        for k in range(len(frames), steps):
            if k > 0:
                inp = frames[-1]
                if truth is not None:
                    use_truth = torch.rand(first.shape[0], device=first.device) < ratio
                    use_truth = use_truth.view(-1, *(1,) * (first.dim() - 1))
                    inp = torch.where(use_truth, truth[:, k - 1], inp)
            result = stack(inp.unsqueeze(1), state, return_attention=maps is not None)
            outputs, state = result[0], result[1]
            if maps is not None:
                for key, value in result[2].items():
                    maps.setdefault(f"{prefix}.{key}", []).append(value)
            features = [o[:, 0] for o in outputs]
            tops.append(features[-1])
            if memory is not None and self.temporal is not None:
                context, weights = self.temporal(memory, query=features[-1])
                features.append(context)
                if maps is not None:
                    maps.setdefault(f"{prefix}.temporal", []).append(weights.unsqueeze(1))
            if head is not None:
                frames.append(self._frame(head, features))
        return frames, state, tops

    def forward(
        self,
        x: torch.Tensor,
        target: torch.Tensor | None = None,
        *,
        teacher_forcing_ratio: float | None = None,
        encoder_ratio: float | None = None,
        return_encoder_predictions: bool = False,
        return_attention: bool = False,
    ):
        """Predict ``output_frames`` frames after ``x``.

        Args:
            x: ``(B, input_frames, C, *S)``.
            target: ``(B, output_frames, C, *S)`` true future frames, used only in
                training mode for teacher forcing / scheduled sampling.
            teacher_forcing_ratio: override the schedule's decoder ratio (1: teacher
                forcing, 0: free running). Only used with a ``target`` in training.
            encoder_ratio: override the schedule's encoder ratio (reverse sampling).
            return_encoder_predictions: also return the encoder's predictions of input
                frames ``1 .. input_frames - 1``, ``(B, input_frames - 1, C, *S)``
                (needs ``scheduled_sampling="reverse"``).
            return_attention: also return the attention dict (see the class docstring).

        Returns:
            ``output`` ``(B, output_frames, C, *S)``, followed by the encoder predictions
            and the attention dict when asked for, in that order.
        """
        check_clip(x, self.ndim, self.in_channels)
        if x.shape[1] != self.input_frames:
            raise ValueError(
                f"x must have input_frames={self.input_frames} steps, got {x.shape[1]}"
            )
        if return_encoder_predictions and not self.predict_inputs:
            raise ValueError("return_encoder_predictions needs predict_inputs=True")
        enc_ratio, dec_ratio = 1.0, 0.0
        if self.training and target is not None:
            expected = (x.shape[0], self.output_frames, *x.shape[2:])
            if tuple(target.shape) != expected:
                raise ValueError(f"target must have shape {expected}, got {tuple(target.shape)}")
            enc_ratio, dec_ratio = self.sampling_ratios()
            if teacher_forcing_ratio is not None:
                dec_ratio = float(teacher_forcing_ratio)
            if encoder_ratio is not None:
                enc_ratio = float(encoder_ratio)
        for name, value in (("teacher_forcing_ratio", dec_ratio), ("encoder_ratio", enc_ratio)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        if enc_ratio < 1.0 and not self.predict_inputs:
            raise ValueError("encoder_ratio < 1 needs predict_inputs=True")

        batch, p, nd = x.shape[0], self.patch_size, self.ndim

        def patch(seq: torch.Tensor) -> torch.Tensor:
            return patchify(seq.flatten(0, 1), p, nd).unflatten(0, (seq.shape[0], -1))

        xs = patch(x)
        maps: dict[str, list[torch.Tensor]] | None = {} if return_attention else None
        # The encoder's frames: its predictions of input frames 2 .. T_in and, with
        # shared weights, of the first output frame (needed then, else on request).
        encoder_frames: list[torch.Tensor] = []
        wants_frames = return_encoder_predictions or self.share_weights
        if enc_ratio >= 1.0:  # true frames only: the whole input in one call
            result = self.encoder(xs, return_attention=return_attention)
            outputs, state, memory = result[0], result[1], result[0][-1]
            if maps is not None:
                maps.update({f"encoder.{k}": [v] for k, v in result[2].items()})
            if wants_frames:
                features = torch.cat(outputs, dim=2)
                predicted = self._frame(self.input_head, [features.flatten(0, 1)])
                encoder_frames = list(predicted.unflatten(0, features.shape[:2]).unbind(1))
        else:
            encoder_frames, state, tops = self._unroll(
                self.encoder, self.input_head, xs[:, 0], xs[:, 1:], enc_ratio, None,
                self.input_frames, maps, "encoder",
            )
            memory = torch.stack(tops, dim=1)
        truth = patch(target) if self.training and target is not None else None
        frames, _, _ = self._unroll(
            self.forecast_stack, self.head, xs[:, -1], truth, dec_ratio, state,
            self.output_frames, maps, "forecaster", memory,
            done=encoder_frames[-1:] if self.share_weights else None,
        )

        def unpatch(seq: list[torch.Tensor]) -> torch.Tensor:
            return unpatchify(torch.stack(seq, 1).flatten(0, 1), p, nd).unflatten(0, (batch, -1))

        results = [unpatch(frames)]
        if return_encoder_predictions:
            results.append(unpatch(encoder_frames[:-1]))
        if maps is not None:
            results.append({k: torch.cat(v, dim=1) for k, v in maps.items()})
        return results[0] if len(results) == 1 else tuple(results)
