"""Files that are not what their .npy/.npz suffix says get an error naming the file and
what is wrong with it, never advice to load them with allow_pickle."""

import zipfile

import numpy as np
import pytest

from convlstm.data import ArraySequences, open_array
from convlstm.data.arrays import load_array_file

DATA = (np.arange(20 * 3 * 6 * 5) % 251).astype(np.uint8).reshape(20, 3, 6, 5)


@pytest.fixture
def good_npy(tmp_path):
    np.save(tmp_path / "good.npy", DATA)
    return tmp_path / "good.npy"


def _errors(path, key=None):
    """The messages of every public way of reading ``path``."""
    messages = []
    for read in (
        lambda: open_array(path, key),
        lambda: load_array_file(path, key),
        lambda: ArraySequences(str(path), key=key),
    ):
        with pytest.raises(ValueError) as info:
            read()
        messages.append(str(info.value))
    return messages


def test_csv_named_npy_is_not_called_pickled(tmp_path):
    csv = tmp_path / "frames.npy"
    csv.write_text("1,2,3\n4,5,6\n")
    for message in _errors(csv):
        assert message.startswith(f"{csv} is not a NumPy .npy file (no NumPy header")
        assert "pickle" not in message and "\n" not in message


def test_truncated_npy_names_the_file_and_the_missing_bytes(tmp_path, good_npy):
    body = good_npy.read_bytes()
    cut_data = tmp_path / "cut_data.npy"
    cut_data.write_bytes(body[:500])
    for message in _errors(cut_data):
        assert message.startswith(f"{cut_data} is a truncated .npy file")
        assert f"{DATA.nbytes} bytes of data" in message and f"{500 - 128} follow" in message
    cut_header = tmp_path / "cut_header.npy"
    cut_header.write_bytes(body[:40])
    for message in _errors(cut_header):
        assert message.startswith(f"{cut_header} is a truncated .npy file")
        assert "header" in message


def test_object_npy_is_refused_without_unpickling(tmp_path):
    path = tmp_path / "objects.npy"
    np.save(path, np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    for message in _errors(path):
        assert message.startswith(f"{path} holds Python objects")
        assert "allow_pickle" not in message


@pytest.mark.parametrize(
    "content, expected",
    [
        (b"PK\x03\x04 broken", "is not a NumPy .npz file (not a valid zip archive"),
        (b"hello, a text file", "is not a NumPy .npz file (not a valid zip archive"),
    ],
)
def test_corrupt_npz(tmp_path, content, expected):
    path = tmp_path / "bad.npz"
    path.write_bytes(content)
    for message in _errors(path):
        assert message.startswith(f"{path} {expected}")


def test_truncated_npz(tmp_path):
    whole = tmp_path / "whole.npz"
    np.savez(whole, frames=DATA)
    cut = tmp_path / "cut.npz"
    cut.write_bytes(whole.read_bytes()[: DATA.nbytes // 2])
    for message in _errors(cut):
        assert message.startswith(f"{cut} is not a NumPy .npz file (not a valid zip archive")


def test_npz_member_that_is_not_an_array(tmp_path):
    path = tmp_path / "mixed.npz"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("frames.npy", "1,2,3\n")
    for message in _errors(path, "frames"):
        assert message.startswith(f"array 'frames' in {path} is not a NumPy .npy file")


def test_corrupt_compressed_npz_member(tmp_path):
    path = tmp_path / "packed.npz"
    np.savez_compressed(path, frames=DATA)
    body = bytearray(path.read_bytes())
    body[200:260] = b"\x00" * 60  # inside the deflated data: CRC or inflate fails
    path.write_bytes(bytes(body))
    with pytest.raises(ValueError) as info:
        load_array_file(path)
    assert str(info.value).startswith(f"cannot read array 'frames' in {path}:")


def test_load_array_file_reads_npy_npz_and_checks_keys(tmp_path, good_npy):
    loaded = load_array_file(good_npy)
    assert type(loaded) is np.ndarray and np.array_equal(loaded, DATA)
    np.savez_compressed(tmp_path / "two.npz", frames=DATA, labels=np.arange(3))
    assert np.array_equal(load_array_file(tmp_path / "two.npz", "labels"), np.arange(3))
    with pytest.raises(ValueError, match=r"two.npz holds arrays \['frames', 'labels'\]"):
        load_array_file(tmp_path / "two.npz")
    with pytest.raises(KeyError, match=r"no array 'x' in .*two.npz"):
        load_array_file(tmp_path / "two.npz", "x")
    with pytest.raises(FileNotFoundError, match=r"missing.npy"):
        load_array_file(tmp_path / "missing.npy")


def test_labels_file_that_is_text_is_named(tmp_path, good_npy):
    labels = tmp_path / "labels.npy"
    labels.write_text("0\n1\n2\n")
    with pytest.raises(ValueError, match=r"labels.npy is not a NumPy .npy file \(no NumPy header"):
        ArraySequences(str(good_npy), task="classify", labels=str(labels), frames=4)
