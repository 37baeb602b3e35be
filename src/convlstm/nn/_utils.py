"""Argument normalisation, padding arithmetic and sequence layouts for cells and layers."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from .settings import backend

IntOrTuple = int | Sequence[int]
Padding = str | int | Sequence[int]

_CHANNELS_LAST = {2: torch.channels_last, 3: torch.channels_last_3d}
CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


def as_tuple(value: IntOrTuple, ndim: int, name: str, *, minimum: int = 1) -> tuple[int, ...]:
    """Expand an int to an ``ndim``-tuple, or check a given tuple has ``ndim`` entries."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an int or a tuple of {ndim} ints, got a bool")
    if isinstance(value, int):
        result = (value,) * ndim
    elif isinstance(value, Sequence) and all(isinstance(v, int) for v in value):
        result = tuple(int(v) for v in value)
        if len(result) != ndim:
            raise ValueError(
                f"{name} must be an int or a tuple of {ndim} ints (one per spatial dimension), "
                f"got {tuple(value)!r} with {len(result)} entries"
            )
    else:
        raise TypeError(f"{name} must be an int or a tuple of {ndim} ints, got {value!r}")
    if any(v < minimum for v in result):
        raise ValueError(f"{name} entries must be >= {minimum}, got {result}")
    return result


def normalize_padding(padding: Padding, ndim: int) -> str | tuple[int, ...]:
    """Return ``"same"``, ``"valid"`` or an explicit symmetric ``ndim``-tuple."""
    if isinstance(padding, str):
        mode = padding.lower()
        if mode not in ("same", "valid"):
            raise ValueError(f'padding must be "same", "valid" or an int/tuple, got {padding!r}')
        return mode
    return as_tuple(padding, ndim, "padding", minimum=0)


def same_padding(size: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    """TensorFlow/Keras "same" padding (before, after) for one dimension.

    The output has ``ceil(size / stride)`` positions; an odd total goes to the end,
    exactly as TensorFlow and Keras pad.
    """
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


def input_padding(
    padding: str | tuple[int, ...],
    spatial: Sequence[int],
    kernel: Sequence[int],
    stride: Sequence[int],
    dilation: Sequence[int],
) -> tuple[tuple[int, int], ...]:
    """(before, after) padding per spatial dimension for the input-to-hidden convolution."""
    if padding == "valid":
        return tuple((0, 0) for _ in spatial)
    if padding == "same":
        return tuple(
            same_padding(n, k, s, d) for n, k, s, d in zip(spatial, kernel, stride, dilation)
        )
    return tuple((p, p) for p in padding)


def conv_output_size(
    spatial: Sequence[int],
    pads: Sequence[tuple[int, int]],
    kernel: Sequence[int],
    stride: Sequence[int],
    dilation: Sequence[int],
) -> tuple[int, ...]:
    """Spatial size after a convolution (floor division, as PyTorch and Keras compute it)."""
    return tuple(
        (n + a + b - d * (k - 1) - 1) // s + 1
        for n, (a, b), k, s, d in zip(spatial, pads, kernel, stride, dilation)
    )


def flat_pad(pads: Sequence[tuple[int, int]]) -> list[int]:
    """(before, after) per dimension -> the flat, last-dimension-first list ``F.pad`` takes."""
    flat: list[int] = []
    for before, after in reversed(pads):
        flat.extend((before, after))
    return flat


def steps_last(step: torch.Tensor) -> bool:
    """Whether a ``(B, F, *S)`` step is laid out with channels innermost."""
    return step.dim() in (4, 5) and not step.is_contiguous() and step.stride(1) == 1


def empty_steps(step: torch.Tensor, steps: int) -> torch.Tensor:
    """An empty ``(B, T, F, *S)`` sequence for ``steps`` steps like ``step``, with channels
    innermost when ``step`` has them so (elementwise ops keep this layout in their results
    and gradients). Not a view, so it may be modified in place like any output."""
    batch, channels, spatial = step.shape[0], step.shape[1], tuple(step.shape[2:])
    shape = (batch, steps, channels, *spatial)
    if not steps_last(step):
        return step.new_empty(shape)
    last = (batch, steps, *spatial, channels)  # the memory order
    strides = [1] * len(last)
    for i in range(len(last) - 2, -1, -1):
        strides[i] = strides[i + 1] * last[i + 1]
    strides = (strides[0], strides[1], strides[-1], *strides[2:-1])
    return torch.empty_strided(shape, strides, dtype=step.dtype, device=step.device)


def memory_format(ndim: int, device: torch.device) -> torch.memory_format:
    """Channels-last on a CPU for 2-D and 3-D (oneDNN's convolutions run faster on it than
    on NCHW) unless ``backend.channels_last`` is off, else contiguous."""
    if device.type != "cpu" or not backend.channels_last:
        return torch.contiguous_format
    return _CHANNELS_LAST.get(ndim, torch.contiguous_format)


def conv_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype a step's convolution runs in: autocast's when it is on, else ``x``'s."""
    try:
        enabled = torch.is_autocast_enabled(x.device.type)
    except RuntimeError:  # a device without autocast (meta; MPS on older torch)
        return x.dtype
    return torch.get_autocast_dtype(x.device.type) if enabled else x.dtype


def stack_input(
    x: torch.Tensor, h: torch.Tensor, hidden_pad: tuple[int, ...], dtype: torch.dtype
) -> torch.Tensor:
    """``[x, pad(h)]`` along channels, written into one zeroed buffer in the layout of
    ``memory_format`` (``torch.cat`` of channels-last tensors falls back to a slow strided
    copy). ``hidden_pad`` is in ``F.pad`` order (last dimension first)."""
    ndim = x.dim() - 2
    channels = x.shape[1]
    shape = (x.shape[0], channels + h.shape[1], *x.shape[2:])
    layout = memory_format(ndim, x.device)
    buffer = torch.empty(shape, dtype=dtype, device=x.device, memory_format=layout).zero_()
    buffer[:, :channels] = x
    buffer[(slice(None), slice(channels, None), *interior(x.shape[2:], hidden_pad))] = h
    return buffer


def interior(padded_size: Sequence[int], pad: Sequence[int]) -> tuple[slice, ...]:
    """Slices of the unpadded tensor inside a padded spatial size (``pad`` in ``F.pad``
    order)."""
    pads = tuple(pad)[::-1]  # (after, before) per dimension, first dimension first
    return tuple(
        slice(before, size - after)
        for size, after, before in zip(padded_size, pads[::2], pads[1::2])
    )
