"""Argument checks shared by the layers, models and data sets: each returns the value
(normalised) or raises a ``ValueError`` naming the argument and what was expected."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def check_int(name: str, value: Any, minimum: int = 1) -> int:
    """``value`` as an int ``>= minimum`` (NumPy integers too; never a bool)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def check_choice(name: str, value: Any, choices: Sequence[Any]) -> Any:
    """``value`` if it is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")
    return value


def check_probability(name: str, value: Any) -> float:
    """``value`` as a float in [0, 1)."""
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value < 1:
        raise ValueError(f"{name} must be a float in [0, 1), got {value!r}")
    return float(value)


def int_list(name: str, value: Any, length: int | None = None) -> list[int]:
    """An int or a non-empty list of positive ints as a list (of ``length`` when given)."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value] * (length or 1)
    if not isinstance(value, (list, tuple)) or not value:
        raise ValueError(f"{name} must be a positive int or a non-empty list, got {value!r}")
    for v in value:
        check_int(name, v)
    if length is not None and len(value) != length:
        raise ValueError(f"{name} must have {length} entries (one per layer), got {list(value)}")
    return list(value)


def as_size(size: int | Sequence[int] | None, name: str = "size") -> tuple[int, int] | None:
    """``64`` -> ``(64, 64)``; ``[48, 64]`` -> ``(48, 64)``; ``None`` stays ``None``."""
    if size is None:
        return None
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        size = (int(size), int(size))
    if (
        not isinstance(size, Sequence)
        or len(size) != 2
        or not all(isinstance(s, (int, np.integer)) and s > 0 for s in size)
    ):
        raise ValueError(f"{name} must be a positive int or a [height, width] pair, got {size!r}")
    return int(size[0]), int(size[1])


def check_fractions(fractions: Sequence[float], name: str = "split_fractions") -> list[float]:
    """Train/val/test fractions: 1 to 3 non-negative numbers summing to at most 1."""
    values = [float(f) for f in fractions]
    if not 1 <= len(values) <= 3 or any(f < 0 for f in values) or sum(values) > 1 + 1e-9:
        raise ValueError(
            f"{name} must be 1 to 3 non-negative fractions (train, val, test) summing to "
            f"at most 1, got {list(fractions)!r}"
        )
    return values + [0.0] * (3 - len(values))
