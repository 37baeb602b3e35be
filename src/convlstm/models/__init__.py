"""Models built on the ConvLSTM layers, each with a registry name for configs."""

from .advection_forecaster import AdvectionForecaster
from .clip_classifier import ClipClassifier
from .cnn_lstm import CNNLSTMClassifier
from .encoder_forecaster import EncoderForecaster, patchify, sampling_ratios, unpatchify
from .frame_classifier import FrameClassifier
from .inputs import ClipInputs
from .keras_graph import KerasGraph
from .registry import create_model, get_model_builder, list_models, register_model

__all__ = [
    "AdvectionForecaster",
    "CNNLSTMClassifier",
    "ClipClassifier",
    "ClipInputs",
    "EncoderForecaster",
    "FrameClassifier",
    "KerasGraph",
    "create_model",
    "get_model_builder",
    "list_models",
    "patchify",
    "register_model",
    "sampling_ratios",
    "unpatchify",
]
