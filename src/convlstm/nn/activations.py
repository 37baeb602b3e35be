"""Activation functions by name, with Keras's definitions where names coincide."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

Activation = str | Callable[[torch.Tensor], torch.Tensor]


def hard_sigmoid(x: torch.Tensor) -> torch.Tensor:
    """Keras 3 ``hard_sigmoid``: ``clip(x / 6 + 0.5, 0, 1)`` (``relu6(x + 3) / 6``)."""
    return F.hardsigmoid(x)


def linear(x: torch.Tensor) -> torch.Tensor:
    """Identity."""
    return x


ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "hard_sigmoid": hard_sigmoid,
    "relu": torch.relu,
    "relu6": F.relu6,
    "elu": F.elu,
    "selu": F.selu,
    "gelu": F.gelu,
    "silu": F.silu,
    "swish": F.silu,
    "softsign": F.softsign,
    "hard_tanh": F.hardtanh,
    "linear": linear,
}


def get_activation(activation: Activation, name: str = "activation") -> Callable:
    """Look up an activation by Keras-style name, or accept a callable as is."""
    if callable(activation):
        return activation
    if isinstance(activation, str) and activation.lower() in ACTIVATIONS:
        return ACTIVATIONS[activation.lower()]
    raise ValueError(
        f"{name} must be one of {sorted(ACTIVATIONS)} or a callable, got {activation!r}"
    )
