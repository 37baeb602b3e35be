import numpy as np
import pytest
import torch

from convlstm.data import SimilarMotions, motion_steps

sklearn = pytest.importorskip("sklearn.linear_model")


def _circular_rows(clip: np.ndarray, threshold: float = 0.55) -> np.ndarray:
    """Row of the bright object in each frame, tracked on the wrapped (circular) field."""
    height = clip.shape[1]
    angles = 2 * np.pi * np.arange(height) / height
    weights = (clip > threshold).sum(2)  # (T, H) bright pixels per row
    angle = np.arctan2((weights * np.sin(angles)).sum(1), (weights * np.cos(angles)).sum(1))
    return angle % (2 * np.pi) * height / (2 * np.pi)


def _features(ds, seed=0):
    rng = np.random.default_rng(seed)
    pixels, motion, labels = [], [], []
    for i in range(len(ds)):
        clip, label = ds[i]
        clip = clip[:, 0].numpy()
        pixels.append(clip[rng.integers(len(clip))].ravel())  # one random frame
        rows = _circular_rows(clip)
        height = clip.shape[1]
        steps = (np.diff(rows) + height / 2) % height - height / 2
        motion.append([steps.mean(), steps.std()])
        labels.append(int(label))
    return np.array(pixels), np.array(motion), np.array(labels)


def test_single_frames_near_chance_motion_separates():
    train = SimilarMotions("train", num_samples=200, image_size=32, seed=0)
    test = SimilarMotions("test", num_samples=200, image_size=32, seed=0)
    px_train, mo_train, y_train = _features(train)
    px_test, mo_test, y_test = _features(test, seed=1)
    probe = sklearn.LogisticRegression(max_iter=2000).fit(px_train, y_train)
    assert probe.score(px_test, y_test) < 0.62  # chance is 0.5
    motion = sklearn.LogisticRegression(max_iter=2000).fit(mo_train, y_train)
    assert motion.score(mo_test, y_test) > 0.85


def test_tracked_rows_follow_the_trajectory():
    ds = SimilarMotions(num_samples=4, image_size=32, noise=0.0)
    clip = ds[1][0][:, 0].numpy()
    error = (_circular_rows(clip) - ds.trajectory(1) + 16) % 32 - 16
    assert np.abs(error - np.median(error)).max() < 1.0  # constant offset: shape centre


def test_determinism_labels_and_shapes():
    ds = SimilarMotions(num_samples=8, classes=4, frames=6, image_size=24, seed=2)
    clip, label = ds[5]
    assert clip.shape == (6, 1, 24, 24) and clip.dtype == torch.float32
    assert label.dtype == torch.long and int(label) == 1
    assert clip.min() >= 0 and clip.max() <= 1
    np.testing.assert_array_equal(ds.labels, [0, 1, 2, 3, 0, 1, 2, 3])
    assert torch.equal(
        clip, SimilarMotions(num_samples=8, classes=4, frames=6, image_size=24, seed=2)[5][0]
    )
    assert ds.classes == ["gentle", "jerky", "accelerating", "pausing"]
    named = SimilarMotions(num_samples=2, classes=["gentle", "pausing"])
    assert named.num_classes == 2


def test_difficulty_brings_motions_closer():
    rng = np.random.default_rng(0)
    easy = motion_steps("jerky", 1000, 1.0, 0.0, rng)
    hard = motion_steps("jerky", 1000, 1.0, 1.0, rng)
    assert abs(easy.mean() - 1.5) < 0.05 and abs(hard.mean() - 1.0) < 0.05
    assert easy.std() > 3 * hard.std()
    np.testing.assert_allclose(motion_steps("gentle", 5, 2.0, 0.3, rng), 2.0)
    accel = motion_steps("accelerating", 10, 1.0, 0.5, rng)
    assert np.all(np.diff(accel) > 0)
    assert (motion_steps("pausing", 200, 1.0, 0.0, rng) == 0).mean() > 0.3


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"difficulty"):
        SimilarMotions(difficulty=2)
    with pytest.raises(ValueError, match=r"'wobbly'"):
        SimilarMotions(classes=["gentle", "wobbly"])
    with pytest.raises(ValueError, match=r"classes"):
        SimilarMotions(classes=7)


def test_resample_draws_fresh_training_clips_per_epoch_only_when_asked():
    options = dict(num_samples=4, frames=3, image_size=16)
    fixed, fresh = SimilarMotions(**options), SimilarMotions(**options, resample=True)
    first = fresh[1][0]
    assert torch.equal(first, fixed[1][0])  # epoch 0 is the resample=False draw
    fresh.set_epoch(1)
    fixed.set_epoch(1)
    assert not torch.equal(fresh[1][0], first) and int(fresh[1][1]) == 1
    assert torch.equal(fixed[1][0], first)
    again = SimilarMotions(**options, resample=True)
    again.set_epoch(1)
    assert torch.equal(again[1][0], fresh[1][0])  # reproducible
    test = SimilarMotions("test", **options, resample=True)
    before = test[0][0]
    test.set_epoch(3)
    assert torch.equal(test[0][0], before)  # val/test stay fixed
