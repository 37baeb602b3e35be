"""convlstm: correct, fast and complete ConvLSTM networks for PyTorch."""

from .nn import (
    ConvGRU1d,
    ConvGRU2d,
    ConvGRU3d,
    ConvGRUCellNd,
    ConvLSTM1d,
    ConvLSTM2d,
    ConvLSTM3d,
    ConvLSTMCell1d,
    ConvLSTMCell2d,
    ConvLSTMCell3d,
    set_fusion,
)
from .runtime import ConvLSTMWarning

__version__ = "0.1.0"

_LAZY = {"train": "training", "load": "training", "Run": "training", "resume": "training"}


def __getattr__(name: str):
    # The training API imports Lightning: load it on first use, not on `import convlstm`.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'convlstm' has no attribute {name!r}")


__all__ = [
    "ConvGRU1d",
    "ConvGRU2d",
    "ConvGRU3d",
    "ConvGRUCellNd",
    "ConvLSTM1d",
    "ConvLSTM2d",
    "ConvLSTM3d",
    "ConvLSTMCell1d",
    "ConvLSTMCell2d",
    "ConvLSTMCell3d",
    "ConvLSTMWarning",
    "Run",
    "__version__",
    "load",
    "resume",
    "set_fusion",
    "train",
]
