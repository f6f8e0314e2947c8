"""Per-image CPU work (CRF, label maps, data checks) spread over processes, with a progress
bar, and the one rule for how many workers such a pool gets by default."""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Sequence
from typing import TypeVar

from tqdm import tqdm

__all__ = ["MAX_DEFAULT_WORKERS", "default_workers", "map_images"]

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


def map_images(
    job: Callable[[T], R], items: Sequence[T], workers: int, description: str, progress: bool = True
) -> list[R]:
    """``[job(item) for item in items]`` in ``workers`` processes (inline when 1).

    ``job`` must be a module-level function (or a partial of one) so it can be pickled.
    Results come back in the items' order; the first error is raised.
    """
    bar = tqdm(
        total=len(items), desc=description, disable=not progress, dynamic_ncols=True, leave=False
    )
    results: list[R] = []
    if workers <= 1 or len(items) <= 1:
        for item in items:
            results.append(job(item))
            bar.update(1)
    else:
        with multiprocessing.get_context("fork" if os.name == "posix" else "spawn").Pool(
            workers
        ) as pool:
            for result in pool.imap(
                job, items, chunksize=max(1, min(16, len(items) // (4 * workers)))
            ):
                results.append(result)
                bar.update(1)
    bar.close()
    return results
