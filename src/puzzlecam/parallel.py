"""Per-image CPU work (CRF, label maps, data checks) spread over processes, with a progress
bar, and the one rule for how many workers such a pool gets by default."""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

from tqdm import tqdm

__all__ = ["MAX_DEFAULT_WORKERS", "default_workers", "imap_images", "map_images"]

T = TypeVar("T")
R = TypeVar("R")


MAX_DEFAULT_WORKERS = 8


def default_workers() -> int:
    """Workers (processes or threads) a pool gets unless told: the CPUs this process may run
    on (its affinity mask, else the CPU count), at most ``MAX_DEFAULT_WORKERS``, at least 1."""
    if hasattr(os, "sched_getaffinity"):
        cores = len(os.sched_getaffinity(0))
    else:
        cores = os.cpu_count() or 1
    return max(1, min(MAX_DEFAULT_WORKERS, cores))


def imap_images(
    job: Callable[[T], R], items: Sequence[T], workers: int, chunksize: int | None = None
) -> Iterator[R]:
    """``job(item)`` for each item, in the items' order, computed in ``workers`` processes
    (inline when 1), yielded as they come: a caller can write each result before the next
    is ready, so memory holds a few results rather than all of them.

    ``job`` must be a module-level function (or a partial of one) so it can be pickled.
    The first error is raised.
    """
    if workers <= 1 or len(items) <= 1:
        yield from map(job, items)
        return
    chunksize = chunksize or max(1, min(16, len(items) // (4 * workers)))
    context = multiprocessing.get_context("fork" if os.name == "posix" else "spawn")
    with context.Pool(workers) as pool:
        yield from pool.imap(job, items, chunksize=chunksize)


def map_images(
    job: Callable[[T], R], items: Sequence[T], workers: int, description: str, progress: bool = True
) -> list[R]:
    """``[job(item) for item in items]`` in ``workers`` processes (inline when 1), with a
    progress bar (see :func:`imap_images`)."""
    bar = tqdm(
        total=len(items), desc=description, disable=not progress, dynamic_ncols=True, leave=False
    )
    results: list[R] = []
    for result in imap_images(job, items, workers):
        results.append(result)
        bar.update(1)
    bar.close()
    return results
