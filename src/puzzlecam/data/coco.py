"""MS COCO 2014 reader: image tags and semantic masks from the instance annotations.

root/
  train2014/COCO_train2014_000000000009.jpg      images of each split
  val2014/COCO_val2014_000000000042.jpg
  annotations/instances_{split}.json             COCO instances json of that split
  classes.txt                                    optional: restrict, reorder or rename classes
  puzzlecam_masks/{split}/{image_id}.png         semantic masks, written here the first time

The usual weakly-supervised protocol trains on ``train2014`` (82,783 images) and evaluates
on ``val2014`` (40,504); image ids are the file stems (``COCO_train2014_000000000009``).

Classes: by default the json's 80 categories, ordered by category id (COCO's ids run 1..90
with gaps; label value = position in that order + 1). A class list (the ``classes`` option,
else ``root/classes.txt``) restricts and reorders them: each entry is a COCO category name
(``traffic light``; spaces are part of the name) or ``new name = coco name`` to rename one.
Several entries may give the same new name (``vehicle = car``, ``vehicle = truck``) to merge
categories into one class. Categories left out of the list count as background: they give
no tags and are not painted into the masks, as unlisted objects are background in VOC.

Tags: every listed category with at least one annotation in the image, crowd annotations
(``iscrowd: 1``, a group such as a stand full of people) included, since the class is in
the picture. Images without any annotation, or whose annotations are all of unlisted
categories, are left out and reported in ``SplitData.skipped``.

Masks (0 background, 1..C classes; no 255 is produced): each annotation is rasterised with
pycocotools (the polygon/RLE decoding ``COCO.annToMask`` does) and painted in this order,
later painting winning: crowd regions first, then the other instances from the largest to
the smallest area. Where instances overlap the smaller one is on top, as coco2voc (a
converter commonly used to make COCO ground truth for WSSS) does: small objects usually lie
in front of larger ones, and otherwise a cup on a table would vanish under it. Crowd regions
are labelled with their class (not 255) but only where no individual instance covers them,
their RLE outlines being coarse. Polygons with fewer than three points have no area and
are ignored.

The masks are made once, before the split is returned, for every listed image that lacks
one (with a progress bar and several processes: 10k+ images take minutes, not hours) and
written atomically, so an interrupted run resumes where it stopped. ``masks.json`` in the
mask folder records the class mapping and the annotation file they were made from; a
restricted or renamed class list gets its own folder (``{split}-{digest}``). Several
processes reading the same split at once (DDP ranks) may write the same mask twice, which
is harmless.
"""

from __future__ import annotations

import gc
import hashlib
import json
import multiprocessing
import os
import warnings
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from numbers import Real
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from puzzlecam.constants import BACKGROUND
from puzzlecam.data.classes import resolve_classes
from puzzlecam.data.ids import check_image_id, id_path
from puzzlecam.data.samples import Sample, SplitData
from puzzlecam.errors import ConfigError, DataError
from puzzlecam.io import claim_folder, read_json, save_label_png, write_json
from puzzlecam.parallel import default_workers

__all__ = ["read_coco", "coco_class_mapping", "coco_semantic_mask", "MASK_FOLDER"]

MASK_FOLDER = "puzzlecam_masks"
_MASK_RULES = "crowd first, then instances by decreasing area; later wins; unlisted = 0"
_MASKS_META = "masks.json"
_PARALLEL_MIN = 64  # fewer masks than this are written in this process

# One annotation ready to paint: (label value, is crowd, segmentation as in the json).
_Shape = tuple[int, bool, Any]


def _mask_api() -> Any:
    try:
        from pycocotools import mask as mask_api
    except ImportError as error:
        raise ConfigError(
            "data format 'coco' needs pycocotools to read the annotations: "
            "pip install 'puzzlecam[coco]'"
        ) from error
    return mask_api


# --- classes -----------------------------------------------------------------------------


def coco_class_mapping(
    categories: Mapping[int, str], entries: Sequence[str] | None, source: str | Path
) -> tuple[tuple[str, ...], dict[int, int]]:
    """Class names and ``{category id: class index}`` from a class list.

    ``entries`` (None: all categories in id order) holds COCO category names or
    ``new name = coco name``; equal new names merge categories. ``source`` names the list
    in error messages.
    """
    by_name = {name: cat_id for cat_id, name in categories.items()}
    if entries is None:
        ordered = sorted(categories)
        return tuple(categories[i] for i in ordered), {
            cat_id: k for k, cat_id in enumerate(ordered)
        }
    names: list[str] = []
    mapping: dict[int, int] = {}
    for entry in entries:
        new_name, _, coco_name = entry.rpartition("=") if "=" in entry else ("", "", entry)
        coco_name, new_name = coco_name.strip(), new_name.strip() or coco_name.strip()
        if coco_name not in by_name:
            raise DataError(
                source,
                f"'{coco_name}' is not a category of the annotations; valid names: "
                f"{', '.join(categories[i] for i in sorted(categories))}",
            )
        if new_name == BACKGROUND:
            raise DataError(source, f"'{entry}': background is label 0, not a class to name")
        cat_id = by_name[coco_name]
        if cat_id in mapping:
            raise DataError(source, f"category '{coco_name}' is listed twice")
        if new_name not in names:
            names.append(new_name)
        mapping[cat_id] = names.index(new_name)
    return tuple(names), mapping


# --- masks -------------------------------------------------------------------------------


def _valid_rle(segmentation: Mapping[str, Any], size: tuple[int, int]) -> bool:
    counts = segmentation.get("counts")
    if list(segmentation.get("size", ())) != list(size):
        return False
    if isinstance(counts, list):  # uncompressed: runs must cover the image exactly
        return (
            all(isinstance(c, int) and c >= 0 for c in counts) and sum(counts) == size[0] * size[1]
        )
    return isinstance(counts, (str, bytes))


def _decode(mask_api: Any, segmentation: Any, size: tuple[int, int]) -> np.ndarray:
    """One annotation's (H, W) uint8 0/1 mask; ValueError when malformed."""
    height, width = size
    if isinstance(segmentation, list):  # polygons: [[x0, y0, x1, y1, ...], ...]
        polygons = []
        for polygon in segmentation:
            if not isinstance(polygon, list) or not all(
                isinstance(v, Real) and not isinstance(v, bool) for v in polygon
            ):
                raise ValueError("polygons must be lists of numbers")
            if len(polygon) % 2:
                raise ValueError(f"a polygon has an odd number of coordinates ({len(polygon)})")
            if len(polygon) >= 6:  # fewer than three points: no area
                polygons.append([float(v) for v in polygon])
        if not polygons:
            return np.zeros(size, dtype=np.uint8)
        rle = mask_api.merge(mask_api.frPyObjects(polygons, height, width))
    elif isinstance(segmentation, Mapping):  # RLE, compressed (str) or not (list of runs)
        if not _valid_rle(segmentation, size):
            raise ValueError(
                f"RLE must have size [{height}, {width}] (the image's) and counts that "
                "cover it exactly"
            )
        rle = dict(segmentation)
        if isinstance(rle["counts"], list):
            rle = mask_api.frPyObjects(rle, height, width)
        elif isinstance(rle["counts"], str):
            rle["counts"] = rle["counts"].encode("ascii")
    else:
        raise ValueError("segmentation must be a list of polygons or an RLE dict")
    with warnings.catch_warnings():  # pycocotools' __array__ predates numpy 2's copy keyword
        warnings.simplefilter("ignore", DeprecationWarning)
        binary = mask_api.decode(rle)
    return np.ascontiguousarray(binary, dtype=np.uint8)


def coco_semantic_mask(shapes: Sequence[_Shape], size: tuple[int, int]) -> np.ndarray:
    """(H, W) uint8 label map from ``(label value, is crowd, segmentation)`` annotations.

    Crowd regions are painted first, then the other instances from the largest to the
    smallest, each over what is there (see the module docstring). Raises ValueError for a
    malformed segmentation.
    """
    mask_api = _mask_api()
    decoded = [(value, crowd, _decode(mask_api, seg, size)) for value, crowd, seg in shapes]
    # stable sort: crowd first, then by decreasing area; ties keep the json's order
    decoded.sort(key=lambda item: (not item[1], -int(item[2].sum())))
    labels = np.zeros(size, dtype=np.uint8)
    for value, _, binary in decoded:
        labels[binary.astype(bool)] = value
    return labels


def _write_mask(task: tuple[Path, tuple[int, int], list[_Shape], str]) -> str | None:
    """Paint and save one mask; the problem as text when its annotations are malformed
    (returned, not raised: DataError does not cross a process boundary intact)."""
    out_path, size, shapes, image_name = task
    try:
        labels = coco_semantic_mask(shapes, size)
    except ValueError as error:
        return f"annotation of {image_name}: bad segmentation ({error})"
    save_label_png(out_path, labels)
    return None


def _write_masks(
    tasks: list, json_path: Path, workers: int, progress: bool | None, description: str
) -> None:
    """Write every task's mask (in ``workers`` processes for large lists) with a bar."""
    # tqdm's disable=None: shown on a terminal only
    bar = tqdm(
        total=len(tasks), desc=description, disable=None if progress is None else not progress
    )

    def first_problem(results: Iterable[str | None]) -> str | None:
        for problem in results:
            if problem:
                return problem
            bar.update(1)
        return None

    if workers <= 1 or len(tasks) < _PARALLEL_MIN:
        problem = first_problem(map(_write_mask, tasks))
    else:
        method = "fork" if os.name == "posix" else "spawn"
        # forked workers share the parent's (large) annotation objects; frozen, the garbage
        # collector leaves them alone instead of copying every page into every worker
        gc.freeze()
        try:
            with multiprocessing.get_context(method).Pool(workers) as pool:
                chunk = max(1, min(64, len(tasks) // (8 * workers)))
                problem = first_problem(pool.imap_unordered(_write_mask, tasks, chunksize=chunk))
        finally:
            gc.unfreeze()
    bar.close()
    if problem:
        raise DataError(json_path, problem)


def _prepare_mask_folder(folder: Path, meta: dict[str, Any], json_path: Path) -> set[str]:
    """Create or check the mask folder; the ids of the masks already in it."""

    def check(meta_path: Path) -> None:
        if read_json(meta_path) != meta:
            raise DataError(
                meta_path,
                f"the masks in {folder} were made from another annotation file or class "
                f"mapping ({json_path.name}: {meta['annotation_bytes']} bytes now); delete "
                f"{folder} and they will be made again",
            )

    try:
        claim_folder(folder, _MASKS_META, lambda meta_path: write_json(meta_path, meta), check)
    except OSError as error:
        raise DataError(
            folder,
            f"cannot write the ground-truth masks made from {json_path.name} here ({error}); "
            "make the data root writable, or pass cache_dir to read_coco",
        ) from error
    return {entry.name[:-4] for entry in os.scandir(folder) if entry.name.endswith(".png")}


# --- reading -----------------------------------------------------------------------------


def _records(data: Any, key: str, fields: tuple[str, ...], path: Path) -> list[dict[str, Any]]:
    records = data.get(key) if isinstance(data, dict) else None
    if not isinstance(records, list):
        raise DataError(path, f"not a COCO instances file: no '{key}' list")
    for index, record in enumerate(records):
        missing = [f for f in fields if not isinstance(record, dict) or f not in record]
        if missing:
            raise DataError(path, f"{key}[{index}] lacks {missing}")
    return records


def _category_names(data: Any, path: Path) -> dict[int, str]:
    names: dict[int, str] = {}
    for category in _records(data, "categories", ("id", "name"), path):
        cat_id, name = category["id"], str(category["name"])
        if cat_id in names or name in names.values():
            raise DataError(path, f"category {cat_id} '{name}' is listed twice")
        names[cat_id] = name
    if not names:
        raise DataError(path, "the annotations list no categories")
    return names


def _shapes_by_image(
    data: Any,
    path: Path,
    images: Mapping[Any, Any],
    categories: Mapping[int, str],
    class_of: Mapping[int, int],
) -> tuple[set[Any], dict[Any, list[_Shape]]]:
    """Images with any annotation, and each image's annotations of the listed classes."""
    annotated: set[Any] = set()
    shapes: dict[Any, list[_Shape]] = defaultdict(list)
    fields = ("image_id", "category_id", "segmentation")
    for index, ann in enumerate(_records(data, "annotations", fields, path)):
        image_key, cat_id = ann["image_id"], ann["category_id"]
        if image_key not in images:
            raise DataError(
                path, f"annotations[{index}] refers to image id {image_key}, not in 'images'"
            )
        if cat_id not in categories:
            raise DataError(
                path,
                f"annotations[{index}] (image id {image_key}) has category id {cat_id}, "
                f"not in 'categories' ({sorted(categories)})",
            )
        annotated.add(image_key)
        if cat_id in class_of:
            crowd = bool(ann.get("iscrowd", 0))
            shapes[image_key].append((class_of[cat_id] + 1, crowd, ann["segmentation"]))
    return annotated, shapes


def read_coco(
    root: str | Path,
    split: str,
    classes: Sequence[str] | None = None,
    *,
    cache_dir: str | Path | None = None,
    workers: int | None = None,
    progress: bool | None = None,
) -> SplitData:
    """Samples of a COCO 2014 split (``train2014`` or ``val2014``), masks made when missing.

    ``classes`` restricts, reorders or renames the categories (else ``root/classes.txt``,
    else all of them in category-id order); see the module docstring for the rules of tags
    and masks. ``cache_dir`` replaces ``root/puzzlecam_masks`` (for a read-only data root);
    ``workers`` processes write the masks (default ``parallel.default_workers``: the CPUs
    this process may use, at most 8); ``progress`` shows a bar (None: on a terminal only).
    """
    root = Path(root)
    json_path = root / "annotations" / f"instances_{split}.json"
    if not json_path.is_file():
        found = sorted(p.name for p in (root / "annotations").glob("instances_*.json"))
        hint = f"; found {found}" if found else " (is root the folder above annotations/?)"
        raise DataError(json_path, f"annotation file of split '{split}' not found{hint}")
    image_dir = root / split
    if not image_dir.is_dir():
        raise DataError(image_dir, f"image folder of split '{split}' not found")
    _mask_api()  # fail before reading a large json when pycocotools is missing

    data = read_json(json_path)
    categories = _category_names(data, json_path)
    images: dict[Any, dict[str, Any]] = {}
    for record in _records(data, "images", ("id", "file_name", "height", "width"), json_path):
        if record["id"] in images:
            raise DataError(json_path, f"image id {record['id']} is listed twice")
        images[record["id"]] = record
    listed = (root / "classes.txt").is_file()
    entries = resolve_classes(root, classes) if classes or listed else None
    source = "the 'classes' option" if classes else root / "classes.txt"
    class_names, class_of = coco_class_mapping(categories, entries, source)
    annotated, shapes = _shapes_by_image(data, json_path, images, categories, class_of)
    del data

    mapping = [
        [name, sorted(c for c, k in class_of.items() if k == index)]
        for index, name in enumerate(class_names)
    ]
    is_default = (class_names, class_of) == coco_class_mapping(categories, None, source)
    digest = hashlib.sha256(json.dumps(mapping).encode("utf-8")).hexdigest()[:8]
    mask_dir = (Path(cache_dir) if cache_dir is not None else root / MASK_FOLDER) / (
        split if is_default else f"{split}-{digest}"
    )

    on_disk = {entry.name for entry in os.scandir(image_dir)}
    samples, skipped, missing, tasks = [], [], [], []
    stems: dict[str, Any] = {}
    for image_key, record in images.items():
        where = f"image {image_key}"
        file_name = check_image_id(str(record["file_name"]), json_path, where, f"{split}/")
        image_id = check_image_id(Path(file_name).stem, json_path, where, f"{split}/")
        if image_id in stems:
            raise DataError(
                json_path,
                f"images {stems[image_id]} and {image_key} share the file stem '{image_id}'",
            )
        stems[image_id] = image_key
        if image_key not in annotated:
            skipped.append((image_id, "no annotations"))
        elif not shapes.get(image_key):
            skipped.append((image_id, "no annotations of the listed classes"))
        elif file_name not in on_disk and not id_path(image_dir, file_name).is_file():
            missing.append(file_name)
        else:
            mask_path = id_path(mask_dir, image_id, ".png")
            tags = tuple(sorted({value - 1 for value, _, _ in shapes[image_key]}))
            samples.append(Sample(image_id, id_path(image_dir, file_name), tags, mask_path))
            size = (int(record["height"]), int(record["width"]))
            tasks.append((mask_path, size, shapes[image_key], file_name))
    if missing:
        raise DataError(
            image_dir, f"{len(missing)} images of {json_path.name} are missing, e.g. {missing[:5]}"
        )

    meta = {
        "annotations": json_path.name,
        "annotation_bytes": json_path.stat().st_size,
        "rules": _MASK_RULES,
        "classes": mapping,
    }
    done = _prepare_mask_folder(mask_dir, meta, json_path)
    todo = [task for task in tasks if task[0].stem not in done]
    if todo:
        _write_masks(todo, json_path, workers or default_workers(), progress, f"masks {split}")
    samples.sort(key=lambda s: s.image_id)
    return SplitData(split, class_names, tuple(samples), tuple(sorted(skipped)))
