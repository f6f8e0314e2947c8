"""A small Python API over a finished run: class scores, CAMs and masks of single images.

    >>> from puzzlecam.api import load_run
    >>> run = load_run("runs/demo")
    >>> run.classes                      # ('tshirt', 'trouser', ...), no background
    >>> run.predict_classes("photo.jpg") # {'tshirt': 0.93, 'trouser': 0.02, ...}
    >>> maps = run.cams("photo.jpg")     # {'tshirt': (H, W) float32 in [0, 1]}
    >>> mask = run.segment("photo.jpg")  # (H, W) uint8: 0 background, i = run.classes[i-1]

An image is a file path (read like ``puzzlecam predict`` reads it: EXIF orientation
applied, grey/CMYK/alpha converted), a PIL image, or an (H, W, 3) uint8 RGB array.
Everything comes back at the image's (upright) size. Images whose long side exceeds the
run's ``predict.max_long_side`` are processed at that size and the maps resized back.
For many images, ``puzzlecam predict`` (``segmentation.predict.predict_images``) batches.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from puzzlecam.cams.inference import multiscale_cams, normalize_cams
from puzzlecam.crf import crf_iterations
from puzzlecam.errors import RunDirError
from puzzlecam.models.classifier import CamClassifier
from puzzlecam.models.segmenter import Segmenter
from puzzlecam.pipeline.config import PredictConfig, RunConfig, load_run_config
from puzzlecam.pipeline.run_dir import RunDir, resolve_weights
from puzzlecam.pipeline.trained import load_classifier
from puzzlecam.segmentation.model_io import load_segmenter
from puzzlecam.segmentation.predict import (
    image_array,
    image_tensor,
    segment_arrays,
    working_size,
)
from puzzlecam.training.distributed import resolve_device
from puzzlecam.training.loop import load_weights

__all__ = ["ImageInput", "TrainedRun", "load_run", "segment"]

ImageInput = Image.Image | str | Path | np.ndarray
"""A file path, a PIL image, or an (H, W, 3) uint8 RGB array."""


def _crf_iterations(config: PredictConfig) -> int:
    def warn(message: str) -> None:  # stacklevel: the caller of segment / TrainedRun.segment
        warnings.warn(message, stacklevel=5)

    return crf_iterations(config.crf_iterations if config.crf else 0, "predict.crf", warn)


class TrainedRun:
    """The trained models of one run directory, loaded on first use.

    classes: the foreground class names (label ``i`` of a mask is ``classes[i - 1]``).
    Use ``load_run`` to make one.
    """

    def __init__(
        self,
        root: Path,
        config: RunConfig,
        classes: tuple[str, ...],
        device: torch.device,
        variant: str = "weak",
        method: str = "puzzle_cam",
    ) -> None:
        self.root = Path(root)
        self.config = config
        self.classes = classes
        self.device = device
        self.variant = variant
        self.method = method
        self._classifier: CamClassifier | None = None
        self._segmenter: Segmenter | None = None

    def __repr__(self) -> str:
        return f"TrainedRun({str(self.root)!r}, {len(self.classes)} classes, device={self.device})"

    # --- models -------------------------------------------------------------------------
    @property
    def classifier(self) -> CamClassifier:
        """The CAM classifier (``classifier/{method}/model.pt``), eval mode."""
        if self._classifier is None:
            self._classifier = load_classifier(
                RunDir(self.root), self.config, self.method, len(self.classes), self.device
            )
        return self._classifier

    @property
    def segmenter(self) -> Segmenter:
        """The segmentation model (``segmentation/{variant}/model.pt``), eval mode."""
        if self._segmenter is None:
            model, classes = load_segmenter(resolve_weights(self.root, self.variant), self.device)
            if classes != self.classes:
                raise RunDirError(
                    f"{self.root}: the segmentation model's classes {list(classes)} differ "
                    f"from the classifier's {list(self.classes)}"
                )
            self._segmenter = model
        return self._segmenter

    # --- helpers ------------------------------------------------------------------------
    def _batch(self, pixels: np.ndarray) -> torch.Tensor:
        """(H, W, 3) uint8 -> (1, 3, h, w) float 0..255 on the device, at the working size."""
        size = working_size(pixels.shape[:2], self.config.predict.max_long_side)
        return image_tensor(pixels, size, self.device)[None]

    def _indices(self, names: str | Sequence[str]) -> list[int]:
        names = [names] if isinstance(names, str) else list(names)
        unknown = [name for name in names if name not in self.classes]
        if unknown:
            raise ValueError(
                f"unknown class name(s) {unknown}; this run's classes: {list(self.classes)}"
            )
        return [self.classes.index(name) for name in names]

    # --- the API --------------------------------------------------------------------------
    @torch.no_grad()
    def predict_classes(self, image: ImageInput) -> dict[str, float]:
        """Probability (sigmoid of the classifier's logit) of each class being in the image,
        in class-list order; the image and its mirror image averaged."""
        batch = self._batch(image_array(image))
        logits = self.classifier(torch.cat([batch, batch.flip(-1)])).logits.float()  # (2, C)
        probs = torch.sigmoid(logits).mean(0).cpu().tolist()
        return dict(zip(self.classes, probs, strict=True))

    @torch.no_grad()
    def cams(
        self,
        image: ImageInput,
        classes: str | Sequence[str] | None = None,
        threshold: float = 0.5,
    ) -> dict[str, np.ndarray]:
        """Class activation maps, each (H, W) float32 in [0, 1] at the image's size.

        classes: the names wanted; by default the classes the classifier finds in the image
        (``predict_classes`` >= ``threshold``), or the single best one when none reaches
        it. A CAM is max-normalised per class, so it shows *where* a class is, not
        *whether*: ask ``predict_classes`` for that. Computed as the CAM stage does: the
        run's ``cams.scales`` x flip, ReLU, summed, divided by its maximum.
        """
        pixels = image_array(image)
        if classes is None:
            scores = self.predict_classes(pixels)
            chosen = [name for name, p in scores.items() if p >= threshold]
            classes = chosen or [max(scores, key=scores.get)]
        indices = self._indices(classes)
        batch = self._batch(pixels)
        config = self.config.cams
        full, _ = multiscale_cams(self.classifier, batch, config.scales, config.flip)
        maps = normalize_cams(full[:, indices])  # (1, K, h, w)
        if tuple(maps.shape[-2:]) != pixels.shape[:2]:
            maps = F.interpolate(maps, size=pixels.shape[:2], mode="bilinear", align_corners=False)
        maps = maps[0].clamp_(0, 1).cpu().numpy().astype(np.float32)
        return {self.classes[i]: maps[k] for k, i in enumerate(indices)}

    def segment(self, image: ImageInput) -> np.ndarray:
        """Label map (H, W) uint8 of the image (0 = background, i = ``classes[i - 1]``),
        exactly as ``puzzlecam predict --model RUN`` writes it: the run's ``predict``
        settings (scales, flip, CRF, max_long_side)."""
        config = self.config.predict
        pixels = image_array(image)
        return segment_arrays(
            self.segmenter, [pixels], config, self.device, _crf_iterations(config)
        )[0]


def _run_config(root: Path) -> RunConfig:
    path = RunDir(root).config_path
    if not path.is_file():
        raise RunDirError(
            f"{root}: not a run directory (no config.yaml); pass the folder `puzzlecam run` "
            "or `puzzlecam demo` wrote (runs/NAME)"
        )
    return load_run_config(path)


def load_run(
    run_dir: str | Path,
    device: torch.device | str = "auto",
    variant: str = "weak",
    method: str = "puzzle_cam",
) -> TrainedRun:
    """The trained models of a run directory (nothing is loaded until first used).

    device: ``auto`` (CUDA when there is one), ``cpu``, ``cuda:1``...; variant: the
    segmentation model (``weak``: trained on pseudo labels, ``full``: on ground truth);
    method: the classifier whose CAMs ``cams`` shows (``puzzle_cam`` or ``plain_cam``).
    """
    root = Path(run_dir)
    config = _run_config(root)
    run = RunDir(root)
    # the class list travels in the weights' metadata (the data set need not be there)
    weights = [
        run.model_path(run.classifier_dir(method)),
        run.model_path(run.segmentation_dir(variant)),
    ]
    found = [path for path in weights if path.is_file()]
    if not found:
        raise RunDirError(
            f"{root}: no trained model yet (looked for {', '.join(map(str, weights))}); "
            "finish the run first (`puzzlecam run --config ... --run-dir ...`)"
        )
    classes = tuple(load_weights(found[0]).get("meta", {}).get("classes", ()))
    if not classes:
        raise RunDirError(f"{found[0]}: the weights file does not list its classes")
    resolved = device if isinstance(device, torch.device) else resolve_device(device)
    return TrainedRun(root, config, tuple(classes), resolved, variant, method)


def segment(
    model: str | Path,
    image: ImageInput,
    variant: str = "weak",
    device: torch.device | str = "cpu",
    config: PredictConfig | None = None,
) -> np.ndarray:
    """Label map (H, W) uint8 of one image with a run's (or a weights file's) segmentation
    model; loads the model on every call (use ``load_run`` for several images).

    config: the prediction settings; default the run's ``predict`` section when ``model``
    is a run directory, else ``PredictConfig()``.
    """
    path = resolve_weights(model, variant)
    if config is None:
        is_run = Path(model).is_dir() and RunDir(model).config_path.is_file()
        config = _run_config(Path(model)).predict if is_run else PredictConfig()
    resolved = device if isinstance(device, torch.device) else resolve_device(device)
    segmenter, _ = load_segmenter(path, resolved)
    return segment_arrays(
        segmenter, [image_array(image)], config, resolved, _crf_iterations(config)
    )[0]
