"""Where the demo's items come from: the Fashion-MNIST pool of each split (its size, loaded
from the bundled subset or the full set) and the items every image draws from it."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from puzzlecam.data.demo.config import DemoDataConfig, demo_image_ids
from puzzlecam.data.demo.items import _Item, _prepare_items
from puzzlecam.data.demo.render import _render, _Rendered
from puzzlecam.data.fashion_mnist import (
    BUNDLED_TEST_ITEMS,
    BUNDLED_TRAIN_ITEMS,
    DEFAULT_FASHION_MNIST_DIRS,
    FASHION_MNIST_CLASSES,
    FASHION_MNIST_ENV,
    FASHION_MNIST_FILES,
    FASHION_MNIST_SIZES,
    FashionMnistSplit,
    Split,
    bundled_fashion_mnist_dir,
    find_fashion_mnist,
    load_bundled_fashion_mnist,
    load_fashion_mnist,
    read_idx,
)
from puzzlecam.errors import ConfigError, DataError
from puzzlecam.parallel import imap_images

# demo split -> (Fashion-MNIST split, seed stream code, items in the bundled subset)
_SPLITS: Mapping[str, tuple[Split, int, int]] = {
    "train": ("train", 0, BUNDLED_TRAIN_ITEMS),
    "val": ("test", 1, BUNDLED_TEST_ITEMS),
}
# last seed word of an image's distractor generator, (seed, split stream, image, this): not 0,
# as a trailing 0 would give the image's own generator (seed, split stream, image)
_DISTRACTOR_STREAM = 0x44495354  # "DIST"


def _pool_items(labels: np.ndarray, config: DemoDataConfig) -> np.ndarray:
    """Indices (into ``labels``, ascending) of the items of the config's classes."""
    return np.flatnonzero(np.isin(labels, config.fashion_mnist_labels))


def _classes_text(config: DemoDataConfig) -> str:
    """How errors name the classes items are drawn from."""
    if not config.classes:
        return "of any class"
    return f"of the {len(config.classes)} chosen classes ({', '.join(config.classes)})"


def _pool_sizes(config: DemoDataConfig) -> dict[str, int]:
    """Per split: how many of the first Fashion-MNIST items the images draw from.

    The bundled subset's labels are read (a few KB) to count its items of the chosen classes;
    the full set is not needed to count its own: Fashion-MNIST is balanced (6,000 train and
    1,000 test items per class), which :func:`_load_pools` checks when it loads it.
    """
    sizes = {}
    for split, (fm_split, _, bundled) in _SPLITS.items():
        needed = config.num_images(split) * config.max_items
        full = FASHION_MNIST_SIZES[fm_split]
        per_class = full // len(FASHION_MNIST_CLASSES)
        available = per_class * len(config.class_names)
        if needed > available:
            of_them = f" of them ({per_class} per class)" if config.classes else ""
            raise ConfigError(
                f"{config.num_images(split)} {split} images x max_items {config.max_items} need "
                f"{needed} distinct items {_classes_text(config)}; Fashion-MNIST's {fm_split} "
                f"split has {available}{of_them}. Lower the image count or max_items"
                + (", or choose more classes." if config.classes else ".")
            )
        if needed == 0 or not config.classes:
            sizes[split] = bundled if needed <= bundled else full
            continue
        labels_file = bundled_fashion_mnist_dir() / f"{FASHION_MNIST_FILES[fm_split][1]}.gz"
        in_bundled = len(
            _pool_items(read_idx(labels_file, expected_ndim=1, max_items=bundled), config)
        )
        sizes[split] = bundled if needed <= in_bundled else full
    return sizes


def _load_pools(
    config: DemoDataConfig, source: str | Path | None, pool_sizes: Mapping[str, int]
) -> tuple[dict[str, FashionMnistSplit], str]:
    """The first ``pool_sizes[split]`` items of every split with images, and the source name."""
    wanted = [split for split in _SPLITS if config.num_images(split) > 0]
    needs_full = [split for split in wanted if pool_sizes[split] > _SPLITS[split][2]]
    if source is None:
        source = "full" if needs_full else "bundled"
    how_to_get = (
        "install it (Debian/Ubuntu: apt-get install dataset-fashion-mnist), or run "
        "puzzlecam.data.fashion_mnist.download_fashion_mnist(DIR) and set "
        f"${FASHION_MNIST_ENV}=DIR, or pass the directory as source"
    )
    if source == "bundled":
        if needs_full:
            raise ConfigError(
                f"{' and '.join(needs_full)} needs more items {_classes_text(config)} than the "
                f"bundled Fashion-MNIST subset holds (its {BUNDLED_TRAIN_ITEMS} train and "
                f"{BUNDLED_TEST_ITEMS} test items; num_images x max_items are drawn per split), "
                "so the full set is required: " + how_to_get
            )
        bundled = {
            split: load_bundled_fashion_mnist(_SPLITS[split][0], max_items=pool_sizes[split])
            for split in wanted
        }
        _check_pools(config, bundled, bundled_fashion_mnist_dir())
        return bundled, "bundled"
    if source == "full":
        found = find_fashion_mnist()
        if found is None:
            why = f"{' and '.join(needs_full)} needs it" if needs_full else "it was asked for"
            raise DataError(
                DEFAULT_FASHION_MNIST_DIRS[0],
                f"the full Fashion-MNIST set is not here nor in ${FASHION_MNIST_ENV}, and {why}; "
                + how_to_get,
            )
        directory = found
    else:
        directory = Path(source)
    pools = {
        split: load_fashion_mnist(directory, _SPLITS[split][0], max_items=pool_sizes[split])
        for split in wanted
    }
    _check_pools(config, pools, directory)
    return pools, str(directory)


def _check_pools(
    config: DemoDataConfig, pools: Mapping[str, FashionMnistSplit], directory: Path
) -> None:
    """DataError unless every pool holds enough items of the chosen classes.

    Cannot fail on the real data (:func:`_pool_sizes` counted them); it catches a set in
    ``directory`` that is not the balanced Fashion-MNIST, before an image is left short.
    """
    for split, pool in pools.items():
        needed = config.num_images(split) * config.max_items
        found = len(_pool_items(pool.labels, config))
        if found < needed:
            raise DataError(
                directory,
                f"its first {len(pool)} {_SPLITS[split][0]} items hold {found} items "
                f"{_classes_text(config)}, but {split} needs {needed}; is this Fashion-MNIST?",
            )


def _render_all(
    config: DemoDataConfig, pools: Mapping[str, FashionMnistSplit], workers: int = 1
) -> Iterator[tuple[str, str, _Rendered]]:
    """Every image of every split, in order: (split, image id, rendering), rendered in
    ``workers`` processes."""
    for split, (_, stream, _) in _SPLITS.items():
        count = config.num_images(split)
        if count == 0:
            continue
        # image i draws its items from slots [i * max_items, (i + 1) * max_items) of one
        # permutation of the pool: no item twice in a split, and image i depends only on
        # (seed, split, i), so any image can be rebuilt alone
        slots = config.max_items
        # with all ten classes, candidates is arange(pool size): the draws of older builds
        candidates = _pool_items(pools[split].labels, config)
        order = candidates[
            np.random.default_rng([config.seed, stream]).permutation(len(candidates))
        ]
        rngs = [np.random.default_rng([config.seed, stream, i]) for i in range(count)]
        chosen = [
            order[i * slots : i * slots + int(rng.integers(config.min_items, slots + 1))]
            for i, rng in enumerate(rngs)
        ]
        items = _prepare_items(
            pools[split],
            np.concatenate(chosen),
            config.intensity_threshold,
            config.fashion_mnist_labels,
        )
        extras: list[tuple[np.random.Generator, list[_Item]] | None] = [None] * count
        low, high = config.distractors
        if high:
            # distractors: their own generator per image, so the draws above never shift; each
            # borrows the shades of a random item among the split's candidates (repeats allowed)
            clutter_rngs = [
                np.random.default_rng([config.seed, stream, i, _DISTRACTOR_STREAM])
                for i in range(count)
            ]
            lent = [
                candidates[rng.integers(len(candidates), size=int(rng.integers(low, high + 1)))]
                for rng in clutter_rngs
            ]
            lenders = np.unique(np.concatenate(lent))
            prepared = (
                _prepare_items(
                    pools[split], lenders, config.intensity_threshold, config.fashion_mnist_labels
                )
                if lenders.size
                else {}
            )
            extras = [
                (rng, [prepared[int(i)] for i in sources])
                for rng, sources in zip(clutter_rngs, lent, strict=True)
            ]
        jobs = [
            (rng, [items[int(i)] for i in indices], config, clutter)
            for rng, indices, clutter in zip(rngs, chosen, extras, strict=True)
        ]
        # each image is a function of its own generators: rendering them in parallel
        # changes no byte, and the order of the results is kept
        rendered = imap_images(_render_job, jobs, workers, chunksize=4)
        for image_id, image in zip(demo_image_ids(split, count), rendered, strict=True):
            yield split, image_id, image


def _render_job(
    job: tuple[np.random.Generator, list[_Item], DemoDataConfig, Any],
) -> _Rendered:
    """:func:`_render` of one image's arguments (a module-level function: picklable)."""
    return _render(*job)
