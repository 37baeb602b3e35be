import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

from convlstm.data import MovingDigits, Normalized, NormStats, compute_norm_stats


def test_stats_per_channel_and_round_trip(tmp_path):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(6, 4, 2, 5, 5, generator=gen) * torch.tensor([1.0, 3.0]).view(1, 1, 2, 1, 1)
    x = x + torch.tensor([2.0, -1.0]).view(1, 1, 2, 1, 1)
    y = torch.randn(6, 2, 2, 5, 5, generator=gen)
    ds = TensorDataset(x, y)  # forecasting pairs: inputs and targets both count
    stats = compute_norm_stats(ds, max_samples=None)
    frames = (
        torch.cat([x.reshape(-1, 2, 5, 5), y.reshape(-1, 2, 5, 5)]).transpose(0, 1).reshape(2, -1)
    )
    np.testing.assert_allclose(stats.mean, frames.double().mean(1).numpy(), rtol=1e-6)
    np.testing.assert_allclose(stats.std, frames.double().std(1, unbiased=False).numpy(), rtol=1e-6)
    assert stats.count == frames.shape[1]
    normed = Normalized(ds, stats)[0][0]
    torch.testing.assert_close(stats.denormalize(normed), x[0])
    stats.save(tmp_path / "stats.json")
    assert NormStats.load(tmp_path / "stats.json") == stats
    single = compute_norm_stats(ds, per_channel=False)
    assert len(single.mean) == 1 and single.normalize(x[0]).shape == x[0].shape


def test_subsampling_constant_data_and_errors(tmp_path):
    digits = MovingDigits(num_samples=50, seed=0)
    stats = compute_norm_stats(digits, max_samples=10)
    assert 0.02 < stats.mean[0] < 0.2 and stats.min == [0.0] and stats.max[0] <= 1
    constant = TensorDataset(torch.ones(2, 3, 1, 4, 4), torch.zeros(2))
    assert compute_norm_stats(constant).std == [1.0]  # no division by zero
    with pytest.raises(ValueError, match=r"statistics have 2 channels but the tensor has 3"):
        NormStats([0, 0], [1, 1]).normalize(torch.zeros(1, 3, 2, 2))
    (tmp_path / "bad.json").write_text('{"mean": [0]}')
    with pytest.raises(ValueError, match=r"need 'mean' and 'std'"):
        NormStats.load(tmp_path / "bad.json")
