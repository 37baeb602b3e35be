import pickle

import numpy as np
import pytest
import torch

from convlstm.data import ArraySequences, open_array

DATA = (np.arange(20 * 3 * 6 * 5) % 251).astype(np.uint8).reshape(20, 3, 6, 5)  # T N H W


def _write(kind: str, tmp_path):
    if kind == "npy":
        np.save(tmp_path / "a.npy", DATA)
        return tmp_path / "a.npy", None
    if kind == "npz":
        np.savez(tmp_path / "a.npz", frames=DATA, labels=np.array([2, 0, 1]))
        return tmp_path / "a.npz", "frames"
    if kind == "h5":
        h5py = pytest.importorskip("h5py")
        with h5py.File(tmp_path / "a.h5", "w") as fh:
            fh["group/frames"] = DATA
        return tmp_path / "a.h5", None
    zarr = pytest.importorskip("zarr")
    z = zarr.open_array(
        str(tmp_path / "a.zarr"), mode="w", shape=DATA.shape, dtype="u1", chunks=(4, 1, 6, 5)
    )
    z[:] = DATA
    return tmp_path / "a.zarr", None


@pytest.mark.parametrize("kind", ["npy", "npz", "h5", "zarr"])
def test_round_trip_every_format(kind, tmp_path):
    path, key = _write(kind, tmp_path)
    ds = ArraySequences(str(path), "TNHW", key=key, input_frames=4, output_frames=3, stride=5)
    assert len(ds) == 3 * 3  # starts 0, 5, 10 per sequence (window 7 in 20 frames)
    inputs, targets = ds[4]
    n, start = ds.index[4]
    assert inputs.shape == (4, 1, 6, 5) and targets.shape == (3, 1, 6, 5)
    np.testing.assert_allclose(inputs[:, 0].numpy() * 255, DATA[start : start + 4, n], atol=1e-4)
    np.testing.assert_allclose(
        targets[:, 0].numpy() * 255, DATA[start + 4 : start + 7, n], atol=1e-4
    )
    clone = pickle.loads(pickle.dumps(ds))  # as DataLoader workers get it: reopens lazily
    assert torch.equal(clone[4][0], inputs)


def test_npy_and_npz_are_memory_mapped(tmp_path):
    for kind in ("npy", "npz"):
        path, key = _write(kind, tmp_path)
        assert isinstance(open_array(path, key)[0], np.memmap)


def test_axis_orders_and_channels(tmp_path):
    ntchw = np.random.default_rng(0).random((2, 9, 3, 4, 4)).astype(np.float32)
    np.save(tmp_path / "b.npy", ntchw)
    ds = ArraySequences(
        str(tmp_path / "b.npy"), "NTCHW", input_frames=5, output_frames=4, scale=1.0
    )
    assert len(ds) == 2
    inputs, targets = ds[1]
    np.testing.assert_array_equal(inputs.numpy(), ntchw[1, :5])
    thwc = np.random.default_rng(1).random((12, 4, 4, 2)).astype(np.float32)
    single = ArraySequences(thwc, "THWC", input_frames=2, output_frames=1, stride=3, scale=2.0)
    assert len(single) == 4
    np.testing.assert_allclose(single[1][0].numpy(), 2 * thwc[3:5].transpose(0, 3, 1, 2))


def test_classification_and_splits_without_leakage(tmp_path):
    path, key = _write("npz", tmp_path)
    common = dict(key=key, task="classify", labels="labels", frames=5)
    ds = ArraySequences(str(path), "TNHW", **common)
    clip, label = ds[0]
    assert clip.shape == (5, 1, 6, 5) and label.dtype == torch.long and int(label) == 2
    np.testing.assert_array_equal(np.unique(ds.labels), [0, 1, 2])
    # by time: three contiguous ranges of [0, 20), no window crossing them
    parts = {
        s: ArraySequences(str(path), "TNHW", split=s, split_fractions=[0.5, 0.25, 0.25], **common)
        for s in ("train", "val", "test")
    }
    assert [len(parts[s]) for s in parts] == [3 * 6, 3 * 1, 3 * 1]
    assert parts["train"].spans[:, 1].max() <= 10 and parts["val"].spans.min() >= 10
    assert parts["val"].spans.max() <= 15 and parts["test"].spans.min() >= 15
    # by sequence: disjoint sequences, stratified by label (3 per class, one per split)
    six = tmp_path / "six.npz"
    np.savez(six, frames=np.concatenate([DATA, DATA], 1), labels=np.array([0, 1] * 3))
    seqs = [
        set(
            ArraySequences(
                str(six),
                "TNHW",
                split=s,
                split_by="sequence",
                split_fractions=[0.34, 0.33, 0.33],
                **common,
            ).index[:, 0]
        )
        for s in ("train", "val", "test")
    ]
    assert [len(s) for s in seqs] == [2, 2, 2]
    assert not (seqs[0] & seqs[1] or seqs[0] & seqs[2] or seqs[1] & seqs[2])
    # one sequence per class cannot fill three splits
    with pytest.raises(ValueError, match=r"split 'val' of .*a.npz has no samples"):
        ArraySequences(str(path), "TNHW", split="val", split_by="sequence", **common)


def test_errors_name_file_and_expectation(tmp_path):
    path, _ = _write("npy", tmp_path)
    with pytest.raises(
        ValueError, match=r"axes 'NTCHW' has 5 letters but the array in .*a.npy has 4"
    ):
        ArraySequences(str(path), "NTCHW")
    with pytest.raises(ValueError, match=r"each of the letters"):
        ArraySequences(str(path), "TTHW")
    with pytest.raises(
        ValueError, match=r"20 frames .* shorter than input_frames \+ output_frames = 30"
    ):
        ArraySequences(str(path), "TNHW", input_frames=20)
    with pytest.raises(FileNotFoundError, match=r"missing.npy"):
        ArraySequences(str(tmp_path / "missing.npy"))
    with pytest.raises(ValueError, match=r"labels has 2 entries .* 3 sequences"):
        ArraySequences(str(path), "TNHW", task="classify", labels=[0, 1])
    np.savez_compressed(tmp_path / "c.npz", x=DATA)
    with pytest.raises(ValueError, match=r"compressed .* cannot be memory-mapped"):
        ArraySequences(str(tmp_path / "c.npz"))
    assert len(ArraySequences(str(tmp_path / "c.npz"), load_compressed=True)) == 3
    npz, _ = _write("npz", tmp_path)
    with pytest.raises(ValueError, match=r"holds arrays .*choose one with key"):
        ArraySequences(str(npz))
    with pytest.raises(KeyError, match=r"no array 'nope'"):
        ArraySequences(str(npz), key="nope")


def test_corrupt_and_truncated_files(tmp_path):
    good, _ = _write("npy", tmp_path)
    cut = tmp_path / "cut.npy"
    cut.write_bytes(good.read_bytes()[:500])
    with pytest.raises(ValueError, match=r"cut.npy"):
        ArraySequences(str(cut))
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"not an hdf5 file at all")
    pytest.importorskip("h5py")
    with pytest.raises(ValueError, match=r"junk.h5"):
        ArraySequences(str(junk))
    bad_zip = tmp_path / "bad.npz"
    bad_zip.write_bytes(b"PK\x03\x04 broken")
    with pytest.raises(ValueError, match=r"bad.npz"):
        ArraySequences(str(bad_zip))


def test_dataloader_workers_open_their_own_handles(tmp_path):
    path, _ = _write("h5", tmp_path)
    ds = ArraySequences(str(path), "TNHW", input_frames=2, output_frames=1, stride=6)
    loader = torch.utils.data.DataLoader(ds, batch_size=3, num_workers=2)
    batches = list(loader)
    inputs = torch.cat([b[0] for b in batches])
    assert inputs.shape == (len(ds), 2, 1, 6, 5)
    torch.testing.assert_close(inputs[4], ds[4][0])
