"""The clip index cache (``.convlstm_index.json``) is checked before it is trusted: an
index with impossible values is rebuilt from the videos, with one warning naming it."""

import json
import re
import warnings

import pytest

from convlstm.data import VideoFolder

pytest.importorskip("av")

FRAMES = {"run/c.mp4": 30, "walk/a.mp4": 24, "walk/b.mp4": 12}


@pytest.fixture
def indexed(tmp_path, video_writer, ramp):
    """A video folder whose index has been written once, and that index's path."""
    root = tmp_path / "videos"
    video_writer(root / "walk" / "a.mp4", ramp(24, step=10))
    video_writer(root / "walk" / "b.mp4", ramp(12, step=10, offset=5))
    video_writer(root / "run" / "c.mp4", ramp(30, step=8))
    VideoFolder(str(root), frames=4, size=8)
    index = root / ".convlstm_index.json"
    assert {k: v["frames"] for k, v in json.loads(index.read_text())["videos"].items()} == FRAMES
    return root, index


def _edit(index, change):
    data = json.loads(index.read_text())
    change(data)
    index.write_text(json.dumps(data))


def _set(rel, key, value):
    return lambda data: data["videos"][rel].__setitem__(key, value)


def _delete(rel, key):
    return lambda data: data["videos"][rel].pop(key)


BAD_INDEXES = {
    "negative frames": (_set("run/c.mp4", "frames", -5), r"'run/c.mp4'.*frames.* -5"),
    "huge frames": (_set("walk/b.mp4", "frames", 10**12), r"'walk/b.mp4'.*frames.* 10+"),
    "frames a string": (_set("run/c.mp4", "frames", "many"), r"frames.*'many'"),
    "frames a float": (_set("walk/a.mp4", "frames", 12.5), r"frames.*12.5"),
    "frames a bool": (_set("walk/a.mp4", "frames", True), r"frames.*True"),
    "size missing": (_delete("walk/a.mp4", "size"), r"'walk/a.mp4'.*size.*None"),
    "frames missing": (_delete("run/c.mp4", "frames"), r"'run/c.mp4'.*frames.*None"),
    "error not text": (_set("run/c.mp4", "error", 7), r"'run/c.mp4'.*error.*7"),
    "entry a list": (
        lambda d: d["videos"].__setitem__("run/c.mp4", [1, 2]),
        r"'run/c.mp4'.*expected an object, got list",
    ),
    "videos a list": (lambda d: d.__setitem__("videos", [1]), r"'videos'.*got list"),
}


@pytest.mark.parametrize("case", list(BAD_INDEXES))
def test_absurd_index_is_rebuilt_with_one_warning(indexed, case):
    root, index = indexed
    change, reason = BAD_INDEXES[case]
    _edit(index, change)
    with pytest.warns(UserWarning) as record:
        ds = VideoFolder(str(root), frames=4, size=8)
    assert len(record) == 1
    message = str(record[0].message)
    assert message.startswith(f"ignoring the video index {index}: ") and "\n" not in message
    assert "re-probing" in message
    assert re.search(reason, message), message
    assert {p.split("videos/")[1]: n for p, _, n in ds.sources} == FRAMES
    rebuilt = json.loads(index.read_text())["videos"]
    assert {k: v["frames"] for k, v in rebuilt.items()} == FRAMES


@pytest.mark.parametrize(
    "text, reason",
    [("{not json", "not valid JSON"), ("[1, 2]", "expected a JSON object, got list")],
)
def test_unreadable_index_is_rebuilt_with_one_warning(indexed, text, reason):
    root, index = indexed
    index.write_text(text)
    with pytest.warns(UserWarning) as record:
        ds = VideoFolder(str(root), frames=4, size=8)
    assert len(record) == 1 and reason in str(record[0].message)
    assert str(index) in str(record[0].message)
    assert sorted(n for _, _, n in ds.sources) == [12, 24, 30]
    assert json.loads(index.read_text())["videos"]["run/c.mp4"]["frames"] == 30


def test_entries_of_deleted_videos_are_dropped_quietly(indexed):
    root, index = indexed
    (root / "walk" / "b.mp4").unlink()
    _edit(index, lambda d: d["videos"].__setitem__("gone/x.mp4", dict(d["videos"]["run/c.mp4"])))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a deleted video is routine, not a damaged index
        ds = VideoFolder(str(root), frames=4, size=8)
    assert sorted(p.split("videos/")[1] for p, _, _ in ds.sources) == ["run/c.mp4", "walk/a.mp4"]
    assert sorted(json.loads(index.read_text())["videos"]) == ["run/c.mp4", "walk/a.mp4"]


def test_index_of_another_version_is_replaced_quietly(indexed):
    root, index = indexed
    _edit(index, lambda d: d.update(version=0, videos={"run/c.mp4": {"frames": -1}}))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = VideoFolder(str(root), frames=4, size=8)
    assert sorted(n for _, _, n in ds.sources) == [12, 24, 30]
    assert json.loads(index.read_text())["version"] == 1


@pytest.mark.parametrize(
    "change, reason",
    [
        (lambda d: d.pop("version"), "'version' must be 1, got None"),
        (lambda d: d.__setitem__("count", "no"), "'count' must be true or false, got 'no'"),
    ],
)
def test_index_without_version_or_mode_is_rebuilt(indexed, change, reason):
    root, index = indexed
    _edit(index, change)
    with pytest.warns(UserWarning, match=re.escape(reason)):
        VideoFolder(str(root), frames=4, size=8)
    assert json.loads(index.read_text())["version"] == 1


def test_index_counted_the_other_way_is_reprobed_quietly(indexed, monkeypatch):
    root, index = indexed
    import convlstm.data._av as av_helpers

    counted = []
    original = av_helpers.probe_video
    monkeypatch.setattr(
        av_helpers, "probe_video", lambda *a, **k: counted.append(k["count"]) or original(*a, **k)
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        VideoFolder(str(root), frames=4, size=8, count_frames=True)
    assert counted == [True] * 3 and json.loads(index.read_text())["count"] is True
