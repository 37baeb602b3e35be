"""Interoperability with other frameworks' ConvLSTM layers.

``convlstm.interop.keras`` imports Keras ``ConvLSTM1D/2D/3D`` layers (weights, configs
and saved ``.keras``/``.h5`` model files) without needing TensorFlow or Keras.
"""

from .keras import KerasConvLSTM, from_keras_weights, load_keras_convlstm

__all__ = ["KerasConvLSTM", "from_keras_weights", "load_keras_convlstm"]
