"""What makes a folder puzzlecam's, and the rules of writing into one: the markers, the
one-writer lock, the temp files a killed write leaves, and a stage's claim on its output
folder (the fingerprint its files were made with). ``RunDir`` and ``ablate`` use these;
docs/decisions.md "What a run directory owns" says why."""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path

from puzzlecam.errors import RunDirError, short_list
from puzzlecam.io import atomic_write, claim_folder

__all__ = [
    "OUTPUT_MARKER",
    "RUN_MARKER",
    "REPORT_BUILD_PREFIX",
    "LOCK_FILE",
    "is_atomic_temp",
    "is_report_build",
    "refuse_foreign_folder",
    "folder_lock",
    "claim_output_dir",
    "reclaim_output_dir",
]

OUTPUT_MARKER = (
    ".fingerprint"  # in a stage's output folder: the fingerprint its files were made with
)
RUN_MARKER = ".puzzlecam-run"
"""The file that makes a folder a run directory (JSON: what wrote it)."""
REPORT_BUILD_PREFIX = ".report."
"""The report is built in a temp folder ``.report.XXXXXXXX`` in the run, then published."""
LOCK_FILE = ".puzzlecam.lock"
"""The advisory lock of the one process writing a run (or an ablation) folder."""
# what io.atomic_write leaves when killed mid-write: .{target}.{8 random chars}.tmp
_ATOMIC_TEMP = re.compile(r"^\.(?P<target>.+)\.[a-z0-9_]{8}\.tmp$")
_REPORT_BUILD = re.compile(rf"^{re.escape(REPORT_BUILD_PREFIX)}[a-z0-9_]{{8}}$")


def is_report_build(name: str) -> bool:
    """Whether ``name`` is a report's temp build folder (``.report.XXXXXXXX``)."""
    return _REPORT_BUILD.match(name) is not None


def is_atomic_temp(name: str, targets: Iterable[str] | None = None) -> bool:
    """Whether ``name`` is a temp file ``io.atomic_write`` makes (``.{target}.XXXXXXXX.tmp``),
    and, with ``targets``, one for a file of those names."""
    found = _ATOMIC_TEMP.match(name)
    return bool(found) and (targets is None or found["target"] in set(targets))


def refuse_foreign_folder(folder: Path, owned: bool, what: str, marker: str) -> None:
    """Raise RunDirError for an existing ``folder`` that is not ``owned`` (puzzlecam's
    ``what``, recognised by ``marker``) and holds files (a lock file aside): nothing is
    ever written into, or cleaned up in, a folder of other files."""
    if not folder.is_dir() or owned:
        return
    foreign = sorted(p.name for p in folder.iterdir() if p.name != LOCK_FILE)
    if foreign:
        raise RunDirError(
            f"{folder} holds other files ({short_list(foreign, 5)}) and is not a puzzlecam "
            f"{what} (no {marker}); nothing was written: give --run-dir a new or empty folder"
        )


@contextlib.contextmanager
def folder_lock(folder: Path, what: str = "run directory") -> Iterator[None]:
    """Hold ``folder/.puzzlecam.lock`` (an advisory POSIX record lock) while the block runs;
    raise RunDirError naming the holder's pid when another process holds it. The kernel
    drops the lock when its process dies, so a lock left by ``kill -9`` is simply taken
    over; unlike ``flock``'s, it is not shared with the forked data-loader and CRF workers,
    which may outlive a killed run by a few seconds."""
    try:
        import fcntl
    except ImportError:  # not on POSIX: no lock (one process per folder is the user's care)
        yield
        return
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_FILE
    handle = path.open("a+")
    try:
        try:
            fcntl.lockf(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            if error.errno not in (errno.EACCES, errno.EAGAIN):
                raise
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            raise RunDirError(
                f"{folder} is in use: another puzzlecam process (pid {holder}) is writing this "
                f"{what}; wait for it to finish, or use another --run-dir"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        yield
    finally:
        handle.close()  # closing drops the lock


def claim_output_dir(directory: Path, fingerprint: str) -> None:
    """Mark ``directory`` as holding outputs of ``fingerprint`` (files already there are
    kept and skipped); refuse if it holds another producer's outputs."""

    def check(marker: Path) -> None:
        found = marker.read_text(encoding="utf-8").strip()
        if found != fingerprint:
            raise RunDirError(
                f"{directory} holds outputs made from other inputs ({found} != {fingerprint}); "
                "delete the folder to recompute it"
            )

    def write(marker: Path) -> None:
        with atomic_write(marker) as handle:
            handle.write(fingerprint.encode("utf-8"))

    claim_folder(directory, OUTPUT_MARKER, write, check)


def reclaim_output_dir(directory: Path, fingerprint: str, finished_before: bool) -> bool:
    """Claim ``directory`` for a stage about to run with ``fingerprint``, removing first what
    it holds from other inputs (e.g. data that changed since): outputs marked with another
    fingerprint, or, in a folder written before markers were, anything when the stage had
    finished with another fingerprint (``finished_before``). Outputs of this fingerprint
    (an interrupted run) are kept. Returns whether anything was removed."""
    marker = directory / OUTPUT_MARKER
    if marker.is_file():
        stale = marker.read_text(encoding="utf-8").strip() != fingerprint
    else:
        stale = finished_before and directory.is_dir()
    if stale:
        shutil.rmtree(directory)
    claim_output_dir(directory, fingerprint)
    return stale
