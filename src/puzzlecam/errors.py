"""Errors the command line reports as a message instead of a traceback."""

from pathlib import Path


class PuzzlecamError(Exception):
    """Base class: something the user can fix (input data, configuration, run directory)."""


class DataError(PuzzlecamError):
    """A file of the data set is missing, unreadable or inconsistent."""

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class ConfigError(PuzzlecamError):
    """A configuration value is unknown, of the wrong type or out of range."""


class RunDirError(PuzzlecamError):
    """A run directory does not match the requested configuration or is incomplete."""
