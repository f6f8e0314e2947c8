"""The bundled presets: each loads, plans its stages and builds its three networks for a
tiny forward pass; the paper presets are the schema's defaults (the paper's VOC
settings, ``pipeline/config.py``) except where a difference is documented."""

import dataclasses

import pytest
import timm
import torch

from puzzlecam.dataclass_yaml import to_dict
from puzzlecam.models.affinitynet import AffinityNet
from puzzlecam.models.backbone import BackboneConfig
from puzzlecam.models.classifier import CamClassifier
from puzzlecam.models.segmenter import Segmenter
from puzzlecam.pipeline.config import PRESETS_DIR, RunConfig, load_run_config
from puzzlecam.pipeline.runner import plan_stages, stage_fingerprints

PRESETS = sorted(path.stem for path in PRESETS_DIR.glob("*.yaml"))
PAPER = ("coco_resnet50", "voc_resnest101", "voc_resnest269", "voc_resnet50")
HEAVY = {"voc_resnest101", "voc_resnest269"}  # several seconds each to build on a CPU

# where a paper preset may differ from the schema's defaults, and why
DOCUMENTED = {
    "name",
    # each preset names the backbones of its three networks
    "train_cls.backbone.name",
    "train_aff.backbone.name",
    "train_seg.backbone.name",
    # README, "Momentum": the reference ran with momentum = weight decay; the default is 0.9
    "train_cls.optim.momentum",
    "train_aff.optim.momentum",
    "train_seg.optim.momentum",
    # the reference scores DeepLabV3+ after 10 CRF iterations; predict's CRF is an option,
    # off by default (DESIGN.md, stage 8)
    "predict.crf",
}
COCO = {"data.format", "data.root", "data.val_split"}  # COCO's layout and split names


def _flat(settings: dict, prefix: str = "") -> dict:
    """{"section.key": value} for every leaf of a nested settings dict."""
    flat = {}
    for key, value in settings.items():
        if isinstance(value, dict):
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _untrained(backbone: BackboneConfig) -> BackboneConfig:
    return dataclasses.replace(backbone, pretrained="none")  # no download in tests


def _networks(name: str) -> tuple:
    """What shapes a preset's three networks (weights aside)."""
    config = load_run_config(name)
    cls, aff, seg = config.train_cls, config.train_aff, config.train_seg
    return (
        _untrained(cls.backbone),
        _untrained(aff.backbone),
        _untrained(seg.backbone),
        seg.head_norm,
    )


# presets with the same three networks (voc_resnet50, coco_resnet50) are built once
_FIRST_WITH: dict[tuple, str] = {}
for _name in PRESETS:
    _FIRST_WITH.setdefault(_networks(_name), _name)
BUILDS = list(_FIRST_WITH.values())


def test_the_documented_presets_are_bundled():
    # README, "Presets": these names work with --config NAME
    assert PRESETS == sorted(["demo", *PAPER])


@pytest.mark.parametrize("name", PRESETS)
def test_every_preset_loads_and_plans_its_stages(name):
    config = load_run_config(name)
    assert config.name == name  # its run goes to runs/NAME
    for backbone in (
        config.train_cls.backbone,
        config.train_aff.backbone,
        config.train_seg.backbone,
    ):
        assert timm.is_model(backbone.name), backbone.name

    plan = plan_stages(config)
    done = set()
    for stage in plan:  # every stage's inputs come before it
        assert set(stage.inputs) <= done, stage.name
        done.add(stage.name)
    assert config.until in {stage.command for stage in plan}  # the plan reaches `until`
    prints = stage_fingerprints(plan)
    assert len(set(prints.values())) == len(plan)


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n in HEAVY else n for n in BUILDS]
)
def test_every_preset_builds_its_networks(name):
    config = load_run_config(name)
    images = torch.zeros((1, 3, 64, 64), dtype=torch.uint8)
    classes = 3
    with torch.no_grad():
        classifier = CamClassifier(_untrained(config.train_cls.backbone), classes).eval()
        output = classifier(images)
        side = 64 // config.train_cls.backbone.output_stride
        assert output.logits.shape == (1, classes)
        assert output.cams.shape == (1, classes, side, side)

        boundary = AffinityNet(_untrained(config.train_aff.backbone)).eval()(images)
        assert boundary.shape == (1, 1, 16, 16)  # the stride-4 grid the random walk runs on

        segmenter = Segmenter(
            _untrained(config.train_seg.backbone), classes + 1, config.train_seg.head_norm
        ).eval()
        assert segmenter(images).shape == (1, classes + 1, 64, 64)


@pytest.mark.parametrize("name", PAPER)
def test_paper_presets_are_the_defaults_except_where_documented(name):
    config = load_run_config(name)
    preset, defaults = _flat(to_dict(config)), _flat(to_dict(RunConfig()))
    assert preset.keys() == defaults.keys()
    differ = {key for key in preset if preset[key] != defaults[key]}
    assert differ <= DOCUMENTED | (COCO if config.data.format == "coco" else set())
    # the reference's optimiser: momentum = weight decay, in all three networks
    for stage in (config.train_cls, config.train_aff, config.train_seg):
        assert stage.optim.momentum == stage.optim.weight_decay
