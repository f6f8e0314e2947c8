"""Data: readers for each format, augmentation and torch datasets.

Every format yields a :class:`SplitData` of :class:`Sample` records; the rest of the
pipeline never looks at the format again. ``DataConfig`` (the ``data:`` section of a
run's config) and ``load_split`` live in ``data.splits``.
"""

from __future__ import annotations

from puzzlecam.data.samples import Sample, SplitData, load_mask, tags_to_vector
from puzzlecam.data.splits import DataConfig, load_split, split_name

__all__ = [
    "Sample",
    "SplitData",
    "load_mask",
    "tags_to_vector",
    "DataConfig",
    "load_split",
    "split_name",
]
