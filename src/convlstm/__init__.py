"""convlstm: correct, fast and complete ConvLSTM networks for PyTorch."""

from .nn import (
    ConvLSTM1d,
    ConvLSTM2d,
    ConvLSTM3d,
    ConvLSTMCell1d,
    ConvLSTMCell2d,
    ConvLSTMCell3d,
    set_fusion,
)

__version__ = "0.1.0"

__all__ = [
    "ConvLSTM1d",
    "ConvLSTM2d",
    "ConvLSTM3d",
    "ConvLSTMCell1d",
    "ConvLSTMCell2d",
    "ConvLSTMCell3d",
    "__version__",
    "set_fusion",
]
