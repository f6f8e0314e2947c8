import numpy as np
import pytest

from puzzlecam.data.samples import load_mask
from puzzlecam.data.voc import read_voc
from puzzlecam.errors import DataError
from puzzlecam.io import save_label_png


def test_reads_tags_masks_and_custom_classes(voc_tree):
    split = read_voc(voc_tree, "train")
    assert split.classes == ("square", "bar")  # from classes.txt, not VOC's 20
    assert len(split) == 8
    for sample in split.samples:
        mask = load_mask(sample, split.num_classes, (48, 64))
        present = {int(v) - 1 for v in np.unique(mask) if 0 < v < 255}
        assert set(sample.tags) == present  # XML tags (difficult ones too) match the mask
        assert sample.keys.tolist() == [t + 1 for t in sample.tags]


def test_class_option_overrides_classes_file(voc_tree):
    with pytest.raises(DataError, match="not in the class list"):
        read_voc(voc_tree, "train", classes=("square",))


def test_tag_not_in_class_list_names_the_file(voc_tree):
    xml = voc_tree / "Annotations" / "train_000.xml"
    xml.write_text(
        xml.read_text().replace(
            "</annotation>", "<object><name>giraffe</name></object></annotation>"
        )
    )
    with pytest.raises(DataError) as error:
        read_voc(voc_tree, "train")
    assert "train_000.xml" in str(error.value) and "giraffe" in str(error.value)


def test_image_without_tags_is_skipped_and_reported(voc_tree):
    (voc_tree / "Annotations" / "train_001.xml").write_text("<annotation></annotation>")
    split = read_voc(voc_tree, "train")
    assert len(split) == 7
    assert split.skipped == (("train_001", "no tags"),)


def test_missing_image_is_an_error(voc_tree):
    (voc_tree / "JPEGImages" / "val_002.jpg").unlink()
    with pytest.raises(DataError, match="missing.*val_002"):
        read_voc(voc_tree, "val")


def test_tags_from_masks(voc_tree):
    by_xml = read_voc(voc_tree, "val")
    by_mask = read_voc(voc_tree, "val", tags_from="masks")
    assert [s.tags for s in by_xml.samples] == [s.tags for s in by_mask.samples]


def test_mask_with_value_outside_classes_names_file(voc_tree):
    split = read_voc(voc_tree, "val")
    sample = split.samples[0]
    mask = np.zeros((48, 64), np.uint8)
    mask[0, 0] = 7  # only 0, 1, 2 and 255 are valid with two classes
    save_label_png(sample.mask_path, mask)
    with pytest.raises(DataError, match=r"val_000.png.*\[7\]"):
        load_mask(sample, split.num_classes, (48, 64))


def test_mask_of_wrong_size_names_file(voc_tree):
    split = read_voc(voc_tree, "val")
    with pytest.raises(DataError, match="val_000.png.*its image"):
        load_mask(split.samples[0], split.num_classes, (50, 64))


def test_not_a_voc_root(tmp_path):
    (tmp_path / "VOC2012").mkdir()
    with pytest.raises(DataError, match="VOC2012 sub-folder"):
        read_voc(tmp_path, "train")


def test_train_aug_masks_used_when_present(voc_tree):
    aug = voc_tree / "SegmentationClassAug"
    aug.mkdir()
    (voc_tree / "ImageSets" / "Segmentation" / "train_aug.txt").write_text("train_000\nextra_000\n")
    # an SBD-only image: in JPEGImages and SegmentationClassAug, no XML
    import shutil

    shutil.copy(
        voc_tree / "JPEGImages" / "train_001.jpg", voc_tree / "JPEGImages" / "extra_000.jpg"
    )
    mask = np.zeros((48, 64), np.uint8)
    mask[5:10, 5:10] = 2
    save_label_png(aug / "extra_000.png", mask)
    split = read_voc(voc_tree, "train_aug")
    extra = split.samples[1]
    assert extra.mask_path == aug / "extra_000.png" and extra.tags == (1,)


@pytest.mark.parametrize(
    "image_id, problem",
    [("../../outside", "leads out of JPEGImages/"), ("/tmp/x", "absolute path"), (".x", "'.'")],
)
def test_ids_of_the_split_list_must_be_names(voc_tree, image_id, problem):
    list_path = voc_tree / "ImageSets" / "Segmentation" / "val.txt"
    list_path.write_text(f"val_000\n\nval_001\n{image_id}\n")
    with pytest.raises(DataError, match=rf"val\.txt: line 4: image id .*{problem}") as caught:
        read_voc(voc_tree, "val")
    assert caught.value.path == list_path
