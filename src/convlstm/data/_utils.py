"""Small helpers shared by the data modules (not public API)."""

from __future__ import annotations

import importlib
import re
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
