"""Multi-scale CAM inference: scales x flip, ReLU, summed, tagged classes, max-normalised."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F

from puzzlecam.constants import AFFINITY_STRIDE
from puzzlecam.dataclass_yaml import require
from puzzlecam.models.classifier import CamClassifier, ClassifierOutput
from puzzlecam.models.engine import EngineNet, engine_net

__all__ = [
    "strided_size",
    "resize_images",
    "check_scales",
    "scales_and_flips",
    "multiscale_cams",
    "normalize_cams",
    "classifier_net",
]


def strided_size(size: tuple[int, int], stride: int) -> tuple[int, int]:
    """Feature-grid size of an (H, W) image at ``stride``: (ceil(H/s), ceil(W/s))."""
    return (size[0] - 1) // stride + 1, (size[1] - 1) // stride + 1


def resize_images(images: torch.Tensor, scale: float) -> torch.Tensor:
    """(B, 3, H, W) uint8/float images -> float (B, 3, round(sH), round(sW)), bicubic."""
    height, width = images.shape[-2:]
    size = (max(1, round(height * scale)), max(1, round(width * scale)))
    images = images.float()
    if size == (height, width):
        return images
    resized = F.interpolate(
        images, size=size, mode="bicubic", align_corners=False, antialias=scale < 1
    )
    return resized.clamp_(0, 255)


def check_scales(scales: Sequence[float], name: str = "scales") -> None:
    """ConfigError unless ``scales`` (the ``resize_images`` factors of a multi-scale pass,
    1.0 = the image's own size) is non-empty and each in (0, 8]."""
    require(len(scales) > 0, name, "is empty; give at least one scale, e.g. [1.0]")
    require(
        all(0 < s <= 8 for s in scales),
        name,
        f"{list(scales)}: every scale must be in (0, 8] (1.0 = the image's own size)",
    )


def scales_and_flips(
    maps_of: Callable[[torch.Tensor], torch.Tensor],
    images: torch.Tensor,
    scales: Sequence[float],
    flip: bool = True,
) -> Iterator[torch.Tensor]:
    """The test-time scales x flip pass: for each scale, the maps of the resized images with
    (when ``flip``) the maps of their mirror images flipped back and added.

    images: (B, 3, H, W) of one size; ``maps_of`` takes (B or 2B, 3, h, w) float images
    (``resize_images`` of ``images``, then their mirrors) and returns (B or 2B, C, h', w')
    maps. Yields one (B, C, h', w') tensor per scale, in ``scales`` order, for the caller
    to resize and sum. Gradients are as the caller's context has them.
    """
    count = images.shape[0]
    for scale in scales:
        scaled = resize_images(images, scale)
        batch = torch.cat([scaled, scaled.flip(-1)]) if flip else scaled
        maps = maps_of(batch)  # (B or 2B, C, h', w')
        yield maps[:count] + maps[count:].flip(-1) if flip else maps


@torch.no_grad()
def multiscale_cams(
    model: CamClassifier | EngineNet,
    images: torch.Tensor,
    scales: Sequence[float],
    flip: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum over scales (and flips) of ReLU class maps, at image size and at the random
    walk's stride (``AFFINITY_STRIDE``, 4).

    images: (B, 3, H, W) of one size -> ``(full (B, C, H, W), low (B, C, ceil(H/4),
    ceil(W/4)))``, un-normalised, every class. Each scale's maps are resized to the grid
    of the classifier's output stride ``s`` (``model.stride``, 16 in the paper) that
    covers the image (ceil(H/s)*s) and cropped, as the reference, so map cells stay
    aligned with image pixels.
    """
    height, width = images.shape[-2:]
    cover = tuple(s * model.stride for s in strided_size((height, width), model.stride))
    small = strided_size((height, width), AFFINITY_STRIDE)
    full_sum = low_sum = None
    for maps in scales_and_flips(
        lambda batch: F.relu(model(batch).cams.float()), images, scales, flip
    ):  # (B, C, h, w)
        full = F.interpolate(maps, size=cover, mode="bilinear", align_corners=False)[
            ..., :height, :width
        ]
        low = F.interpolate(maps, size=small, mode="bilinear", align_corners=False)
        full_sum = full if full_sum is None else full_sum + full
        low_sum = low if low_sum is None else low_sum + low
    return full_sum, low_sum


def normalize_cams(cams: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Divide each map by its own maximum (+ ``eps``): the one CAM normalisation (the CAM
    files, the puzzle module's ``normalized`` reconstruction level).

    cams: (..., K, H, W) >= 0 (after ReLU) -> same shape in [0, 1)."""
    peak = cams.flatten(-2).amax(dim=-1)[..., None, None]
    return cams / (peak + eps)


def classifier_net(
    model: CamClassifier, engine: str, graph_path: str | Path
) -> CamClassifier | EngineNet:
    """``model`` itself for ``engine`` "torch", else its forward run by ``engine`` from its
    graph at ``graph_path`` (exported there once: ``models.engine.engine_net``): called on
    (B, 3, H, W) images, it returns the same ``ClassifierOutput`` and has its ``stride``,
    so ``multiscale_cams`` and ``write_cams`` take either."""
    return engine_net(
        model.eval(),
        engine,
        graph_path,
        lambda outputs: ClassifierOutput(*outputs),
        ["logits", "cams"],
        stride=model.stride,
    )
