"""A DataLoader whose workers hand our errors back as themselves.

torch re-raises an exception from a worker as ``type(error)(traceback_text)``; a
``DataError(path, problem)`` cannot be built from one string, so it used to arrive as a
``RuntimeError`` holding a traceback, and the command line printed a traceback instead of
naming the bad image. Here a ``PuzzlecamError`` raised while reading an item is returned
as data (pickled through the worker's queue like any batch) and raised again, unchanged,
in the main process. Other exceptions (bugs) keep torch's behaviour.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch.utils.data
from torch.utils.data import Dataset
from torch.utils.data._utils.collate import default_collate, default_convert

from puzzlecam.errors import PuzzlecamError

__all__ = ["CheckedLoader"]


class _Failed:
    """An item that could not be read: the error travels instead of the data."""

    def __init__(self, error: PuzzlecamError) -> None:
        self.error = error


class _Guarded(Dataset):
    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: Any) -> Any:
        try:
            return self.dataset[index]
        except PuzzlecamError as error:
            return _Failed(error)


def _guard_collate(collate: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def guarded(items: Any) -> Any:
        if isinstance(items, _Failed):  # unbatched loading (batch_size=None)
            return items
        if isinstance(items, list):
            for item in items:
                if isinstance(item, _Failed):
                    return item
        return collate(items)

    return guarded


class CheckedLoader(torch.utils.data.DataLoader):
    """``torch.utils.data.DataLoader`` (same arguments, keywords after the dataset) that
    raises a ``PuzzlecamError`` of a worker in the main process as itself."""

    def __init__(self, dataset: Dataset, **kwargs: Any) -> None:
        batched = kwargs.get("batch_size", 1) is not None or kwargs.get("batch_sampler") is not None
        collate = kwargs.pop("collate_fn", None) or (
            default_collate if batched else default_convert
        )
        super().__init__(_Guarded(dataset), collate_fn=_guard_collate(collate), **kwargs)

    def __iter__(self) -> Iterator[Any]:  # type: ignore[override]
        for batch in super().__iter__():
            if isinstance(batch, _Failed):
                raise batch.error
            yield batch
