"""Bad input raises errors that name the argument, the expected and the given value."""

import pytest
import torch

from convlstm import ConvLSTM2d, ConvLSTM3d, ConvLSTMCell2d


def test_wrong_rank():
    with pytest.raises(ValueError, match=r"rank 5 \(B, T, C, H, W\), got shape \(2, 3, 4, 4\)"):
        ConvLSTM2d(3, 4, 3)(torch.randn(2, 3, 4, 4))
    with pytest.raises(ValueError, match=r"rank 6 \(B, T, C, D, H, W\)"):
        ConvLSTM3d(3, 4, 3)(torch.randn(2, 3, 3, 4, 4))


def test_wrong_channel_count():
    with pytest.raises(
        ValueError, match=r"expected 3 input channels .* got shape \(2, 5, 2, 8, 8\) with 2"
    ):
        ConvLSTM2d(3, 4, 3)(torch.randn(2, 5, 2, 8, 8))


def test_integer_input_rejected():
    with pytest.raises(TypeError, match="floating-point"):
        ConvLSTM2d(1, 4, 3)(torch.ones(1, 2, 1, 4, 4, dtype=torch.long))


def test_wrong_state_shape():
    layer = ConvLSTM2d(1, 4, 3, num_layers=2)
    x = torch.randn(2, 3, 1, 8, 8)
    with pytest.raises(ValueError, match=r"h_0 must have shape \(num_layers \* num_directions = 2"):
        layer(x, (torch.zeros(1, 2, 4, 8, 8), torch.zeros(1, 2, 4, 8, 8)))
    with pytest.raises(
        ValueError, match=r"state h must have shape \(2, 4, 8, 8\), got \(2, 4, 7, 7\)"
    ):
        layer(x, (torch.zeros(2, 2, 4, 7, 7), torch.zeros(2, 2, 4, 7, 7)))
    with pytest.raises(TypeError, match=r"state must be a tuple \(h_0, c_0\)"):
        layer(x, torch.zeros(2, 2, 4, 8, 8))


def test_valid_padding_output_of_size_zero():
    with pytest.raises(
        ValueError, match=r"spatial size \(2, 2\) is too small .* output would have size \(0, 0\)"
    ):
        ConvLSTM2d(1, 4, 3, padding="valid")(torch.randn(1, 2, 1, 2, 2))


def test_lengths_out_of_range_or_wrong_shape():
    layer = ConvLSTM2d(1, 2, 3)
    x = torch.randn(2, 4, 1, 5, 5)
    with pytest.raises(ValueError, match=r"lengths must lie in \[1, T=4\], got min 0"):
        layer(x, lengths=torch.tensor([0, 4]))
    with pytest.raises(ValueError, match=r"lengths must lie in \[1, T=4\], got min 1 and max 5"):
        layer(x, lengths=[1, 5])
    with pytest.raises(ValueError, match=r"lengths must have shape \(2,\), got \(3,\)"):
        layer(x, lengths=[1, 2, 3])
    with pytest.raises(TypeError, match="integers"):
        layer(x, lengths=torch.tensor([1.0, 2.0]))


def test_pixel_peephole_needs_and_checks_spatial_size():
    with pytest.raises(ValueError, match="needs spatial_size"):
        ConvLSTM2d(1, 2, 3, peephole="pixel")
    layer = ConvLSTM2d(1, 2, 3, peephole="pixel", spatial_size=(8, 8))
    with pytest.raises(
        ValueError, match=r"built for spatial_size=\(8, 8\); got an input of spatial size \(9, 8\)"
    ):
        layer(torch.randn(1, 2, 1, 9, 8))


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (
            dict(kernel_size=(3, 3, 3)),
            ValueError,
            r"kernel_size must be an int or a tuple of 2 ints",
        ),
        (dict(kernel_size=0), ValueError, r"kernel_size entries must be >= 1"),
        (dict(padding="full"), ValueError, r'padding must be "same", "valid"'),
        (dict(peephole="cell"), ValueError, r'peephole must be False, "channel" or "pixel"'),
        (dict(activation="swishy"), ValueError, r"activation must be one of"),
        (dict(hidden_channels=0), ValueError, r"hidden_channels must be a positive int"),
        (dict(attention="transformer"), ValueError, r'attention must be None or "sam"'),
    ],
)
def test_constructor_validation(kwargs, error, message):
    args = dict(in_channels=1, hidden_channels=2, kernel_size=3)
    args.update(kwargs)
    with pytest.raises(error, match=message):
        ConvLSTMCell2d(**args)


def test_per_layer_list_length_mismatch():
    with pytest.raises(
        ValueError, match=r"kernel_size given as a list must have one entry per layer \(2\)"
    ):
        ConvLSTM2d(1, [2, 3], [3, 3, 3])


def test_dropout_range():
    with pytest.raises(ValueError, match=r"recurrent_dropout must be in \[0, 1\), got 1.0"):
        ConvLSTM2d(1, 2, 3, recurrent_dropout=1.0)


def test_stride_and_dilation_together_are_supported():
    """PyTorch convolutions allow both (Keras does not); the output size follows TF "same"."""
    out, _ = ConvLSTM2d(1, 2, 3, stride=2, dilation=2)(torch.randn(1, 2, 1, 9, 9))
    assert out.shape == (1, 2, 2, 5, 5)
