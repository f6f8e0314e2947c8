"""The demo benchmark builder: layout, exact masks, determinism, resumption, sources."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from puzzlecam.constants import IGNORE_INDEX
from puzzlecam.data import demo
from puzzlecam.data import fashion_mnist as fm
from puzzlecam.data.demo import (
    DEMO_CLASSES,
    DemoDataConfig,
    build_demo_dataset,
    demo_image_ids,
)
from puzzlecam.data.demo import pools as demo_pools
from puzzlecam.data.voc import read_voc
from puzzlecam.errors import ConfigError, DataError
from puzzlecam.io import load_label_png

TINY = DemoDataConfig(num_train=6, num_val=4, image_size=(64, 64), item_size=(24, 40), seed=3)


def all_files(root: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(root)): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def image_ids(root: Path) -> list[str]:
    lists = root / "ImageSets" / "Segmentation"
    return [i for s in ("train", "val") for i in (lists / f"{s}.txt").read_text().split()]


def xml_objects(path: Path) -> list[ElementTree.Element]:
    return list(ElementTree.parse(path).getroot().iter("object"))


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("demo") / "tiny"
    summary = build_demo_dataset(root, TINY)
    assert not summary.reused
    return root


def test_layout(built: Path) -> None:
    for folder in ("JPEGImages", "SegmentationClass", "Annotations", "ImageSets/Segmentation"):
        assert (built / folder).is_dir()
    assert (built / "classes.txt").read_text().split("\n")[:-1] == list(DEMO_CLASSES)
    assert all(name.isidentifier() for name in DEMO_CLASSES) and len(DEMO_CLASSES) == 10
    lists = built / "ImageSets" / "Segmentation"
    assert (lists / "train.txt").read_text().split() == demo_image_ids("train", 6)
    assert (lists / "val.txt").read_text().split() == demo_image_ids("val", 4)
    for image_id in image_ids(built):
        with Image.open(built / "JPEGImages" / f"{image_id}.jpg") as image:
            assert image.format == "JPEG" and image.mode == "RGB" and image.size == (64, 64)
        with Image.open(built / "SegmentationClass" / f"{image_id}.png") as label:
            assert label.mode == "P" and label.size == (64, 64)
    meta = json.loads((built / "demo.json").read_text())
    assert meta["complete"] is True
    assert meta["config"] == TINY.to_dict()
    assert len(meta["fingerprint"]) == 64
    assert not [p for p in built.rglob("*.tmp")]


def test_masks_and_annotations_agree(built: Path) -> None:
    allowed = set(range(len(DEMO_CLASSES) + 1)) | {IGNORE_INDEX}
    for image_id in image_ids(built):
        mask = load_label_png(built / "SegmentationClass" / f"{image_id}.png")
        assert set(np.unique(mask).tolist()) <= allowed
        in_mask = {DEMO_CLASSES[v - 1] for v in np.unique(mask).tolist() if 0 < v < IGNORE_INDEX}
        objects = xml_objects(built / "Annotations" / f"{image_id}.xml")
        assert in_mask and {o.findtext("name") for o in objects} == in_mask
        for obj in objects:
            assert obj.findtext("difficult") == "0"
            box = [int(obj.findtext(f"bndbox/{k}")) for k in ("xmin", "ymin", "xmax", "ymax")]
            assert 1 <= box[0] <= box[2] <= 64 and 1 <= box[1] <= box[3] <= 64
            value = DEMO_CLASSES.index(obj.findtext("name")) + 1
            inside = mask[box[1] - 1 : box[3], box[0] - 1 : box[2]]
            assert (inside == value).any()  # the box frames pixels of its class


def test_project_voc_reader_reads_it(built: Path) -> None:
    for split, count in (("train", 6), ("val", 4)):
        data = read_voc(built, split)
        assert data.classes == DEMO_CLASSES and len(data.samples) == count and not data.skipped
        for sample in data.samples:
            mask = load_label_png(sample.mask_path)
            present = {int(v) - 1 for v in np.unique(mask) if 0 < v < IGNORE_INDEX}
            assert set(sample.tags) == present


def test_items_are_disjoint_and_never_reused(built: Path) -> None:
    records = json.loads((built / "demo_items.json").read_text())
    used = {s: [o["item"] for objs in records[s].values() for o in objs] for s in records}
    assert len(used["train"]) == len(set(used["train"])) >= 6
    assert len(used["val"]) == len(set(used["val"])) >= 4
    # train items come from Fashion-MNIST's train split, val items from its test split:
    # no pixel-identical item on both sides
    train_items = fm.load_bundled_fashion_mnist("train").images[used["train"]]
    test_items = fm.load_bundled_fashion_mnist("test").images[used["val"]]
    assert not {a.tobytes() for a in train_items} & {b.tobytes() for b in test_items}
    classes = fm.load_bundled_fashion_mnist("train").labels[used["train"]]
    names = [o["class"] for objs in records["train"].values() for o in objs]
    assert names == [DEMO_CLASSES[c] for c in classes]


def test_same_config_gives_identical_bytes(built: Path, tmp_path: Path) -> None:
    state = np.random.get_state()[1].copy()
    build_demo_dataset(tmp_path / "again", TINY)
    assert all_files(tmp_path / "again") == all_files(built)
    np.testing.assert_array_equal(np.random.get_state()[1], state)  # global RNG untouched


def test_other_seed_gives_other_images(built: Path, tmp_path: Path) -> None:
    other = DemoDataConfig(**{**TINY.to_dict(), "seed": 4})
    summary = build_demo_dataset(tmp_path / "other", other)
    assert summary.fingerprint != json.loads((built / "demo.json").read_text())["fingerprint"]
    for image_id in image_ids(built):
        first = (built / "JPEGImages" / f"{image_id}.jpg").read_bytes()
        assert (tmp_path / "other" / "JPEGImages" / f"{image_id}.jpg").read_bytes() != first


def test_rerun_is_a_no_op(built: Path) -> None:
    before = {p: p.stat().st_mtime_ns for p in built.rglob("*")}
    summary = build_demo_dataset(built, TINY)
    assert summary.reused
    assert summary.num_images == {"train": 6, "val": 4}
    assert sum(summary.items_per_class["train"].values()) == summary.num_items["train"] >= 6
    assert {p: p.stat().st_mtime_ns for p in built.rglob("*")} == before


def test_other_config_in_same_root_is_refused(built: Path) -> None:
    before = all_files(built)
    other = DemoDataConfig(**{**TINY.to_dict(), "seed": 9})
    with pytest.raises(DataError, match="different configuration.*seed: 3 -> 9"):
        build_demo_dataset(built, other)
    assert all_files(built) == before


def test_foreign_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "cat.jpg").write_bytes(b"not ours")
    with pytest.raises(DataError, match="not a demo build"):
        build_demo_dataset(tmp_path / "photos", TINY)


def test_interrupted_build_completes(built: Path, tmp_path: Path) -> None:
    root = tmp_path / "broken"
    build_demo_dataset(root, TINY)
    reference = all_files(built)
    # as if killed mid-way: files missing, a temp file of an atomic write left, not complete
    (root / "JPEGImages" / "train_000002.jpg").unlink()
    (root / "SegmentationClass" / "val_000001.png").unlink()
    (root / "Annotations" / "train_000005.xml").unlink()
    (root / "ImageSets" / "Segmentation" / "val.txt").unlink()
    (root / "JPEGImages" / ".train_000003.jpg.x1y2z3.tmp").write_bytes(b"half a JPEG")
    meta = json.loads((root / "demo.json").read_text())
    (root / "demo.json").write_text(json.dumps({**meta, "complete": False}))

    summary = build_demo_dataset(root, TINY)
    assert not summary.reused
    assert all_files(root) == reference

    (root / "Annotations" / "val_000003.xml").unlink()  # complete build, a file lost
    assert not build_demo_dataset(root, TINY).reused
    assert all_files(root) == reference


def test_ignore_band_is_thin_and_follows_boundaries(tmp_path: Path) -> None:
    # one item per image: boundaries are exactly the label changes of the band-free mask
    single = {**TINY.to_dict(), "max_items": 1, "num_val": 2}
    plain = build_demo_dataset(tmp_path / "plain", DemoDataConfig(**{**single, "border_width": 0}))
    banded = build_demo_dataset(tmp_path / "banded", DemoDataConfig(**single))
    assert plain.fingerprint != banded.fingerprint
    for image_id in image_ids(tmp_path / "plain"):
        raw = load_label_png(tmp_path / "plain" / "SegmentationClass" / f"{image_id}.png")
        mask = load_label_png(tmp_path / "banded" / "SegmentationClass" / f"{image_id}.png")
        assert IGNORE_INDEX not in raw
        padded = np.pad(raw, 1, mode="edge")
        windows = [padded[dy : dy + 64, dx : dx + 64] for dy in range(3) for dx in range(3)]
        near_change = np.max(windows, axis=0) != np.min(windows, axis=0)
        np.testing.assert_array_equal(mask, np.where(near_change, IGNORE_INDEX, raw))
        assert (mask == IGNORE_INDEX).sum() < (raw > 0).sum()  # a band, not the object
        for name in ("JPEGImages", "Annotations"):
            suffix = ".jpg" if name == "JPEGImages" else ".xml"
            plain_bytes = (tmp_path / "plain" / name / f"{image_id}{suffix}").read_bytes()
            assert plain_bytes == (tmp_path / "banded" / name / f"{image_id}{suffix}").read_bytes()


def test_full_set_gives_the_same_dataset(built: Path, tmp_path: Path) -> None:
    full = next((d for d in fm.DEFAULT_FASHION_MNIST_DIRS if d.is_dir()), None)
    if full is None:
        pytest.skip("full Fashion-MNIST set not installed (apt-get install dataset-fashion-mnist)")
    summary = build_demo_dataset(tmp_path / "full", TINY, source=full)
    assert summary.source == str(full)
    from_full, from_bundled = all_files(tmp_path / "full"), all_files(built)
    assert from_full.pop("demo.json") != from_bundled.pop("demo.json")  # names its source
    assert from_full == from_bundled
    assert summary.fingerprint == json.loads((built / "demo.json").read_text())["fingerprint"]


def test_large_configs_need_the_full_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    big = DemoDataConfig(num_train=fm.BUNDLED_TRAIN_ITEMS // 3 + 1, num_val=1)
    with pytest.raises(ConfigError, match="full set"):
        build_demo_dataset(tmp_path / "a", big, source="bundled")
    monkeypatch.delenv(fm.FASHION_MNIST_ENV, raising=False)
    monkeypatch.setattr(fm, "DEFAULT_FASHION_MNIST_DIRS", (tmp_path / "nowhere",))
    with pytest.raises(DataError, match="dataset-fashion-mnist"):
        build_demo_dataset(tmp_path / "b", big)
    with pytest.raises(ConfigError, match="distinct items"):
        build_demo_dataset(tmp_path / "c", DemoDataConfig(num_train=20001))
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_config_checks_and_round_trip() -> None:
    with pytest.raises(ConfigError, match="lower item_size"):
        DemoDataConfig(image_size=(64, 64))  # default items up to 80 px do not fit
    with pytest.raises(ConfigError, match="min_items"):
        DemoDataConfig(min_items=3, max_items=2)
    with pytest.raises(ConfigError, match="valid"):
        DemoDataConfig.from_dict({"num_trian": 5})
    loaded = DemoDataConfig.from_dict(json.loads(json.dumps(TINY.to_dict())))
    assert loaded == TINY and isinstance(loaded.image_size, tuple)


# --- a subset of the Fashion-MNIST classes -----------------------------------------------------

SUBSET = DemoDataConfig(**{**TINY.to_dict(), "classes": ["trouser", "bag", "boot"]})


@pytest.fixture(scope="module")
def subset_built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("demo") / "subset"
    build_demo_dataset(root, SUBSET)
    return root


def test_subset_labels_names_and_items_agree(subset_built: Path) -> None:
    names = ("trouser", "bag", "boot")
    assert SUBSET.classes == names and SUBSET.class_names == names
    assert (subset_built / "classes.txt").read_text() == "trouser\nbag\nboot\n"
    records = json.loads((subset_built / "demo_items.json").read_text())
    fm_labels = {s: fm.load_bundled_fashion_mnist(s).labels for s in ("train", "test")}
    for split, fm_split in (("train", "train"), ("val", "test")):
        assert list(records[split]) == demo_image_ids(split, SUBSET.num_images(split))
        for image_id, objects in records[split].items():
            mask = load_label_png(subset_built / "SegmentationClass" / f"{image_id}.png")
            values = set(np.unique(mask).tolist())
            assert values <= {0, 1, 2, 3, IGNORE_INDEX}
            xml_names = {
                o.findtext("name")
                for o in xml_objects(subset_built / "Annotations" / f"{image_id}.xml")
            }
            assert (
                xml_names
                == {o["class"] for o in objects}
                == {names[v - 1] for v in values - {0, IGNORE_INDEX}}
            )
            for obj in objects:
                # the item recorded is of the class named, and its label value is in its box
                assert fm.FASHION_MNIST_CLASSES[fm_labels[fm_split][obj["item"]]] == obj["class"]
                xmin, ymin, xmax, ymax = obj["bbox"]
                inside = mask[ymin - 1 : ymax, xmin - 1 : xmax]
                assert (inside == names.index(obj["class"]) + 1).any()
    summary = build_demo_dataset(subset_built, SUBSET)
    assert summary.reused
    for split in ("train", "val"):
        assert tuple(summary.items_per_class[split]) == names
        assert tuple(summary.images_per_class[split]) == names
    for split, count in (("train", 6), ("val", 4)):
        data = read_voc(subset_built, split)
        assert data.classes == names and len(data.samples) == count and not data.skipped


def test_class_order_only_renumbers_labels(subset_built: Path, tmp_path: Path) -> None:
    reordered = DemoDataConfig(**{**SUBSET.to_dict(), "classes": ["boot", "trouser", "bag"]})
    build_demo_dataset(tmp_path / "reordered", reordered)
    assert (tmp_path / "reordered" / "classes.txt").read_text() == "boot\ntrouser\nbag\n"
    renumber = np.arange(256, dtype=np.uint8)
    renumber[[1, 2, 3]] = [2, 3, 1]  # trouser 1 -> 2, bag 2 -> 3, boot 3 -> 1
    for image_id in image_ids(subset_built):
        jpg = f"JPEGImages/{image_id}.jpg"
        assert (tmp_path / "reordered" / jpg).read_bytes() == (subset_built / jpg).read_bytes()
        png = f"SegmentationClass/{image_id}.png"
        np.testing.assert_array_equal(
            load_label_png(tmp_path / "reordered" / png),
            renumber[load_label_png(subset_built / png)],
        )


def test_default_classes_build_what_all_ten_in_order_build(built: Path, tmp_path: Path) -> None:
    # classes=() must keep building what builds made before the option existed did: the
    # same draws and files as naming all ten classes in Fashion-MNIST's order
    assert TINY.classes == () and TINY.class_names == DEMO_CLASSES
    explicit = DemoDataConfig(**{**TINY.to_dict(), "classes": list(fm.FASHION_MNIST_CLASSES)})
    build_demo_dataset(tmp_path / "explicit", explicit)
    default_files, explicit_files = all_files(built), all_files(tmp_path / "explicit")
    default_meta = json.loads(default_files.pop("demo.json"))
    explicit_meta = json.loads(explicit_files.pop("demo.json"))
    assert default_files == explicit_files
    assert default_meta["config"]["classes"] == []
    assert {**explicit_meta, "config": default_meta["config"]} == default_meta


def test_build_without_the_classes_option_is_reused(built: Path, tmp_path: Path) -> None:
    # demo.json written before the option existed has no "classes": it means the default
    root = tmp_path / "older"
    root.mkdir()
    for name, data in all_files(built).items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    meta = json.loads((root / "demo.json").read_text())
    del meta["config"]["classes"]
    (root / "demo.json").write_text(json.dumps(meta))
    assert build_demo_dataset(root, TINY).reused
    with pytest.raises(DataError, match=r"classes: \[\] -> \['trouser', 'bag', 'boot'\]"):
        build_demo_dataset(root, SUBSET)


def test_class_names_are_checked() -> None:
    with pytest.raises(ConfigError, match=r"unknown \['shoe'\].*tshirt, trouser, pullover"):
        DemoDataConfig(classes=("bag", "shoe"))
    with pytest.raises(ConfigError, match=r"more than once \['bag'\].*tshirt, trouser, pullover"):
        DemoDataConfig(classes=("bag", "boot", "bag"))
    with pytest.raises(ConfigError, match="list of Fashion-MNIST class names"):
        DemoDataConfig(classes="bag")  # type: ignore[arg-type]
    loaded = DemoDataConfig.from_dict({**TINY.to_dict(), "classes": ["bag", "boot"]})
    assert loaded.classes == ("bag", "boot") and loaded.fashion_mnist_labels == (8, 9)
    assert DemoDataConfig.from_dict(json.loads(json.dumps(loaded.to_dict()))) == loaded


def test_subset_with_too_few_items(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # 6,000 train items per class in the full set
    too_many = DemoDataConfig(num_train=6001, num_val=1, max_items=1, classes=("bag",))
    with pytest.raises(ConfigError, match=r"6001 distinct items of the 1 chosen classes \(bag\)"):
        build_demo_dataset(tmp_path / "a", too_many)
    # the bundled subset holds 643 trousers among its 6,000 train items: 700 need the full set,
    # while 700 items of any class do not
    trousers = DemoDataConfig(num_train=700, num_val=1, max_items=1, classes=("trouser",))
    with pytest.raises(ConfigError, match="items of the 1 chosen classes.*full set"):
        build_demo_dataset(tmp_path / "b", trousers, source="bundled")
    monkeypatch.delenv(fm.FASHION_MNIST_ENV, raising=False)
    monkeypatch.setattr(fm, "DEFAULT_FASHION_MNIST_DIRS", (tmp_path / "nowhere",))
    with pytest.raises(DataError, match="dataset-fashion-mnist"):
        build_demo_dataset(tmp_path / "c", trousers)
    assert not any((tmp_path / name).exists() for name in "abc")
    assert demo._pool_sizes(trousers) == {"train": 60000, "val": 2000}
    assert demo._pool_sizes(DemoDataConfig(**{**trousers.to_dict(), "classes": []})) == {
        "train": 6000,
        "val": 2000,
    }


def test_subset_from_the_full_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # stand-ins: "bundled" = the first 60 train items (3 trousers), "full" = the package's 6,000
    monkeypatch.setattr(demo_pools, "_SPLITS", {"train": ("train", 0, 60), "val": ("test", 1, 20)})
    monkeypatch.setattr(demo_pools, "FASHION_MNIST_SIZES", {"train": 6000, "test": 2000})
    small = {**TINY.to_dict(), "num_train": 5, "num_val": 0, "max_items": 1}
    trousers = DemoDataConfig(**{**small, "classes": ["trouser"]})
    with pytest.raises(ConfigError, match="full set"):
        build_demo_dataset(tmp_path / "a", trousers, source="bundled")
    summary = build_demo_dataset(tmp_path / "b", trousers, source=fm.bundled_fashion_mnist_dir())
    assert summary.pool_size["train"] == 6000 and summary.num_items["train"] == 5
    records = json.loads((tmp_path / "b" / "demo_items.json").read_text())
    items = [o["item"] for objs in records["train"].values() for o in objs]
    labels = fm.load_bundled_fashion_mnist("train").labels
    assert len(set(items)) == 5 and max(items) >= 60 and set(labels[items].tolist()) == {1}
    # a "full set" that is not balanced (590 bags, not 600) is caught before any image
    bags = DemoDataConfig(**{**small, "num_train": 600, "classes": ["bag"]})
    with pytest.raises(DataError, match="590 items of the 1 chosen classes"):
        build_demo_dataset(tmp_path / "c", bags, source=fm.bundled_fashion_mnist_dir())


# --- untagged distractors ------------------------------------------------------------------------

CLUTTER = DemoDataConfig(**{**TINY.to_dict(), "distractors": [1, 2]})


@pytest.fixture(scope="module")
def clutter_built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("demo") / "clutter"
    build_demo_dataset(root, CLUTTER)
    return root


def test_default_build_is_pinned(built: Path) -> None:
    # the content (pixels, labels, XML) of builds made before distractors existed
    assert TINY.distractors == (0, 0)
    meta = json.loads((built / "demo.json").read_text())
    assert meta["fingerprint"] == "f9e65aa8521e36fa73593b84a2d0db2741128749607f99acd1fc2bbe3c8572c7"
    assert meta["config"]["distractors"] == [0, 0]
    assert set(json.loads((built / "demo_items.json").read_text())) == {"train", "val"}


def test_distractors_leave_labels_and_annotations_alone(built: Path, clutter_built: Path) -> None:
    plain, clutter = all_files(built), all_files(clutter_built)
    for name in plain:
        if name.startswith(("SegmentationClass/", "Annotations/", "ImageSets/", "classes.txt")):
            assert clutter[name] == plain[name], name
    changed = [n for n in plain if n.startswith("JPEGImages/") and clutter[n] != plain[n]]
    assert len(changed) >= 5  # the distractors are in the images
    records = json.loads(clutter["demo_items.json"])
    assert {k: records[k] for k in ("train", "val")} == json.loads(plain["demo_items.json"])
    meta = json.loads(clutter["demo.json"])
    assert meta["config"]["distractors"] == [1, 2]
    assert meta["fingerprint"] != json.loads(plain["demo.json"])["fingerprint"]
    placed = 0
    for split in ("train", "val"):
        assert list(records["distractors"][split]) == demo_image_ids(
            split, CLUTTER.num_images(split)
        )
        for found in records["distractors"][split].values():
            assert len(found) <= 2
            placed += len(found)
            for distractor in found:
                assert set(distractor) == {"item", "bbox", "visible"}
                assert 0 <= distractor["item"] < meta["summary"]["pool_size"][split]
                assert 1 <= distractor["bbox"][0] <= distractor["bbox"][2] <= 64
                assert 1 <= distractor["bbox"][1] <= distractor["bbox"][3] <= 64
                assert CLUTTER.min_visible <= distractor["visible"] <= 1.0
    assert placed >= 10
    with pytest.raises(DataError, match=r"distractors: \[1, 2\] -> \[0, 0\]"):
        build_demo_dataset(clutter_built, TINY)


def test_distractors_change_only_what_the_items_leave_uncovered() -> None:
    # rendered images before JPEG: the items are the same pixels, the distractors are background
    pools, _ = demo._load_pools(TINY, None, demo._pool_sizes(TINY))
    pairs = zip(demo._render_all(TINY, pools), demo._render_all(CLUTTER, pools), strict=True)
    differing = 0
    for (_, plain_id, plain), (_, image_id, clutter) in pairs:
        assert plain_id == image_id and plain.distractors == []
        np.testing.assert_array_equal(clutter.labels, plain.labels)
        np.testing.assert_array_equal(clutter.uncovered, plain.uncovered)
        assert clutter.objects == plain.objects
        diff = (clutter.image != plain.image).any(axis=-1)  # (H, W)
        differing += int(diff.any())
        assert (clutter.uncovered[diff] > 0).all()  # nothing shows through an item's solid part
        # an item's pixels in the mask are at least half item (alpha >= 0.5): where more than
        # half shows through, the pixel is background (or the band around an item)
        assert set(clutter.labels[diff & (clutter.uncovered > 0.5)].tolist()) <= {0, IGNORE_INDEX}
        for distractor in clutter.distractors:
            xmin, ymin, xmax, ymax = distractor["bbox"]
            assert diff[ymin - 1 : ymax, xmin - 1 : xmax].any()
    assert differing >= 5


def test_distractor_builds_are_deterministic(clutter_built: Path, tmp_path: Path) -> None:
    state = np.random.get_state()[1].copy()
    build_demo_dataset(tmp_path / "again", CLUTTER)
    assert all_files(tmp_path / "again") == all_files(clutter_built)
    np.testing.assert_array_equal(np.random.get_state()[1], state)


def test_rendering_in_several_processes_writes_the_same_files(
    clutter_built: Path, tmp_path: Path
) -> None:
    # each image depends only on its own generators, so the pool's scheduling changes nothing
    build_demo_dataset(tmp_path / "one", CLUTTER, workers=1)
    build_demo_dataset(tmp_path / "three", CLUTTER, workers=3)
    assert all_files(tmp_path / "one") == all_files(clutter_built)
    assert all_files(tmp_path / "three") == all_files(clutter_built)


def test_distractor_has_an_items_shades_and_area() -> None:
    data = fm.load_bundled_fashion_mnist("test", max_items=20)
    items = demo._prepare_items(data, np.arange(20), 10, tuple(range(10)))
    for index, item in items.items():
        made = demo._distractor_item(np.random.default_rng(index), item)
        again = demo._distractor_item(np.random.default_rng(index), item)
        np.testing.assert_array_equal(made.mask, again.mask)
        assert made.label == -1 and made.index == item.index
        area, source_area = made.mask.sum(), item.mask.sum()
        assert abs(area - source_area) <= 0.1 * source_area
        # pasted at the same size as the item, the blob covers about the item's area
        scale = (made.extent / item.extent) ** 2
        assert 0.8 <= area / scale / source_area <= 1.25
        shades = item.intensity[item.mask > 0]
        assert abs(made.intensity[made.mask > 0].mean() - shades.mean()) < 0.05


def test_distractor_config_checks() -> None:
    for bad in ((2, 1), (-1, 1), (0, 9)):
        with pytest.raises(ConfigError, match=r"distractors must be \(min, max\)"):
            DemoDataConfig(distractors=bad)
    with pytest.raises(ConfigError, match="distractors must be a pair"):
        DemoDataConfig(distractors=(1,))  # type: ignore[arg-type]
    loaded = DemoDataConfig.from_dict(json.loads(json.dumps(CLUTTER.to_dict())))
    assert loaded == CLUTTER and loaded.distractors == (1, 2)
