import pytest
import torch
from torch.utils.data import TensorDataset

from convlstm.data import Augmented, ClipAugment, jitter_start


def _static_clip(frames=5):
    frame = torch.rand(2, 12, 16, generator=torch.Generator().manual_seed(0))
    return frame.expand(frames, -1, -1, -1).clone()  # identical frames


def test_every_frame_gets_the_same_transform():
    clip = _static_clip()
    augment = ClipAugment(
        hflip=0.5, vflip=0.5, crop_scale=[0.5, 0.9], brightness=0.3, contrast=0.3, seed=0
    )
    for _ in range(10):
        out = augment(clip)
        assert out.shape == clip.shape
        for t in range(1, 5):
            assert torch.equal(out[t], out[0])  # consistent across the clip


def test_transforms_do_what_they_say():
    clip = torch.arange(2 * 1 * 4 * 6, dtype=torch.float32).reshape(2, 1, 4, 6)
    assert torch.equal(ClipAugment(hflip=1.0)(clip), clip.flip(-1))
    assert torch.equal(ClipAugment(vflip=1.0)(clip), clip.flip(-2))
    bright = ClipAugment(brightness=0.5, seed=1)
    params = bright.sample_params(4, 6)
    torch.testing.assert_close(bright.apply(clip, params), clip * params["brightness"])
    contrast = ClipAugment(contrast=0.5, seed=2)
    params = contrast.sample_params(4, 6)
    out = contrast.apply(clip, params)
    torch.testing.assert_close(out.mean(), clip.mean())
    torch.testing.assert_close(out.std(), clip.std() * params["contrast"])
    crop = ClipAugment(crop_scale=[0.25, 0.25], seed=0)
    params = crop.sample_params(4, 6)
    assert params["crop"][2:] == (2, 3)
    noisy = ClipAugment(noise_std=0.1, seed=0)(torch.zeros(50, 1, 20, 20))
    assert abs(noisy.std().item() - 0.1) < 0.005
    assert noisy[0].std() > 0.08 and not torch.equal(noisy[0], noisy[1])
    clamped = ClipAugment(noise_std=1.0, clamp=[0, 1], seed=0)(torch.zeros(2, 1, 8, 8))
    assert clamped.min() >= 0 and clamped.max() <= 1


def test_forecasting_pairs_share_the_draw_and_targets_get_no_noise():
    inputs = _static_clip(3)
    targets = _static_clip(2)
    ds = Augmented(
        TensorDataset(inputs[None], targets[None]),
        ClipAugment(hflip=0.5, crop_scale=[0.5, 1.0], noise_std=0.05, seed=0),
    )
    for _ in range(5):
        x, y = ds[0]
        assert torch.equal(y[0], y[1])
        assert (x[0] - y[0]).abs().mean() < 0.06  # same geometry, inputs only noisy
    labelled = Augmented(TensorDataset(inputs[None], torch.tensor([3])), ClipAugment(hflip=1.0))
    clip, label = labelled[0]
    assert torch.equal(clip, inputs.flip(-1)) and int(label) == 3


def test_temporal_jitter_and_argument_checks():
    generator = torch.Generator().manual_seed(0)
    starts = {jitter_start(10, 3, 0, 12, generator) for _ in range(200)}
    assert starts == set(range(7, 13))  # clipped at the last valid start 12
    assert jitter_start(5, 0, 0, 10) == 5
    with pytest.raises(ValueError, match=r"hflip is a probability"):
        ClipAugment(hflip=2)
    with pytest.raises(ValueError, match=r"crop_scale"):
        ClipAugment(crop_scale=[0.9, 0.5])
