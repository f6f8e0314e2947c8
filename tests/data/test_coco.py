"""COCO reader on a COCO-format tree written here: non-contiguous category ids, polygon and
RLE (compressed and not) segmentations, a crowd annotation, an image without annotations;
masks checked pixel by pixel, then a tiny pipeline run with ``format: coco``."""

import json
import os
import sys

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("pycocotools")
from pycocotools import mask as mask_api  # noqa: E402

from puzzlecam.cli import main  # noqa: E402
from puzzlecam.data import load_split  # noqa: E402
from puzzlecam.data.coco import _write_masks, coco_semantic_mask, read_coco  # noqa: E402
from puzzlecam.errors import ConfigError, DataError  # noqa: E402
from puzzlecam.io import load_label_png  # noqa: E402
from puzzlecam.pipeline.config import load_run_config  # noqa: E402

# listed out of id order, ids with gaps as COCO's: class order is by id
CATEGORIES = [
    {"id": 18, "name": "dog", "supercategory": "animal"},
    {"id": 1, "name": "person", "supercategory": "person"},
    {"id": 10, "name": "traffic light", "supercategory": "outdoor"},
    {"id": 3, "name": "car", "supercategory": "vehicle"},
]
CLASSES = ("person", "car", "traffic light", "dog")  # label values 1, 2, 3, 4
H, W = 24, 32


def _box(x0, y0, x1, y1):
    """Rectangle polygon; pycocotools fills rows y0..y1-1, columns x0..x1-1."""
    return [[x0, y0, x1, y0, x1, y1, x0, y1]]


def _uncompressed_rle(binary):
    """COCO's uncompressed RLE (column-major runs, starting with a run of zeros), by hand."""
    counts, current, run = [], 0, 0
    for value in binary.flatten(order="F"):
        if value != current:
            counts.append(run)
            current, run = value, 0
        run += 1
    counts.append(run)
    return {"counts": counts, "size": list(binary.shape)}


def _compressed_rle(binary):
    rle = mask_api.encode(np.asfortranarray(binary.astype(np.uint8)))
    return {"counts": rle["counts"].decode("ascii"), "size": rle["size"]}


def _write_split(root, split, images, annotations, categories=CATEGORIES):
    (root / split).mkdir(parents=True, exist_ok=True)
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    records = []
    for image_id, (pixels, _) in images.items():
        name = f"COCO_{split}_{image_id:012d}.jpg"
        Image.fromarray(pixels).save(root / split / name, quality=95)
        height, width = pixels.shape[:2]
        records.append({"id": image_id, "file_name": name, "height": height, "width": width})
    anns = [
        {"id": index + 1, "image_id": image_id, "category_id": cat, "segmentation": seg,
         "area": 0.0, "bbox": [0, 0, 1, 1], "iscrowd": int(crowd)}
        for index, (image_id, cat, seg, crowd) in enumerate(annotations)
    ]  # fmt: skip
    data = {"info": {}, "licenses": [], "images": records, "annotations": anns,
            "categories": categories}  # fmt: skip
    (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(data))


def _small_tree(root):
    """val2014: image 42 (dog over a larger car, listed first; compressed-RLE traffic
    light), 7 (crowd of people partly under a car), 99 (no annotations), 5 (light only)."""
    grey = np.full((H, W, 3), 120, np.uint8)
    light = np.zeros((H, W), np.uint8)
    light[0:3, 24:31] = 1
    crowd = np.zeros((H, W), np.uint8)
    crowd[16:24, 4:12] = 1
    annotations = [
        (42, 18, _box(10, 8, 16, 14), False),  # dog, 36 px, listed before the car
        (42, 3, _box(2, 4, 20, 20), False),  # car, 288 px
        (42, 10, _compressed_rle(light), False),  # traffic light
        (7, 1, _uncompressed_rle(crowd), True),  # crowd of people, 64 px
        (7, 3, _box(0, 0, 24, 20), False),  # car, 480 px, covers the crowd's top half
        (5, 10, _box(1, 1, 5, 9), False),
    ]
    images = {i: (grey, None) for i in (42, 7, 99, 5)}
    _write_split(root, "val2014", images, annotations)
    return root


def _expected_masks():
    image_42 = np.zeros((H, W), np.uint8)
    image_42[4:20, 2:20] = 2  # car
    image_42[8:14, 10:16] = 4  # dog on top: the smaller instance wins
    image_42[0:3, 24:31] = 3  # traffic light
    image_7 = np.zeros((H, W), np.uint8)
    image_7[16:24, 4:12] = 1  # crowd of people...
    image_7[0:20, 0:24] = 2  # ...under the car where they overlap, though the car is larger
    image_5 = np.zeros((H, W), np.uint8)
    image_5[1:9, 1:5] = 3
    return {"COCO_val2014_000000000042": image_42, "COCO_val2014_000000000007": image_7,
            "COCO_val2014_000000000005": image_5}  # fmt: skip


def test_tags_masks_and_skipped_images(tmp_path):
    root = _small_tree(tmp_path / "coco")
    split = read_coco(root, "val2014")
    assert split.classes == CLASSES
    assert [s.image_id for s in split.samples] == [
        "COCO_val2014_000000000005", "COCO_val2014_000000000007", "COCO_val2014_000000000042"
    ]  # fmt: skip
    tags = {s.image_id: s.tags for s in split.samples}
    assert tags["COCO_val2014_000000000042"] == (1, 2, 3)  # car, traffic light, dog
    assert tags["COCO_val2014_000000000007"] == (0, 1)  # the crowd tags "person"
    assert split.skipped == (("COCO_val2014_000000000099", "no annotations"),)
    for sample in split.samples:
        assert sample.image_path == root / "val2014" / f"{sample.image_id}.jpg"
        assert sample.mask_path == root / "puzzlecam_masks" / "val2014" / f"{sample.image_id}.png"
        mask = load_label_png(sample.mask_path)
        np.testing.assert_array_equal(mask, _expected_masks()[sample.image_id], sample.image_id)
        with Image.open(sample.mask_path) as png:
            assert png.mode == "P"


def test_masks_are_made_once_and_completed_when_some_are_missing(tmp_path):
    root = _small_tree(tmp_path / "coco")
    first = read_coco(root, "val2014")
    paths = [s.mask_path for s in first.samples]
    stamps = [os.stat(p).st_mtime_ns for p in paths]
    os.utime(paths[0], ns=(1, 1))
    paths[1].unlink()
    read_coco(root, "val2014")
    assert os.stat(paths[0]).st_mtime_ns == 1  # kept, not rewritten
    assert paths[1].is_file() and os.stat(paths[2]).st_mtime_ns == stamps[2]


def test_masks_of_another_annotation_file_are_refused(tmp_path):
    root = _small_tree(tmp_path / "coco")
    read_coco(root, "val2014")
    json_path = root / "annotations" / "instances_val2014.json"
    json_path.write_text(json_path.read_text() + "\n")
    with pytest.raises(DataError, match=r"masks\.json.*another annotation file.*delete"):
        read_coco(root, "val2014")


def test_classes_restrict_rename_and_merge(tmp_path):
    root = _small_tree(tmp_path / "coco")
    (root / "classes.txt").write_text(
        "# vehicles and lights\nsignal = traffic light\nvehicle = car\n"
    )
    split = read_coco(root, "val2014")
    assert split.classes == ("signal", "vehicle")
    # the dog and the crowd are background now; image 5 keeps its light
    mask = load_label_png(split.samples[2].mask_path)
    assert set(np.unique(mask)) == {0, 1, 2} and mask[10, 12] == 2
    assert split.samples[2].mask_path.parent.name.startswith("val2014-")

    merged = read_coco(root, "val2014", ["thing = dog", "thing = car"])
    assert merged.classes == ("thing",)
    assert [s.tags for s in merged.samples] == [(0,), (0,)]
    assert ("COCO_val2014_000000000005", "no annotations of the listed classes") in merged.skipped
    image_42 = load_label_png(merged.samples[1].mask_path)
    assert image_42[10, 12] == 1 and image_42[5, 5] == 1 and image_42[1, 25] == 0


def test_names_with_spaces_through_the_data_config(tmp_path):
    root = _small_tree(tmp_path / "coco")
    config = load_run_config(
        None,
        ("data.format=coco", f"data.root={root}", "data.val_split=val2014",
         "data.classes=[traffic light, dog]"),
    )  # fmt: skip
    split = load_split(config.data, "val")
    assert split.classes == ("traffic light", "dog")
    assert {s.image_id[-2:]: s.tags for s in split.samples} == {"05": (0,), "42": (0, 1)}


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda d: d["annotations"][0].update(category_id=77), r"category id 77.*\[1, 3, 10, 18\]"),
        (lambda d: d["annotations"][0].update(image_id=1234), "image id 1234, not in 'images'"),
        (lambda d: d["images"][0].pop("height"), r"images\[0\] lacks \['height'\]"),
        (lambda d: d.pop("categories"), "no 'categories' list"),
        (lambda d: d["images"][0].update(file_name="../../x.jpg"),
         r"image 42: image id '../../x.jpg' leads out of val2014/"),
        (lambda d: d["images"][0].update(file_name="/home/me/x.png"),
         r"image 42: image id '/home/me/x.png' is an absolute path"),
        (lambda d: d["annotations"][0].update(segmentation=[[1, 2, 3, 4, 5, 6, 7]]),
         "COCO_val2014_000000000042.jpg: bad segmentation.*odd"),
        (lambda d: d["annotations"][3]["segmentation"].update(size=[5, 5]),
         "COCO_val2014_000000000007.jpg: bad segmentation.*RLE must have size"),
    ],
)  # fmt: skip
def test_bad_annotations_name_the_file(tmp_path, edit, match):
    root = _small_tree(tmp_path / "coco")
    json_path = root / "annotations" / "instances_val2014.json"
    data = json.loads(json_path.read_text())
    edit(data)
    json_path.write_text(json.dumps(data))
    with pytest.raises(DataError, match=match) as caught:
        read_coco(root, "val2014")
    assert caught.value.path == json_path


def test_missing_files_and_names(tmp_path):
    root = _small_tree(tmp_path / "coco")
    with pytest.raises(DataError, match="instances_train2014.json.*not found.*instances_val2014"):
        read_coco(root, "train2014")
    with pytest.raises(DataError, match="'cat' is not a category.*person, car, traffic light, dog"):
        read_coco(root, "val2014", ["cat"])
    (root / "val2014" / "COCO_val2014_000000000007.jpg").unlink()
    with pytest.raises(DataError, match="1 images .* missing.*000000000007"):
        read_coco(root, "val2014")
    (root / "annotations" / "instances_val2014.json").write_text("{not json")
    with pytest.raises(DataError, match="invalid JSON"):
        read_coco(root, "val2014")


def test_without_pycocotools_the_error_says_what_to_install(tmp_path, monkeypatch):
    root = _small_tree(tmp_path / "coco")
    monkeypatch.setitem(sys.modules, "pycocotools", None)
    with pytest.raises(ConfigError, match=r"pip install 'puzzlecam\[coco\]'"):
        read_coco(root, "val2014")


def test_many_masks_are_written_in_worker_processes(tmp_path):
    box = _box(1, 1, 5, 3)
    tasks = [
        (tmp_path / f"{i}.png", (4, 6), [(i % 3 + 1, False, box)], f"{i}.jpg") for i in range(80)
    ]
    _write_masks(tasks, tmp_path / "x.json", 2, False, "test")
    expected = coco_semantic_mask([(2, False, box)], (4, 6))
    assert expected[1:3, 1:5].tolist() == [[2] * 4] * 2 and expected.sum() == 16
    np.testing.assert_array_equal(load_label_png(tmp_path / "4.png"), expected)
    assert len(list(tmp_path.glob("*.png"))) == 80


# --- through the pipeline ------------------------------------------------------------------

COLOURS = {1: (220, 40, 40), 3: (40, 60, 220), 10: (40, 200, 60), 18: (230, 200, 30)}


def _pipeline_tree(root, seed=0):
    """train2014 (10 images) and val2014 (5): one or two coloured rectangles each, one image
    per split without annotations, one crowd annotation."""
    rng = np.random.default_rng(seed)
    for split, count in (("train2014", 10), ("val2014", 5)):
        images, annotations = {}, []
        for index in range(count):
            image_id = 1000 * (split == "val2014") + 3 * index + 1  # gaps, like COCO's ids
            pixels = rng.integers(90, 150, size=(64, 64, 3), dtype=np.uint8)
            if index < count - 1:
                cats = rng.choice(sorted(COLOURS), size=int(rng.integers(1, 3)), replace=False)
                for slot, cat in enumerate(cats):
                    x0, y0 = int(rng.integers(2, 14)) + 32 * slot, int(rng.integers(2, 30))
                    x1, y1 = x0 + 16, y0 + 24
                    pixels[y0:y1, x0:x1] = COLOURS[int(cat)]
                    crowd = split == "train2014" and index == 0 and slot == 0
                    binary = np.zeros((64, 64), np.uint8)
                    binary[y0:y1, x0:x1] = 1
                    seg = _uncompressed_rle(binary) if crowd else _box(x0, y0, x1, y1)
                    annotations.append((image_id, int(cat), seg, crowd))
            images[image_id] = (pixels, None)
        _write_split(root, split, images, annotations)
    return root


@pytest.mark.slow
def test_coco_through_training_and_evaluation(tmp_path, capsys):
    root = _pipeline_tree(tmp_path / "coco")
    config = tmp_path / "coco_tiny.yaml"
    config.write_text(
        f"""
name: coco-tiny
until: cams
data: {{format: coco, root: "{root}", val_split: val2014}}
train_cls:
  backbone: {{name: test_efficientnet, pretrained: none, norm: fix}}
  optim: {{lr: 0.01}}
  loop: {{epochs: 1, batch_size: 4, num_workers: 0}}
  augment: {{min_long_side: 56, max_long_side: 72, crop_size: 64}}
cams: {{scales: [1.0], num_workers: 0, overlays: 2}}
"""
    )
    run = tmp_path / "run"
    assert main(["run", "--config", str(config), "--run-dir", str(run), "--no-progress"]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    for role in ("train", "val"):
        assert 0.0 < metrics["puzzle_cam"][role]["miou"] <= 100.0
    assert metrics["puzzle_cam"]["val"]["num_images"] == 4  # the unannotated one left out
    out = capsys.readouterr().out
    assert "train split 'train2014': 9 images, 9 with masks, 4 classes" in out
    assert "1 images left out" in out
    assert len(list((run / "cams" / "puzzle_cam" / "val").glob("*.npz"))) == 4
