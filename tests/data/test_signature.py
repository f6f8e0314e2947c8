"""The data signature: what it sees (ids, order, tags, file size and mtime, classes) and how
a change is described."""

import os

from puzzlecam.data.folder import read_folder
from puzzlecam.data.signature import describe_changes, split_table, table_signature
from tests.helpers import write_folder_dataset


def test_the_signature_sees_ids_tags_files_and_classes(tmp_path):
    root = write_folder_dataset(tmp_path / "data", (("train", 4), ("val", 2)))
    split = read_folder(root, "train")
    table = split_table(split, root)
    assert list(table) == ["train-00", "train-01", "train-02", "train-03"]
    entry = table["train-03"]
    assert entry["image"][0] == "images/train-03.png" and entry["mask"][0] == "masks/train-03.png"
    assert entry["image"][1] == (root / "images" / "train-03.png").stat().st_size
    signature = table_signature(split.classes, table)
    assert (
        table_signature(split.classes, split_table(read_folder(root, "train"), root)) == signature
    )
    assert table_signature(split.classes[:2], table) != signature

    image = root / "images" / "train-01.jpg"
    os.utime(image, ns=(image.stat().st_atime_ns, image.stat().st_mtime_ns + 1))
    assert table_signature(split.classes, split_table(split, root)) != signature


def test_changes_are_described():
    def row(tags, image, mask=None):
        return {"tags": tags, "image": [image, 1, 1], "mask": mask}

    old = {"a": row([0], "a.jpg"), "b": row([1], "b.jpg"), "c": row([0], "c.jpg")}
    new = {"a": row([0], "a2.jpg"), "c": row([0, 1], "c.jpg", ["c.png", 1, 1]),
           "d": row([0], "d.jpg"), "e": row([1], "e.jpg"), "f": row([1], "f.jpg")}  # fmt: skip
    text = describe_changes(["x", "y"], old, ["x", "y"], new)
    assert text == "3 images added, 1 removed, 1 replaced, 1 retagged, 1 mask changed"
    assert describe_changes(["x"], old, ["x"], {"a": old["a"]}) == "2 images removed"
    swapped = {"b": old["b"], "a": old["a"], "c": old["c"]}
    assert describe_changes(["x"], old, ["x", "z"], swapped) == "order changed, class list changed"
