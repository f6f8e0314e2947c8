"""Every bundled preset loads; the paper presets hold the paper's settings (DESIGN.md)."""

import pytest
import timm

from puzzlecam.pipeline.config import PRESETS_DIR, load_run_config

PRESETS = sorted(path.stem for path in PRESETS_DIR.glob("*.yaml"))
PAPER = {  # preset -> (classifier/affinity/segmentation backbone, data format)
    "voc_resnet50": ("resnet50", "resnet50", "resnet50", "voc"),
    "voc_resnest101": ("resnest101e", "resnest101e", "resnest101e", "voc"),
    "voc_resnest269": ("resnest269e", "resnest269e", "resnest269e", "voc"),
    "coco_resnet50": ("resnet50", "resnet50", "resnet50", "coco"),
}


def test_the_paper_presets_are_bundled():
    assert set(PAPER) <= set(PRESETS) and "demo" in PRESETS


@pytest.mark.parametrize("name", PRESETS)
def test_every_preset_loads_with_known_backbones(name):
    config = load_run_config(name)
    assert config.name == name
    for backbone in (
        config.train_cls.backbone,
        config.train_aff.backbone,
        config.train_seg.backbone,
    ):
        assert timm.is_model(backbone.name), backbone.name


@pytest.mark.parametrize("name", sorted(PAPER))
def test_paper_presets_hold_the_paper_settings(name):
    config = load_run_config(name)
    cls_name, aff_name, seg_name, data_format = PAPER[name]
    assert config.data.format == data_format and config.data.root
    if data_format == "coco":
        assert config.data.val_split == "val2014" and config.data.train_split == "auto"
    else:
        assert config.data.val_split == "val"

    cls = config.train_cls
    assert (cls.backbone.name, cls.backbone.pretrained, cls.backbone.norm) == (
        cls_name,
        "timm",
        "train",
    )
    assert cls.backbone.output_stride == 16
    assert (cls.puzzle.grid, cls.puzzle.alpha_max, cls.puzzle.alpha_ramp) == (2, 4.0, 0.5)
    assert cls.puzzle.puzzle_classification and cls.puzzle.reconstruction
    assert cls.puzzle.reconstruction_loss == "l1" and not cls.baseline_plain_cam
    assert (cls.optim.lr, cls.optim.weight_decay, cls.optim.nesterov) == (0.1, 1e-4, True)
    assert cls.optim.momentum == 1e-4  # the reference's SGD momentum = weight decay quirk
    assert (cls.optim.poly_power, cls.optim.new_lr_mult) == (0.9, 10.0)
    assert (cls.loop.epochs, cls.loop.batch_size) == (15, 32)
    assert (cls.augment.min_long_side, cls.augment.max_long_side, cls.augment.crop_size) == (
        320,
        640,
        512,
    )

    assert (config.cams.scales, config.cams.flip) == ((0.5, 1.0, 1.5, 2.0), True)
    labels = config.affinity_labels
    assert (labels.fg_threshold, labels.bg_threshold, labels.crf_iterations) == (0.40, 0.10, 10)

    aff = config.train_aff
    assert (aff.backbone.name, aff.backbone.pretrained, aff.backbone.norm) == (
        aff_name,
        "timm",
        "fix",
    )
    assert (aff.radius, aff.loop.epochs, aff.loop.batch_size) == (10, 3, 32)
    assert (aff.optim.lr, aff.optim.weight_decay, aff.optim.momentum) == (0.1, 1e-4, 1e-4)
    assert aff.augment.crop_size == 512

    assert (config.rw.beta, config.rw.exp_times, config.rw.radius) == (10.0, 8, 5)
    assert (config.pseudo_labels.threshold, config.pseudo_labels.crf_iterations) == (0.35, 1)

    seg = config.train_seg
    assert (seg.backbone.name, seg.backbone.pretrained, seg.backbone.norm) == (
        seg_name,
        "timm",
        "fix",
    )
    assert seg.head_norm == "group" and not seg.fully_supervised
    assert (seg.optim.lr, seg.optim.weight_decay, seg.optim.momentum) == (0.007, 4e-5, 4e-5)
    assert (seg.loop.epochs, seg.loop.batch_size) == (50, 32)
    assert (seg.augment.min_long_side, seg.augment.max_long_side, seg.augment.crop_size) == (
        256,
        1024,
        512,
    )
    assert config.until == "train-seg"


@pytest.mark.parametrize("name", sorted(PAPER))
def test_paper_presets_say_what_the_paper_reports(name):
    text = (PRESETS_DIR / f"{name}.yaml").read_text()
    assert "2101.11253" in text and "momentum" in text
    expected = {"voc_resnest101": "val 66.9, test 67.7", "voc_resnest269": "val 71.9, test 72.2"}
    if name in expected:
        assert expected[name] in text
