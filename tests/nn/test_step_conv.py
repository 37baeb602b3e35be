"""StepConv: the fused step convolution's hand-split backward against autograd."""

import pytest
import torch
import torch.nn.functional as F

from convlstm.nn._utils import memory_format, stack_input
from convlstm.nn.fast.step_conv import StepConv, step_conv

CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


def _case(ndim: int, dtype=torch.float64):
    spatial = {1: (7,), 2: (5, 6), 3: (3, 4, 5)}[ndim]
    kernel = (3,) * ndim
    hidden_pad = tuple(p for _ in range(ndim) for p in (1, 1))
    layout = memory_format(ndim, torch.device("cpu"))
    x = torch.randn(2, 3, *(s + 2 for s in spatial), dtype=dtype).contiguous(memory_format=layout)
    h = torch.randn(2, 4, *spatial, dtype=dtype).contiguous(memory_format=layout)
    weight = torch.randn(16, 3 + 4, *kernel, dtype=dtype)
    bias = torch.randn(16, dtype=dtype)
    return x, h, weight, bias, hidden_pad


@pytest.mark.parametrize("ndim", [1, 2, 3])
def test_gradcheck_all_inputs(ndim):
    x, h, weight, bias, pads = _case(ndim)
    inputs = [t.requires_grad_() for t in (x, h, weight, bias)]
    assert torch.autograd.gradcheck(lambda *a: StepConv.apply(*a, pads), inputs)


@pytest.mark.parametrize("needs", [(False, True, True, False), (True, False, False, True)])
def test_matches_autograd_of_the_plain_convolution(needs):
    x, h, weight, bias, pads = _case(2, torch.float32)
    for tensor, need in zip((x, h, weight, bias), needs):
        tensor.requires_grad_(need)
    out = step_conv(x, h, weight, bias, pads)
    ref = CONV[2](torch.cat([x, F.pad(h, list(pads))], dim=1), weight, bias)
    torch.testing.assert_close(out, ref)
    wanted = [t for t in (x, h, weight, bias) if t.requires_grad]
    upstream = torch.randn_like(out)
    ours = torch.autograd.grad(out, wanted, upstream)
    theirs = torch.autograd.grad(ref, wanted, upstream)
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_stack_input_places_padded_hidden_state():
    x, h, _, _, pads = _case(2, torch.float32)
    buffer = stack_input(x, h, pads, torch.float32)
    assert buffer.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(buffer, torch.cat([x, F.pad(h, list(pads))], dim=1))


def test_without_gradients_no_autograd_node():
    x, h, weight, bias, pads = _case(2, torch.float32)
    weight.requires_grad_()
    with torch.no_grad():
        out = step_conv(x, h, weight, bias, pads)
    assert out.grad_fn is None
