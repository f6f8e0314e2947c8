"""Fashion-MNIST idx reading, the bundled subset, finding the full set and downloading."""

from __future__ import annotations

import gzip
import hashlib
import struct
from pathlib import Path

import numpy as np
import pytest

from puzzlecam.data import fashion_mnist as fm
from puzzlecam.errors import DataError


def idx_bytes(array: np.ndarray) -> bytes:
    """An idx file written here by hand (independent of the module's writer): uint8 only."""
    assert array.dtype == np.uint8
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.tobytes()


def write_file(path: Path, data: bytes) -> Path:
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


def fake_split(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(count, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=count, dtype=np.uint8)
    return images, labels


def write_set(directory: Path, sizes: dict[str, int], gz: bool = True) -> dict[str, tuple]:
    """The four idx files for splits of the given sizes; returns the arrays written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = {}
    for seed, (split, count) in enumerate(sizes.items()):
        images, labels = fake_split(count, seed)
        image_name, label_name = fm.FASHION_MNIST_FILES[split]
        suffix = ".gz" if gz else ""
        write_file(directory / f"{image_name}{suffix}", idx_bytes(images))
        write_file(directory / f"{label_name}{suffix}", idx_bytes(labels))
        written[split] = (images, labels)
    return written


@pytest.mark.parametrize("name", ["train-images-idx3-ubyte", "train-images-idx3-ubyte.gz"])
def test_read_idx_raw_and_gzipped(tmp_path: Path, name: str) -> None:
    images, _ = fake_split(7, seed=1)
    path = write_file(tmp_path / name, idx_bytes(images))
    np.testing.assert_array_equal(fm.read_idx(path, expected_ndim=3), images)
    np.testing.assert_array_equal(fm.read_idx(path, max_items=3), images[:3])
    assert fm.read_idx(path).dtype == np.uint8


@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_rejects_bad_magic_naming_the_file(tmp_path: Path, gz: bool) -> None:
    data = bytearray(idx_bytes(fake_split(2, 0)[0]))
    data[0:4] = b"\x08\x03\x00\x00"  # not 00 00 <type> <ndim>
    path = write_file(tmp_path / ("bad-idx3-ubyte" + (".gz" if gz else "")), bytes(data))
    with pytest.raises(DataError, match="magic") as caught:
        fm.read_idx(path)
    assert caught.value.path == path
    assert path.name in str(caught.value)


def test_read_idx_checks_sizes(tmp_path: Path) -> None:
    data = idx_bytes(fake_split(4, 0)[0])
    truncated = write_file(tmp_path / "short-idx3-ubyte", data[:-10])
    with pytest.raises(DataError, match="truncated") as caught:
        fm.read_idx(truncated)
    assert caught.value.path == truncated
    too_long = write_file(tmp_path / "long-idx3-ubyte.gz", data + b"\x00")
    with pytest.raises(DataError, match="longer"):
        fm.read_idx(too_long)
    with pytest.raises(DataError, match="dimensions"):
        fm.read_idx(write_file(tmp_path / "x-idx3-ubyte", data), expected_ndim=1)
    with pytest.raises(DataError, match="fewer than"):
        fm.read_idx(tmp_path / "long-idx3-ubyte.gz", max_items=5)
    with pytest.raises(DataError, match="not found"):
        fm.read_idx(tmp_path / "absent-idx1-ubyte")
    broken_gzip = tmp_path / "broken-idx1-ubyte.gz"
    zipped = gzip.compress(idx_bytes(fake_split(3, 0)[0]))
    broken_gzip.write_bytes(zipped[: len(zipped) // 2])
    with pytest.raises(DataError) as caught:
        fm.read_idx(broken_gzip)
    assert caught.value.path == broken_gzip


def test_read_idx_detects_gzip_by_content(tmp_path: Path) -> None:
    labels = np.arange(5, dtype=np.uint8)
    (tmp_path / "raw-named.gz").write_bytes(idx_bytes(labels))
    (tmp_path / "gzipped-named-raw").write_bytes(gzip.compress(idx_bytes(labels)))
    for name in ("raw-named.gz", "gzipped-named-raw"):
        np.testing.assert_array_equal(fm.read_idx(tmp_path / name, expected_ndim=1), labels)


def test_write_idx_round_trip_is_reproducible(tmp_path: Path) -> None:
    images, labels = fake_split(5, seed=3)
    fm.write_idx(tmp_path / "a.gz", images)
    first = (tmp_path / "a.gz").read_bytes()
    fm.write_idx(tmp_path / "a.gz", images)
    assert (tmp_path / "a.gz").read_bytes() == first  # no time stamp, no name in the header
    assert gzip.decompress(first) == idx_bytes(images)
    fm.write_idx(tmp_path / "b", labels)
    assert (tmp_path / "b").read_bytes() == idx_bytes(labels)


@pytest.mark.parametrize("gz", [True, False])
def test_load_fashion_mnist_split(tmp_path: Path, gz: bool) -> None:
    written = write_set(tmp_path, {"train": 6, "test": 4}, gz=gz)
    for split in ("train", "test"):
        data = fm.load_fashion_mnist(tmp_path, split)
        np.testing.assert_array_equal(data.images, written[split][0])
        np.testing.assert_array_equal(data.labels, written[split][1])
        assert len(data) == written[split][0].shape[0]
    assert len(fm.load_fashion_mnist(tmp_path, "train", max_items=2)) == 2


def test_load_fashion_mnist_inconsistent_files(tmp_path: Path) -> None:
    write_set(tmp_path, {"train": 6})
    labels_path = tmp_path / "train-labels-idx1-ubyte.gz"
    write_file(labels_path, idx_bytes(np.zeros(5, np.uint8)))
    with pytest.raises(DataError, match="5 labels for 6 images") as caught:
        fm.load_fashion_mnist(tmp_path, "train")
    assert caught.value.path == labels_path
    write_file(labels_path, idx_bytes(np.full(6, 10, np.uint8)))
    with pytest.raises(DataError, match="out of range"):
        fm.load_fashion_mnist(tmp_path, "train")
    with pytest.raises(DataError, match="missing"):
        fm.load_fashion_mnist(tmp_path, "test")


def test_find_fashion_mnist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fm, "DEFAULT_FASHION_MNIST_DIRS", (tmp_path / "nowhere",))
    monkeypatch.delenv(fm.FASHION_MNIST_ENV, raising=False)
    assert fm.find_fashion_mnist() is None
    write_set(tmp_path / "set", {"train": 2, "test": 2})
    monkeypatch.setenv(fm.FASHION_MNIST_ENV, str(tmp_path / "set"))
    assert fm.find_fashion_mnist() == tmp_path / "set"
    monkeypatch.setenv(fm.FASHION_MNIST_ENV, str(tmp_path))  # set, but wrong: say so
    with pytest.raises(DataError, match=fm.FASHION_MNIST_ENV):
        fm.find_fashion_mnist()
    monkeypatch.delenv(fm.FASHION_MNIST_ENV)
    monkeypatch.setattr(fm, "DEFAULT_FASHION_MNIST_DIRS", (tmp_path / "set",))
    assert fm.find_fashion_mnist() == tmp_path / "set"


def test_download_from_file_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fm, "FASHION_MNIST_SIZES", {"train": 6, "test": 4})
    server = tmp_path / "server"
    written = write_set(server, {"train": 6, "test": 4})
    md5 = {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in server.iterdir()}
    dest = tmp_path / "dest"

    assert fm.download_fashion_mnist(dest, base_url=server.as_uri(), md5=md5) == dest
    assert sorted(p.name for p in dest.iterdir()) == sorted(md5)  # no temp files left
    np.testing.assert_array_equal(fm.load_fashion_mnist(dest, "test").images, written["test"][0])

    # valid files already there are kept: works with the server gone
    for path in server.iterdir():
        path.unlink()
    fm.download_fashion_mnist(dest, base_url=server.as_uri() + "/", md5=md5)


def test_download_rejects_bad_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fm, "FASHION_MNIST_SIZES", {"train": 6, "test": 4})
    server = tmp_path / "server"
    write_set(server, {"train": 6, "test": 4})
    wrong = {"train-images-idx3-ubyte.gz": "0" * 32}
    with pytest.raises(DataError, match="MD5") as caught:
        fm.download_fashion_mnist(tmp_path / "a", base_url=server.as_uri(), md5=wrong)
    assert caught.value.path == tmp_path / "a" / "train-images-idx3-ubyte.gz"
    assert list((tmp_path / "a").iterdir()) == []  # nothing half-downloaded stays

    monkeypatch.setattr(fm, "FASHION_MNIST_SIZES", {"train": 60000, "test": 10000})
    with pytest.raises(DataError, match="the full train split has 60000"):
        fm.download_fashion_mnist(tmp_path / "b", base_url=server.as_uri())  # no MD5: mirror
    with pytest.raises(OSError):
        fm.download_fashion_mnist(tmp_path / "c", base_url=(tmp_path / "void").as_uri())


def test_bundled_subset_loads() -> None:
    directory = fm.bundled_fashion_mnist_dir()
    assert (directory / "LICENSE").is_file()
    total = sum(path.stat().st_size for path in directory.iterdir())
    assert total < 4_000_000  # the subset must stay small
    for split, count in (("train", fm.BUNDLED_TRAIN_ITEMS), ("test", fm.BUNDLED_TEST_ITEMS)):
        data = fm.load_bundled_fashion_mnist(split)
        assert data.images.shape == (count, 28, 28)
        assert data.source == "bundled"
        assert set(np.unique(data.labels).tolist()) == set(range(10))


def test_bundled_subset_is_the_first_items_of_the_full_set() -> None:
    full = next((d for d in fm.DEFAULT_FASHION_MNIST_DIRS if d.is_dir()), None)
    if full is None:
        pytest.skip("full Fashion-MNIST set not installed (apt-get install dataset-fashion-mnist)")
    for split, count in (("train", fm.BUNDLED_TRAIN_ITEMS), ("test", fm.BUNDLED_TEST_ITEMS)):
        bundled = fm.load_bundled_fashion_mnist(split)
        reference = fm.load_fashion_mnist(full, split, max_items=count)
        np.testing.assert_array_equal(bundled.images, reference.images)
        np.testing.assert_array_equal(bundled.labels, reference.labels)
