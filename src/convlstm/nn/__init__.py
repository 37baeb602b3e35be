"""Layers: ConvLSTM and ConvGRU cells and stacked layers for 1-D, 2-D and 3-D frames,
attention, and the backend settings of their fast paths (``backend``)."""

from .activations import get_activation, hard_sigmoid
from .attention import SpatialAttention, TemporalAttention
from .cell import (
    ConvLSTMCell1d,
    ConvLSTMCell2d,
    ConvLSTMCell3d,
    ConvLSTMCellNd,
    StepHook,
    StepRecord,
)
from .fast import empty_cache, lstm_pointwise
from .gru import ConvGRU1d, ConvGRU2d, ConvGRU3d, ConvGRUCellNd, ConvGRUNd
from .layer import ConvLSTM1d, ConvLSTM2d, ConvLSTM3d, ConvLSTMNd, ConvRNNBase
from .recurrent import ConvRNNCellBase
from .sam import SelfAttentionMemory
from .settings import Backend, backend, get_fusion, set_fusion

__all__ = [
    "Backend",
    "ConvGRU1d",
    "ConvGRU2d",
    "ConvGRU3d",
    "ConvGRUCellNd",
    "ConvGRUNd",
    "ConvLSTM1d",
    "ConvLSTM2d",
    "ConvLSTM3d",
    "ConvLSTMCell1d",
    "ConvLSTMCell2d",
    "ConvLSTMCell3d",
    "ConvLSTMCellNd",
    "ConvLSTMNd",
    "ConvRNNBase",
    "ConvRNNCellBase",
    "SelfAttentionMemory",
    "SpatialAttention",
    "StepHook",
    "StepRecord",
    "TemporalAttention",
    "backend",
    "empty_cache",
    "get_activation",
    "get_fusion",
    "hard_sigmoid",
    "lstm_pointwise",
    "set_fusion",
]
