"""Small helpers shared by the data modules (not public API)."""

from __future__ import annotations

import importlib
import re
from collections.abc import Sequence
from types import ModuleType
from typing import Any

import numpy as np
from torch.utils.data import Dataset

SPLITS = ("train", "val", "test")


def optional_import(module: str, extra: str, purpose: str) -> ModuleType:
    """Import ``module`` or raise an ``ImportError`` naming the pip extra that provides it."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ImportError(
            f"{purpose} needs the optional package '{module.split('.')[0]}', which is not "
            f"installed; install it with: pip install 'convlstm[{extra}]'"
        ) from err


def check_choice(name: str, value: Any, choices: Sequence[Any]) -> Any:
    """Return ``value`` if it is one of ``choices``, else raise a ``ValueError`` naming ``name``."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")
    return value


def check_positive(name: str, value: Any, minimum: int = 1) -> int:
    """Return ``value`` as an int if it is an integer ``>= minimum``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


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
    """Validate train/val/test fractions: 1 to 3 non-negative numbers summing to at most 1."""
    values = [float(f) for f in fractions]
    if not 1 <= len(values) <= 3 or any(f < 0 for f in values) or sum(values) > 1 + 1e-9:
        raise ValueError(
            f"{name} must be 1 to 3 non-negative fractions (train, val, test) summing to "
            f"at most 1, got {list(fractions)!r}"
        )
    return values + [0.0] * (3 - len(values))


def natural_key(text: str) -> list[Any]:
    """Sort key that orders ``frame2.png`` before ``frame10.png``."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", text)]


def sample_rng(seed: int, *keys: int) -> np.random.Generator:
    """A generator determined by ``seed`` and integer ``keys`` (split, epoch, index, ...)."""
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, *(int(k) for k in keys)])


SPLIT_CODES = {"train": 0, "val": 1, "test": 2}


class DatasetWrapper(Dataset):
    """Base of data-set wrappers: same length, attributes (``labels``, ``classes``,
    ``set_epoch``, ...) looked up on the wrapped ``dataset``."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getattr__(self, name: str):
        if name == "dataset":  # not yet set (e.g. while unpickling)
            raise AttributeError(name)
        return getattr(self.dataset, name)
