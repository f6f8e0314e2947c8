"""Image ids are file names, never paths.

An id names one image inside its data set's image folder, and every stage names its
output files after it (``cams/.../{id}.npz``, ``pseudo_labels/.../{id}.png``). An id that
were a path (``../x``, ``/home/me/photo``) would make those writes land outside the run
directory, over the user's own files. So ids are checked where they enter (the readers,
with ``check_image_id``), and every per-image file is named through ``id_path``, which
refuses any id that is not a plain name and any path that would leave its folder.
"""

from __future__ import annotations

import os
import re
import unicodedata
from pathlib import Path

from puzzlecam.errors import DataError

__all__ = ["MAX_NAME_BYTES", "image_id_problem", "check_image_id", "id_path"]

MAX_NAME_BYTES = 200
"""Longest output file name in UTF-8 bytes: 255 is the usual limit, and the temporary
file ``atomic_write`` makes beside it (``.{name}.XXXXXXXX.tmp``) needs room too."""

_SUFFIX_BYTES = len(".npz")  # the longest suffix a stage adds (.npz, .png, .jpg)
_DRIVE = re.compile(r"^[A-Za-z]:")
_SEPARATORS = re.compile(r"[/\\]")
_CONTROL = ("Cc", "Zl", "Zp")  # control characters, line and paragraph separators
_SHOWN = 120


def _shown(image_id: str) -> str:
    """The id quoted for a message, escapes visible, long ones cut in the middle."""
    if len(image_id) <= _SHOWN:
        return repr(image_id)
    return repr(f"{image_id[: _SHOWN - 30]}...{image_id[-27:]}")


def image_id_problem(image_id: str, folder: str = "the image folder") -> str | None:
    """Why ``image_id`` cannot be an image id ("problem; what to do"), or None when it can.

    Allowed: a plain file name. Refused: empty ids, control characters (NUL included),
    absolute paths (``/x``, ``C:\\x``, ``\\\\server``), ``..``, any ``/`` or ``\\`` (no
    sub-folders: each output folder is flat), ``:`` (a drive or stream on Windows), a
    leading ``.`` (hidden files; puzzlecam's temporary files are ``.{name}.tmp``), leading
    or trailing white space, and names whose output file would pass ``MAX_NAME_BYTES``.
    ``folder`` is how the fix names the image folder (``images/``).
    """
    if not image_id:
        return "is empty; give every image its file name"
    bad = [c for c in image_id if unicodedata.category(c) in _CONTROL]
    if bad:
        return (
            f"contains the control character U+{ord(bad[0]):04X}; remove it "
            "(and rename the image if its file name has it)"
        )
    try:
        size = len(image_id.encode("utf-8"))
    except UnicodeEncodeError:
        return "is not valid text (it holds an unpaired surrogate); rename the image"
    name_only = f"ids are names, not paths: put the image in {folder} and give its file name"
    if image_id[0] in "/\\" or _DRIVE.match(image_id):
        return f"is an absolute path or names a drive; {name_only}"
    if ".." in _SEPARATORS.split(image_id):
        return f"leads out of {folder} ('..'); {name_only}"
    if _SEPARATORS.search(image_id):
        return f"contains a path separator ('/' or '\\'); {name_only} (no sub-folders)"
    if ":" in image_id:
        return "contains ':' (a drive or a data stream on Windows); rename the image"
    if image_id.startswith("."):
        return "starts with '.', which would make its output files hidden; rename the image"
    if image_id != image_id.strip():
        return "starts or ends with white space; rename the image"
    if size + _SUFFIX_BYTES > MAX_NAME_BYTES:
        return (
            f"is {size} bytes long (UTF-8); output file names must fit in {MAX_NAME_BYTES} "
            f"bytes: give the image a name of at most {MAX_NAME_BYTES - _SUFFIX_BYTES} bytes"
        )
    return None


def check_image_id(
    image_id: str, source: str | Path, where: str = "", folder: str = "the image folder"
) -> str:
    """``image_id`` unchanged when it is a valid id, else DataError(``source``,
    "``where``: image id '...' problem; what to do"). ``where`` locates the id in
    ``source`` (``line 7``); ``folder`` names the image folder in the advice."""
    problem = image_id_problem(image_id, folder)
    if problem is not None:
        prefix = f"{where}: " if where else ""
        raise DataError(source, f"{prefix}image id {_shown(image_id)} {problem}")
    return image_id


def id_path(directory: str | Path, image_id: str, suffix: str = "") -> Path:
    """``directory / f"{image_id}{suffix}"``, the one way to name a per-image file.

    Raises DataError naming ``directory`` and the id when the id is not a valid id (see
    ``image_id_problem``) or the file would not lie directly inside ``directory`` (checked
    on the resolved folder, so a path can never leave it).
    """
    directory = Path(directory)
    name = f"{image_id}{suffix}"
    problem = image_id_problem(image_id)
    if problem is None:
        base = directory.resolve()
        # the name is normalised, not followed: an image may be a link to elsewhere, and
        # atomic_write replaces a link rather than writing through it
        target = Path(os.path.normpath(base / name))
        if _SEPARATORS.search(name) or target.parent != base or not target.is_relative_to(base):
            problem = f"with suffix {suffix!r} would name a file outside this folder"
    if problem is not None:
        raise DataError(
            directory,
            f"refusing image id {_shown(image_id)} as a file name here: it {problem}",
        )
    return directory / name
