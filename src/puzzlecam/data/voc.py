"""PASCAL VOC 2012 layout reader (works for any data set laid out like VOC).

root/
  JPEGImages/{id}.jpg
  Annotations/{id}.xml                 image tags: every <object><name>, difficult or not
  SegmentationClass/{id}.png           ground truth (palette PNG, 255 = ignore)
  SegmentationClassAug/{id}.png        SBD's extra masks, used when present
  ImageSets/Segmentation/{split}.txt   one image id per line (train_aug.txt also at root)
  classes.txt                          optional: replaces VOC's 20 classes
"""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np

from puzzlecam.constants import VOC_CLASSES
from puzzlecam.data.classes import resolve_classes
from puzzlecam.data.ids import check_image_id, id_path
from puzzlecam.data.samples import Sample, SplitData
from puzzlecam.errors import DataError
from puzzlecam.io import load_label_png, read_text

__all__ = ["read_voc", "voc_split_exists"]

TagSource = Literal["auto", "xml", "masks"]


def _split_list_path(root: Path, split: str) -> Path | None:
    for candidate in (root / "ImageSets" / "Segmentation" / f"{split}.txt", root / f"{split}.txt"):
        if candidate.is_file():
            return candidate
    return None


def voc_split_exists(root: str | Path, split: str) -> bool:
    return _split_list_path(Path(root), split) is not None


def _read_ids(path: Path) -> list[str]:
    """The first field of each non-empty line, each checked to be an image id (a name)."""
    ids = []
    for number, line in enumerate(read_text(path).splitlines(), start=1):
        fields = line.split()
        if fields:
            ids.append(check_image_id(fields[0], path, f"line {number}", "JPEGImages/"))
    if len(set(ids)) != len(ids):
        raise DataError(path, "split list names some images more than once")
    return ids


def _tags_from_xml(path: Path, class_index: dict[str, int]) -> tuple[int, ...]:
    try:
        tree = ElementTree.parse(path)
    except ElementTree.ParseError as error:
        raise DataError(path, f"invalid XML ({error})") from error
    tags = set()
    for obj in tree.getroot().iter("object"):
        name = (obj.findtext("name") or "").strip()
        if name not in class_index:
            raise DataError(
                path,
                f"object '{name}' is not in the class list "
                f"({', '.join(class_index)}); fix the annotation or the classes.txt",
            )
        tags.add(class_index[name])
    return tuple(sorted(tags))


def _tags_from_mask(path: Path, num_classes: int) -> tuple[int, ...]:
    values = np.unique(load_label_png(path))
    bad = values[(values > num_classes) & (values != 255)]
    if bad.size:
        raise DataError(
            path, f"mask has values {bad.tolist()} outside the classes 0..{num_classes}, 255"
        )
    return tuple(int(v) - 1 for v in values if 0 < v <= num_classes)


def _find_image(root: Path, image_id: str) -> Path:
    folder = root / "JPEGImages"
    for ext in (".jpg", ".jpeg", ".png", ".JPG", ".JPEG", ".PNG"):
        candidate = id_path(folder, image_id, ext)
        if candidate.is_file():
            return candidate
    return id_path(folder, image_id, ".jpg")


def read_voc(
    root: str | Path,
    split: str,
    classes: Sequence[str] | None = None,
    tags_from: TagSource = "auto",
) -> SplitData:
    """Samples of ``split`` from a VOC-layout root.

    Tags come from the XML annotations (``auto``: XML when the file exists, else the mask).
    Images without any tag are left out and listed in ``SplitData.skipped``.
    """
    root = Path(root)
    if not (root / "JPEGImages").is_dir():
        hint = " (did you mean its VOC2012 sub-folder?)" if (root / "VOC2012").is_dir() else ""
        raise DataError(root, f"not a VOC-layout root: no JPEGImages folder{hint}")
    class_names = resolve_classes(root, classes, default=VOC_CLASSES)
    class_index = {name: index for index, name in enumerate(class_names)}
    list_path = _split_list_path(root, split)
    if list_path is None:
        raise DataError(
            root / "ImageSets" / "Segmentation" / f"{split}.txt", f"split list '{split}' not found"
        )

    samples, skipped, missing = [], [], []
    for image_id in _read_ids(list_path):
        image_path = _find_image(root, image_id)
        if not image_path.is_file():
            missing.append(image_path)
            continue
        mask_path = None
        for folder in ("SegmentationClass", "SegmentationClassAug"):
            candidate = id_path(root / folder, image_id, ".png")
            if candidate.is_file():
                mask_path = candidate
                break
        xml_path = id_path(root / "Annotations", image_id, ".xml")
        if tags_from == "xml" or (tags_from == "auto" and xml_path.is_file()):
            if not xml_path.is_file():
                raise DataError(xml_path, "annotation file not found")
            tags = _tags_from_xml(xml_path, class_index)
        elif mask_path is not None:
            tags = _tags_from_mask(mask_path, len(class_names))
        else:
            raise DataError(xml_path, "no annotation and no mask: the image's tags are unknown")
        if not tags:
            skipped.append((image_id, "no tags"))
            continue
        samples.append(Sample(image_id, image_path, tags, mask_path))
    if missing:
        shown = ", ".join(str(p) for p in missing[:5])
        raise DataError(list_path, f"{len(missing)} listed images are missing, e.g. {shown}")
    return SplitData(split, class_names, tuple(samples), tuple(skipped))
