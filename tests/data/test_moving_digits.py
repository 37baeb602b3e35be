import gzip

import numpy as np
import pytest
import torch

from convlstm.data import MovingDigits, MovingDigitsFile, read_idx_images


def test_shapes_range_and_determinism():
    ds = MovingDigits(num_samples=4, seed=3)
    inputs, targets = ds[1]
    assert inputs.shape == (10, 1, 64, 64) and targets.shape == (10, 1, 64, 64)
    assert inputs.dtype == torch.float32
    assert inputs.min() >= 0 and inputs.max() <= 1 and inputs.max() > 0.5
    again = MovingDigits(num_samples=4, seed=3)[1]
    assert torch.equal(inputs, again[0]) and torch.equal(targets, again[1])
    assert not torch.equal(inputs, MovingDigits(num_samples=4, seed=4)[1][0])
    assert not torch.equal(ds[0][0], ds[1][0])


def test_speed_is_3_6_px_per_frame_and_bounces():
    ds = MovingDigits(num_samples=40, num_digits=1, seed=0)
    steps, bounced = [], 0
    for i in range(40):
        path = ds.trajectories(i)[0]  # (T, 2)
        assert path.min() >= 0 and path.max() <= 36  # inside the free range
        velocity = np.diff(path, axis=0)
        norms = np.linalg.norm(velocity, axis=1)
        free = np.all((path[1:] > 0) & (path[1:] < 36) & (path[:-1] > 0) & (path[:-1] < 36), 1)
        steps.extend(norms[free])
        # a bounce flips the sign of a velocity component
        flips = np.sign(velocity[1:]) * np.sign(velocity[:-1]) < 0
        bounced += int(flips.any())
    np.testing.assert_allclose(steps, 3.6, atol=1e-9)
    assert bounced > 10  # 20 frames of 3.6 px in a 36 px range: most sequences bounce


def test_rendering_matches_integer_positions_and_max_merge():
    ds = MovingDigits(num_samples=3, num_digits=1, seed=1)
    frames = ds.sequence(0)[:, 0]
    path = ds.trajectories(0)[0].astype(int)
    for t in range(20):
        rows, cols = np.nonzero(frames[t].numpy() > 0.05)
        assert rows.min() >= path[t, 0] and rows.max() < path[t, 0] + 28
        assert cols.min() >= path[t, 1] and cols.max() < path[t, 1] + 28
    two = MovingDigits(num_samples=3, num_digits=2, seed=5)
    merged = two.sequence(2)
    assert merged.max() <= 1.0  # max merge, not a sum


def test_epochs_and_fixed_test_split():
    train = MovingDigits(num_samples=2, seed=0)
    first = train[0][0]
    train.set_epoch(1)
    assert not torch.equal(first, train[0][0])
    train.set_epoch(0)
    assert torch.equal(first, train[0][0])
    test = MovingDigits(split="test", num_samples=2, seed=0)
    before = test[0][0]
    test.set_epoch(5)
    assert torch.equal(before, test[0][0])
    assert not torch.equal(before, first)
    assert len(train.digit_images) == 1438 and len(test.digit_images) == 359


def test_idx_reader_and_digits_from_idx(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (5, 28, 28), dtype=np.uint8)
    header = bytes([0, 0, 8, 3]) + np.array([5, 28, 28], ">u4").tobytes()
    path = tmp_path / "train-images-idx3-ubyte.gz"
    with gzip.open(path, "wb") as fh:
        fh.write(header + images.tobytes())
    np.testing.assert_array_equal(read_idx_images(path), images)
    ds = MovingDigits(num_samples=2, digits=str(path), holdout=0, num_digits=1)
    np.testing.assert_allclose(ds.digit_images, images / 255.0, atol=1e-6)
    assert ds[0][0].shape == (10, 1, 64, 64)

    truncated = tmp_path / "short-idx3-ubyte"
    truncated.write_bytes(header + images.tobytes()[:100])
    with pytest.raises(ValueError, match=r"truncated"):
        read_idx_images(truncated)
    bad = tmp_path / "labels-idx1-ubyte"
    bad.write_bytes(bytes([0, 0, 8, 1]) + b"\0" * 8)
    with pytest.raises(ValueError, match=r"00 00 08 03"):
        read_idx_images(bad)
    with pytest.raises(FileNotFoundError, match=r"nope"):
        MovingDigits(digits=str(tmp_path / "nope"))


def test_moving_mnist_test_file(tmp_path):
    data = np.random.default_rng(0).integers(0, 256, (20, 3, 64, 64), dtype=np.uint8)
    path = tmp_path / "mnist_test_seq.npy"
    np.save(path, data)
    ds = MovingDigitsFile(str(path))
    assert len(ds) == 3
    inputs, targets = ds[2]
    np.testing.assert_allclose(inputs[:, 0].numpy(), data[:10, 2] / 255, atol=1e-6)
    np.testing.assert_allclose(targets[:, 0].numpy(), data[10:, 2] / 255, atol=1e-6)
    with pytest.raises(ValueError, match=r"20 frames"):
        MovingDigitsFile(str(path), input_frames=15, output_frames=10)
    np.save(tmp_path / "flat.npy", data[:, 0])
    with pytest.raises(ValueError, match=r"expected shape \(T, N, H, W\)"):
        MovingDigitsFile(str(tmp_path / "flat.npy"))


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"split"):
        MovingDigits(split="training")
    with pytest.raises(ValueError, match=r"digit_size"):
        MovingDigits(image_size=20)
