"""ClipInputs (frame differences, coordinate channels) and the models' input options."""

import pytest
import torch

from convlstm.models import ClipClassifier, ClipInputs, CNNLSTMClassifier, create_model


def test_no_option_is_the_identity():
    inputs = ClipInputs(2)
    x = torch.randn(2, 3, 2, 5, 6)
    assert inputs.out_channels == 2 and inputs(x) is x


def test_frame_differences_against_a_loop():
    x = torch.randn(2, 4, 3, 5, 6)
    out = ClipInputs(3, frame_differences=True)(x)
    assert out.shape == (2, 4, 6, 5, 6)
    torch.testing.assert_close(out[:, :, :3], x)
    assert torch.equal(out[:, 0, 3:], torch.zeros(2, 3, 5, 6))
    for t in range(1, 4):
        torch.testing.assert_close(out[:, t, 3:], x[:, t] - x[:, t - 1])


def test_coordinates_span_minus_one_to_one_along_each_axis():
    x = torch.randn(2, 3, 1, 4, 5)
    out = ClipInputs(1, coordinates=True)(x)
    assert out.shape == (2, 3, 3, 4, 5)
    rows, cols = out[1, 2, 1], out[1, 2, 2]
    torch.testing.assert_close(rows[:, 0], torch.linspace(-1, 1, 4))
    torch.testing.assert_close(cols[0], torch.linspace(-1, 1, 5))
    assert torch.equal(rows, rows[:, :1].expand(4, 5)) and torch.equal(cols, cols[:1].expand(4, 5))
    assert torch.equal(out[0, 0, 1:], out[1, 2, 1:])  # the same for every clip and frame


@pytest.mark.parametrize("ndim", [1, 3])
def test_other_dimensions_and_differences_only(ndim):
    x = torch.randn(2, 3, 2, *(4,) * ndim)
    inputs = ClipInputs(2, ndim, frame_differences=True, coordinates=True, keep_frames=False)
    out = inputs(x)
    assert inputs.out_channels == 2 + ndim and out.shape == (2, 3, 2 + ndim, *(4,) * ndim)
    torch.testing.assert_close(out[:, 1:, :2], x[:, 1:] - x[:, :-1])


def test_no_channel_left_is_refused():
    with pytest.raises(ValueError, match="keep_frames=False needs"):
        ClipInputs(1, keep_frames=False)


def test_clip_classifier_with_differences_only_ignores_the_static_background():
    model = ClipClassifier(1, [4, 4], frame_differences=True, keep_frames=False).eval()
    assert model.layers[0].cell(0).in_channels == 1
    x = torch.rand(2, 5, 1, 8, 8)
    background = torch.rand(2, 1, 1, 8, 8)  # the same in every frame
    torch.testing.assert_close(model(x + background), model(x))
    # with the frames kept, the background changes the output
    kept = ClipClassifier(1, [4, 4], frame_differences=True).eval()
    assert not torch.allclose(kept(x + background), kept(x))


def test_clip_classifier_input_options_widen_the_first_layer():
    model = ClipClassifier(2, [4, 6], frame_differences=True, coordinates=True, dilation=2)
    cell = model.layers[0].cell(0)
    assert cell.in_channels == 2 + 2 + 2 and cell.dilation == (2, 2)
    assert model.layers[1].cell(0).in_channels == 4 and model.layers[1].cell(0).dilation == (1, 1)
    assert model(torch.randn(3, 4, 2, 8, 8)).shape == (3, 1)


def test_cnn_lstm_flatten_keeps_position_and_matches_a_reference():
    model = CNNLSTMClassifier(1, conv_channels=[3, 4], lstm_hidden=5, frame_pool="flatten",
                              spatial_size=8).eval()  # fmt: skip
    assert model.lstm.input_size == 4 * 4 * 4
    x = torch.rand(2, 3, 1, 8, 8)
    per_frame = torch.stack([model.cnn.body(x[:, t]).flatten(1) for t in range(3)], dim=1)
    _, (h_n, _) = model.lstm(per_frame)
    torch.testing.assert_close(model.embed(x), h_n[-1])


def test_cnn_lstm_flatten_sees_where_a_dot_is_and_global_pooling_does_not():
    a, b = torch.zeros(1, 1, 12, 12), torch.zeros(1, 1, 12, 12)
    a[..., 4, 4], b[..., 6, 6] = 1.0, 1.0  # two px apart: the same after max pool 2
    options = dict(in_channels=1, conv_channels=[3, 4], batch_norm=False)
    pooled = create_model("cnn-lstm", **options)
    pooled.cnn.body[0].bias.data.zero_()  # the background gives 0, as at the zero padding
    torch.testing.assert_close(pooled.cnn(a), pooled.cnn(b))
    flat = create_model("cnn-lstm", **options, frame_pool="flatten", spatial_size=12)
    flat.cnn.load_state_dict(pooled.cnn.state_dict())
    assert not torch.allclose(flat.cnn(a), flat.cnn(b))


def test_cnn_lstm_flatten_needs_and_checks_the_frame_size():
    with pytest.raises(ValueError, match="needs spatial_size"):
        CNNLSTMClassifier(1, frame_pool="flatten")
    model = CNNLSTMClassifier(1, conv_channels=[3], frame_pool="flatten", spatial_size=[6, 8])
    assert model(torch.rand(2, 3, 1, 6, 8)).shape == (2, 1)
    with pytest.raises(ValueError, match=r"built for frames of size \[6, 8\]"):
        model(torch.rand(2, 3, 1, 8, 8))


def test_cnn_lstm_input_options():
    model = create_model("cnn-lstm", in_channels=2, conv_channels=[3, 4], lstm_hidden=5,
                         frame_differences=True, coordinates=True)  # fmt: skip
    assert model.cnn.body[0].in_channels == 2 + 2 + 2
    x = torch.rand(2, 4, 2, 8, 8)
    assert model(x).shape == (2, 1)
    still = create_model("cnn-lstm", in_channels=1, conv_channels=[3], lstm_hidden=5,
                         frame_differences=True, keep_frames=False).eval()  # fmt: skip
    frame = torch.rand(2, 1, 1, 8, 8)
    # a still clip is all zeros for a differences-only model, whatever it shows
    torch.testing.assert_close(still(frame.expand(2, 4, 1, 8, 8)),
                               still(torch.zeros(2, 4, 1, 8, 8)))  # fmt: skip
