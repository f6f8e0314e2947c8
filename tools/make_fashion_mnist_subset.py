"""Write the Fashion-MNIST subset bundled with puzzlecam (re-runnable, reproducible).

Takes the first ``--train`` items of the train split and the first ``--test`` items of the
test split of the full set and writes them, in the original idx.gz format and file names,
to ``src/puzzlecam/assets/fashion-mnist/``. The gzip headers carry no name and no time
stamp, so re-running on the same full set gives byte-identical files.

    python tools/make_fashion_mnist_subset.py [--source DIR] [--dest DIR]

The source defaults to what ``puzzlecam.data.fashion_mnist.find_fashion_mnist`` finds
(``$PUZZLECAM_FASHION_MNIST``, then ``/usr/share/datasets/fashion-mnist``; on Debian:
``apt-get install dataset-fashion-mnist``). The LICENSE file beside the subset is kept by
hand; update the item counts there when changing ``--train``/``--test`` (and
``BUNDLED_TRAIN_ITEMS``/``BUNDLED_TEST_ITEMS`` in the module).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from puzzlecam.data.fashion_mnist import (
    BUNDLED_TEST_ITEMS,
    BUNDLED_TRAIN_ITEMS,
    FASHION_MNIST_FILES,
    bundled_fashion_mnist_dir,
    find_fashion_mnist,
    load_fashion_mnist,
    write_idx,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=None, help="directory of the full set")
    parser.add_argument("--dest", type=Path, default=bundled_fashion_mnist_dir())
    parser.add_argument("--train", type=int, default=BUNDLED_TRAIN_ITEMS)
    parser.add_argument("--test", type=int, default=BUNDLED_TEST_ITEMS)
    args = parser.parse_args(argv)

    source = args.source or find_fashion_mnist()
    if source is None:
        print(
            "Fashion-MNIST not found: pass --source, set $PUZZLECAM_FASHION_MNIST, or "
            "`apt-get install dataset-fashion-mnist`",
            file=sys.stderr,
        )
        return 1
    for split, count in (("train", args.train), ("test", args.test)):
        data = load_fashion_mnist(source, split, max_items=count)
        images_name, labels_name = FASHION_MNIST_FILES[split]
        for name, array in ((images_name, data.images), (labels_name, data.labels)):
            path = args.dest / f"{name}.gz"
            write_idx(path, array)
            path.chmod(0o644)  # package data: readable by everyone (temp files start as 0600)
        print(f"{split}: first {count} items of {source} -> {args.dest}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
