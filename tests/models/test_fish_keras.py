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

import numpy as np
import pytest
import torch

os.environ.setdefault("KERAS_BACKEND", "torch")
keras = pytest.importorskip("keras")

from convlstm.models import create_model  # noqa: E402

INPUT = (30, 120, 160, 4)  # Keras is channels-last: 30 slices of 4 stacked 120x160 frames


def keras2_hard_sigmoid(x):
    """What "hard_sigmoid" meant in Keras 2 (tf.keras), with which the study trained."""
    return keras.ops.clip(0.2 * x + 0.5, 0.0, 1.0)


def _convlstm(filters, sequences, gate="hard_sigmoid"):
    return keras.layers.ConvLSTM2D(
        filters,
        3,
        padding="valid",
        recurrent_activation=gate,
        use_bias=False,
        return_sequences=sequences,
    )


def keras_fish_2layer(input_shape=INPUT, gate="hard_sigmoid"):
    L = keras.layers
    return keras.Sequential(
        [
            keras.Input(input_shape),
            _convlstm(16, True, gate),
            L.TimeDistributed(L.MaxPooling2D(2)),
            L.BatchNormalization(center=False, scale=False),
            _convlstm(32, False, gate),
            L.GlobalMaxPooling2D(),
            L.Dense(1, activation="sigmoid"),
        ]
    )


def keras_fish_1layer(input_shape=INPUT, gate="hard_sigmoid"):
    L = keras.layers
    return keras.Sequential(
        [
            keras.Input(input_shape),
            _convlstm(16, False, gate),
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


def _copy_keras_weights(reference, model):
    """Keras kernels (k, k, C_in, 4F) -> ours (4F, C_in, k, k); gate order i, f, c, o in both."""
    convlstms = [l for l in reference.layers if isinstance(l, keras.layers.ConvLSTM2D)]
    norms = [l for l in reference.layers if isinstance(l, keras.layers.BatchNormalization)]
    dense = reference.layers[-1]
    ours_norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    with torch.no_grad():
        for layer, ours in zip(convlstms, model.layers):
            kernel, recurrent = (torch.as_tensor(w.numpy()) for w in layer.weights)
            ours.cell(0).weight_ih.copy_(kernel.permute(3, 2, 0, 1))
            ours.cell(0).weight_hh.copy_(recurrent.permute(3, 2, 0, 1))
        for norm, ours in zip(norms, ours_norms, strict=True):
            mean, var = (torch.as_tensor(w.numpy()) for w in norm.non_trainable_weights)
            ours.running_mean.copy_(mean)
            ours.running_var.copy_(var)
        kernel, bias = (torch.as_tensor(w.numpy()) for w in dense.weights)
        model.head[-1].weight.copy_(kernel.T)
        model.head[-1].bias.copy_(bias)


PRESETS = [("fish-2layer", keras_fish_2layer), ("fish-1layer", keras_fish_1layer)]


@pytest.mark.parametrize(
    ("gate", "overrides"),
    [
        (keras2_hard_sigmoid, {}),  # the default: the published models' Keras 2 activation
        ("hard_sigmoid", {"recurrent_activation": "hard_sigmoid"}),  # Keras 3's, on request
    ],
    ids=["keras2-default", "keras3-option"],
)
@pytest.mark.parametrize(("name", "build"), PRESETS, ids=[n for n, _ in PRESETS])
def test_fish_presets_compute_what_keras_computes(name, build, gate, overrides):
    """Same weights (and non-trivial batch-norm statistics) give the same probabilities,
    on 3 slices of 14x18 frames to keep the test fast."""
    reference = build((3, 14, 18, 4), gate)
    rng = np.random.default_rng(0)
    for norm in (l for l in reference.layers if isinstance(l, keras.layers.BatchNormalization)):
        size = norm.moving_mean.shape
        norm.moving_mean.assign(rng.normal(0, 0.1, size).astype("float32"))
        norm.moving_variance.assign(rng.uniform(0.5, 2.0, size).astype("float32"))
    dense = reference.layers[-1]
    dense.bias.assign(np.array([0.3], dtype="float32"))
    # Large weights drive the gates into the range where the two hard sigmoids differ.
    for layer in (l for l in reference.layers if isinstance(l, keras.layers.ConvLSTM2D)):
        layer.set_weights([w * 4 for w in layer.get_weights()])
    model = create_model(name, **overrides).eval()
    _copy_keras_weights(reference, model)

    x = rng.normal(size=(2, 3, 14, 18, 4)).astype("float32")
    expected = np.asarray(keras.ops.convert_to_numpy(reference(x, training=False)))
    ours = torch.sigmoid(model(torch.from_numpy(x).permute(0, 1, 4, 2, 3))).detach().numpy()
    np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(("name", "build"), PRESETS, ids=[n for n, _ in PRESETS])
def test_fish_presets_gates_are_keras2_hard_sigmoid(name, build):
    """clip(0.2 x + 0.5, 0, 1) in every layer: 0.9 at x = 2, where Keras 3's gives 5/6."""
    x = torch.tensor([-3.0, -1.0, 0.0, 2.0, 2.6])
    keras2 = torch.tensor([0.0, 0.3, 0.5, 0.9, 1.0])
    for layer in create_model(name).layers:
        torch.testing.assert_close(layer.cell(0).recurrent_activation(x), keras2)
    for layer in create_model(name, recurrent_activation="hard_sigmoid").layers:
        torch.testing.assert_close(
            layer.cell(0).recurrent_activation(x), torch.clamp(x / 6 + 0.5, 0, 1)
        )
