"""The fish presets have exactly the parameters of the published Keras models.

Count rule: Keras's ``count_params()`` is trainable + non-trainable weights. Its
``BatchNormalization(center=False, scale=False)`` has no trainable weights and 2
non-trainable ones per channel (moving mean and variance). PyTorch's
``BatchNorm(affine=False)`` keeps those two as buffers (``running_mean``,
``running_var``), not parameters, plus an integer ``num_batches_tracked`` counter that
Keras has no counterpart for. So we compare Keras trainable with our parameters, and
Keras non-trainable with our running-statistics buffers.
"""

import os

import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")
keras = pytest.importorskip("keras")

from convlstm.models import create_model  # noqa: E402

INPUT = (30, 120, 160, 4)  # Keras is channels-last: 30 slices of 4 stacked 120x160 frames


def _convlstm(filters, sequences):
    return keras.layers.ConvLSTM2D(
        filters,
        3,
        padding="valid",
        recurrent_activation="hard_sigmoid",
        use_bias=False,
        return_sequences=sequences,
    )


def keras_fish_2layer():
    L = keras.layers
    return keras.Sequential(
        [
            keras.Input(INPUT),
            _convlstm(16, True),
            L.TimeDistributed(L.MaxPooling2D(2)),
            L.BatchNormalization(center=False, scale=False),
            _convlstm(32, False),
            L.GlobalMaxPooling2D(),
            L.Dense(1, activation="sigmoid"),
        ]
    )


def keras_fish_1layer():
    L = keras.layers
    return keras.Sequential(
        [
            keras.Input(INPUT),
            _convlstm(16, False),
            L.BatchNormalization(center=False, scale=False),
            L.GlobalMaxPooling2D(),
            L.Dense(1, activation="sigmoid"),
        ]
    )


def _keras_counts(model):
    trainable = sum(int(w.numpy().size) for w in model.trainable_weights)
    frozen = sum(int(w.numpy().size) for w in model.non_trainable_weights)
    return trainable, frozen


def _torch_counts(model):
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    running = ("running_mean", "running_var")
    statistics = sum(b.numel() for name, b in model.named_buffers() if name.endswith(running))
    return trainable, statistics


@pytest.mark.parametrize(
    ("name", "build", "expected"),
    [
        ("fish-2layer", keras_fish_2layer, (66849, 32)),
        ("fish-1layer", keras_fish_1layer, (11537, 32)),
    ],
)
def test_fish_parameter_counts_equal_keras(name, build, expected):
    reference = build()
    assert _keras_counts(reference) == expected
    assert reference.count_params() == sum(expected)
    assert _torch_counts(create_model(name)) == expected
