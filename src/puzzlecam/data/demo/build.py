"""Writing the demo benchmark: the VOC-layout tree, demo_items.json and demo.json (and the
check of a build already there), :func:`build_demo_dataset`."""

from __future__ import annotations

import hashlib
import io
import json
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import numpy as np
from PIL import Image

from puzzlecam.data.demo.config import (
    DEMO_FORMAT_VERSION,
    DemoDataConfig,
    DemoSummary,
    demo_image_ids,
)
from puzzlecam.data.demo.pools import _SPLITS, _load_pools, _pool_sizes, _render_all
from puzzlecam.data.demo.render import _Rendered
from puzzlecam.dataclass_yaml import differences
from puzzlecam.errors import DataError
from puzzlecam.io import atomic_write, read_json, save_label_png, write_json
from puzzlecam.parallel import default_workers

__all__ = ["build_demo_dataset"]

_FORMAT = "puzzlecam-demo"
_META_FILE = "demo.json"
_ITEMS_FILE = "demo_items.json"
_LAYOUT_DIRS = ("JPEGImages", "SegmentationClass", "Annotations", "ImageSets/Segmentation")
_WRITER_THREADS = 8  # fsync-bound: overlapping more writes keeps the disk busy


def build_demo_dataset(
    root: str | Path,
    config: DemoDataConfig | None = None,
    source: str | Path | None = None,
    progress: bool = False,
    workers: int | None = None,
) -> DemoSummary:
    """Build (or finish, or find) the demo benchmark under ``root``; see the package docstring.

    ``source``: None picks the bundled subset when it has enough items and the full set
    otherwise; ``"bundled"`` or ``"full"`` (found by
    :func:`~puzzlecam.data.fashion_mnist.find_fashion_mnist`) force one; a Path is a directory
    of Fashion-MNIST idx files. All give the same dataset. ``progress`` shows a tqdm bar.

    A root holding a complete build of the same config is returned at once (``reused=True``);
    an interrupted build is completed (missing files written, stray temp files removed); a
    root holding a build of another config, or other files, raises DataError. Nothing is
    printed. Images are rendered in ``workers`` processes (default: one per core, at most
    ``parallel.MAX_DEFAULT_WORKERS``); the files are the same for any number.
    """
    root = Path(root)
    config = config if config is not None else DemoDataConfig()
    meta = _existing_build(root, config)
    if meta is not None and meta.get("complete"):
        if all(path.is_file() for path in _expected_files(root, config)):
            return _summary(root, meta, reused=True)

    pool_sizes = _pool_sizes(config)
    pools, source_name = _load_pools(config, source, pool_sizes)
    _remove_temp_files(root)
    identity = {"format": _FORMAT, "version": DEMO_FORMAT_VERSION, "config": config.to_dict()}
    write_json(root / _META_FILE, {**identity, "complete": False})
    _write_bytes(root / "classes.txt", ("\n".join(config.class_names) + "\n").encode())

    digest = hashlib.sha256()
    records: dict[str, dict[str, list[dict[str, Any]]]] = {split: {} for split in _SPLITS}
    clutter: dict[str, dict[str, list[dict[str, Any]]]] = {split: {} for split in _SPLITS}
    items_per_class = {split: dict.fromkeys(config.class_names, 0) for split in _SPLITS}
    images_per_class = {split: dict.fromkeys(config.class_names, 0) for split in _SPLITS}
    bar = _progress_bar(config.num_train + config.num_val) if progress else None
    # files are written by a few threads: fsync waits overlap with rendering
    with ThreadPoolExecutor(max_workers=_WRITER_THREADS) as writers:
        pending: deque[Future[None]] = deque()
        for split, image_id, rendered in _render_all(config, pools, workers or default_workers()):
            xml = _annotation_xml(image_id, config.image_size, rendered.objects).encode()
            for part in (
                image_id.encode(),
                rendered.image.tobytes(),
                rendered.labels.tobytes(),
                xml,
            ):
                digest.update(part)
            pending.append(
                writers.submit(
                    _write_image_files, root, image_id, rendered, xml, config.jpeg_quality
                )
            )
            while len(pending) > 4 * _WRITER_THREADS or (pending and pending[0].done()):
                pending.popleft().result()  # re-raises a failed write
            records[split][image_id] = rendered.objects
            clutter[split][image_id] = rendered.distractors
            for name in {obj["class"] for obj in rendered.objects}:
                images_per_class[split][name] += 1
            for obj in rendered.objects:
                items_per_class[split][obj["class"]] += 1
            if bar is not None:
                bar.update()
        while pending:
            pending.popleft().result()
    if bar is not None:
        bar.close()

    for split in _SPLITS:
        text = "".join(f"{image_id}\n" for image_id in records[split])
        _write_bytes(root / "ImageSets" / "Segmentation" / f"{split}.txt", text.encode())
    # the distractors' section only when there are any: without them, the file of older builds
    _write_bytes(
        root / _ITEMS_FILE, _items_json(records, clutter if config.distractors[1] else None)
    )
    summary = {
        "num_images": {split: config.num_images(split) for split in _SPLITS},
        "num_items": {split: sum(items_per_class[split].values()) for split in _SPLITS},
        "items_per_class": items_per_class,
        "images_per_class": images_per_class,
        "pool_size": pool_sizes,
        "source": source_name,
    }
    meta = {**identity, "complete": True, "fingerprint": digest.hexdigest(), "summary": summary}
    write_json(root / _META_FILE, meta)
    return _summary(root, meta, reused=False)


def _is_temp(path: Path) -> bool:
    """A temporary file left by an interrupted atomic write."""
    return path.name.startswith(".") and path.name.endswith(".tmp")


def _remove_temp_files(root: Path) -> None:
    for folder in (root, *(root / sub for sub in _LAYOUT_DIRS)):
        if folder.is_dir():
            for path in folder.iterdir():
                if _is_temp(path) and path.is_file():
                    path.unlink(missing_ok=True)


def _expected_files(root: Path, config: DemoDataConfig) -> Iterator[Path]:
    yield root / "classes.txt"
    yield root / _ITEMS_FILE
    for split in _SPLITS:
        yield root / "ImageSets" / "Segmentation" / f"{split}.txt"
        for image_id in demo_image_ids(split, config.num_images(split)):
            yield root / "JPEGImages" / f"{image_id}.jpg"
            yield root / "SegmentationClass" / f"{image_id}.png"
            yield root / "Annotations" / f"{image_id}.xml"


def _existing_build(root: Path, config: DemoDataConfig) -> dict[str, Any] | None:
    """The demo.json of a build of the same config in ``root``, None for an empty root.

    Raises DataError when ``root`` holds anything else: a build of another config or
    generator version, or files that are not a demo build.
    """
    meta_path = root / _META_FILE
    if meta_path.is_file():
        meta = read_json(meta_path)
        if (
            not isinstance(meta, dict)
            or meta.get("format") != _FORMAT
            or not isinstance(meta.get("config"), dict)
        ):
            raise DataError(meta_path, "is not a puzzlecam demo description; choose another root")
        # an option added after this build was made is missing from its demo.json; options are
        # only added with a default that reproduces the earlier files (else DEMO_FORMAT_VERSION
        # is bumped), so a missing option means its default
        stored = {**DemoDataConfig().to_dict(), **meta["config"]}
        wanted = config.to_dict()
        if meta.get("version") != DEMO_FORMAT_VERSION or stored != wanted:
            changes = differences(stored, wanted)
            if meta.get("version") != DEMO_FORMAT_VERSION:
                changes.append(f"generator version {meta.get('version')} -> {DEMO_FORMAT_VERSION}")
            raise DataError(
                root,
                "holds a demo build of a different configuration (" + "; ".join(changes) + "); "
                "builds are never mixed: delete this folder or choose another root",
            )
        return meta
    if root.exists():
        if not root.is_dir():
            raise DataError(root, "exists and is not a directory")
        if any(not _is_temp(path) for path in root.iterdir()):
            raise DataError(
                root,
                f"is not empty and holds no {_META_FILE}, so it is not a demo build; "
                "choose an empty or new folder",
            )
    return None


def _summary(root: Path, meta: Mapping[str, Any], reused: bool) -> DemoSummary:
    data = meta["summary"]
    return DemoSummary(
        root=root,
        num_images=dict(data["num_images"]),
        num_items=dict(data["num_items"]),
        items_per_class={k: dict(v) for k, v in data["items_per_class"].items()},
        images_per_class={k: dict(v) for k, v in data["images_per_class"].items()},
        pool_size=dict(data["pool_size"]),
        source=str(data["source"]),
        fingerprint=str(meta["fingerprint"]),
        reused=reused,
    )


def _progress_bar(total: int) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="demo images", unit="img")


def _annotation_xml(
    image_id: str, size: tuple[int, int], objects: Sequence[Mapping[str, Any]]
) -> str:
    """VOC-style XML annotation of one image."""
    height, width = size
    lines = [
        "<annotation>",
        "\t<folder>puzzlecam-demo</folder>",
        f"\t<filename>{escape(image_id)}.jpg</filename>",
        "\t<source>",
        "\t\t<database>puzzlecam demo (Fashion-MNIST items, MIT licence, Zalando SE)</database>",
        "\t</source>",
        "\t<size>",
        f"\t\t<width>{width}</width>",
        f"\t\t<height>{height}</height>",
        "\t\t<depth>3</depth>",
        "\t</size>",
        "\t<segmented>1</segmented>",
    ]
    for obj in objects:
        xmin, ymin, xmax, ymax = obj["bbox"]
        lines += [
            "\t<object>",
            f"\t\t<name>{escape(obj['class'])}</name>",
            "\t\t<pose>Unspecified</pose>",
            "\t\t<truncated>0</truncated>",
            f"\t\t<occluded>{int(obj['visible'] < 1.0)}</occluded>",
            "\t\t<difficult>0</difficult>",
            "\t\t<bndbox>",
            f"\t\t\t<xmin>{xmin}</xmin>",
            f"\t\t\t<ymin>{ymin}</ymin>",
            f"\t\t\t<xmax>{xmax}</xmax>",
            f"\t\t\t<ymax>{ymax}</ymax>",
            "\t\t</bndbox>",
            "\t</object>",
        ]
    lines.append("</annotation>")
    return "\n".join(lines) + "\n"


def _jpeg_bytes(image: np.ndarray, quality: int) -> bytes:
    """JPEG encoding without chroma subsampling; no time stamps, so reproducible bytes."""
    buffer = io.BytesIO()
    Image.fromarray(image, mode="RGB").save(
        buffer, format="JPEG", quality=quality, subsampling=0, optimize=False, progressive=False
    )
    return buffer.getvalue()


def _write_bytes(path: Path, data: bytes) -> None:
    with atomic_write(path) as handle:
        handle.write(data)


def _write_image_files(
    root: Path, image_id: str, rendered: _Rendered, xml: bytes, quality: int
) -> None:
    """The image's JPEG, label PNG and XML, each written only if missing (resume)."""
    jpeg = root / "JPEGImages" / f"{image_id}.jpg"
    if not jpeg.is_file():
        _write_bytes(jpeg, _jpeg_bytes(rendered.image, quality))
    label_path = root / "SegmentationClass" / f"{image_id}.png"
    if not label_path.is_file():
        save_label_png(label_path, rendered.labels)
    xml_path = root / "Annotations" / f"{image_id}.xml"
    if not xml_path.is_file():
        _write_bytes(xml_path, xml)


def _items_json(
    records: Mapping[str, Mapping[str, Any]],
    distractors: Mapping[str, Mapping[str, Any]] | None = None,
) -> bytes:
    """demo_items.json: split -> image id -> objects (class, item index, bbox, visible share);
    with ``distractors``, also "distractors" -> split -> image id -> distractors (the item
    lending its intensities, bbox, visible share).

    One image per line, so the file stays small and readable.
    """

    def block(key: str, images: Mapping[str, Any], pad: str) -> str:
        body = ",\n".join(f"{pad}  {json.dumps(i)}: {json.dumps(v)}" for i, v in images.items())
        return f'{pad}"{key}": {{\n' + (body + "\n" if body else "") + f"{pad}}}"

    blocks = [block(split, images, "  ") for split, images in records.items()]
    if distractors is not None:
        inner = ",\n".join(block(split, images, "    ") for split, images in distractors.items())
        blocks.append('  "distractors": {\n' + inner + "\n  }")
    return ("{\n" + ",\n".join(blocks) + "\n}\n").encode()
