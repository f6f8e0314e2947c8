import numpy as np
import pytest
from PIL import Image

from puzzlecam.data.folder import read_folder
from puzzlecam.errors import DataError


def _folder(root, rows, header="image_id,tags"):
    (root / "images").mkdir(parents=True)
    (root / "classes.txt").write_text("cat\ndog\n")
    for name in ("a.jpg", "b.png", "c.jpg"):
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(root / "images" / name)
    (root / "labels.csv").write_text(header + "\n" + "\n".join(rows) + "\n")
    return root


def test_reads_ids_with_or_without_extension(tmp_path):
    root = _folder(tmp_path / "f", ["a,cat dog", "b.png,dog", "c,cat"])
    split = read_folder(root, "train")
    assert [s.image_id for s in split.samples] == ["a", "b", "c"]
    assert [s.tags for s in split.samples] == [(0, 1), (1,), (0,)]
    assert all(s.mask_path is None for s in split.samples)


def test_split_column_selects_rows(tmp_path):
    root = _folder(
        tmp_path / "f", ["a,cat,train", "b,dog,val", "c,cat,train"], "image_id,tags,split"
    )
    assert [s.image_id for s in read_folder(root, "val").samples] == ["b"]
    assert len(read_folder(root, "train")) == 2


def test_unknown_tag_names_line_and_file(tmp_path):
    root = _folder(tmp_path / "f", ["a,cat", "b,horse"])
    with pytest.raises(DataError, match=r"labels.csv: line 3.*horse"):
        read_folder(root, "train")


def test_row_without_tags_is_skipped_and_reported(tmp_path):
    root = _folder(tmp_path / "f", ["a,cat", "b,"])
    split = read_folder(root, "train")
    assert len(split) == 1 and split.skipped == (("b", "no tags"),)


def test_missing_image(tmp_path):
    root = _folder(tmp_path / "f", ["a,cat", "zzz,dog"])
    with pytest.raises(DataError, match="missing.*zzz"):
        read_folder(root, "train")
    # a GIF (any format a data set does not take) is named, not just "missing"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(root / "images" / "zzz.gif")
    with pytest.raises(DataError, match=r"\['zzz'\]; found in other formats: \['zzz.gif'\]: conv"):
        read_folder(root, "train")
    (root / "labels.csv").write_text("image_id,tags\nzzz.gif,dog\n")
    with pytest.raises(DataError, match=r"\['zzz.gif'\]; found in other formats: \['zzz.gif'\]"):
        read_folder(root, "train")


def test_masks_are_found(tmp_path):
    root = _folder(tmp_path / "f", ["a,cat"])
    (root / "masks").mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(root / "masks" / "a.png")
    assert read_folder(root, "train").samples[0].mask_path == root / "masks" / "a.png"


@pytest.mark.parametrize(
    "image_id, problem",
    [
        ("/home/me/photo.png", "absolute path"),
        ("C:\\photos\\a", "absolute path"),
        ("\\\\server\\photo", "absolute path"),
        ("../a", "leads out of images/"),
        ("sub/a", "path separator"),
        ("a\x00", "control character U\\+0000"),
        (".a", "starts with '.'"),
        ("a" * 300, "300 bytes long"),
    ],
)
def test_ids_that_are_not_names_are_refused_naming_file_and_line(tmp_path, image_id, problem):
    root = _folder(tmp_path / "f", ["b,dog", f'"{image_id}",cat'])
    with pytest.raises(DataError, match=rf"labels\.csv: line 3: image id .*{problem}") as caught:
        read_folder(root, "train")
    assert caught.value.path == root / "labels.csv"


def test_empty_id_is_refused(tmp_path):
    root = _folder(tmp_path / "f", ["a,cat", ",dog"])
    with pytest.raises(DataError, match=r"labels\.csv: line 3: image id '' is empty"):
        read_folder(root, "train")


@pytest.mark.parametrize("second", ["a.jpg", "A", "a.PNG"])
def test_ids_whose_outputs_would_be_one_file_are_refused(tmp_path, second):
    root = _folder(tmp_path / "f", ["a,cat", "b,dog", f"{second},dog"])
    with pytest.raises(DataError, match=rf"line 4: image id '{second}' and line 2's 'a'") as caught:
        read_folder(root, "train")
    assert "rename one" in str(caught.value) and caught.value.path == root / "labels.csv"


def test_the_same_id_twice_names_both_lines(tmp_path):
    root = _folder(tmp_path / "f", ["a,cat", "b,dog", "a,dog"])
    with pytest.raises(DataError, match=r"line 4: image 'a' is listed twice \(lines 2 and 4\)"):
        read_folder(root, "train")
