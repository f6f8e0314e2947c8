"""File formats shared by every stage: atomic writes, images, label PNGs, npz score files, JSON.

Nothing here uses pickle: arrays go to ``.npz`` (loaded with ``allow_pickle=False``),
metadata to JSON, labels to palette PNGs.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import tempfile
import warnings
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from puzzlecam.errors import DataError

__all__ = [
    "atomic_write",
    "claim_folder",
    "DECOMPRESSION_BOMB",
    "load_image",
    "image_size",
    "save_label_png",
    "load_label_png",
    "save_npz",
    "load_npz",
    "load_tensor_file",
    "write_json",
    "read_json",
    "read_text",
    "not_utf8",
    "append_jsonl",
    "read_jsonl",
    "voc_palette",
]


@contextlib.contextmanager
def atomic_write(path: str | Path) -> Iterator[IO[bytes]]:
    """Open a temporary file beside ``path`` for binary writing; rename it over ``path`` on success.

    A crash or an exception leaves either the old file or none, never a half-written one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp_name, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual mode
        os.replace(tmp_name, path)
    except BaseException as error:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        if isinstance(error, OSError) and error.filename in (None, tmp_name):
            # a full disk fails a write() with no file name: name the file being written
            raise type(error)(error.errno, error.strerror or str(error), str(path)) from error
        raise


def claim_folder(
    folder: str | Path,
    marker: str,
    write: Callable[[Path], None],
    check: Callable[[Path], None],
) -> bool:
    """Claim ``folder`` for one configuration through its marker file ``folder/marker``
    (what made the folder's files: a config, a fingerprint, the inputs' description).

    Without the marker the folder is created and ``write(marker path)`` writes it (write it
    atomically): True. With one, ``check(marker path)`` raises, saying how to fix it,
    unless the marker says the folder is the caller's: False, nothing written. Whatever
    writes into such a folder claims it first, so outputs of two configurations never mix.
    """
    path = Path(folder) / marker
    if path.is_file():
        check(path)
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    write(path)
    return True


@functools.cache
def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@functools.cache
def _palette(num_entries: int) -> tuple[int, ...]:
    return tuple(_voc_palette(num_entries))


def voc_palette(num_entries: int = 256) -> list[int]:
    """The PASCAL VOC colour map as a flat ``[r0, g0, b0, r1, ...]`` list (index 255 is cream)."""
    return list(_palette(num_entries))


def _voc_palette(num_entries: int) -> list[int]:
    """The PASCAL VOC colour map as a flat ``[r0, g0, b0, r1, ...]`` list (index 255 is cream)."""
    palette = []
    for index in range(num_entries):
        red = green = blue = 0
        value = index
        for bit in range(8):
            red |= ((value >> 0) & 1) << (7 - bit)
            green |= ((value >> 1) & 1) << (7 - bit)
            blue |= ((value >> 2) & 1) << (7 - bit)
            value >>= 3
        palette.extend((red, green, blue))
    return palette


def _to_8bit(image: Image.Image) -> Image.Image:
    """16-bit or float grey images scaled to 8 bits (PIL's convert would clip them)."""
    array = np.asarray(image, dtype=np.float64)
    peak = array.max() if array.size else 0.0
    scale = 255.0 / peak if peak > 255 else 1.0
    return Image.fromarray(np.clip(array * scale, 0, 255).astype(np.uint8), mode="L")


DECOMPRESSION_BOMB = (Image.DecompressionBombError, Image.DecompressionBombWarning)
"""What PIL raises for an image of more pixels than ``Image.MAX_IMAGE_PIXELS`` (the warning
only where warnings are errors): a small file that would decode to gigabytes."""


def _bomb_problem(error: Exception) -> str:
    return (
        f"refused: too many pixels to decode safely ({error}); shrink the image "
        "(a few thousand pixels a side is plenty) or leave it out of the data set"
    )


@contextlib.contextmanager
def _open_image(path: Path) -> Iterator[Image.Image]:
    """``Image.open`` whose failures, while open too, are DataErrors naming the file: a
    missing file, a file that is not an image or is truncated, a decompression bomb."""
    if not path.is_file():
        raise DataError(path, "image file not found")
    try:
        with Image.open(path) as opened:
            yield opened
    except DECOMPRESSION_BOMB as error:
        raise DataError(path, _bomb_problem(error)) from error
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise DataError(
            path,
            f"cannot be read as an image ({error}); replace the file or leave it out of the "
            "data set",
        ) from error


def load_image(path: str | Path) -> Image.Image:
    """Read any common image file as an upright 8-bit RGB PIL image.

    EXIF orientation is applied; grey, palette, CMYK and 16-bit images are converted;
    transparent pixels are composited onto white. Raises DataError naming the file
    when it is missing, truncated, not an image or a decompression bomb.
    """
    with _open_image(Path(path)) as opened:
        opened.load()
        image = ImageOps.exif_transpose(opened)
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        image = _to_8bit(image)
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        image = image.convert("RGBA")
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, image)
    if image.mode != "RGB":
        image = image.convert("RGB")
    return image


# EXIF orientations that turn the picture by 90 degrees (load_image applies them)
_TRANSPOSING_ORIENTATIONS = (5, 6, 7, 8)


def _header_exif(image: Image.Image) -> Image.Exif:
    """The EXIF data found while opening: PNG's ``getexif`` decodes the whole image to
    look for an eXIf chunk after the pixels (rare; PNG's EXIF comes before them)."""
    if image.format != "PNG":
        return image.getexif()
    exif = Image.Exif()
    if raw := image.info.get("exif"):
        exif.load(raw)
    return exif


def image_size(path: str | Path) -> tuple[int, int]:
    """The (H, W) ``load_image`` would give, from the file's header alone (no decode).

    Raises the DataError ``load_image`` raises for a missing file, a file that is not an
    image and a decompression bomb; a file truncated after its header passes here.
    """
    with _open_image(Path(path)) as opened:
        width, height = opened.size
        orientation = _header_exif(opened).get(0x0112)  # EXIF Orientation
    if orientation in _TRANSPOSING_ORIENTATIONS:
        return width, height
    return height, width


def save_label_png(path: str | Path, labels: np.ndarray) -> None:
    """Write an ``(H, W)`` uint8 label map as a VOC-palette PNG, atomically."""
    if labels.ndim != 2:
        raise ValueError(f"label map must be (H, W), got shape {labels.shape}")
    if labels.dtype != np.uint8:
        if labels.min(initial=0) < 0 or labels.max(initial=0) > 255:
            raise ValueError("label values must lie in 0..255")
        labels = labels.astype(np.uint8)
    image = Image.fromarray(labels, mode="P")
    image.putpalette(voc_palette())
    with atomic_write(path) as handle:
        image.save(handle, format="PNG")


def load_label_png(path: str | Path) -> np.ndarray:
    """Read a single-channel label PNG (palette or grey) as an ``(H, W)`` uint8 array."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "label file not found")
    try:
        with Image.open(path) as image:
            image.load()
            if image.mode not in ("P", "L"):
                raise DataError(
                    path,
                    f"label image has mode {image.mode}; it must be single-channel "
                    "(palette or grey), one class index per pixel",
                )
            return np.array(image, dtype=np.uint8)
    except DECOMPRESSION_BOMB as error:
        raise DataError(path, _bomb_problem(error)) from error
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise DataError(path, f"cannot be read as a label PNG ({error})") from error


def save_npz(path: str | Path, **arrays: np.ndarray) -> None:
    """Write named arrays to an uncompressed ``.npz``, atomically."""
    with atomic_write(path) as handle:
        np.savez(handle, **arrays)


def load_npz(path: str | Path) -> dict[str, np.ndarray]:
    """Read every array of a ``.npz`` (no pickle) into a dict."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "score file not found")
    try:
        with np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}
    except (OSError, ValueError, EOFError) as error:
        raise DataError(path, f"cannot be read as an .npz file ({error})") from error


def load_tensor_file(path: str | Path, fix: str) -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU: tensors and plain containers,
    never code.

    Raises DataError naming the file when it is missing, unreadable, truncated, or asks
    for anything beyond tensors (a pickle payload: refused, never run); ``fix`` says what
    to do instead. The message never repeats torch's advice to turn ``weights_only`` off.
    """
    import pickle

    import torch

    path = Path(path)
    if not path.is_file():
        raise DataError(path, f"weights file not found; {fix}")
    try:
        with warnings.catch_warnings():
            # a raw pickle of another protocol makes torch warn before it refuses the file:
            # the refusal below says all there is to say, in one line
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        # torch's text suggests weights_only=False, i.e. running the file's code: keep
        # only the lines that say what was refused
        detail = "; ".join(
            line.strip()
            for line in str(error).splitlines()
            if ("GLOBAL" in line or "nsupported" in line) and "weights_only" not in line
        )
        raise DataError(
            path,
            "not a plain weights file: it holds pickled Python objects, not only tensors"
            f"{f' ({detail})' if detail else ''}, and was not loaded; {fix}",
        ) from None
    except Exception as error:  # noqa: BLE001 - a damaged file fails in many ways, all one answer
        reason = str(error).split(". ")[0].strip()
        if not isinstance(error, (RuntimeError, OSError)) or not reason:
            reason = f"unexpected content, {type(error).__name__}"
        if "weights_only" in reason:
            reason = type(error).__name__
        raise DataError(
            path, f"cannot be read as a weights file ({reason}); it may be truncated; {fix}"
        ) from error


def not_utf8(path: str | Path, error: UnicodeDecodeError) -> DataError:
    """The DataError for a text file that is not UTF-8."""
    return DataError(
        path,
        f"is not UTF-8 text (byte 0x{error.object[error.start]:02x} at offset {error.start}); "
        "save it with the UTF-8 encoding",
    )


def read_text(path: str | Path) -> str:
    """A UTF-8 text file's content; DataError naming the file when it is not UTF-8."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise not_utf8(path, error) from error


def write_json(path: str | Path, data: Any, indent: int | None = 2) -> None:
    """Write JSON (indented, keys in insertion order; ``indent=None``: compact, for large
    tables), atomically."""
    text = json.dumps(data, indent=indent) + "\n"
    with atomic_write(path) as handle:
        handle.write(text.encode("utf-8"))


def read_json(path: str | Path) -> Any:
    path = Path(path)
    try:
        return json.loads(read_text(path))
    except FileNotFoundError as error:
        raise DataError(path, "JSON file not found") from error
    except json.JSONDecodeError as error:
        raise DataError(path, f"invalid JSON ({error})") from error


def append_jsonl(path: str | Path, record: Mapping[str, Any]) -> None:
    """Append one JSON record as a line (a torn last line is skipped by read_jsonl)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(dict(record)) + "\n")


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Records of a JSON-lines file ([] when there is none); blank lines are skipped.

    A last line without its newline that is not JSON is a write that was interrupted
    (``append_jsonl`` writes whole lines): it is skipped. Any other line that is not JSON
    raises DataError naming the file and the line.
    """
    path = Path(path)
    if not path.is_file():
        return []
    lines = path.read_text(encoding="utf-8").split("\n")
    last = lines.pop()  # "" when the file ends with a newline
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as error:
            raise DataError(
                path,
                f"line {number} is not a JSON record ({error.msg}); only an interrupted "
                "last line is skipped: repair or delete that line",
            ) from error
    if last.strip():
        with contextlib.suppress(json.JSONDecodeError):  # torn by an interrupted write
            records.append(json.loads(last))
    return records
