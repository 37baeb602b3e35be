import pytest

import convlstm.data as data
from convlstm.data import MovingDigits, create_dataset, list_datasets


def test_every_public_class_is_registered():
    names = list_datasets()
    for expected in (
        "moving_digits",
        "similar_motions",
        "radar_echoes",
        "arrays",
        "xarray",
        "video_folder",
        "frame_folder",
        "time_channel_clips",
        "moving_digits_file",
    ):
        assert expected in names
    for name in (
        "MovingDigits",
        "SimilarMotions",
        "RadarEchoes",
        "ArraySequences",
        "XarraySequences",
        "VideoFolder",
        "FrameFolder",
        "TimeChannelClips",
    ):
        assert name in data.__all__


def test_create_from_plain_config():
    ds = create_dataset("moving_digits", split="test", num_samples=3, seed=1)
    assert isinstance(ds, MovingDigits) and len(ds) == 3
    assert isinstance(create_dataset("MovingDigits", num_samples=2), MovingDigits)
    with pytest.raises(KeyError, match=r"unknown data set 'mnist'; known: arrays"):
        create_dataset("mnist")
    with pytest.raises(
        TypeError, match=r"unknown config keys \['frames'\]; accepted: \['split'"
    ):
        create_dataset("moving_digits", frames=3)


@pytest.mark.parametrize(
    ("module", "extra", "build"),
    [
        ("xarray", "data", lambda tmp: data.XarraySequences(str(tmp / "x.nc"), "v")),
        ("av", "video", lambda tmp: data.VideoFolder(str(tmp))),
        ("sklearn", "data", lambda tmp: data.moving_digits._sklearn_digits.__wrapped__(28)),
    ],
)
def test_optional_dependency_error_names_the_extra(module, extra, build, monkeypatch, tmp_path):
    import builtins
    import sys

    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == module or name.startswith(module + "."):
            raise ImportError(f"no {module}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    for name in [m for m in sys.modules if m == module or m.startswith(module + ".")]:
        monkeypatch.delitem(sys.modules, name)
    with pytest.raises(ImportError, match=rf"pip install 'convlstm\[{extra}\]'"):
        build(tmp_path)


def test_batches_are_b_t_c_h_w():
    from torch.utils.data import DataLoader

    configs = {
        "moving_digits": dict(num_samples=4, input_frames=3, output_frames=2),
        "radar_echoes": dict(num_samples=4, input_frames=3, output_frames=2, image_size=16),
        "similar_motions": dict(num_samples=4, frames=5, image_size=16),
    }
    shapes = {}
    for name, config in configs.items():
        first, second = next(iter(DataLoader(create_dataset(name, **config), batch_size=4)))
        shapes[name] = (tuple(first.shape), tuple(second.shape))
    assert shapes == {
        "moving_digits": ((4, 3, 1, 64, 64), (4, 2, 1, 64, 64)),
        "radar_echoes": ((4, 3, 1, 16, 16), (4, 2, 1, 16, 16)),
        "similar_motions": ((4, 5, 1, 16, 16), (4,)),
    }
