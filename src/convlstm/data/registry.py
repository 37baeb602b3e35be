"""Name -> data set class registry, so configs can say ``name: moving_digits``."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from torch.utils.data import Dataset

_REGISTRY: dict[str, type[Dataset]] = {}

T = TypeVar("T", bound=type)


def register_dataset(name: str) -> Callable[[T], T]:
    """Class decorator registering a data set under ``name`` (and its class name)."""

    def wrap(cls: T) -> T:
        _REGISTRY[name] = cls
        return cls

    return wrap


def list_datasets() -> list[str]:
    """Registered data set names, sorted (e.g. ``["arrays", "frame_folder", ...]``)."""
    return sorted(_REGISTRY)


def get_dataset_class(name: str) -> type[Dataset]:
    """The class registered as ``name``; the class name (``"MovingDigits"``) works too."""
    if name in _REGISTRY:
        return _REGISTRY[name]
    for cls in _REGISTRY.values():
        if cls.__name__.lower() == str(name).lower():
            return cls
    raise KeyError(f"unknown data set {name!r}; available: {', '.join(list_datasets())}")


def create_dataset(name: str, **config: Any) -> Dataset:
    """Build a registered data set from plain config values.

    Example::

        ds = create_dataset("moving_digits", split="test", num_samples=100, seed=1)

    Raises:
        KeyError: unknown ``name`` (the message lists the registered names).
        TypeError: a config key the data set does not take (the message lists valid keys).
    """
    cls = get_dataset_class(name)
    params = inspect.signature(cls.__init__).parameters
    accepts_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    valid = [
        p for p in params if p != "self" and params[p].kind is not inspect.Parameter.VAR_KEYWORD
    ]
    unknown = sorted(set(config) - set(valid))
    if unknown and not accepts_any:
        raise TypeError(
            f"data set {name!r} ({cls.__name__}) got unknown config key(s) {unknown}; "
            f"valid keys: {valid}"
        )
    return cls(**config)
