"""A user's own data (``folder`` format: images/, labels.csv with a split column,
classes.txt, masks/) through every stage of ``puzzlecam run``, tiny settings."""

import json

import numpy as np
import pytest
from PIL import Image

from puzzlecam.cli import main
from puzzlecam.io import load_label_png
from tests.helpers import TINY_OVERRIDES, tree_digest, write_folder_dataset


def _args(tmp_path):
    args = ["run", "--config", "demo", "--run-dir", str(tmp_path / "run"), "--no-progress"]
    overrides = [*TINY_OVERRIDES, "data.format=folder", f"data.root={tmp_path / 'data'}"]
    for override in overrides:
        args += ["--set", override]
    return args


@pytest.mark.slow
def test_folder_data_through_the_whole_pipeline(tmp_path, capsys):
    root = write_folder_dataset(tmp_path / "data")
    assert main(_args(tmp_path)) == 0
    out = capsys.readouterr().out
    assert "train split 'train': 16 images, 16 with masks, 3 classes" in out
    assert "val split 'val': 8 images, 8 with masks, 3 classes" in out

    run = tmp_path / "run"
    metrics = json.loads((run / "metrics.json").read_text())
    for method, split in [("plain_cam", "val"), ("puzzle_cam", "val"), ("puzzle_cam", "train"),
                          ("rw", "train"), ("rw", "val"), ("pseudo_labels", "train"),
                          ("deeplab_weak", "val"), ("deeplab_full", "val")]:  # fmt: skip
        values = metrics[method][split]
        assert 0.0 < values["miou"] <= 100.0, (method, split, values)
        assert values["num_images"] == (16 if split == "train" else 8), (method, split)

    ids = {p.stem for p in (root / "images").iterdir()}
    train_ids = sorted(i for i in ids if i.startswith("train"))
    val_ids = sorted(i for i in ids if i.startswith("val"))
    for image_id in train_ids:
        assert (run / "cams" / "puzzle_cam" / "train" / f"{image_id}.npz").is_file()
        affinity = load_label_png(
            run / "affinity_labels" / "puzzle_cam" / "train" / f"{image_id}.png"
        )
        assert set(np.unique(affinity)) <= {0, 1, 2, 3, 255}
        pseudo = load_label_png(run / "pseudo_labels" / "puzzle_cam" / "train" / f"{image_id}.png")
        assert pseudo.shape == (64, 64) and set(np.unique(pseudo)) <= {0, 1, 2, 3, 255}
    for variant in ("weak", "full"):
        assert (run / "segmentation" / variant / "model.pt").is_file()
        predicted = sorted(p.stem for p in (run / "predictions" / variant / "val").glob("*.png"))
        assert predicted == val_ids


@pytest.mark.slow
def test_folder_data_without_masks_runs_to_the_cams(tmp_path):
    """Masks are optional in the folder format: a run without any must still work."""
    root = write_folder_dataset(tmp_path / "data", splits=(("train", 8), ("val", 4)))
    for mask in (root / "masks").iterdir():
        mask.unlink()
    extra = ["--set", "until=cams", "--set", "train_cls.baseline_plain_cam=false"]
    assert main(_args(tmp_path) + extra) == 0
    assert len(list((tmp_path / "run" / "cams" / "puzzle_cam" / "val").glob("*.npz"))) == 4


@pytest.mark.parametrize("hostile", ["absolute", "dotdot"])
def test_ids_that_point_at_the_users_files_are_refused_before_anything_is_written(
    tmp_path, capsys, hostile
):
    """Issue 'part 7': with an absolute id of a PNG, the CAM overlays replaced the user's
    own image. The run must stop while reading labels.csv, every file outside the run
    directory untouched and none added."""
    root = write_folder_dataset(tmp_path / "data", splits=(("train", 4), ("val", 2)))
    user = tmp_path / "user"
    user.mkdir()
    Image.fromarray(np.full((64, 64, 3), 200, np.uint8)).save(user / "photo.png")
    (user / "notes.txt").write_text("precious\n")
    image_id = str(user / "photo") if hostile == "absolute" else "../../user/photo"
    with (root / "labels.csv").open("a") as handle:
        handle.write(f"{image_id},square,train\n")
    before = {name: tree_digest(tmp_path / name) for name in ("data", "user")}

    assert main(_args(tmp_path)) == 2
    error = capsys.readouterr().err
    problem = "is an absolute path" if hostile == "absolute" else "leads out of images/"
    assert f"labels.csv: line 8: image id '{image_id}' {problem}" in error
    assert {name: tree_digest(tmp_path / name) for name in ("data", "user")} == before
    assert {p.name for p in tmp_path.iterdir()} <= {"data", "run", "user"}
    run = tmp_path / "run"
    assert not run.exists() or not [p for p in run.rglob("*") if p.suffix in (".npz", ".png")]
