"""The Python API over a (hand-made, tiny) run directory: class scores, CAMs of the right
shapes and ranges, and segment() giving what `puzzlecam predict` writes."""

import numpy as np
import pytest
import torch
from PIL import Image

from puzzlecam import api
from puzzlecam.cams.inference import multiscale_cams, normalize_cams
from puzzlecam.cli import main
from puzzlecam.data.datasets import image_to_tensor
from puzzlecam.errors import RunDirError
from puzzlecam.io import load_label_png
from puzzlecam.models.classifier import CamClassifier
from puzzlecam.pipeline.config import load_run_config
from puzzlecam.pipeline.run_dir import RunDir
from puzzlecam.training.loop import save_weights
from tests.helpers import TINY_BACKBONE, save_tiny_segmenter
from tests.helpers import TINY_CLASSES as CLASSES

OVERRIDES = (
    "train_cls.backbone.name=test_efficientnet",
    "train_cls.backbone.pretrained=none",
    "train_seg.backbone.name=test_efficientnet",
    "train_seg.backbone.pretrained=none",
    "cams.scales=[1.0, 1.5]",
    "predict.scales=[1.0, 0.75]",
    "predict.max_long_side=64",
)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("run")
    run = RunDir(root)
    run.bind(load_run_config(None, OVERRIDES))
    torch.manual_seed(0)
    classifier = CamClassifier(TINY_BACKBONE, len(CLASSES))
    meta = {"classes": list(CLASSES), "method": "puzzle_cam"}
    save_weights(run.classifier_dir("puzzle_cam") / "model.pt", classifier, "test", meta)
    save_tiny_segmenter(run.segmentation_dir("weak") / "model.pt")
    return root


@pytest.fixture(scope="module")
def run(run_dir):
    return api.load_run(run_dir, device="cpu")


def _image(height, width, seed=0):
    rng = np.random.default_rng(seed)
    coarse = Image.fromarray(rng.integers(0, 256, (5, 6, 3), dtype=np.uint8))
    return np.asarray(coarse.resize((width, height), Image.Resampling.BICUBIC))


def test_predict_classes(run):
    assert run.classes == CLASSES
    scores = run.predict_classes(_image(48, 64))
    assert list(scores) == list(CLASSES)
    assert all(0.0 <= p <= 1.0 for p in scores.values())


def test_cams_shapes_ranges_and_inputs(run, tmp_path):
    pixels = _image(80, 120)  # long side over predict.max_long_side: computed at 64, resized back
    before = pixels.copy()
    default = run.cams(pixels)
    assert default and set(default) <= set(CLASSES)
    maps = run.cams(pixels, classes=["bar", "square"])
    assert list(maps) == ["bar", "square"]
    for heat in maps.values():
        assert heat.shape == (80, 120) and heat.dtype == np.float32
        assert heat.min() >= 0.0 and 0.5 < heat.max() <= 1.0
    np.testing.assert_array_equal(pixels, before)
    path = tmp_path / "image.png"
    Image.fromarray(pixels).save(path)
    with Image.open(path) as opened:
        for same in (str(path), opened):
            np.testing.assert_array_equal(run.cams(same, "bar")["bar"], maps["bar"])
    with pytest.raises(ValueError, match=r"unknown class name\(s\) \['dog'\].*\['square', 'bar'\]"):
        run.cams(pixels, classes=["dog"])
    for empty in (np.zeros((0, 0, 3), np.uint8), np.zeros((5, 0, 3), np.uint8)):
        for call in (run.cams, run.segment, run.predict_classes):
            with pytest.raises(ValueError, match=r"image array of shape .* holds no pixels"):
                call(empty)


def test_tiny_and_one_pixel_wide_images_without_warnings(run, recwarn):
    # decoded images are read-only arrays; a 1-pixel-wide one stays contiguous when
    # transposed, which torch shares with a warning unless it is copied
    for height, width in ((1, 1), (10, 7), (7, 1)):
        decoded = np.asarray(Image.fromarray(_image(height, width)))
        maps = run.cams(decoded, classes=["bar"])
        assert maps["bar"].shape == (height, width) and np.isfinite(maps["bar"]).all()
        tensor = image_to_tensor(decoded)
        assert tensor.shape == (3, height, width)
        np.testing.assert_array_equal(tensor.permute(1, 2, 0).numpy(), decoded)
    assert not [str(w.message) for w in recwarn if "not writable" in str(w.message)]


def test_cams_are_the_cam_stages(run):
    pixels = _image(48, 64, 1)  # within max_long_side: no resizing
    maps = run.cams(pixels, classes=list(CLASSES))
    images = torch.from_numpy(pixels.copy()).permute(2, 0, 1)[None]
    full, _ = multiscale_cams(run.classifier, images, (1.0, 1.5), flip=True)
    expected = normalize_cams(full)[0].numpy()
    for index, name in enumerate(CLASSES):
        np.testing.assert_allclose(maps[name], expected[index], atol=1e-5)


def test_segment_equals_what_predict_writes(run, run_dir, tmp_path, capsys):
    folder = tmp_path / "images"
    folder.mkdir()
    Image.fromarray(_image(80, 120, 2)).save(folder / "large.png")  # capped to 64
    Image.fromarray(_image(40, 56, 3)).save(folder / "small.jpg")
    out = tmp_path / "out"
    assert (
        main(["predict", "--model", str(run_dir), str(folder), "--out", str(out), "--no-progress"])
        == 0
    )
    assert "scales [1.0, 0.75]" in capsys.readouterr().out  # the run's own settings
    for name in ("large.png", "small.jpg"):
        written = load_label_png(out / "masks" / f"{name.split('.')[0]}.png")
        mask = run.segment(folder / name)
        assert mask.dtype == np.uint8 and mask.max() <= len(CLASSES)
        np.testing.assert_array_equal(mask, written)
        np.testing.assert_array_equal(api.segment(run_dir, folder / name), written)


def test_load_run_errors(tmp_path):
    with pytest.raises(RunDirError, match="not a run directory"):
        api.load_run(tmp_path)
    RunDir(tmp_path).bind(load_run_config(None, OVERRIDES))
    with pytest.raises(RunDirError, match="no trained model yet"):
        api.load_run(tmp_path)
