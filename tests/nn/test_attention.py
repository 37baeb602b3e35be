"""SpatialAttention and TemporalAttention (convlstm.nn.attention)."""

import pytest
import torch

from convlstm.nn.attention import SpatialAttention, TemporalAttention


@pytest.mark.parametrize("ndim", [1, 2, 3])
def test_spatial_softmax_map_sums_to_one_and_rescales(ndim):
    att = SpatialAttention(4, "softmax", ndim=ndim)
    h = torch.randn(3, 4, *(5,) * ndim)
    out, a = att(h)
    assert a.shape == (3, 1, *(5,) * ndim) and out.shape == h.shape
    torch.testing.assert_close(a.flatten(1).sum(1), torch.ones(3))
    torch.testing.assert_close(out, h * a * 5**ndim)


def test_spatial_uniform_map_leaves_state_unchanged():
    att = SpatialAttention(4, "softmax")
    with torch.no_grad():
        att.score[-1].weight.zero_()  # equal scores everywhere
    h = torch.randn(2, 4, 6, 7)
    out, a = att(h)
    torch.testing.assert_close(a, torch.full_like(a, 1 / 42))
    torch.testing.assert_close(out, h)


def test_spatial_sigmoid_gates_each_position():
    att = SpatialAttention(4, "sigmoid", hidden_channels=3, kernel_size=1)
    h = torch.randn(2, 4, 5, 5)
    out, a = att(h)
    first, second = att.score[0], att.score[2]
    expected = torch.sigmoid(second(torch.tanh(first(h))))
    torch.testing.assert_close(a, expected)
    torch.testing.assert_close(out, h * expected)


def test_spatial_errors_name_the_argument():
    with pytest.raises(ValueError, match="mode must be one of"):
        SpatialAttention(4, "relu")
    with pytest.raises(ValueError, match="kernel_size must be odd"):
        SpatialAttention(4, kernel_size=2)
    with pytest.raises(ValueError, match="channels must be a positive int"):
        SpatialAttention(0)
    with pytest.raises(ValueError, match=r"expects \(B, F, \*spatial\) with 2"):
        SpatialAttention(4)(torch.randn(2, 4, 5))


def test_temporal_weights_by_hand():
    """T=2, F=1, attention_dim=1: e_t = v tanh(k p_t + b + q p_T)."""
    att = TemporalAttention(1, attention_dim=1, query="last")
    with torch.no_grad():
        att.key.weight.fill_(1.0)
        att.key.bias.fill_(0.5)
        att.query.weight.fill_(2.0)
        att.score.weight.fill_(3.0)
    seq = torch.tensor([1.0, 2.0]).view(1, 2, 1, 1, 1).expand(1, 2, 1, 2, 2).clone()
    seq[0, 1, 0, 0, 0] = 4.0  # pooled: p_0 = 1, p_1 = (4 + 2 + 2 + 2) / 4 = 2.5
    e = torch.tensor([3 * torch.tanh(torch.tensor(1 + 0.5 + 5.0)),
                      3 * torch.tanh(torch.tensor(2.5 + 0.5 + 5.0))])
    w = torch.softmax(e, 0)
    context, weights = att(seq)
    torch.testing.assert_close(weights, w.unsqueeze(0))
    torch.testing.assert_close(context, w[0] * seq[:, 0] + w[1] * seq[:, 1])


@pytest.mark.parametrize("query", ["last", "learned"])
def test_temporal_weights_sum_to_one(query):
    att = TemporalAttention(5, query=query)
    seq = torch.randn(3, 7, 5, 4, 4)
    context, weights = att(seq)
    assert context.shape == (3, 5, 4, 4) and weights.shape == (3, 7)
    torch.testing.assert_close(weights.sum(1), torch.ones(3))
    torch.testing.assert_close(context, torch.einsum("bt,btfhw->bfhw", weights, seq))


def test_temporal_learned_query_is_a_parameter():
    att = TemporalAttention(5, attention_dim=6, query="learned")
    assert isinstance(att.query, torch.nn.Parameter) and att.query.shape == (6,)
    context, _ = att(torch.randn(2, 3, 5, 4))  # 1-D frames
    context.sum().backward()
    assert att.query.grad is not None and att.query.grad.abs().sum() > 0


def test_temporal_lengths_mask_later_steps():
    att = TemporalAttention(3)
    seq = torch.randn(2, 5, 3, 4, 4)
    context, weights = att(seq, lengths=torch.tensor([5, 2]))
    assert torch.all(weights[1, 2:] == 0)
    short_context, short_weights = att(seq[1:, :2])
    torch.testing.assert_close(weights[1, :2], short_weights[0])
    torch.testing.assert_close(context[1], short_context[0])
    with pytest.raises(ValueError, match=r"lengths must have shape \(2,\)"):
        att(seq, lengths=[5])


def test_temporal_errors_name_the_argument():
    with pytest.raises(ValueError, match="query must be one of"):
        TemporalAttention(3, query="first")
    with pytest.raises(ValueError, match="attention_dim must be a positive int"):
        TemporalAttention(3, attention_dim=-1)
