"""Shared fixtures; the helpers they are built on are in ``tests/helpers.py``."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import write_voc_tree


@pytest.fixture
def voc_tree(tmp_path: Path) -> Path:
    return write_voc_tree(tmp_path / "voc", {"train": 8, "val": 4})
