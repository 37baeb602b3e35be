"""Layers: ConvLSTM cells and stacked layers for 1-D, 2-D and 3-D frames."""

from .activations import get_activation, hard_sigmoid
from .cell import ConvLSTMCell1d, ConvLSTMCell2d, ConvLSTMCell3d, ConvLSTMCellNd
from .functional import get_fusion, lstm_pointwise, set_fusion
from .layer import ConvLSTM1d, ConvLSTM2d, ConvLSTM3d, ConvLSTMNd

__all__ = [
    "ConvLSTM1d",
    "ConvLSTM2d",
    "ConvLSTM3d",
    "ConvLSTMCell1d",
    "ConvLSTMCell2d",
    "ConvLSTMCell3d",
    "ConvLSTMCellNd",
    "ConvLSTMNd",
    "get_activation",
    "get_fusion",
    "hard_sigmoid",
    "lstm_pointwise",
    "set_fusion",
]
