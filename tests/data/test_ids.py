"""Image ids are names, not paths: the check, and the one function that names per-image files."""

import random

import pytest

from puzzlecam.data.ids import MAX_NAME_BYTES, check_image_id, id_path, image_id_problem
from puzzlecam.errors import DataError

HOSTILE = [
    ("", "is empty"),
    ("/home/me/photo", "absolute path"),
    ("\\\\server\\share\\photo", "absolute path"),
    ("C:\\photos\\a", "absolute path"),
    ("C:a", "absolute path"),
    ("..", r"leads out of"),
    ("../photo", r"leads out of"),
    ("a/../../photo", r"leads out of"),
    ("a\\..\\photo", r"leads out of"),
    ("sub/photo", "path separator"),
    ("sub\\photo", "path separator"),
    ("a\x00b", "control character U\\+0000"),
    ("a\nb", "control character U\\+000A"),
    ("a\x7fb", "control character U\\+007F"),
    ("photo:1", "contains ':'"),
    (".", "starts with '.'"),
    (".hidden", "starts with '.'"),
    (".a.png.tmp", "starts with '.'"),
    (" a", "white space"),
    ("a ", "white space"),
    ("x" * 197, "197 bytes long"),
    ("日本" * 33, "198 bytes long"),  # 66 characters, 3 bytes each
    ("\udcff", "not valid text"),
]

VALID = [
    "a",
    "train_000003",
    "a.jpg",
    "a..b",
    "photo 1",
    "café",
    "日本の写真",
    "x" * 196,
    "-x",
    "a.b.",
]


@pytest.mark.parametrize("image_id, problem", HOSTILE)
def test_hostile_ids_are_refused_saying_why(image_id, problem, tmp_path):
    assert image_id_problem(image_id) is not None
    with pytest.raises(DataError, match=rf"list\.txt: line 4: image id .*{problem}") as caught:
        check_image_id(image_id, tmp_path / "list.txt", "line 4")
    assert caught.value.path == tmp_path / "list.txt"
    with pytest.raises(DataError, match="refusing image id"):
        id_path(tmp_path / "out", image_id, ".npz")


@pytest.mark.parametrize("image_id", VALID)
def test_names_are_accepted_and_stay_inside(image_id, tmp_path):
    assert check_image_id(image_id, "labels.csv", "line 2") == image_id
    path = id_path(tmp_path / "out", image_id, ".npz")
    assert path == tmp_path / "out" / f"{image_id}.npz"
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(b"")  # the file system takes the name
    assert [p.name for p in path.parent.iterdir()] == [path.name]


def test_a_suffix_cannot_leave_the_folder(tmp_path):
    with pytest.raises(DataError, match="outside this folder"):
        id_path(tmp_path, "a", "/../../b")


def test_an_image_that_is_a_link_is_not_followed(tmp_path):
    """Images may be links into another folder; the name is checked, not its target."""
    (tmp_path / "elsewhere.jpg").write_bytes(b"")
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "a.jpg").symlink_to(tmp_path / "elsewhere.jpg")
    assert id_path(tmp_path / "images", "a", ".jpg") == tmp_path / "images" / "a.jpg"


ALPHABET = [
    "a", "b", "Z", "0", "_", "-", ".", "..", "../", "/", "\\", "\x00", "\x1f", "\n", " ",
    ":", "é", "日本", "\u202e", "\ufeff", "C:", "~", "$HOME", "%s", "*", "?", "'", '"', "\t",
    "a" * 60, "日" * 40,
]  # fmt: skip


def test_fuzz_every_id_is_refused_or_lands_inside(tmp_path):
    """Hundreds of ids drawn from a hostile alphabet: each is refused by the check (and
    by id_path), or id_path gives a file directly inside the folder that can be written."""
    rng = random.Random(20240607)
    directory = tmp_path / "run" / "cams"
    directory.mkdir(parents=True)
    base = directory.resolve()
    accepted = 0
    for _ in range(600):
        image_id = "".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 8)))
        suffix = rng.choice(["", ".npz", ".png", ".jpg"])
        if image_id_problem(image_id) is not None:
            with pytest.raises(DataError):
                check_image_id(image_id, "labels.csv", "line 2")
            with pytest.raises(DataError):
                id_path(directory, image_id, suffix)
            continue
        path = id_path(directory, image_id, suffix)
        resolved = path.resolve()
        assert resolved.is_relative_to(base) and resolved.parent == base, image_id
        assert len(path.name.encode("utf-8")) <= MAX_NAME_BYTES
        path.write_bytes(b"")  # the file system takes the name; it lands in the folder
        assert path.is_file()
        accepted += 1
    assert accepted > 50  # the draw exercised both sides
    assert {p.parent for p in (tmp_path / "run").rglob("*") if p.is_file()} == {directory}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
