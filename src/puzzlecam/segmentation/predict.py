"""Segmenting images: multi-scale + flip averaged probabilities, optional CRF."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from puzzlecam.cams.inference import resize_images
from puzzlecam.crf import crf_refine_probs
from puzzlecam.models.segmenter import Segmenter

__all__ = ["predict_probs", "predict_labels"]


@torch.no_grad()
def predict_probs(
    model: Segmenter, images: torch.Tensor, scales: Sequence[float] = (1.0,), flip: bool = True
) -> torch.Tensor:
    """Class probabilities averaged over scales and flips.

    images: (B, 3, H, W) uint8 of one size -> (B, C+1, H, W) float32 summing to 1.
    """
    height, width = images.shape[-2:]
    total = None
    count = 0
    for scale in scales:
        scaled = resize_images(images, scale)
        batch = torch.cat([scaled, scaled.flip(-1)]) if flip else scaled
        logits = model(batch).float()
        if logits.shape[-2:] != (height, width):
            logits = F.interpolate(
                logits, size=(height, width), mode="bilinear", align_corners=False
            )
        probs = logits.softmax(dim=1)
        if flip:
            probs = probs[: images.shape[0]] + probs[images.shape[0] :].flip(-1)
        total = probs if total is None else total + probs
        count += 2 if flip else 1
    return total / count


def predict_labels(
    model: Segmenter,
    image: torch.Tensor,
    scales: Sequence[float] = (1.0,),
    flip: bool = True,
    crf_iterations: int = 0,
) -> np.ndarray:
    """Label map (H, W) uint8 of one uint8 image (3, H, W); CRF when iterations > 0."""
    probs = predict_probs(model, image[None], scales, flip)[0].cpu().numpy()
    if crf_iterations > 0:
        pixels = np.ascontiguousarray(image.permute(1, 2, 0).cpu().numpy())
        probs = crf_refine_probs(pixels, probs, crf_iterations)
    return probs.argmax(axis=0).astype(np.uint8)
