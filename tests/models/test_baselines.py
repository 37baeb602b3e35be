"""CNNLSTMClassifier and FrameClassifier."""

import pytest
import torch
import torch.nn.functional as F

from convlstm.models import CNNLSTMClassifier, FrameClassifier, create_model

from .conftest import first_step_grad, overfit

CNN_LSTM_OPTIONS = [
    {},
    {"bidirectional": True, "lstm_layers": 2, "dropout": 0.2},
    {"frame_pool": "max", "batch_norm": False, "conv_channels": [4]},
    {"num_classes": 3, "head_hidden": 8},
]
FRAME_OPTIONS = [
    {},
    {"frame_pool": "max", "batch_norm": False, "conv_channels": 5},
    {"num_classes": 4, "head_hidden": 8, "dropout": 0.1},
]


def _cnn_lstm(**options):
    return CNNLSTMClassifier(**{"in_channels": 2, "conv_channels": [4, 6], "lstm_hidden": 5,
                                **options})


@pytest.mark.parametrize("options", CNN_LSTM_OPTIONS, ids=lambda o: ",".join(o) or "default")
def test_cnn_lstm_shapes(options):
    model = _cnn_lstm(**options)
    x = torch.randn(3, 4, 2, 8, 8)
    assert model(x).shape == (3, options.get("num_classes", 1))
    width = 10 if options.get("bidirectional") else 5
    assert model.embed(x).shape == (3, width) and model.embedding_dim == width
    logits, maps = model.eval()(x, return_attention=True)
    assert maps == {} and logits.shape == (3, options.get("num_classes", 1))


@pytest.mark.parametrize("options", FRAME_OPTIONS, ids=lambda o: ",".join(o) or "default")
def test_frame_classifier_shapes(options):
    model = FrameClassifier(2, **options)
    x = torch.randn(3, 4, 2, 8, 8)
    assert model(x).shape == (3, options.get("num_classes", 1))
    logits, maps = model.eval()(x, return_attention=True)
    assert maps == {} and logits.shape == (3, options.get("num_classes", 1))


@pytest.mark.parametrize("ndim", [1, 3])
def test_other_frame_dimensions(ndim):
    x = torch.randn(2, 3, 2, *(4,) * ndim)
    assert _cnn_lstm(ndim=ndim, num_classes=2)(x).shape == (2, 2)
    assert FrameClassifier(2, ndim=ndim)(x).shape == (2, 1)


def test_cnn_lstm_runs_the_lstm_over_frames_with_shared_cnn():
    model = _cnn_lstm().eval()
    x = torch.randn(2, 5, 2, 8, 8)
    per_frame = torch.stack([model.cnn(x[:, t]) for t in range(5)], dim=1)  # (B, T, D)
    _, (h_n, _) = model.lstm(per_frame)
    torch.testing.assert_close(model.embed(x), h_n[-1])
    # the LSTM's time axis is the clip's: reordering the frames changes the output
    assert not torch.allclose(model(x), model(x.flip(1)))


def test_frame_classifier_cannot_see_frame_order():
    model = FrameClassifier(2, conv_channels=[4, 6]).eval()
    x = torch.randn(2, 5, 2, 8, 8)
    torch.testing.assert_close(model(x), model(x[:, torch.randperm(5)]))
    per_frame = torch.stack([model.cnn(x[:, t]) for t in range(5)], dim=1)
    torch.testing.assert_close(model.embed(x), per_frame.mean(1))


@pytest.mark.parametrize("name", ["cnn-lstm", "frame-classifier"])
def test_gradient_reaches_first_layer_at_first_step(name):
    model = create_model(name, in_channels=2, conv_channels=[4, 6])
    grad = first_step_grad(model, torch.randn(2, 4, 2, 8, 8))
    assert grad.abs().sum() > 0
    assert model.cnn.body[0].weight.grad.abs().sum() > 0


@pytest.mark.parametrize("name", ["cnn-lstm", "frame-classifier"])
def test_overfits_eight_clips(name):
    x = torch.randn(8, 4, 1, 8, 8)
    y = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    model = create_model(name, in_channels=1, num_classes=3, conv_channels=[8, 16])
    assert overfit(model, x, y, F.cross_entropy, steps=60) < 0.1


@pytest.mark.parametrize(
    ("builder", "options", "message"),
    [
        (_cnn_lstm, {"lstm_hidden": 0}, "lstm_hidden must be an int >= 1"),
        (_cnn_lstm, {"frame_pool": "sum"}, "frame_pool must be one of"),
        (_cnn_lstm, {"dropout": -0.1}, "dropout must be a float in"),
        (FrameClassifier, {"in_channels": 2, "conv_channels": []}, "conv_channels"),
        (FrameClassifier, {"in_channels": 2, "ndim": 4}, "ndim must be one of"),
    ],
)
def test_bad_arguments_name_the_argument(builder, options, message):
    with pytest.raises(ValueError, match=message):
        builder(**options)


def test_bad_input_is_reported():
    with pytest.raises(ValueError, match=r"expected input \(B, T, C=2"):
        _cnn_lstm()(torch.randn(2, 2, 8, 8))
