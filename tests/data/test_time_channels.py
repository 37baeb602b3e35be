import numpy as np
import pytest
import torch

from convlstm.data import TimeChannelClips, burst_labels, frame_differences


def test_burst_labels_on_a_hand_made_series():
    y = [9, 9, 0.00, 0.00, 0.50, 0.30, 0.30, 0.31, 0.30, 0.32, 0.31, 0.30]
    # frames 2..8 have a clip and a horizon (T = 13 frames, last = 13 - 2 - 3 = 8):
    #  i=2: W=[0, 0, .5, .3] rises -> 1;  i=3: W=[0, .5, .3, .3] -> 1
    #  i=4: y_i = .5 is the top of W -> 0;  i>=5: range(W) <= .02 < min_range -> 0
    labels = burst_labels(y, horizon=3, min_range=0.1, fraction=0.1, first=2)
    assert labels.dtype == np.int64 and len(labels) == 13
    np.testing.assert_array_equal(labels, [0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0])
    # y_i <= min(W) + 0.1 range(W) is inclusive: 0.02 <= 0 + 0.1 * 0.2
    y2 = [0.02, 0.0, 0.2, 0.03, 0.0, 0.2]
    np.testing.assert_array_equal(
        burst_labels(y2, horizon=2, min_range=0.001, fraction=0.1, first=0), [1, 1, 0, 0, 0, 0, 0]
    )


def test_burst_labels_defaults_match_a_direct_loop():
    y = np.random.default_rng(0).random(200) * 0.01
    labels = burst_labels(y)  # horizon 45, min_range 0.001, fraction 0.1, first 119
    expected = np.zeros(201, dtype=np.int64)
    for i in range(119, 201 - 2 - 45 + 1):
        w = y[i : i + 46]
        expected[i] = (w.max() - w.min() >= 0.001) and y[i] <= w.min() + 0.1 * (w.max() - w.min())
    np.testing.assert_array_equal(labels, expected)
    assert labels[:119].sum() == 0 and labels[155:].sum() == 0 and labels.sum() > 0
    assert burst_labels(y[:100]).sum() == 0  # too short for any full clip + horizon


def test_frame_differences():
    frames = np.zeros((4, 3, 5), np.uint8)
    frames[1] = 10
    frames[2, 0] = 255  # one row of 5 of 15 pixels jumps to 255 from 0
    y = frame_differences(frames)
    np.testing.assert_allclose(y, [10 / 255, (5 * 245 + 10 * 10) / 15 / 255, 1 / 3])
    np.testing.assert_allclose(
        frame_differences(torch.from_numpy(frames).float() / 255), y, rtol=1e-6
    )
    np.testing.assert_allclose(frame_differences(frames, chunk=1), y)
    with pytest.raises(ValueError, match=r"T >= 2"):
        frame_differences(frames[:1])


def test_clips_from_an_array(tmp_path):
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (60, 4, 4), dtype=np.uint8)
    frames[30:34] = 0  # a still period
    np.save(tmp_path / "fish.npy", frames)
    ds = TimeChannelClips(str(tmp_path / "fish.npy"), slices=5, slice_frames=2, horizon=4)
    assert ds.frame_index[0] == 9 and ds.frame_index[-1] == 60 - 2 - 4 and len(ds) == 46
    clip, label = ds[3]  # frame 12: frames 3..12 in 5 slices of 2
    assert clip.shape == (5, 2, 4, 4)
    np.testing.assert_allclose(clip.reshape(10, 4, 4).numpy() * 255, frames[3:13], atol=1e-4)
    np.testing.assert_array_equal(clip[1, 0].numpy() * 255, frames[5].astype(np.float32))
    expected = burst_labels(frame_differences(frames), 4, 0.001, 0.1, 9)
    np.testing.assert_array_equal(ds.labels, expected[9:55])
    assert int(label) == expected[12]


def test_default_layout_and_time_split(tmp_path):
    frames = np.random.default_rng(1).random((1000, 2, 2)).astype(np.float32)
    np.save(tmp_path / "long.npy", frames)
    ds = TimeChannelClips(str(tmp_path / "long.npy"))
    assert ds[0][0].shape == (30, 4, 2, 2) and ds.frame_index[0] == 119
    path = str(tmp_path / "long.npy")
    train, val, test = (
        TimeChannelClips(path, split=s, split_fractions=[0.6, 0.2, 0.2])
        for s in ("train", "val", "test")
    )
    # clip [i-119, i] and label horizon up to frame i+46 stay inside each part
    assert train.spans.min() >= 0 and train.spans.max() <= 600
    assert val.spans.min() >= 600 and val.spans.max() <= 800 and test.spans.min() >= 800
    assert (len(train), len(val), len(test)) == (553 - 119 + 1, 753 - 719 + 1, 953 - 919 + 1)
    with pytest.warns(UserWarning, match=r"split 'val' .* too short"):
        TimeChannelClips(path, split="val", split_fractions=[0.9, 0.05, 0.05])
    np.save(tmp_path / "short.npy", frames[:150])
    with pytest.raises(ValueError, match=r"has 150 frames; a clip of 120 .* at least 166"):
        TimeChannelClips(str(tmp_path / "short.npy"))


def test_clips_from_a_video_use_a_cache(tmp_path, video_writer, ramp):
    pytest.importorskip("av")
    path = video_writer(tmp_path / "fish.mp4", ramp(40, size=16, step=5))
    ds = TimeChannelClips(str(path), slices=3, slice_frames=4, horizon=5, size=8)
    cache = list((tmp_path / ".convlstm_cache").glob("*.u8"))
    assert len(cache) == 1 and cache[0].stat().st_size == 40 * 8 * 8
    clip, _ = ds[0]  # frame 11: frames 0..11
    assert clip.shape == (3, 4, 8, 8)
    np.testing.assert_allclose(clip.mean((2, 3)).flatten().numpy() * 255, 5 * np.arange(12), atol=3)
    again = TimeChannelClips(str(path), slices=3, slice_frames=4, horizon=5, size=8)
    assert torch.equal(again[0][0], clip)
    cache_dir = tmp_path / ".convlstm_cache"
    assert len(list(cache_dir.glob("*.u8"))) == 1  # decoded once, reused
    assert len(list(cache_dir.glob("*.diff.npy"))) == 1
    np.testing.assert_allclose(again.differences, ds.differences)
    np.testing.assert_allclose(ds.differences[:5], 5 / 255, atol=1.5 / 255)  # ramp of 5/frame
    (tmp_path / "bad.mp4").write_bytes(b"garbage")
    with pytest.raises(ValueError, match=r"cannot decode video .*bad.mp4"):
        TimeChannelClips(str(tmp_path / "bad.mp4"), cache_dir=str(tmp_path / "c"))
