"""Stacking, directions, state passing, masks, dropout and checkpointing."""

import pytest
import torch

from convlstm import ConvLSTM2d

from .conftest import perturb
from .reference import reference_cell_sequence


def test_two_layers_equal_chained_reference():
    layer = perturb(ConvLSTM2d(2, [3, 4], [3, 5], padding=["valid", "same"])).double()
    x = torch.randn(2, 4, 2, 8, 8, dtype=torch.float64)
    out, (h_n, c_n) = layer(x)
    mid, (h0, c0) = reference_cell_sequence(layer.cell(0), x)
    ref, (h1, c1) = reference_cell_sequence(layer.cell(1), mid)
    torch.testing.assert_close(out, ref)
    assert isinstance(h_n, list) and len(h_n) == 2  # layers differ in F: lists
    torch.testing.assert_close(h_n[0], h0)
    torch.testing.assert_close(c_n[1], c1)


def test_stacked_state_shape_when_layers_agree():
    layer = ConvLSTM2d(3, 5, 3, num_layers=3, bidirectional=True)
    out, (h_n, c_n) = layer(torch.randn(2, 4, 3, 6, 6))
    assert out.shape == (2, 4, 10, 6, 6)
    assert h_n.shape == c_n.shape == (6, 2, 5, 6, 6)


def test_bidirectional_equals_manual_reverse_pass():
    layer = perturb(ConvLSTM2d(2, 3, 3, bidirectional=True)).double()
    x = torch.randn(2, 5, 2, 6, 6, dtype=torch.float64)
    out, (h_n, c_n) = layer(x)
    forward, (hf, _) = reference_cell_sequence(layer.cell(0, 0), x)
    backward_flipped, (hb, cb) = reference_cell_sequence(layer.cell(0, 1), x.flip(1))
    torch.testing.assert_close(out[:, :, :3], forward)
    torch.testing.assert_close(out[:, :, 3:], backward_flipped.flip(1))
    torch.testing.assert_close(h_n[1], hb)
    torch.testing.assert_close(c_n[1], cb)


def test_reverse_keeps_outputs_aligned_with_input_time():
    layer = perturb(ConvLSTM2d(2, 3, 3)).double()
    x = torch.randn(1, 4, 2, 5, 5, dtype=torch.float64)
    out, (h_n, _) = layer(x, reverse=True)
    ref, (ref_h, _) = reference_cell_sequence(layer.cell(0), x, reverse=True)
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(h_n[0], out[:, 0])


@pytest.mark.parametrize("bidirectional", [False, True])
def test_batch_first_false(bidirectional):
    layer = ConvLSTM2d(2, 3, 3, num_layers=2, bidirectional=bidirectional)
    x = torch.randn(2, 4, 2, 5, 5)
    out_bf, state_bf = layer(x)
    layer.batch_first = False
    out_tf, state_tf = layer(x.transpose(0, 1))
    torch.testing.assert_close(out_tf.transpose(0, 1), out_bf)
    torch.testing.assert_close(state_tf[1], state_bf[1])


def test_chunked_streaming_equals_one_pass():
    layer = perturb(ConvLSTM2d(2, [3, 3], 3, peephole="channel", padding=["valid", "same"]))
    x = torch.randn(2, 9, 2, 7, 7)
    full, full_state = layer(x)
    state, chunks = None, []
    for chunk in x.split([4, 1, 4], dim=1):
        out, state = layer(chunk, state)
        chunks.append(out)
    torch.testing.assert_close(torch.cat(chunks, 1), full)
    torch.testing.assert_close(state[0], full_state[0])
    torch.testing.assert_close(state[1], full_state[1])


@pytest.mark.parametrize("bidirectional", [False, True])
def test_masked_batch_equals_per_sequence_runs(bidirectional):
    layer = perturb(ConvLSTM2d(2, 3, 3, num_layers=2, bidirectional=bidirectional))
    x = torch.randn(3, 6, 2, 5, 5)
    lengths = torch.tensor([6, 2, 4])
    out, (h_n, c_n) = layer(x, lengths=lengths)
    for b, n in enumerate(lengths.tolist()):
        alone, (h_alone, c_alone) = layer(x[b : b + 1, :n])
        torch.testing.assert_close(out[b : b + 1, :n], alone)
        assert torch.count_nonzero(out[b, n:]) == 0
        torch.testing.assert_close(h_n[:, b : b + 1], h_alone)
        torch.testing.assert_close(c_n[:, b : b + 1], c_alone)


def test_initial_state_is_used():
    layer = ConvLSTM2d(2, 3, 3, num_layers=2)
    x = torch.randn(2, 3, 2, 5, 5)
    h0 = torch.randn(2, 2, 3, 5, 5)
    c0 = torch.randn(2, 2, 3, 5, 5)
    out_zero, _ = layer(x)
    out_state, _ = layer(x, (h0, c0))
    out_explicit_zero, _ = layer(x, (torch.zeros_like(h0), torch.zeros_like(c0)))
    torch.testing.assert_close(out_explicit_zero, out_zero)
    assert not torch.allclose(out_state, out_zero)


def test_return_all_layers():
    layer = ConvLSTM2d(2, [3, 5], 3, return_all_layers=True)
    outs, _ = layer(torch.randn(2, 3, 2, 5, 5))
    assert [o.shape[2] for o in outs] == [3, 5]


def test_dropout_between_layers_only_in_training():
    layer = ConvLSTM2d(2, 3, 3, num_layers=2, dropout=0.5)
    x = torch.randn(2, 3, 2, 5, 5)
    layer.eval()
    a, _ = layer(x)
    b, _ = layer(x)
    torch.testing.assert_close(a, b)
    layer.train()
    c, _ = layer(x)
    assert not torch.allclose(a, c)


def test_recurrent_dropout_uses_one_mask_per_sequence():
    layer = perturb(ConvLSTM2d(2, 3, 3, recurrent_dropout=0.4)).double()
    x = torch.randn(2, 5, 2, 5, 5, dtype=torch.float64)
    layer.train()
    torch.manual_seed(123)
    out, _ = layer(x)
    torch.manual_seed(123)
    mask = torch.empty(2, 3, 5, 5, dtype=torch.float64).bernoulli_(0.6) / 0.6
    ref, _ = reference_cell_sequence(layer.cell(0), x, recurrent_mask=mask)
    torch.testing.assert_close(out, ref)
    layer.eval()
    plain, _ = layer(x)
    ref_plain, _ = reference_cell_sequence(layer.cell(0), x)
    torch.testing.assert_close(plain, ref_plain)


def test_checkpoint_gives_same_values_and_gradients():
    torch.manual_seed(1)
    plain = perturb(ConvLSTM2d(2, 3, 3, num_layers=2, peephole="channel"))
    ckpt = ConvLSTM2d(2, 3, 3, num_layers=2, peephole="channel", checkpoint=True)
    ckpt.load_state_dict(plain.state_dict())
    x = torch.randn(2, 6, 2, 5, 5)
    grads = []
    for model in (plain, ckpt):
        model.train()
        out, _ = model(x)
        out.pow(2).mean().backward()
        grads.append([p.grad.clone() for p in model.parameters()])
    for g_plain, g_ckpt in zip(*grads):
        torch.testing.assert_close(g_plain, g_ckpt)


def test_checkpoint_memory_does_not_grow_with_activations():
    """Saved activations: checkpointing keeps only step inputs and states."""
    layer = ConvLSTM2d(1, 8, 3, checkpoint=True)
    layer.train()
    x = torch.randn(2, 12, 1, 16, 16)
    saved = {"bytes": 0}

    def pack(t):
        saved["bytes"] += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        layer(x)
    with_ckpt = saved["bytes"]
    layer.checkpoint = False
    saved["bytes"] = 0
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        layer(x)
    assert with_ckpt < saved["bytes"] / 3


def test_sam_attention_state_and_maps():
    layer = ConvLSTM2d(2, 4, 3, num_layers=2, attention="sam", bidirectional=True)
    x = torch.randn(2, 3, 2, 6, 6)
    out, state, maps = layer(x, return_attention=True)
    assert len(state) == 3 and state[2].shape == (4, 2, 4, 6, 6)
    assert set(maps) == {
        f"layer{n}.{kind}{suffix}"
        for n in (0, 1)
        for kind in ("hidden", "memory")
        for suffix in ("", ".reverse")
    }
    weights = maps["layer1.memory.reverse"]
    assert weights.shape == (2, 3, 36, 36)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 3, 36))
    # streaming with the memory passed on equals one pass
    uni = ConvLSTM2d(2, 4, 3, attention="sam")
    full, _ = uni(x)
    head, state = uni(x[:, :2])
    tail, _ = uni(x[:, 2:], state)
    torch.testing.assert_close(torch.cat([head, tail], 1), full)


def test_sam_key_stride_pools_keys():
    layer = ConvLSTM2d(1, 4, 3, attention="sam", attention_options={"key_stride": 2})
    _, _, maps = layer(torch.randn(1, 2, 1, 8, 8), return_attention=True)
    assert maps["layer0.hidden"].shape == (1, 2, 64, 16)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_inference_writes_steps_in_place_with_the_same_result(bidirectional):
    layer = perturb(ConvLSTM2d(2, 3, 3, num_layers=2, bidirectional=bidirectional))
    x = torch.randn(3, 5, 2, 6, 7)
    lengths = torch.tensor([5, 2, 4])
    ref, (ref_h, ref_c) = layer(x, lengths=lengths)
    with torch.no_grad():
        out, (h_n, c_n) = layer(x, lengths=lengths)
    assert out.stride() == ref.stride()
    torch.testing.assert_close(out, ref.detach(), atol=0, rtol=0)
    torch.testing.assert_close(h_n, ref_h.detach(), atol=0, rtol=0)
    torch.testing.assert_close(c_n, ref_c.detach(), atol=0, rtol=0)
    assert (out[1, 2:] == 0).all()  # steps past a length stay zero
