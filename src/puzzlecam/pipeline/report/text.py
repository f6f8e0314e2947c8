"""How the report writes numbers, durations and messages (plain text; the template escapes)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

from puzzlecam.errors import DataError

__all__ = ["fmt", "duration", "plural", "describe", "scrub", "shown_path", "href", "grouped"]


def fmt(value: Any, digits: int) -> str:
    """A number with ``digits`` decimals, or a dash when there is none."""
    return f"{value:.{digits}f}" if isinstance(value, (int, float)) else "–"


def duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min {int(seconds % 60):02d} s"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


_ABSOLUTE_PATH = re.compile(r"(?<![\w.~])/(?:[^\s'\"<>:;,()\[\]/]+/)+([^\s'\"<>:;,()\[\]/]+)")


def scrub(text: str) -> str:
    """Absolute paths in a message shortened to their last part: the report must not
    depend on (or reveal) where the run lives."""
    return _ABSOLUTE_PATH.sub(lambda m: f".../{m.group(1)}", text)


def describe(error: BaseException) -> str:
    if isinstance(error, DataError):
        return f"{error.path.name}: {scrub(error.problem)}"
    return scrub(str(error))


def shown_path(value: str) -> str:
    """A configured path as the report shows it: relative paths as they are, absolute ones
    by their last part."""
    return f".../{Path(value).name}" if Path(value).is_absolute() else value


def href(relative: str) -> str:
    """A relative link, URL-quoted (ids may hold spaces or '#')."""
    return quote(relative, safe="/#.-_~")


def grouped(pairs: Sequence[tuple[str, str]]) -> list[str]:
    """[(thing, reason)] -> ["thing, thing: reason", ...], one line per reason, in order."""
    reasons: dict[str, list[str]] = {}
    for thing, reason in pairs:
        reasons.setdefault(reason, []).append(thing)
    return [f"{', '.join(things)}: {reason}" for reason, things in reasons.items()]
