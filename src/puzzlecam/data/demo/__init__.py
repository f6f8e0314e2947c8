"""The demo benchmark: Fashion-MNIST items pasted onto textured backgrounds, in VOC layout.

``build_demo_dataset(root, DemoDataConfig())`` writes a small weakly-supervised segmentation
benchmark that the project's VOC reader reads like PASCAL VOC 2012::

    root/JPEGImages/{id}.jpg            RGB image (JPEG quality 95, 4:4:4)
    root/SegmentationClass/{id}.png     VOC-palette label PNG: 0 background, 1..C classes,
                                        255 a thin ignore band along every object boundary
    root/Annotations/{id}.xml           VOC XML, one <object> per visible item
    root/ImageSets/Segmentation/{train,val}.txt
    root/classes.txt                    the C class names, background excluded
    root/demo_items.json                which Fashion-MNIST item each object comes from (and,
                                        with distractors, each distractor's shades)
    root/demo.json                      config, content fingerprint, summary (written last)

Each image shows 1..3 items (28x28 grey Fashion-MNIST images, cropped to the item, upscaled
to a random size with a smooth outline, tinted: a random colour times the item's own
intensity, with mild shading) on a procedural background (value noise, stripes, checkers, gradients in random
colours). Items may overlap, but every item keeps at least ``min_visible`` of its area (else
it is placed again); the mask gives each pixel the label of the top-most item there. Train
images use items of Fashion-MNIST's train split, val images items of its test split.

Distractors (``distractors=(min, max)`` per image, none by default) are salient things in the
background that are no class, like the many untagged things in PASCAL VOC's background:
without them, "differs from the border's colours" finds the items (a no-learning saliency
baseline scored above a learned CAM). Each is a smooth random blob (an ellipse of random
aspect and angle, its outline perturbed by value noise) that takes from an item of the same
split (train items for train images, test items for val) its area at the drawn size and its
shades: the item's own intensities re-arranged along a smooth noise field (histogram
matching). It is sized from ``item_size`` and tinted, shaded and placed like an item, so
colour, contrast and size cannot tell it from one, while no garment outline or fold is left.
A blob was chosen over an item cut into shuffled blocks: blocks keep straight block edges and
gaps, a shape cue of their own, while a blob's outline is smooth like an item's.
Distractors are painted on the background under the items (each keeps ``min_visible`` of its
area uncovered, else it is placed again, else left out) and are background everywhere: label 0
in the masks (no ignore band of their own), no XML object, no tag. They come from their own
generator, so the items, their placement and colours and the background are drawn exactly as
without them (the item colours are chosen against the image without distractors; a
distractor's colour keeps clear of both its background and the items' colours): the image
changes only where items do not cover it wholly, and the masks and annotations not at all.
demo_items.json lists them under "distractors".

The classes are all ten of Fashion-MNIST (C = 10, in its label order) or the subset
``classes`` names, in the order given: several are near-duplicates at 28x28 (shirt, tshirt,
pullover, coat; sandal, sneaker, boot), so a subset of distinct ones makes an easier benchmark.

Determinism: everything is drawn from numpy Generators seeded by ``(seed, split, image)``,
never global state, so the same config gives byte-identical files, and every image can be
rebuilt alone (which is how an interrupted build resumes). Items are drawn without repetition
from the items of the chosen classes among the first K items of each split, K being the size
of the bundled subset (6,000 train, 2,000 test), so the bundled subset and the full set give
the same dataset; only when a config needs more such items than the first K hold is the full
set required (then K is the whole split). With all ten classes the pool is the first K items
themselves, so ``classes=()`` builds exactly what builds made before the option existed did.

Modules: ``config`` (:class:`DemoDataConfig`, :class:`DemoSummary`, image ids), ``pools``
(the Fashion-MNIST items of each split and every image's draws from them), ``items`` (item
masks and crops, distractors), ``textures`` (backgrounds), ``render`` (one image) and
``build`` (the files written, :func:`build_demo_dataset`).
"""

from __future__ import annotations

from puzzlecam.data.demo.build import build_demo_dataset
from puzzlecam.data.demo.config import (
    DEMO_CLASSES,
    DEMO_FORMAT_VERSION,
    DemoDataConfig,
    DemoSummary,
    demo_image_ids,
)

# internals that the tests reach through this package
from puzzlecam.data.demo.items import _distractor_item as _distractor_item
from puzzlecam.data.demo.items import _prepare_items as _prepare_items
from puzzlecam.data.demo.pools import _load_pools as _load_pools
from puzzlecam.data.demo.pools import _pool_sizes as _pool_sizes
from puzzlecam.data.demo.pools import _render_all as _render_all

__all__ = [
    "DEMO_CLASSES",
    "DEMO_FORMAT_VERSION",
    "DemoDataConfig",
    "DemoSummary",
    "build_demo_dataset",
    "demo_image_ids",
]
