"""Finding and loading a trained segmentation model: a run directory or a weights file.

A segmentation weights file (``training.loop.save_weights``) describes itself: its
``meta`` holds ``kind: segmenter``, the backbone settings, the head's normalisation and
the class list, so it can be rebuilt without the run's config or data set.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from puzzlecam.dataclass_yaml import from_dict
from puzzlecam.errors import ConfigError, DataError, RunDirError
from puzzlecam.models.backbone import BackboneConfig
from puzzlecam.models.segmenter import Segmenter
from puzzlecam.training.loop import load_weights

__all__ = ["SEGMENTATION_VARIANTS", "resolve_weights", "load_segmenter"]

SEGMENTATION_VARIANTS = ("weak", "full")
"""weak: trained on the pseudo labels; full: trained on ground truth (the upper bound)."""


def resolve_weights(model: str | Path, variant: str = "weak") -> Path:
    """The segmentation weights file that ``model`` names.

    ``model`` is a run directory (-> ``segmentation/{variant}/model.pt`` in it), a folder
    holding ``model.pt`` itself, or a weights file (returned as is). Raises RunDirError
    naming every place looked at when there is none.
    """
    if variant not in SEGMENTATION_VARIANTS:
        raise ConfigError(f"variant {variant!r} is not one of {list(SEGMENTATION_VARIANTS)}")
    path = Path(model)
    if path.is_file():
        return path
    if not path.is_dir():
        raise RunDirError(
            f"{path}: no such run directory or weights file; pass a run directory "
            "(runs/NAME) or a segmentation model.pt"
        )
    candidates = [path / "segmentation" / variant / "model.pt", path / "model.pt"]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    found = sorted(p.parent.name for p in (path / "segmentation").glob("*/model.pt"))
    hint = (
        f"this run has the variant(s) {found}: pass --variant {found[0]}"
        if found
        else "train it first (`puzzlecam train-seg --config ... --run-dir ...`, or "
        "`puzzlecam run`); `full` also needs train_seg.fully_supervised=true"
    )
    looked = ", ".join(str(c) for c in candidates)
    raise RunDirError(f"{path}: no segmentation model found (looked for {looked}); {hint}")


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
