"""A run's trained classifier and AffinityNet, loaded back from their weights files (the
stages that use them and the API). The segmentation model's file describes itself:
``segmentation.model_io.load_segmenter``."""

from __future__ import annotations

import dataclasses

import torch

from puzzlecam.models.affinitynet import AffinityNet
from puzzlecam.models.classifier import CamClassifier
from puzzlecam.pipeline.config import RunConfig
from puzzlecam.pipeline.run_dir import RunDir
from puzzlecam.training.checkpoint import load_weights

__all__ = ["load_classifier", "load_affinitynet"]


def load_classifier(
    run: RunDir,
    config: RunConfig,
    method: str,
    num_classes: int,
    device: torch.device | str = "cpu",
) -> CamClassifier:
    """Branch ``method``'s classifier (eval mode, on ``device``)."""
    # the weights come from the run: never download or load the backbone's own
    backbone = dataclasses.replace(config.train_cls.backbone, pretrained="none")
    model = CamClassifier(backbone, num_classes)
    model.load_state_dict(load_weights(run.model_path(run.classifier_dir(method)))["state_dict"])
    return model.to(device).eval()


def load_affinitynet(
    run: RunDir, config: RunConfig, method: str, device: torch.device | str = "cpu"
) -> AffinityNet:
    """The AffinityNet trained on branch ``method``'s affinity labels (eval mode)."""
    backbone = dataclasses.replace(config.train_aff.backbone, pretrained="none")
    model = AffinityNet(backbone)
    model.load_state_dict(load_weights(run.model_path(run.affinity_dir(method)))["state_dict"])
    return model.to(device).eval()
