"""A configuration that leaves a data set (or the chosen split of it) without a single
sample is refused when the data set is built, with the options that caused it, instead
of reaching training or evaluation empty."""

import numpy as np
import pytest

from convlstm.data import ArraySequences, FrameFolder, VideoFolder, XarraySequences

FRAMES = np.zeros((20, 3, 6, 5), np.float32)  # T N H W


def test_array_time_split_without_a_window(tmp_path):
    np.save(tmp_path / "a.npy", FRAMES)
    with pytest.raises(ValueError) as info:
        ArraySequences(
            str(tmp_path / "a.npy"), input_frames=3, output_frames=2,
            split="val", split_fractions=[0.8, 0.15, 0.05],
        )  # fmt: skip
    message = str(info.value)
    assert message.startswith(f"split 'val' of {tmp_path / 'a.npy'} has no samples")
    assert "frames [16, 19)" in message and "input_frames + output_frames = 5" in message
    assert "split_fractions [0.8, 0.15, 0.05]" in message and "\n" not in message


def test_array_sequence_split_without_a_sequence(tmp_path):
    with pytest.raises(ValueError) as info:
        ArraySequences(FRAMES, input_frames=2, output_frames=1, split="test", split_by="sequence")
    message = str(info.value)
    assert message.startswith("split 'test' of <array> has no samples")
    assert "none of its 3 sequences" in message and "split_fractions [0.7, 0.15, 0.15]" in message


def test_array_without_sequences(tmp_path):
    with pytest.raises(ValueError, match=r"the array in <array> holds no sequences \(axes TNHW, "):
        ArraySequences(np.zeros((20, 0, 6, 5)), input_frames=2, output_frames=1)


def test_array_whole_set_shorter_than_a_window(tmp_path):
    with pytest.raises(
        ValueError, match=r"20 frames .* shorter than input_frames \+ output_frames"
    ):
        ArraySequences(FRAMES, input_frames=15, output_frames=6)


def test_xarray_split_without_a_window(tmp_path):
    xr = pytest.importorskip("xarray")
    pytest.importorskip("h5netcdf")
    path = tmp_path / "v.nc"
    xr.Dataset({"v": (("time", "y", "x"), np.zeros((20, 3, 3), np.float32))}).to_netcdf(
        path, engine="h5netcdf"
    )
    with pytest.raises(ValueError) as info:
        XarraySequences(str(path), "v", 3, 1, split="test", split_fractions=[0.8, 0.1, 0.1])
    message = str(info.value)
    assert message.startswith(f"split 'test' of variable 'v' in {path} has no samples")
    assert "time steps [18, 20)" in message and "input_frames + output_frames = 4" in message
    assert "split_fractions [0.8, 0.1, 0.1]" in message


def test_video_split_without_a_video(tmp_path, video_writer, ramp):
    root = tmp_path / "videos"
    for name in ("a", "b"):
        video_writer(root / "walk" / f"{name}.mp4", ramp(8))
    with pytest.raises(ValueError) as info:
        VideoFolder(str(root), frames=4, size=8, split="test")
    message = str(info.value)
    assert message.startswith(f"split 'test' of the 2 videos under {root} has no samples")
    assert "split_by='clip'" in message and "split_fractions [0.7, 0.15, 0.15]" in message


def test_frame_folder_time_split_without_a_clip(tmp_path, ramp):
    pytest.importorskip("PIL")
    from PIL import Image

    folder = tmp_path / "frames" / "walk" / "clip1"
    folder.mkdir(parents=True)
    for t, frame in enumerate(ramp(6, size=4)):
        Image.fromarray(frame).save(folder / f"{t}.png")
    with pytest.raises(ValueError) as info:
        FrameFolder(str(tmp_path / "frames"), frames=2, split="test", split_by="time")
    message = str(info.value)
    assert message.startswith(f"split 'test' of the 1 frame folders under {tmp_path / 'frames'}")
    assert "split_by='time'" in message and "frames=2" in message
