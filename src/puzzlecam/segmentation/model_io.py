"""Loading a trained segmentation model from its weights file (a run directory's is found
by ``pipeline.run_dir.resolve_weights``).

A segmentation weights file (``training.loop.save_weights``) describes itself: its
``meta`` holds ``kind: segmenter``, the backbone settings, the head's normalisation and
the class list, so it can be rebuilt without the run's config or data set.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import torch

from puzzlecam.dataclass_yaml import from_dict, to_dict
from puzzlecam.errors import DataError, RunDirError
from puzzlecam.models.backbone import BackboneConfig
from puzzlecam.models.segmenter import Segmenter
from puzzlecam.training.loop import load_weights

__all__ = ["segmenter_meta", "load_segmenter"]


def segmenter_meta(backbone: BackboneConfig, head_norm: str, classes: Sequence[str]) -> dict:
    """What a segmentation weights file needs to rebuild its model on its own (its
    ``meta``; ``classes`` without background)."""
    return {
        "kind": "segmenter",
        "backbone": to_dict(dataclasses.replace(backbone, pretrained="none")),
        "head_norm": head_norm,
        "classes": list(classes),
    }


def load_segmenter(
    path: str | Path, device: torch.device | str = "cpu"
) -> tuple[Segmenter, tuple[str, ...]]:
    """A segmentation model (eval mode, on ``device``) and its class list from its weights file.

    The classes exclude background: label value ``i`` of the model's output is
    ``classes[i - 1]``, 0 is background.
    """
    path = Path(path)
    payload = load_weights(path)
    meta = payload.get("meta") or {}
    if meta.get("kind") != "segmenter":
        raise RunDirError(
            f"{path}: not a segmentation model's weights (meta kind {meta.get('kind')!r}); "
            "pass segmentation/{weak,full}/model.pt of a run, or the run directory"
        )
    missing = [key for key in ("backbone", "head_norm", "classes") if key not in meta]
    if missing:
        raise RunDirError(f"{path}: segmentation weights lack the metadata {missing}")
    # the weights come from this file: never download or load the backbone's own
    backbone = dataclasses.replace(from_dict(BackboneConfig, meta["backbone"]), pretrained="none")
    classes = tuple(str(name) for name in meta["classes"])
    model = Segmenter(backbone, len(classes) + 1, meta["head_norm"])
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as error:  # keys or shapes of another model
        first = str(error).splitlines()[0]
        raise DataError(
            path,
            f"its weights do not fit the model its metadata describes ({first}); the file "
            "was edited or mixed from two runs: use the run's own model.pt",
        ) from error
    return model.to(device).eval(), classes
