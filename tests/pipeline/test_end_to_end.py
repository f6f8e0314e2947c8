"""A tiny run of every stage on a tiny demo benchmark: files exist, metrics are sane,
a second run skips everything, and another config is refused."""

import json

import numpy as np
import pytest

from puzzlecam.cli import main
from puzzlecam.io import load_label_png
from puzzlecam.pipeline.config import load_run_config

TINY_OVERRIDES = [
    "name=tiny",
    "data.demo.num_train=16",
    "data.demo.num_val=8",
    "data.demo.image_size=[64, 64]",
    "data.demo.item_size=[24, 40]",
    "train_cls.backbone.name=test_efficientnet",
    "train_cls.backbone.pretrained=none",
    "train_cls.loop.epochs=1",
    "train_cls.loop.batch_size=8",
    "train_cls.loop.num_workers=0",
    "train_cls.augment.min_long_side=56",
    "train_cls.augment.max_long_side=72",
    "train_cls.augment.crop_size=64",
    "cams.scales=[1.0, 1.5]",
    "cams.num_workers=0",
    "train_aff.backbone.name=test_efficientnet",
    "train_aff.backbone.pretrained=none",
    "train_aff.loop.epochs=1",
    "train_aff.loop.batch_size=8",
    "train_aff.loop.num_workers=0",
    "train_aff.augment.min_long_side=56",
    "train_aff.augment.max_long_side=72",
    "train_aff.augment.crop_size=64",
    "rw.exp_times=4",
    "train_seg.backbone.name=test_efficientnet",
    "train_seg.backbone.pretrained=none",
    "train_seg.loop.epochs=1",
    "train_seg.loop.batch_size=8",
    "train_seg.loop.num_workers=0",
    "train_seg.augment.min_long_side=56",
    "train_seg.augment.max_long_side=72",
    "train_seg.augment.crop_size=64",
    "predict.scales=[1.0]",
]


def _args(tmp_path, extra=()):
    args = [
        "--run-dir",
        str(tmp_path / "run"),
        "--no-progress",
        "--set",
        f"data.root={tmp_path / 'data'}",
    ]
    for override in TINY_OVERRIDES + list(extra):
        args += ["--set", override]
    return args


@pytest.mark.slow
def test_demo_pipeline_end_to_end(tmp_path, capsys):
    assert main(["demo", *_args(tmp_path)]) == 0
    out = capsys.readouterr().out
    run = tmp_path / "run"
    metrics = json.loads((run / "metrics.json").read_text())
    for method, split in [
        ("plain_cam", "val"),
        ("puzzle_cam", "val"),
        ("puzzle_cam", "train"),
        ("rw", "train"),
        ("pseudo_labels", "train"),
        ("pseudo_labels_nocrf", "val"),
        ("deeplab_weak", "val"),
        ("deeplab_full", "val"),
    ]:
        miou = metrics[method][split]["miou"]
        assert 0.0 < miou <= 100.0, (method, split, miou)
    assert 0.05 <= metrics["puzzle_cam"]["val"]["threshold"] <= 0.95
    # every train image has its CAMs, affinity labels and pseudo labels
    ids = (tmp_path / "data" / "ImageSets" / "Segmentation" / "train.txt").read_text().split()
    for image_id in ids:
        assert (run / "cams" / "puzzle_cam" / "train" / f"{image_id}.npz").is_file()
        affinity = load_label_png(run / "affinity_labels" / "train" / f"{image_id}.png")
        assert set(np.unique(affinity)) <= set(range(11)) | {255}
        assert (run / "pseudo_labels" / "train" / f"{image_id}.png").is_file()
    assert "plain_cam" in out and "puzzle_cam" in out and "total" in out

    # a second run finds every stage done
    assert main(["demo", *_args(tmp_path)]) == 0
    assert "[run]" not in capsys.readouterr().out

    # the same directory with another config is refused with the changed setting named
    assert main(["demo", *_args(tmp_path, ["rw.beta=5"])]) == 2
    assert "rw.beta: 10.0 -> 5" in capsys.readouterr().err


def test_tiny_overrides_make_a_valid_config():
    config = load_run_config("demo", tuple(TINY_OVERRIDES))
    assert config.train_seg.fully_supervised and config.train_cls.baseline_plain_cam
