import numpy as np
import torch

from convlstm.data import RadarEchoes


def _shift(a: np.ndarray, b: np.ndarray, m: int = 8) -> np.ndarray:
    """Integer displacement (rows, cols) from frame a to frame b, by block matching."""
    errors = {
        (dy, dx): ((np.roll(a, (dy, dx), (0, 1)) - b)[m:-m, m:-m] ** 2).mean()
        for dy in range(-m, m + 1)
        for dx in range(-m, m + 1)
    }
    return np.array(min(errors, key=errors.get))


def test_shapes_units_and_skewed_distribution():
    ds = RadarEchoes(num_samples=12, seed=0)
    inputs, targets = ds[0]
    assert inputs.shape == (10, 1, 64, 64) and targets.shape == (10, 1, 64, 64)
    values = torch.stack([ds.sequence(i) for i in range(12)]).numpy()
    assert values.min() == 0.0
    wet = values[values > 0]
    assert 0.5 < (values == 0).mean() < 0.97  # mostly dry, like radar
    assert wet.min() >= 0.1  # min_rate
    assert np.mean(wet) > 1.3 * np.median(wet)  # right-skewed
    assert values.max() > 10  # intense cores in mm/h


def test_determinism_and_splits():
    a = RadarEchoes(num_samples=3, seed=1)
    assert torch.equal(a[2][0], RadarEchoes(num_samples=3, seed=1)[2][0])
    assert not torch.equal(a[2][0], RadarEchoes(num_samples=3, seed=2)[2][0])
    assert not torch.equal(a[2][0], RadarEchoes("test", num_samples=3, seed=1)[2][0])


def test_fields_move_with_the_wind_and_evolve():
    ds = RadarEchoes(num_samples=20, num_cells=12, wind_speed=3.0, seed=0)
    errors = []
    for i in range(20):
        frames = ds.sequence(i)[:, 0].numpy()
        if frames[8].sum() < 50 or frames[9].sum() < 50:
            continue
        errors.append(np.abs(_shift(frames[8], frames[9]) - ds.mean_wind(i)).max())
    assert len(errors) > 10
    assert np.median(errors) < 1.0  # the field moves by the mean wind, +- the perturbation
    frames = ds.sequence(0)[:, 0].numpy()
    assert np.ptp(frames.sum((1, 2))) > 0  # cells grow and decay: total rain changes


def test_noise_option():
    clean = RadarEchoes(num_samples=1, seed=0)[0][0]
    noisy = RadarEchoes(num_samples=1, seed=0, noise=0.3)[0][0]
    assert not torch.equal(clean, noisy) and noisy.min() == 0
    both = (clean > 1) & (noisy > 1)
    ratio = torch.log(noisy[both] / clean[both])
    assert abs(ratio.std().item() - 0.3) < 0.05  # log-normal speckle of sigma 0.3
