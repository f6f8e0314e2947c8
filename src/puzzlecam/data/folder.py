"""A user's own tagged images.

root/
  images/{image_id}.{jpg,png,...}
  labels.csv          header ``image_id,tags[,split]``; tags space-separated class names
  classes.txt         one class name a line (background excluded)
  masks/{image_id}.png   optional ground truth for evaluation (0 = background, 255 = ignore)

Without a ``split`` column every split name selects all rows; with one, a split selects
the rows whose ``split`` equals its name.

An image id is the image's file name in ``images/``, with or without its extension
(``photo`` or ``photo.jpg``), never a path (see ``puzzlecam.data.ids``). Outputs are named
after the id without its image extension, so two ids of one stem (``a`` and ``a.jpg``),
or of stems that differ only in case, are refused: their outputs would be one file.
"""

from __future__ import annotations

import csv
import glob
import unicodedata
from collections.abc import Sequence
from pathlib import Path

from puzzlecam.constants import IMAGE_EXTENSIONS
from puzzlecam.data.classes import resolve_classes
from puzzlecam.data.ids import check_image_id, id_path
from puzzlecam.data.samples import Sample, SplitData
from puzzlecam.errors import DataError
from puzzlecam.io import not_utf8

__all__ = ["read_folder"]


def _find_image(folder: Path, image_id: str) -> Path | None:
    direct = id_path(folder, image_id)
    if direct.suffix.lower() in IMAGE_EXTENSIONS and direct.is_file():
        return direct
    for ext in IMAGE_EXTENSIONS + tuple(e.upper() for e in IMAGE_EXTENSIONS):
        candidate = id_path(folder, image_id, ext)
        if candidate.is_file():
            return candidate
    return None


def _other_formats(folder: Path, image_ids: Sequence[str]) -> list[str]:
    """Files of ``folder`` named like the missing ``image_ids`` but with an extension a
    data set does not take (``x.gif`` for id ``x`` or ``x.gif``): the reason they are
    missing, which "missing" alone would hide."""
    found = []
    for image_id in image_ids:
        stem = _output_stem(image_id)
        candidates = [folder / image_id, *folder.glob(f"{glob.escape(stem)}.*")]
        found += sorted({p.name for p in candidates if p.is_file()})
    return found


def _output_stem(image_id: str) -> str:
    """The name outputs get: the id without its image extension (``a.jpg`` -> ``a``)."""
    path = Path(image_id)
    return path.stem if path.suffix.lower() in IMAGE_EXTENSIONS else image_id


def _stem_key(stem: str) -> str:
    # case-insensitive file systems (macOS, Windows) and macOS's Unicode normalisation
    # would make these one file
    return unicodedata.normalize("NFC", stem).casefold()


def read_folder(root: str | Path, split: str, classes: Sequence[str] | None = None) -> SplitData:
    """Samples of a ``folder`` data set (see the module docstring for the layout)."""
    root = Path(root)
    csv_path = root / "labels.csv"
    if not csv_path.is_file():
        raise DataError(csv_path, "labels.csv not found (columns: image_id,tags[,split])")
    class_names = resolve_classes(root, classes)
    class_index = {name: index for index, name in enumerate(class_names)}

    try:
        with csv_path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            columns = reader.fieldnames or []
            if "image_id" not in columns or "tags" not in columns:
                raise DataError(
                    csv_path, f"header must have image_id and tags columns, found {columns}"
                )
            rows = list(enumerate(reader, start=2))
    except UnicodeDecodeError as error:
        raise not_utf8(csv_path, error) from error

    samples, skipped, missing = [], [], []
    stems: dict[str, tuple[int, str]] = {}  # stem key -> (line, id) of its first row
    for line, row in rows:
        image_id = (row["image_id"] or "").strip()
        check_image_id(image_id, csv_path, f"line {line}", folder="images/")
        stem = check_image_id(_output_stem(image_id), csv_path, f"line {line}", "images/")
        if _stem_key(stem) in stems:
            first_line, first_id = stems[_stem_key(stem)]
            if first_id == image_id:
                raise DataError(
                    csv_path,
                    f"line {line}: image '{image_id}' is listed twice (lines {first_line} "
                    f"and {line}); keep one row per image",
                )
            raise DataError(
                csv_path,
                f"line {line}: image id '{image_id}' and line {first_line}'s '{first_id}' "
                f"would share their output files ('{stem}'); rename one of the images",
            )
        stems[_stem_key(stem)] = (line, image_id)
        if "split" in columns and (row.get("split") or "").strip() != split:
            continue
        names = (row["tags"] or "").split()
        unknown = [name for name in names if name not in class_index]
        if unknown:
            raise DataError(
                csv_path,
                f"line {line}: tag(s) {unknown} of '{image_id}' are not in classes.txt "
                f"({', '.join(class_names)})",
            )
        image_path = _find_image(root / "images", image_id)
        if image_path is None:
            missing.append(image_id)
            continue
        tags = tuple(sorted({class_index[name] for name in names}))
        if not tags:
            skipped.append((image_id, "no tags"))
            continue
        mask_path = id_path(root / "masks", stem, ".png")
        samples.append(Sample(stem, image_path, tags, mask_path if mask_path.is_file() else None))
    if missing:
        others = _other_formats(root / "images", missing[:20])
        hint = (
            f"; found in other formats: {others[:5]}: convert them to one of "
            f"{'/'.join(IMAGE_EXTENSIONS)} (e.g. PNG)"
            if others
            else ""
        )
        raise DataError(
            root / "images",
            f"{len(missing)} images listed in labels.csv are missing, e.g. {missing[:5]}{hint}",
        )
    if not samples and not skipped:
        raise DataError(csv_path, f"no rows belong to split '{split}'")
    return SplitData(split, class_names, tuple(samples), tuple(skipped))
