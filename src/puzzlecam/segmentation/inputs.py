"""Which files ``puzzlecam predict`` segments: files, folders and globs named on the command
line, resolved to image files, each once, with distinct output names. Any file Pillow reads
is an image (GIF, PPM, no extension ...; animated ones by their first frame).
"""

from __future__ import annotations

import glob
import logging
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from puzzlecam.constants import IMAGE_EXTENSIONS
from puzzlecam.errors import DataError, short_list
from puzzlecam.io import DECOMPRESSION_BOMB

__all__ = ["collect_images", "output_names"]

logger = logging.getLogger(__name__)


def _pillow_opens(path: Path) -> bool:
    """Whether Pillow recognises ``path`` as an image from its header (GIF, PPM, ICO, a
    photo without extension ...). Only "not an image at all" is False: a file Pillow
    recognises but cannot decode (truncated, a decompression bomb, unreadable) is an
    image that ``predict_images`` skips with its reason."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path):
                return True
    except UnidentifiedImageError:
        return False
    except (OSError, SyntaxError, ValueError, *DECOMPRESSION_BOMB):
        return True


def _images_among(paths: Iterable[Path], not_images: list[Path]) -> list[Path]:
    """The image files of ``paths``, sorted; files that are not images go to
    ``not_images``; folders and hidden files are left out."""
    images = []
    for path in sorted(paths):
        if not path.is_file() or path.name.startswith("."):
            continue
        if path.suffix.lower() in IMAGE_EXTENSIONS or _pillow_opens(path):
            images.append(path)  # known extensions unopened: broken ones are reported later
        else:
            not_images.append(path)
    return images


def collect_images(inputs: Sequence[str | Path]) -> list[Path]:
    """The image files that command-line inputs name, in order, each once.

    An input is a file (taken as is, whatever it holds), a folder (its image files, not
    recursive, sorted by name) or a glob pattern (``photos/*.jpg``, ``**`` recursive;
    image files only). In folders and globs an image file is one with an extension of
    ``IMAGE_EXTENSIONS`` or any file Pillow recognises (GIF, PPM, no extension ...);
    hidden files are left out, and files that are not images are left out with one
    logged warning naming them. Raises DataError naming every input that matches no image.
    """
    found: dict[Path, None] = {}
    unmatched: list[str] = []
    not_images: list[Path] = []
    for entry in inputs:
        path = Path(entry)
        if path.is_file():
            matches = [path]
        elif path.is_dir():
            matches = _images_among(path.iterdir(), not_images)
        elif glob.has_magic(str(entry)):
            matches = _images_among(map(Path, glob.glob(str(entry), recursive=True)), not_images)
        else:
            matches = []
        if not matches:
            unmatched.append(str(entry))
        found.update(dict.fromkeys(matches))
    not_images = list(dict.fromkeys(p for p in not_images if p not in found))
    if not_images:
        logger.warning(
            "%d file(s) left out, not images Pillow can read: %s; convert them (e.g. to PNG) "
            "to segment them",
            len(not_images), short_list(not_images),
        )  # fmt: skip
    if unmatched:
        raise DataError(
            unmatched[0],
            f"no images found for {', '.join(repr(u) for u in unmatched)} (not a file, and "
            "not a folder or glob with image files Pillow can read)",
        )
    return list(found)


def output_names(paths: Sequence[Path]) -> list[str]:
    """A distinct output name (no extension) for each image: its stem where that is unique,
    else stem + extension (``a.jpg``, ``a.png`` -> ``a_jpg``, ``a_png``), else + ``_2``..."""
    stems = [p.stem for p in paths]
    names = [
        stem if stems.count(stem) == 1 else f"{stem}_{p.suffix.lstrip('.').lower()}"
        for stem, p in zip(stems, paths, strict=True)
    ]
    taken: set[str] = set()
    unique = []
    for name in names:
        candidate, number = name, 2
        while candidate in taken:
            candidate, number = f"{name}_{number}", number + 1
        taken.add(candidate)
        unique.append(candidate)
    return unique
