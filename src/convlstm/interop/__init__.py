"""Interoperability with other frameworks' ConvLSTM layers and models.

``convlstm.interop.keras`` imports Keras ``ConvLSTM1D/2D/3D`` layers (weights, configs
and saved ``.keras``/``.h5`` model files) and whole Keras models (``.keras``, ``.h5`` and
Keras 2 SavedModel folders) without needing TensorFlow or Keras.
"""

from .keras import KerasConvLSTM, from_keras_weights, load_keras_convlstm, load_keras_model

__all__ = ["KerasConvLSTM", "from_keras_weights", "load_keras_convlstm", "load_keras_model"]
