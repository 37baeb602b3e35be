"""Preprocessing: what every data set declares is exactly what its samples went through."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from convlstm.data import ArraySequences, MovingDigits, Preprocessing, TimeChannelClips
from convlstm.data.preprocessing import dataset_preprocessing


def test_steps_apply_in_order_and_invert():
    pre = Preprocessing(uint8="unit", steps=(
        {"op": "multiply", "factor": 2.0},
        {"op": "normalize", "mean": [1.0, 2.0], "std": [0.5, 4.0]},
    ))  # fmt: skip
    x = torch.rand(3, 5, 2, 4, 4)
    y = pre(x)
    torch.testing.assert_close(y[:, :, 1], (x[:, :, 1] * 2 - 2) / 4)
    torch.testing.assert_close(pre.invert(y), x)
    raw = (np.random.default_rng(0).random((5, 2, 4, 4)) * 255).astype(np.uint8)
    torch.testing.assert_close(pre.to_float(raw), torch.from_numpy(raw).float() / 255)
    assert Preprocessing(uint8="keep").to_float(raw).max() > 1


def test_fill_nan_and_stack_time():
    pre = Preprocessing(steps=({"op": "fill_nan", "value": -1.0},
                               {"op": "stack_time", "frames": 2}))  # fmt: skip
    x = torch.arange(4 * 1 * 2 * 2, dtype=torch.float32).reshape(4, 1, 2, 2)
    x[0, 0, 0, 0] = float("nan")
    y = pre(x)
    assert y.shape == (2, 2, 2, 2) and y[0, 0, 0, 0] == -1.0
    torch.testing.assert_close(y[1, 1], x[3, 0])
    assert pre.frames_per_step == 2
    with pytest.raises(ValueError, match="3 frames cannot be cut into slices of 2"):
        pre(x[:3])


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"steps": [{"op": "log"}]}, "expected a step"),
        ({"steps": [{"op": "normalize", "mean": [0.0], "std": [0.0]}]}, "std > 0"),
        ({"steps": [{"op": "multiply"}]}, "takes keys ['factor']"),
        ({"uint8": "scale"}, "uint8: expected one of"),
        ({"reader": {"kind": "tape"}}, "'kind' must be one of"),
        ({"colour": 1}, "expected a mapping with keys"),
    ],
)
def test_from_dict_names_what_is_wrong(data, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        Preprocessing.from_dict(data)


def test_round_trip_through_json():
    pre = Preprocessing({"kind": "video", "grayscale": True, "size": [8, 8], "frame_step": 2},
                        "unit", ({"op": "normalize", "mean": [0.5], "std": [0.25]},))  # fmt: skip
    assert Preprocessing.from_dict(pre.to_dict()) == pre


def test_time_channel_clips_declare_what_they_do(tmp_path):
    frames = (np.random.default_rng(1).random((60, 12, 10)) * 255).astype(np.uint8)
    np.save(tmp_path / "video.npy", frames)
    clips = TimeChannelClips(str(tmp_path / "video.npy"), slices=3, slice_frames=4, horizon=5)
    pre = dataset_preprocessing(clips)
    i = int(clips.frame_index[2])
    raw = frames[i - 11 : i + 1][:, None]  # the clip's 12 frames, (T, 1, H, W) uint8
    torch.testing.assert_close(pre(pre.to_float(raw)), clips[2][0], rtol=0, atol=0)


def test_arrays_and_generated_data_declare_their_units(tmp_path):
    np.save(tmp_path / "a.npy", np.zeros((30, 2, 8, 8), dtype=np.float32))
    scaled = ArraySequences(str(tmp_path / "a.npy"), axes="TNHW", input_frames=2,
                            output_frames=1, scale=0.5)  # fmt: skip
    assert dataset_preprocessing(scaled).steps == ({"op": "multiply", "factor": 0.5},)
    assert dataset_preprocessing(scaled).uint8 == "keep"
    digits = MovingDigits(num_samples=2, image_size=16, digit_size=8)
    assert dataset_preprocessing(digits) == Preprocessing(uint8="unit")
    assert not dataset_preprocessing(torch.utils.data.TensorDataset(torch.zeros(2))).declared
