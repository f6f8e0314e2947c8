"""Segmenting folders of real-world files: odd modes, EXIF rotation, a 4000x3000 photo, a
corrupt file, name clashes, GIF and extension-less images, files that are not images;
model loading errors; the large-image path matches plain resizing."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from puzzlecam import crf
from puzzlecam.cli import main
from puzzlecam.dataclass_yaml import dump_yaml
from puzzlecam.errors import DataError, RunDirError
from puzzlecam.io import load_label_png
from puzzlecam.pipeline.config import load_run_config
from puzzlecam.segmentation import predict as predict_module
from puzzlecam.segmentation.inputs import collect_images, output_names
from puzzlecam.segmentation.model_io import load_segmenter
from puzzlecam.segmentation.predict import (
    PredictConfig,
    predict_images,
    segment_arrays,
    upsample_argmax,
    working_size,
)
from puzzlecam.training.loop import save_weights
from tests.helpers import TINY_CLASSES as CLASSES
from tests.helpers import save_tiny_segmenter, tree_digest, write_folder_dataset

FAST = PredictConfig(scales=(1.0,), flip=False, batch_size=2, max_long_side=64)


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return save_tiny_segmenter(tmp_path_factory.mktemp("model") / "model.pt")


@pytest.fixture(scope="module")
def model(weights):
    segmenter, classes = load_segmenter(weights, "cpu")
    assert classes == CLASSES
    return segmenter


def _pixels(height, width, seed=0):
    rng = np.random.default_rng(seed)
    coarse = Image.fromarray(rng.integers(0, 256, (4, 5, 3), dtype=np.uint8))
    return np.asarray(coarse.resize((width, height), Image.Resampling.BICUBIC))


@pytest.fixture
def odd_folder(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.fromarray(_pixels(40, 56, 1)).convert("L").save(folder / "grey.png")
    rgba = np.dstack([_pixels(40, 56, 2), np.full((40, 56), 255, np.uint8)])
    rgba[:10, :, 3] = 0  # a transparent band
    Image.fromarray(rgba, "RGBA").save(folder / "rgba.png")
    Image.fromarray(_pixels(50, 30, 3)).convert("CMYK").save(folder / "cmyk.jpg")
    # stored 80 wide x 48 high, EXIF orientation 6: displayed 48 wide x 80 high
    rotated = Image.fromarray(_pixels(48, 80, 4))
    exif = rotated.getexif()
    exif[0x0112] = 6
    rotated.save(folder / "exif.jpg", exif=exif)
    Image.fromarray(_pixels(3000, 4000, 5)).save(folder / "big.jpg", quality=80)
    (folder / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    Image.fromarray(_pixels(40, 56, 6)).save(folder / "twin.jpg")
    Image.fromarray(_pixels(40, 56, 7)).save(folder / "twin.png")
    (folder / "notes.txt").write_text("not an image")
    (folder / ".hidden.jpg").write_bytes(b"resource fork")
    return folder


def test_predict_folder_of_odd_images(model, odd_folder, tmp_path, capsys):
    out = tmp_path / "out"
    paths = collect_images([str(odd_folder)])
    assert [p.name for p in paths] == [
        "big.jpg",
        "cmyk.jpg",
        "corrupt.jpg",
        "exif.jpg",
        "grey.png",
        "rgba.png",
        "twin.jpg",
        "twin.png",
    ]
    summary = predict_images(model, CLASSES, paths, out, FAST, "cpu", progress=False)

    assert [(p.name, why[:20]) for p, why in summary.skipped] == [
        ("corrupt.jpg", "cannot be read as an")
    ]
    assert "skipped" in capsys.readouterr().out and "corrupt.jpg" in summary.line()
    expected = {
        "big": (3000, 4000),
        "cmyk": (50, 30),
        "exif": (80, 48),
        "grey": (40, 56),
        "rgba": (40, 56),
        "twin_jpg": (40, 56),
        "twin_png": (40, 56),
    }
    assert {name for _, name in summary.written} == set(expected)
    assert {name for _, name in summary.renamed} == {"twin_jpg", "twin_png"}
    for name, size in expected.items():
        mask = load_label_png(out / "masks" / f"{name}.png")
        assert mask.shape == size, name
        assert mask.max() <= len(CLASSES)
        with Image.open(out / "overlays" / f"{name}.jpg") as overlay:
            assert overlay.size == size[::-1] and overlay.mode == "RGB"
    assert (out / "classes.txt").read_text().split() == list(CLASSES)
    hidden = [p.name for p in out.rglob("*") if p.name.startswith(".")]
    assert hidden == [".puzzlecam-predict"]  # the folder's marker, no temp files left
    # the EXIF image's mask is the one of its upright pixels
    upright = np.asarray(Image.open(odd_folder / "exif.jpg").transpose(Image.Transpose.ROTATE_270))
    assert upright.shape[:2] == (80, 48)
    np.testing.assert_array_equal(
        load_label_png(out / "masks" / "exif.png"), segment_arrays(model, [upright], FAST, "cpu")[0]
    )


def test_large_images_are_segmented_small_and_upsampled(model):
    pixels = _pixels(150, 200, 8)
    config = PredictConfig(scales=(1.0,), flip=False, max_long_side=64)
    assert working_size((150, 200), 64) == (48, 64)
    small = torch.from_numpy(pixels.copy()).permute(2, 0, 1)[None].float()
    small = F.interpolate(small, size=(48, 64), mode="bicubic", antialias=True).clamp(0, 255)
    probs = predict_module.predict_probs(model, small, (1.0,), False)
    expected = F.interpolate(probs, size=(150, 200), mode="bilinear").argmax(1)[0].numpy()
    before = pixels.copy()
    labels = segment_arrays(model, [pixels], config, "cpu")[0]
    np.testing.assert_array_equal(pixels, before)  # input untouched
    assert labels.shape == (150, 200) and labels.dtype == np.uint8
    assert (labels == expected).mean() > 0.999  # the same up to float ties


def test_upsample_argmax_matches_interpolate():
    torch.manual_seed(0)
    probs = torch.rand(4, 13, 17).softmax(0)
    expected = F.interpolate(probs[None], size=(101, 77), mode="bilinear").argmax(1)[0]
    np.testing.assert_array_equal(upsample_argmax(probs, (101, 77), rows=9), expected.numpy())


def test_collect_images_files_folders_globs_and_misses(tmp_path):
    for name in ("b.png", "a.JPG", "c.txt"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "d.jpeg").write_bytes(b"x")
    assert [p.name for p in collect_images([str(tmp_path)])] == ["a.JPG", "b.png"]
    found = collect_images(
        [str(tmp_path / "*.png"), str(tmp_path / "b.png"), str(tmp_path / "c.txt")]
    )
    assert [p.name for p in found] == ["b.png", "c.txt"]  # explicit files kept, duplicates once
    assert [p.name for p in collect_images([str(tmp_path / "**" / "*.jpeg")])] == ["d.jpeg"]
    with pytest.raises(DataError, match=r"'nothere.jpg', '.*\*\.gif'"):
        collect_images([str(tmp_path / "b.png"), "nothere.jpg", str(tmp_path / "*.gif")])


def test_output_names_resolve_clashes(tmp_path):
    paths = [tmp_path / "a.jpg", tmp_path / "a.png", tmp_path / "x" / "a.png", tmp_path / "b.jpg"]
    assert output_names(paths) == ["a_jpg", "a_png", "a_png_2", "b"]


def test_crf_runs_or_is_skipped_once(model, tmp_path, capsys, monkeypatch):
    image = tmp_path / "one.png"
    Image.fromarray(_pixels(32, 40)).save(image)
    config = PredictConfig(scales=(1.0,), flip=False, crf=True, crf_iterations=2)
    if crf.crf_available():
        summary = predict_images(model, CLASSES, [image], tmp_path / "crf", config, "cpu", False)
        assert summary.crf and load_label_png(tmp_path / "crf" / "masks" / "one.png").shape == (
            32,
            40,
        )
    monkeypatch.setattr(crf, "crf_available", lambda: False)
    capsys.readouterr()
    summary = predict_images(model, CLASSES, [image, image], tmp_path / "no", config, "cpu", False)
    assert not summary.crf
    assert capsys.readouterr().out.count("CRF skipped") == 1


def test_load_errors(tmp_path):
    other = tmp_path / "classifier.pt"
    save_weights(other, torch.nn.Linear(2, 2), "test", {"classes": ["a"], "method": "puzzle_cam"})
    with pytest.raises(RunDirError, match="not a segmentation model"):
        load_segmenter(other)


def test_cli_predict_uses_the_runs_settings(weights, tmp_path, capsys):
    run = tmp_path / "run"
    save_tiny_segmenter(run / "segmentation" / "weak" / "model.pt")
    config = load_run_config(
        None, ("predict.scales=[1.0]", "predict.flip=false", "predict.max_long_side=48")
    )
    (run / "config.yaml").write_text(dump_yaml(config))
    images = tmp_path / "images"
    images.mkdir()
    for index in range(3):
        Image.fromarray(_pixels(30, 50, index)).save(images / f"{index}.png")
    out = tmp_path / "out"
    args = ["predict", "--model", str(run), str(images), "--out", str(out), "--no-progress"]
    assert main([*args, "--batch-size", "2"]) == 0
    printed = capsys.readouterr().out
    assert "scales [1.0], flip off, CRF off, max long side 48" in printed
    assert "3 image(s) segmented" in printed
    assert load_label_png(out / "masks" / "2.png").shape == (30, 50)
    # flags override the run's settings; a weights file works as --model too
    assert (
        main(
            [
                "predict",
                "--model",
                str(weights),
                str(images / "0.png"),
                "--out",
                str(out),
                "--scales",
                "1.0",
                "0.5",
                "--flip",
                "--no-progress",
            ]
        )
        == 0
    )
    assert "scales [1.0, 0.5], flip on" in capsys.readouterr().out
    assert (
        main(["predict", "--model", str(run), str(tmp_path / "none*.jpg"), "--out", str(out)]) == 2
    )
    assert "no images found" in capsys.readouterr().err


@pytest.fixture
def mixed_folder(tmp_path):
    """Images Pillow reads whatever their extension, next to files that are not images."""
    folder = tmp_path / "mixed"
    folder.mkdir()
    first, second = (Image.fromarray(_pixels(36, 44, seed)) for seed in (11, 12))
    first.save(folder / "anim.gif", save_all=True, append_images=[second], duration=100)
    Image.fromarray(_pixels(30, 50, 13)).save(folder / "scan", format="PNG")  # no extension
    Image.fromarray(_pixels(20, 24, 14)).save(folder / "x.ppm")
    (folder / "notes.txt").write_text("not an image")
    (folder / "data.csv").write_text("image_id,tags\n")
    (folder / "broken.gif").write_bytes(b"GIF? no")
    (folder / ".hidden.gif").write_bytes(b"resource fork")
    (folder / "sub").mkdir()
    return folder


def test_any_image_pillow_reads_is_segmented_and_other_files_are_named(
    model, mixed_folder, tmp_path, caplog
):
    with caplog.at_level("WARNING", logger="puzzlecam"):
        paths = collect_images([str(mixed_folder)])
    assert [p.name for p in paths] == ["anim.gif", "scan", "x.ppm"]
    # one warning naming every file left out (the hidden file and the folder: silently)
    [record] = caplog.records
    left_out = ", ".join(str(mixed_folder / n) for n in ("broken.gif", "data.csv", "notes.txt"))
    assert record.getMessage().startswith(
        f"3 file(s) left out, not images Pillow can read: {left_out}; convert them"
    )
    out = tmp_path / "out"
    summary = predict_images(model, CLASSES, paths, out, FAST, "cpu", progress=False)
    assert [name for _, name in summary.written] == ["anim", "scan", "x"] and not summary.skipped
    sizes = {
        name: load_label_png(out / "masks" / f"{name}.png").shape for _, name in summary.written
    }
    assert sizes == {"anim": (36, 44), "scan": (30, 50), "x": (20, 24)}
    # an animated GIF is segmented by its first frame
    with Image.open(mixed_folder / "anim.gif") as gif:
        first_frame = np.asarray(gif.convert("RGB"))
    np.testing.assert_array_equal(
        load_label_png(out / "masks" / "anim.png"),
        segment_arrays(model, [first_frame], FAST, "cpu")[0],
    )


def test_cli_predict_names_files_that_are_not_images(weights, mixed_folder, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["predict", "--model", str(weights), "--out", str(out), "--no-progress"]
    assert main([*argv, str(mixed_folder / "*.gif")]) == 0
    captured = capsys.readouterr()
    assert "1 image(s) segmented" in captured.out and (out / "masks" / "anim.png").is_file()
    assert captured.err == (
        "puzzlecam predict: warning: 1 file(s) left out, not images Pillow can read: "
        f"{mixed_folder / 'broken.gif'}; convert them (e.g. to PNG) to segment them\n"
    )
    only_text = tmp_path / "text"
    only_text.mkdir()
    (only_text / "notes.txt").write_text("not an image")
    assert main([*argv, str(only_text)]) == 2
    err = capsys.readouterr().err
    assert (
        f"warning: 1 file(s) left out, not images Pillow can read: {only_text / 'notes.txt'}" in err
    )
    assert f"puzzlecam predict: error: {only_text}: no images found for '{only_text}'" in err


def test_predict_never_overwrites_files_it_did_not_write(weights, tmp_path, capsys):
    # --out given a data set's root: its ground-truth masks/ and classes.txt would be replaced
    data = write_folder_dataset(tmp_path / "data", splits=(("val", 2),))
    before = tree_digest(data)
    argv = ["predict", "--model", str(weights), str(data / "images"), "--no-progress"]
    assert main([*argv, "--out", str(data)]) == 2
    assert capsys.readouterr().err == (
        f"puzzlecam predict: error: {data}: holds masks, classes.txt that puzzlecam predict did "
        "not write, and predicting there would overwrite them; choose a new or empty --out "
        "folder\n"
    )
    assert tree_digest(data) == before
    with pytest.raises(DataError, match="holds masks, classes.txt"):
        predict_images(None, CLASSES, [], data, FAST, "cpu", progress=False)
    # an empty masks/ is no one's; a folder predict wrote is written again
    out = tmp_path / "out"
    (out / "masks").mkdir(parents=True)
    assert main([*argv, "--out", str(out)]) == 0
    assert main([*argv, "--out", str(out)]) == 0
    assert sorted(p.name for p in (out / "masks").iterdir()) == ["val-00.png", "val-01.png"]
