"""One registry class for everything a config names: models, presets and data sets."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, Generic, TypeVar

T = TypeVar("T", bound=Callable[..., Any])


class Registry(Generic[T]):
    """Names -> builders (classes or functions), filled by the :meth:`register` decorator.

    ``create(name, **config)`` calls the builder with plain config values; a key the
    builder does not take is a ``TypeError`` that names it and lists the accepted ones,
    and an unknown name a ``KeyError`` that lists the registered names.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._builders: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator registering a builder under ``name`` (a name is given once)."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"{self.kind} name must be a non-empty string, got {name!r}")

        def decorator(builder: T) -> T:
            if self._builders.get(name, builder) is not builder:
                raise ValueError(f"{self.kind} name {name!r} is already registered")
            self._builders[name] = builder
            return builder

        return decorator

    def names(self) -> list[str]:
        """The registered names, sorted."""
        return sorted(self._builders)

    def get(self, name: str) -> T:
        """The builder registered as ``name`` (a class's own name works too, any case)."""
        if name in self._builders:
            return self._builders[name]
        for builder in self._builders.values():
            if getattr(builder, "__name__", "").lower() == str(name).lower():
                return builder
        raise KeyError(f"unknown {self.kind} {name!r}; known: {', '.join(self.names())}")

    def accepted(self, name: str) -> list[str] | None:
        """The config keys the builder of ``name`` takes (``None``: any)."""
        params = inspect.signature(self.get(name)).parameters.values()
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
            return None
        return [p.name for p in params if p.name != "self"]

    def create(self, name: str, **config: Any) -> Any:
        """Build ``name`` from plain config values."""
        builder, accepted = self.get(name), self.accepted(name)
        unknown = sorted(set(config) - set(accepted)) if accepted is not None else []
        if unknown:
            raise TypeError(
                f"{self.kind} {name!r} got unknown config keys {unknown}; accepted: {accepted}"
            )
        return builder(**config)
