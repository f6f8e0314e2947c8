"""Errors the command line reports as a message instead of a traceback.

Every error here pickles and unpickles to an equal error, so one raised while a
DataLoader worker reads an image reaches the main process as itself
(``puzzlecam.data.loader.CheckedLoader`` carries it across).
"""

from collections.abc import Sequence
from pathlib import Path

__all__ = [
    "PuzzlecamError",
    "DataError",
    "ConfigError",
    "RunDirError",
    "TrainingError",
    "StageError",
    "short_list",
]


def short_list(items: Sequence[object], limit: int = 10) -> str:
    """'a, b, c' for a message: at most ``limit`` items, then '... (N in all)'."""
    shown = ", ".join(str(item) for item in items[:limit])
    return shown + (f", ... ({len(items)} in all)" if len(items) > limit else "")


class PuzzlecamError(Exception):
    """Base class: something the user can fix (input data, configuration, run directory)."""


class DataError(PuzzlecamError):
    """A file (of the data set, or weights, predictions ...) is missing, unreadable or
    inconsistent: ``str()`` is "path: problem; what to do"."""

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")

    def __reduce__(self) -> tuple:
        # Exception pickles as cls(*self.args), and args is the one formatted message
        return type(self), (self.path, self.problem)


class ConfigError(PuzzlecamError, ValueError):
    """A configuration value is unknown, of the wrong type or out of range (a ValueError
    too, as a bad argument to a config dataclass)."""


class RunDirError(PuzzlecamError):
    """A run directory does not match the requested configuration or is incomplete."""


class TrainingError(PuzzlecamError):
    """Training cannot go on (e.g. the loss stayed NaN/inf); the last good checkpoint is kept."""


class StageError(PuzzlecamError):
    """A stage of a run could not read or write a file (a full disk, permissions): the
    message names the stage and the file; finished work is kept for the rerun."""
