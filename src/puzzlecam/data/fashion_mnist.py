"""Fashion-MNIST: idx-file reading and writing, finding the full set, the bundled subset, download.

Fashion-MNIST (Xiao, Rasul & Vollgraf 2017, MIT licence, (c) 2017 Zalando SE) holds 70,000
28x28 grey images of clothing in 10 classes, as four idx files (``train-images-idx3-ubyte``,
``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``), each
gzipped (``.gz``) or not. The demo benchmark (:mod:`puzzlecam.data.demo`) is built from it.

Where the data comes from, in order:

- the bundled subset shipped inside the package (the first
  :data:`BUNDLED_TRAIN_ITEMS` train and :data:`BUNDLED_TEST_ITEMS` test items, in the original
  idx.gz format), enough for the default demo and needing no network;
- the full set, found by :func:`find_fashion_mnist`: the directory named by the environment
  variable ``PUZZLECAM_FASHION_MNIST``, then ``/usr/share/datasets/fashion-mnist`` (where
  Debian's ``dataset-fashion-mnist`` package installs it);
- :func:`download_fashion_mnist`, for users who are online.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import tempfile
import urllib.request
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal

import numpy as np

from puzzlecam.errors import DataError
from puzzlecam.io import atomic_write

__all__ = [
    "FASHION_MNIST_CLASSES",
    "FASHION_MNIST_FILES",
    "FASHION_MNIST_SIZES",
    "FASHION_MNIST_MD5",
    "FASHION_MNIST_URL",
    "FASHION_MNIST_ENV",
    "DEFAULT_FASHION_MNIST_DIRS",
    "BUNDLED_TRAIN_ITEMS",
    "BUNDLED_TEST_ITEMS",
    "Split",
    "FashionMnistSplit",
    "read_idx",
    "write_idx",
    "load_fashion_mnist",
    "find_fashion_mnist",
    "bundled_fashion_mnist_dir",
    "load_bundled_fashion_mnist",
    "download_fashion_mnist",
]

Split = Literal["train", "test"]

FASHION_MNIST_CLASSES: tuple[str, ...] = (
    "tshirt", "trouser", "pullover", "dress", "coat",
    "sandal", "shirt", "sneaker", "bag", "boot",
)  # fmt: skip
"""Class names in label order (official: T-shirt/top, Trouser, Pullover, Dress, Coat, Sandal,
Shirt, Sneaker, Bag, Ankle boot), lowercase and safe as identifiers."""

FASHION_MNIST_FILES: Mapping[str, tuple[str, str]] = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
"""Per split: the (images, labels) file names without the optional ``.gz``."""

FASHION_MNIST_SIZES: Mapping[str, int] = {"train": 60000, "test": 10000}
"""Number of items of each split of the full set."""

FASHION_MNIST_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
"""Official download location (listed in github.com/zalandoresearch/fashion-mnist)."""

FASHION_MNIST_MD5: Mapping[str, str] = {
    "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
    "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
    "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
}
"""MD5 of the official ``.gz`` files (the ones torchvision checks too). Mirrors that recompress
the files (Debian does) have other checksums but the same decompressed content."""

FASHION_MNIST_ENV = "PUZZLECAM_FASHION_MNIST"
"""Environment variable naming a directory with the full set; searched first."""

DEFAULT_FASHION_MNIST_DIRS: tuple[Path, ...] = (Path("/usr/share/datasets/fashion-mnist"),)
"""Searched after the environment variable (Debian package ``dataset-fashion-mnist``)."""

BUNDLED_TRAIN_ITEMS = 6000
"""Number of train items in the bundled subset (the first ones of the full train split)."""

BUNDLED_TEST_ITEMS = 2000
"""Number of test items in the bundled subset (the first ones of the full test split)."""

_IMAGE_SIZE = (28, 28)
_NUM_CLASSES = len(FASHION_MNIST_CLASSES)

# downloaded file name -> (split, "images" | "labels")
_DOWNLOAD_FILES: Mapping[str, tuple[str, str]] = {
    f"{stem}.gz": (split, kind)
    for split, pair in FASHION_MNIST_FILES.items()
    for stem, kind in zip(pair, ("images", "labels"), strict=True)
}

# idx type codes (third magic byte) -> big-endian numpy dtype
_IDX_DTYPES: Mapping[int, str] = {
    0x08: ">u1",
    0x09: ">i1",
    0x0B: ">i2",
    0x0C: ">i4",
    0x0D: ">f4",
    0x0E: ">f8",
}


@dataclass(frozen=True)
class FashionMnistSplit:
    """One split (or its first items): ``images`` (N, 28, 28) uint8, ``labels`` (N,) uint8 in 0..9."""

    images: np.ndarray
    labels: np.ndarray
    source: str

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def _open(path: Path) -> IO[bytes]:
    """Binary reader of ``path``, decompressing gzip data (found by its magic bytes, not name)."""
    with path.open("rb") as handle:
        zipped = handle.read(2) == b"\x1f\x8b"
    return gzip.open(path, "rb") if zipped else path.open("rb")


def _read_exactly(handle: IO[bytes], size: int, path: Path, what: str) -> bytes:
    data = handle.read(size)
    if len(data) != size:
        raise DataError(
            path, f"truncated idx file: expected {size} bytes of {what}, got {len(data)}"
        )
    return data


def read_idx(
    path: str | Path,
    expected_ndim: int | None = None,
    max_items: int | None = None,
) -> np.ndarray:
    """Read an idx file (gzipped or raw, told apart by content) as a native-endian numpy array.

    The magic number (two zero bytes, a type code, the number of dimensions) and the sizes are
    checked; ``expected_ndim`` (3 for ``idx3`` image files, 1 for ``idx1`` label files) must
    match when given. ``max_items`` reads only the first items along the first axis (the file
    must hold at least that many; trailing data is then not read, so not checked). Raises
    DataError naming the file when it is missing, not an idx file, truncated or too long.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "idx file not found")
    try:
        with _open(path) as handle:
            magic = _read_exactly(handle, 4, path, "magic number")
            if magic[0] != 0 or magic[1] != 0 or magic[2] not in _IDX_DTYPES:
                raise DataError(
                    path,
                    f"not an idx file (magic number {magic.hex()}; expected 0000 followed by a "
                    "type code such as 08 and the number of dimensions)",
                )
            ndim = magic[3]
            if ndim == 0 or (expected_ndim is not None and ndim != expected_ndim):
                wanted = f"{expected_ndim}" if expected_ndim is not None else "at least 1"
                raise DataError(path, f"idx file has {ndim} dimensions, expected {wanted}")
            header = _read_exactly(handle, 4 * ndim, path, "dimension sizes")
            shape = [int(v) for v in np.frombuffer(header, dtype=">u4")]
            dtype = np.dtype(_IDX_DTYPES[magic[2]])
            if max_items is not None:
                if max_items < 0:
                    raise ValueError(f"max_items must be >= 0, got {max_items}")
                if shape[0] < max_items:
                    raise DataError(
                        path, f"holds {shape[0]} items, fewer than the {max_items} requested"
                    )
                shape[0] = max_items
            count = int(np.prod(shape, dtype=np.int64))
            payload = _read_exactly(handle, count * dtype.itemsize, path, "data")
            if max_items is None and handle.read(1):
                raise DataError(path, f"idx file is longer than its header says (shape {shape})")
    except (OSError, EOFError, zlib.error) as error:  # gzip.BadGzipFile is an OSError
        raise DataError(path, f"cannot be read as an idx file ({error})") from error
    array = np.frombuffer(payload, dtype=dtype).reshape(shape)
    return array.astype(dtype.newbyteorder("="), copy=True)


def write_idx(path: str | Path, array: np.ndarray) -> None:
    """Write ``array`` as an idx file, gzipped when ``path`` ends in ``.gz``; atomic.

    Gzip output is reproducible: no file name and a zero time stamp in the header.
    """
    path = Path(path)
    codes = {np.dtype(v).newbyteorder("="): k for k, v in _IDX_DTYPES.items()}
    code = codes.get(array.dtype.newbyteorder("="))
    if code is None:
        raise ValueError(f"dtype {array.dtype} has no idx type code")
    if not 1 <= array.ndim <= 255:
        raise ValueError(f"idx arrays need 1..255 dimensions, got {array.ndim}")
    header = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    body = np.ascontiguousarray(array, dtype=np.dtype(_IDX_DTYPES[code])).tobytes()
    with atomic_write(path) as handle:
        if path.suffix == ".gz":
            with gzip.GzipFile(filename="", mode="wb", fileobj=handle, mtime=0) as zipped:
                zipped.write(header + body)
        else:
            handle.write(header + body)


def _split_file(directory: Path, name: str) -> Path | None:
    """``name.gz`` or ``name`` inside ``directory``, whichever exists (gzipped first)."""
    for candidate in (directory / f"{name}.gz", directory / name):
        if candidate.is_file():
            return candidate
    return None


def _has_split(directory: Path, split: str) -> bool:
    return all(_split_file(directory, name) is not None for name in FASHION_MNIST_FILES[split])


def load_fashion_mnist(
    directory: str | Path, split: Split, max_items: int | None = None
) -> FashionMnistSplit:
    """Load a split (``"train"`` or ``"test"``) from a directory of idx files.

    ``max_items`` loads only the first items (cheap even on the full set). Images must be
    28x28 uint8, labels uint8 in 0..9, both files the same length; DataError otherwise.
    """
    if split not in FASHION_MNIST_FILES:
        raise ValueError(f"unknown split {split!r}; choose one of {sorted(FASHION_MNIST_FILES)}")
    directory = Path(directory)
    paths = []
    for name in FASHION_MNIST_FILES[split]:
        found = _split_file(directory, name)
        if found is None:
            raise DataError(
                directory / f"{name}.gz",
                f"Fashion-MNIST {split} file missing ({name}.gz or {name} expected in {directory})",
            )
        paths.append(found)
    images = read_idx(paths[0], expected_ndim=3, max_items=max_items)
    labels = read_idx(paths[1], expected_ndim=1, max_items=max_items)
    if images.dtype != np.uint8 or images.shape[1:] != _IMAGE_SIZE:
        raise DataError(
            paths[0], f"expected uint8 28x28 images, got {images.dtype} {images.shape[1:]}"
        )
    if labels.dtype != np.uint8:
        raise DataError(paths[1], f"expected uint8 labels, got {labels.dtype}")
    if labels.shape[0] != images.shape[0]:
        raise DataError(
            paths[1], f"{labels.shape[0]} labels for {images.shape[0]} images in {paths[0].name}"
        )
    if labels.size and int(labels.max()) >= _NUM_CLASSES:
        raise DataError(paths[1], f"label {int(labels.max())} out of range 0..{_NUM_CLASSES - 1}")
    return FashionMnistSplit(images=images, labels=labels, source=str(directory))


def find_fashion_mnist() -> Path | None:
    """Directory holding the full Fashion-MNIST set, or None.

    Looks at ``$PUZZLECAM_FASHION_MNIST`` first, then at :data:`DEFAULT_FASHION_MNIST_DIRS`.
    A directory qualifies when it holds the four idx files (gzipped or not); their contents
    are checked when loaded. A set environment variable that points at no such directory
    raises DataError rather than being ignored silently.
    """
    configured = os.environ.get(FASHION_MNIST_ENV)
    if configured:
        directory = Path(configured).expanduser()
        if not (_has_split(directory, "train") and _has_split(directory, "test")):
            raise DataError(
                directory,
                f"${FASHION_MNIST_ENV} points here but the four Fashion-MNIST idx files "
                f"({', '.join(n for pair in FASHION_MNIST_FILES.values() for n in pair)}, "
                "each optionally .gz) are not all present",
            )
        return directory
    for directory in DEFAULT_FASHION_MNIST_DIRS:
        if _has_split(directory, "train") and _has_split(directory, "test"):
            return directory
    return None


def bundled_fashion_mnist_dir() -> Path:
    """Directory of the subset that ships inside the package (``puzzlecam/assets/fashion-mnist``)."""
    return Path(__file__).resolve().parent.parent / "assets" / "fashion-mnist"


def load_bundled_fashion_mnist(split: Split, max_items: int | None = None) -> FashionMnistSplit:
    """The bundled subset of a split: the first 6,000 train or 2,000 test items of the full set."""
    loaded = load_fashion_mnist(bundled_fashion_mnist_dir(), split, max_items=max_items)
    return FashionMnistSplit(images=loaded.images, labels=loaded.labels, source="bundled")


def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _check_download(path: Path, name: str, md5: Mapping[str, str], shown: Path) -> None:
    """Raise DataError (naming ``shown``) unless the downloaded ``name`` is a valid full file."""
    expected = md5.get(name)
    if expected is not None:
        actual = _md5(path)
        if actual != expected:
            raise DataError(shown, f"MD5 {actual} does not match the published {expected}")
    split, kind = _DOWNLOAD_FILES[name]
    try:
        array = read_idx(path, expected_ndim=3 if kind == "images" else 1)
    except DataError as error:
        raise DataError(shown, error.problem) from error
    if array.shape[0] != FASHION_MNIST_SIZES[split]:
        raise DataError(
            shown,
            f"holds {array.shape[0]} items; the full {split} split has "
            f"{FASHION_MNIST_SIZES[split]}",
        )
    if kind == "images" and array.shape[1:] != _IMAGE_SIZE:
        raise DataError(shown, f"images are {array.shape[1:]}, expected 28x28")


def download_fashion_mnist(
    dest: str | Path,
    base_url: str = FASHION_MNIST_URL,
    md5: Mapping[str, str] | None = None,
    timeout: float = 60.0,
) -> Path:
    """Download the four ``.gz`` files of the full set into ``dest`` and return ``dest``.

    ``base_url`` may be any URL urllib opens (``https://``, ``file://``) ending at the folder
    of the files. Each file goes to a temporary name, is checked (MD5 when known: by default
    the official checksums :data:`FASHION_MNIST_MD5` for the official URL, none for other
    mirrors, which may recompress; then magic numbers and item counts) and only then renamed
    into place. Files already present and valid are kept. Raises DataError on a bad file,
    OSError (urllib's URLError) when the network fails. Point ``$PUZZLECAM_FASHION_MNIST`` at
    ``dest`` afterwards so :func:`find_fashion_mnist` finds it.
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    if md5 is None:
        md5 = FASHION_MNIST_MD5 if base_url.rstrip("/") == FASHION_MNIST_URL.rstrip("/") else {}
    base = base_url if base_url.endswith("/") else base_url + "/"
    for pair in FASHION_MNIST_FILES.values():
        for stem in pair:
            name = f"{stem}.gz"
            target = dest / name
            if target.is_file():
                try:
                    _check_download(target, name, md5, target)
                    continue
                except DataError:
                    pass  # a bad or partial earlier copy: download it again
            fd, tmp_name = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=dest)
            tmp = Path(tmp_name)
            try:
                with (
                    os.fdopen(fd, "wb") as out,
                    urllib.request.urlopen(base + name, timeout=timeout) as response,
                ):
                    shutil.copyfileobj(response, out)
                _check_download(tmp, name, md5, shown=target)
                os.replace(tmp, target)
            finally:
                tmp.unlink(missing_ok=True)
    return dest
