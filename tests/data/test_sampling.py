import numpy as np
import pytest
import torch
from torch.utils.data import ConcatDataset, Subset, TensorDataset

from convlstm.data import (
    MovingDigits,
    SimilarMotions,
    balanced_sampler,
    class_counts,
    class_weights,
    labels_of,
    split_dataset,
)


def test_class_weights_balanced_formula():
    labels = [0] * 6 + [1] * 3 + [2] * 1
    weights = class_weights(labels)
    np.testing.assert_allclose(weights.numpy(), [10 / 18, 10 / 9, 10 / 3], rtol=1e-6)
    # weighted counts are equal per class
    np.testing.assert_allclose(weights.numpy() * class_counts(labels), 10 / 3, rtol=1e-6)
    with pytest.warns(UserWarning, match=r"classes \[3\] have no training samples"):
        assert class_weights(labels, num_classes=4)[3] == 0
    with pytest.raises(ValueError, match=r"label 2 >= num_classes=2"):
        class_weights(labels, num_classes=2)


def test_labels_from_attributes_subsets_and_scans():
    ds = SimilarMotions(num_samples=12, classes=3, frames=2, image_size=16)
    np.testing.assert_array_equal(labels_of(Subset(ds, [4, 5, 9])), [1, 2, 0])
    np.testing.assert_array_equal(labels_of(ConcatDataset([ds, ds]))[:3], [0, 1, 2])
    tensors = TensorDataset(torch.zeros(4, 2, 1, 3, 3), torch.tensor([1, 0, 1, 1]))
    np.testing.assert_array_equal(labels_of(tensors), [1, 0, 1, 1])
    assert labels_of(MovingDigits(num_samples=2)) is None  # forecasting data
    train = split_dataset(ds, by="random", fractions=[0.5, 0.5])["train"]
    assert class_weights(train).shape == (3,)


def test_balanced_sampler_draws_classes_equally():
    labels = np.array([0] * 90 + [1] * 10)
    sampler = balanced_sampler(labels, num_samples=4000, seed=0)
    drawn = labels[list(sampler)]
    assert abs(drawn.mean() - 0.5) < 0.03
    assert list(balanced_sampler(labels, seed=3)) == list(balanced_sampler(labels, seed=3))
    assert len(balanced_sampler(labels)) == 100


def test_labels_through_wrappers_and_pickling():
    import pickle

    from convlstm.data import Augmented, ClipAugment, Normalized, NormStats

    ds = SimilarMotions(num_samples=6, classes=3, frames=2, image_size=16)
    part = split_dataset(ds, by="random", fractions=[0.5, 0.5])["train"]
    wrapped = Augmented(Normalized(part, NormStats([0.3], [0.2])), ClipAugment(hflip=0.5))
    np.testing.assert_array_equal(labels_of(wrapped, allow_scan=False), labels_of(part))
    clone = pickle.loads(pickle.dumps(wrapped))
    assert len(clone) == 3 and clone[0][0].shape == (2, 1, 16, 16)


def test_balanced_sampler_draws_depend_only_on_seed_and_epoch():
    # A resumed run builds a fresh sampler and starts at epoch e: it must draw what an
    # uninterrupted run drew at epoch e.
    labels = [0] * 30 + [1] * 10
    running = balanced_sampler(labels, seed=5)
    draws = []
    for epoch in range(3):
        running.set_epoch(epoch)
        draws.append(list(running))
    assert draws[0] != draws[1] != draws[2]
    resumed = balanced_sampler(labels, seed=5)
    resumed.set_epoch(2)
    assert list(resumed) == draws[2]
