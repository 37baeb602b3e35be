"""Bad input raises errors that name the argument, the expected and the given value."""

import re

import pytest
import torch

import convlstm
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


# The fast path (FusedSequence, FusedGates) starts at 65,536 cell elements per step:
# batch 2 x 16 channels x 48 x 48 = 73,728.
FAST = dict(batch=2, channels=16, size=48)


@pytest.fixture
def fusion_mode():
    """Restore the process-wide fusion mode a test changes."""
    previous = convlstm.nn.get_fusion()
    yield
    convlstm.set_fusion(previous)


def _fast_layer() -> ConvLSTM2d:
    return ConvLSTM2d(1, FAST["channels"], 3)


def _fast_clip(steps: int = 4, *, requires_grad: bool = False) -> torch.Tensor:
    x = torch.randn(FAST["batch"], steps, 1, FAST["size"], FAST["size"])
    return x.requires_grad_(requires_grad)


@pytest.mark.parametrize("batch_first", [True, False])
def test_sequence_of_no_time_steps(batch_first):
    layer = ConvLSTM2d(1, FAST["channels"], 3, batch_first=batch_first)
    x = _fast_clip(steps=0)
    if not batch_first:
        x = x.transpose(0, 1)
    shape = tuple(x.shape)
    with pytest.raises(
        ValueError,
        match=rf"at least one time step \(T >= 1\), got T = 0 in shape {re.escape(str(shape))}",
    ):
        layer(x)


@pytest.mark.parametrize("name", ["hidden_channels", "kernel_size", "padding"])
def test_empty_per_layer_list(name):
    args = dict(in_channels=1, hidden_channels=FAST["channels"], kernel_size=3)
    args[name] = []
    with pytest.raises(
        ValueError, match=rf"^{name} given as a list needs one entry per layer, got \[\]$"
    ):
        ConvLSTM2d(**args)


HIGHER_ORDER = r"first derivatives only.*set_fusion\(\"never\"\).*CONVLSTM_FUSION=never"


def _in_graph(tensor: torch.Tensor, node: str) -> bool:
    """Whether the autograd graph of ``tensor`` has a node whose type name contains ``node``."""
    seen, stack = set(), [tensor.grad_fn]
    while stack:
        fn = stack.pop()
        if fn is None or fn in seen:
            continue
        seen.add(fn)
        if node in type(fn).__name__:
            return True
        stack.extend(next_fn for next_fn, _ in fn.next_functions)
    return False


def _input_gradient_penalty(layer, x):
    out, _ = layer(x)
    (grad,) = torch.autograd.grad(out.square().sum(), x, create_graph=True)
    grad.square().sum().backward()


def _parameter_gradient_penalty(layer, x):
    out, _ = layer(x)
    grads = torch.autograd.grad(out.square().sum(), list(layer.parameters()), create_graph=True)
    sum(g.square().sum() for g in grads).backward()


def _gradient_of_a_linear_loss(layer, x):
    out, _ = layer(x)
    (grad,) = torch.autograd.grad(out.sum(), x, create_graph=True)
    torch.autograd.grad(grad.square().sum(), x)


@pytest.mark.parametrize(
    "penalty", [_input_gradient_penalty, _parameter_gradient_penalty, _gradient_of_a_linear_loss]
)
def test_double_backward_through_the_fused_sequence(penalty, fusion_mode):
    layer = _fast_layer()
    x = _fast_clip(requires_grad=True)
    out, _ = layer(x)
    assert _in_graph(out, "FusedSequence")  # the fast path's node
    with pytest.raises(RuntimeError, match=HIGHER_ORDER):
        penalty(layer, x)
    convlstm.set_fusion("never")
    penalty(layer, x)  # plain ops: second derivatives work
    assert all(torch.isfinite(p.grad).all() for p in layer.parameters() if p.grad is not None)


def test_double_backward_through_a_fused_cell_step(fusion_mode):
    cell = ConvLSTMCell2d(1, FAST["channels"], 3)
    x = _fast_clip(steps=1, requires_grad=True)[:, 0]
    h, _ = cell(x)
    assert _in_graph(h, "FusedGates") and _in_graph(h, "StepConv")
    with pytest.raises(RuntimeError, match=HIGHER_ORDER):
        (grad,) = torch.autograd.grad(h.square().sum(), x, create_graph=True)
        grad.square().sum().backward()
