"""Model registry: every model and preset has a name that configs can use.

    >>> from convlstm.models import create_model, list_models
    >>> model = create_model("clip-classifier", in_channels=1, hidden_channels=[8, 16])
    >>> "fish-2layer" in list_models()
    True
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import TypeVar

from torch import nn

Builder = TypeVar("Builder", bound=Callable[..., nn.Module])
_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


def register_model(name: str) -> Callable[[Builder], Builder]:
    """Decorator registering a model class or a preset function under ``name``.

    The builder is called as ``builder(**config)`` by ``create_model``.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"model name must be a non-empty string, got {name!r}")

    def decorator(builder: Builder) -> Builder:
        if name in _REGISTRY and _REGISTRY[name] is not builder:
            raise ValueError(f"model name {name!r} is already registered")
        _REGISTRY[name] = builder
        return builder

    return decorator


def list_models() -> list[str]:
    """Sorted names of every registered model and preset."""
    return sorted(_REGISTRY)


def get_model_builder(name: str) -> Callable[..., nn.Module]:
    """The class or function registered as ``name``."""
    if name not in _REGISTRY:
        raise KeyError(f"unknown model {name!r}; known models: {', '.join(list_models())}")
    return _REGISTRY[name]


def create_model(name: str, **config) -> nn.Module:
    """Build the model registered as ``name`` from plain config values.

    Unknown config keys are an error that names them and lists the accepted ones.
    """
    builder = get_model_builder(name)
    signature = inspect.signature(builder)
    params = signature.parameters.values()
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        accepted = [p.name for p in params if p.name != "self"]
        unknown = sorted(set(config) - set(accepted))
        if unknown:
            raise TypeError(
                f"model {name!r} got unknown config keys {unknown}; accepted: {accepted}"
            )
    return builder(**config)
