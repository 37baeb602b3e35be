import numpy as np
import pytest

from convlstm.data import (
    SimilarMotions,
    split_by_time,
    split_dataset,
    split_groups,
    split_random,
    time_split_bounds,
    window_starts,
)


def test_time_bounds_and_windows():
    assert time_split_bounds(100, [0.7, 0.2, 0.1]) == {
        "train": (0, 70),
        "val": (70, 90),
        "test": (90, 100),
    }
    assert time_split_bounds(10, [1.0]) == {"train": (0, 10), "val": (10, 10), "test": (10, 10)}
    np.testing.assert_array_equal(window_starts(70, 90, 5, 4), [70, 74, 78, 82])
    assert len(window_starts(0, 3, 5)) == 0
    with pytest.raises(ValueError, match=r"fractions .* summing to at most 1"):
        time_split_bounds(10, [0.8, 0.3])


def test_random_split_partitions_all_indices():
    parts = split_random(50, [0.6, 0.2, 0.2], seed=1)
    assert [len(p) for p in parts.values()] == [30, 10, 10]
    assert sorted(np.concatenate(list(parts.values())).tolist()) == list(range(50))
    assert np.array_equal(parts["val"], split_random(50, [0.6, 0.2, 0.2], seed=1)["val"])


def test_group_split_never_shares_a_group_and_stratifies():
    groups = [f"video{i // 4}" for i in range(40)]  # 10 videos of 4 clips
    labels = [int(i // 4 >= 5) for i in range(40)]  # videos 0-4 class 0, 5-9 class 1
    parts = split_groups(groups, [0.6, 0.2, 0.2], seed=0, labels=labels)
    seen = [{groups[i] for i in p} for p in parts.values()]
    assert [len(s) for s in seen] == [6, 2, 2]
    assert not (seen[0] & seen[1] or seen[0] & seen[2] or seen[1] & seen[2])
    for p in parts.values():  # stratified: each part has both classes equally
        counts = np.bincount(np.asarray(labels)[p], minlength=2)
        assert counts[0] == counts[1]


def test_time_split_drops_straddling_samples():
    starts = np.arange(0, 96, 2)
    spans = np.stack([starts, starts + 5], 1)  # windows of 5 frames in [0, 100)
    parts = split_by_time(spans, [0.5, 0.3, 0.2])
    for name, (lo, hi) in {"train": (0, 50), "val": (50, 80), "test": (80, 100)}.items():
        chosen = spans[parts[name]]
        assert chosen.min() >= lo and chosen.max() <= hi
    kept = sum(len(p) for p in parts.values())
    assert kept == len(spans) - 4  # starts 46, 48 (cross 50) and 76, 78 (cross 80) dropped


def test_split_dataset_on_real_datasets():
    ds = SimilarMotions(num_samples=30, frames=2, image_size=16)
    parts = split_dataset(ds, by="random", fractions=[0.5, 0.5, 0.0])
    assert len(parts["train"]) == 15 and len(parts["test"]) == 0
    by_clip = split_dataset(ds, by="clip", fractions=[0.6, 0.2, 0.2])
    assert sum(len(p) for p in by_clip.values()) == 30
    with pytest.raises(ValueError, match=r"split by time needs .* 'spans'"):
        split_dataset(ds, by="time")
    with pytest.raises(ValueError, match=r"by must be one of"):
        split_dataset(ds, by="video")
