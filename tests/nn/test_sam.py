"""SelfAttentionMemory: the attention without its maps (the usual forward) against the
explicit one that returns them, and what training keeps of it."""

import pytest
import torch

from convlstm.nn.sam import SelfAttentionMemory


def _saved_bytes(fn) -> int:
    """Bytes of the tensors autograd saves for the backward while ``fn`` runs."""
    total = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return total


@pytest.mark.parametrize("key_stride", [1, 2])
def test_without_maps_equals_the_explicit_attention(key_stride):
    """At a frame of 32 x 32 (1,024 positions), float32: outputs and gradients of every
    input and weight equal those of the explicit attention (``need_weights=True``)."""
    torch.manual_seed(0)
    sam = SelfAttentionMemory(16, key_stride=key_stride)
    h = torch.randn(2, 16, 32, 32, requires_grad=True)
    m = torch.randn(2, 16, 32, 32, requires_grad=True)
    weight = torch.randn(2, 16, 32, 32)

    def grads(need_weights: bool):
        h_t, m_t, *_ = sam(h, m, need_weights=need_weights)
        loss = ((h_t + m_t) * weight).sum()
        return [h_t, m_t, *torch.autograd.grad(loss, [h, m, *sam.parameters()])]

    for a, b in zip(grads(False), grads(True)):
        torch.testing.assert_close(a, b, atol=2e-5 * float(b.abs().max()), rtol=0)


def test_training_keeps_no_attention_map():
    """The explicit attention keeps two ``(B, N, N)`` maps per call for its backward
    (2 x 8 MiB here; at 64 x 64, batch 8 and 10 steps, 10.7 GB per layer); without maps
    the call keeps less than one of them."""
    sam = SelfAttentionMemory(16)
    h = torch.randn(2, 16, 32, 32, requires_grad=True)
    m = torch.randn(2, 16, 32, 32, requires_grad=True)
    one_map = 2 * 1024 * 1024 * 4
    assert _saved_bytes(lambda: sam(h, m, need_weights=True)) >= 2 * one_map
    assert _saved_bytes(lambda: sam(h, m)) < one_map
