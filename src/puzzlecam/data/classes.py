"""Class lists: read from a file, an option, or VOC's default."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from puzzlecam.constants import BACKGROUND
from puzzlecam.errors import DataError
from puzzlecam.io import read_text

__all__ = ["read_class_list", "resolve_classes"]


def read_class_list(path: str | Path) -> tuple[str, ...]:
    """Class names from a text file, one a line; blank lines and ``#`` comments skipped.

    A leading ``background`` line is accepted and dropped (label 0 is always background).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "class list not found")
    names = [line.split("#", 1)[0].strip() for line in read_text(path).splitlines()]
    names = [name for name in names if name]
    if names and names[0].lower() == BACKGROUND:
        names = names[1:]
    return _checked(names, path)


def _checked(names: Sequence[str], source: str | Path) -> tuple[str, ...]:
    if not names:
        raise DataError(source, "class list is empty")
    duplicates = sorted({name for name in names if list(names).count(name) > 1})
    if duplicates:
        raise DataError(source, f"class list repeats {duplicates}")
    if BACKGROUND in names:
        raise DataError(source, "'background' is label 0 and must not be listed as a class")
    if len(names) > 254:
        raise DataError(
            source, f"{len(names)} classes; label PNGs hold at most 254 besides 0 and 255"
        )
    return tuple(names)


def resolve_classes(
    root: str | Path, classes: Sequence[str] | None, default: Sequence[str] | None = None
) -> tuple[str, ...]:
    """The class list of a data set: the explicit option, else ``root/classes.txt``, else ``default``."""
    if classes:
        return _checked(list(classes), "the 'classes' option")
    listed = Path(root) / "classes.txt"
    if listed.is_file():
        return read_class_list(listed)
    if default is None:
        raise DataError(listed, "no classes.txt and no 'classes' option: the class list is unknown")
    return tuple(default)
