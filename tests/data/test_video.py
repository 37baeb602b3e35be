import json
import warnings

import numpy as np
import pytest
import torch

from convlstm.data import FrameFolder, VideoFolder

pytest.importorskip("av")


def _tree(tmp_path, video_writer, ramp):
    root = tmp_path / "videos"
    video_writer(root / "walk" / "a.mp4", ramp(24, step=10))
    video_writer(root / "walk" / "b.mp4", ramp(12, step=10, offset=5))
    video_writer(root / "run" / "c.mp4", ramp(30, step=8))
    return root


def test_clips_labels_and_values(tmp_path, video_writer, ramp):
    root = _tree(tmp_path, video_writer, ramp)
    ds = VideoFolder(str(root), frames=4, frame_step=2, clip_stride=5, size=16, grayscale=True)
    assert ds.classes == ["run", "walk"]
    # span 7: c (30 frames) starts 0..20 step 5 -> 5; a (24) -> 4; b (12) -> 2
    assert len(ds) == 11 and ds.labels.tolist() == [0] * 5 + [1] * 6
    clip, label = ds[6]  # a.mp4, start 5: frames 5, 7, 9, 11
    assert clip.shape == (4, 1, 16, 16) and clip.dtype == torch.float32 and int(label) == 1
    np.testing.assert_allclose(clip.mean((1, 2, 3)).numpy() * 255, [50, 70, 90, 110], atol=4)
    rgb = VideoFolder(str(root), frames=3, size=[8, 12])
    assert rgb[0][0].shape == (3, 3, 8, 12)
    assert ds.summary()["videos"] == 3 and ds.summary()["skipped"] == 0


def test_index_is_cached_and_refreshed(tmp_path, video_writer, ramp, monkeypatch):
    root = _tree(tmp_path, video_writer, ramp)
    VideoFolder(str(root), frames=4)
    index = json.loads((root / ".convlstm_index.json").read_text())
    assert index["videos"]["run/c.mp4"]["frames"] == 30
    import convlstm.data._av as av_helpers

    calls = []
    original = av_helpers.probe_video
    monkeypatch.setattr(
        av_helpers, "probe_video", lambda *a, **k: calls.append(a) or original(*a, **k)
    )
    VideoFolder(str(root), frames=4)
    assert calls == []  # nothing re-probed
    video_writer(root / "run" / "c.mp4", ramp(20, step=8))  # changed file
    ds = VideoFolder(str(root), frames=4, clip_stride=4)
    assert len(calls) == 1 and ds.sources[0][2] == 20
    elsewhere = tmp_path / "cache"
    VideoFolder(str(root), frames=4, cache_dir=str(elsewhere))
    assert len(list(elsewhere.glob("video-index-*.json"))) == 1


def test_corrupt_truncated_and_short_videos_are_skipped(tmp_path, video_writer, ramp):
    root = _tree(tmp_path, video_writer, ramp)
    (root / "run" / "junk.mp4").write_bytes(b"\x00" * 1000)
    good = (root / "walk" / "a.mp4").read_bytes()
    (root / "walk" / "cut.mp4").write_bytes(good[: len(good) // 2])
    with pytest.warns(UserWarning) as record:
        ds = VideoFolder(str(root), frames=14, size=8)
    messages = " ".join(str(w.message) for w in record)
    assert "skipped 2 unreadable videos" in messages and "junk.mp4" in messages
    assert "cut.mp4" in messages and "b.mp4: 12 frames, a clip needs 14" in messages
    assert "run/junk.mp4: [Errno" in messages or "run/junk.mp4: Invalid data" in messages
    summary = ds.summary()
    assert summary["videos"] == 3 and summary["skipped"] == 3  # 2 corrupt + 1 short
    assert len(ds) == 3  # c: 2 clips of 14 in 30, a: 1 in 24
    with pytest.warns(UserWarning) as record:
        padded = VideoFolder(str(root), frames=14, size=8, short_clips="pad")
    assert "padded 1 videos shorter than a clip" in str(record[-1].message)
    assert len(padded) == 4


def test_failure_while_reading_is_skipped_not_raised(tmp_path, video_writer, ramp):
    root = _tree(tmp_path, video_writer, ramp)
    ds = VideoFolder(str(root), frames=4, size=8)
    (root / "run" / "c.mp4").write_bytes(b"broken after indexing")
    with pytest.warns(UserWarning, match=r"skipping unreadable video .*c.mp4"):
        clip, label = ds[0]
    assert int(label) == 1  # replaced by the next readable clip (class walk)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds[1]  # the failed video is remembered: no second warning
    assert ds.summary()["failed_reads"] == 1


def test_splits_by_video_and_jitter(tmp_path, video_writer, ramp):
    root = tmp_path / "many"
    for c in ("x", "y"):
        for i in range(5):
            video_writer(root / c / f"{i}.mp4", ramp(10, step=20), codec="mpeg4")
    parts = {
        s: VideoFolder(
            str(root), frames=2, clip_stride=3, size=8, split=s, split_fractions=[0.6, 0.2, 0.2]
        )
        for s in ("train", "val", "test")
    }
    groups = [set(p.groups) for p in parts.values()]
    assert [len(g) for g in groups] == [6, 2, 2]  # stratified: 3+1+1 videos per class
    assert not (groups[0] & groups[1] or groups[0] & groups[2] or groups[1] & groups[2])
    assert sorted(parts["val"].labels.tolist()) == [0] * 3 + [1] * 3
    torch.manual_seed(0)
    jittered = VideoFolder(str(root), frames=2, clip_stride=3, size=8, temporal_jitter=2)
    firsts = {round(jittered[1][0][0].mean().item() * 255 / 20) for _ in range(20)}
    assert firsts == {1, 2, 3, 4, 5}  # start 3 moved by -2..+2


def test_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"video folder not found: .*nowhere"):
        VideoFolder(str(tmp_path / "nowhere"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"no class folders under .*empty"):
        VideoFolder(str(tmp_path / "empty"))
    (tmp_path / "novideo" / "cls").mkdir(parents=True)
    (tmp_path / "novideo" / "cls" / "notes.txt").write_text("hi")
    with pytest.raises(ValueError, match=r"no videos \(.mp4, .avi, .mkv, .webm\) found under"):
        VideoFolder(str(tmp_path / "novideo"))


def _png_tree(tmp_path, ramp):
    from PIL import Image

    root = tmp_path / "frames"
    for c, n in (("a", 9), ("b", 6)):
        folder = root / c / "clip1"
        folder.mkdir(parents=True)
        for t, frame in enumerate(ramp(n, size=10, step=10)):
            Image.fromarray(frame).save(folder / f"img{t}.png")  # natural order: img2 < img10
    (root / "b" / "empty_clip").mkdir()
    return root


def test_frame_folder(tmp_path, ramp):
    pytest.importorskip("PIL")
    root = _png_tree(tmp_path, ramp)
    with pytest.warns(UserWarning, match=r"skipped 1 empty frame folders .*empty_clip"):
        ds = FrameFolder(str(root), frames=3, clip_stride=3, grayscale=True)
    assert len(ds) == 3 + 2 and ds.labels.tolist() == [0, 0, 0, 1, 1]
    clip, label = ds[1]
    assert clip.shape == (3, 1, 10, 10) and int(label) == 0
    np.testing.assert_allclose(clip[:, 0, 0, 0].numpy() * 255, [30, 40, 50], atol=0.5)
    with pytest.warns(UserWarning, match=r"empty_clip"):
        rgb = FrameFolder(str(root), frames=2, size=[4, 6])
    assert rgb[0][0].shape == (2, 3, 4, 6)
    (root / "a" / "clip1" / "img4.png").write_bytes(b"not a png")
    with pytest.warns(UserWarning, match=r"skipping unreadable frame folder .*clip1 .*img4.png"):
        clip, label = ds[1]
    assert int(label) == 1


def test_other_containers_options_and_class_subset(tmp_path, video_writer, ramp):
    root = _tree(tmp_path, video_writer, ramp)
    video_writer(root / "run" / "d.mkv", ramp(18, step=10))  # no frame count in the header
    video_writer(root / "run" / "e.avi", ramp(9, step=10))
    ds = VideoFolder(str(root), frames=3, size=8, classes=["walk", "run"], max_clips_per_video=2)
    assert ds.classes == ["walk", "run"]
    frames = {p.rsplit("/", 1)[-1]: n for p, _, n in ds.sources}
    assert frames == {"a.mp4": 24, "b.mp4": 12, "c.mp4": 30, "d.mkv": 18, "e.avi": 9}
    assert len(ds) == 5 * 2  # every video has >= 2 clips of 3, capped at 2 evenly spaced
    assert ds.index[ds.labels == 1][:, 1].tolist()[:2] == [0, 27]  # c.mp4: first and last
    assert ds[ds.labels.tolist().index(1)][0].shape == (3, 3, 8, 8)
    with pytest.raises(ValueError, match=r"class folders \['swim'\] not found"):
        VideoFolder(str(root), classes=["swim"])
