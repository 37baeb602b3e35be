"""Activation functions by name, with Keras's definitions where names coincide.

``hard_sigmoid`` is Keras 3's; ``hard_sigmoid_keras2`` is what Keras 2 meant by the name.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

Activation = str | Callable[[torch.Tensor], torch.Tensor]


def hard_sigmoid(x: torch.Tensor) -> torch.Tensor:
    """Keras 3 ``hard_sigmoid``: ``clip(x / 6 + 0.5, 0, 1)`` (``relu6(x + 3) / 6``)."""
    return F.hardsigmoid(x)


def hard_sigmoid_keras2(x: torch.Tensor) -> torch.Tensor:
    """Keras 2 (tf.keras) ``hard_sigmoid``: ``clip(0.2 * x + 0.5, 0, 1)``.

    Keras 3 redefined the name (see ``hard_sigmoid``); models trained with Keras 2 need
    this one: the two differ by up to 1/12 (at ``|x| = 2.5``).
    """
    return torch.clamp(0.2 * x + 0.5, 0.0, 1.0)


def linear(x: torch.Tensor) -> torch.Tensor:
    """Identity."""
    return x


ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "hard_sigmoid": hard_sigmoid,
    "hard_sigmoid_keras2": hard_sigmoid_keras2,
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
