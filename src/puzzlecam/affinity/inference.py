"""Random-walk refinement of one image: AffinityNet boundaries, then the sparse walk."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from puzzlecam.affinity.random_walk import random_walk
from puzzlecam.cams.inference import strided_size
from puzzlecam.constants import AFFINITY_STRIDE
from puzzlecam.models.affinitynet import AffinityNet
from puzzlecam.models.engine import EngineNet, engine_net

__all__ = ["boundary_map", "boundary_net", "refine_scores"]


@torch.no_grad()
def boundary_map(model: AffinityNet | EngineNet, image: torch.Tensor) -> torch.Tensor:
    """Boundary probabilities of one image at the model's stride (4), from the image and
    its flip.

    image: (3, H, W) uint8 -> (ceil(H/4), ceil(W/4)) in [0, 1]: the sigmoid of the mean
    of the two logit maps, as the reference. Any image size works.
    """
    height, width = image.shape[-2:]
    batch = torch.stack([image, image.flip(-1)])
    logits = model(batch)[:, 0].float()  # (2, h, w)
    size = strided_size((height, width), model.stride)
    if logits.shape[-2:] != size:
        logits = F.interpolate(logits[:, None], size=size, mode="bilinear", align_corners=False)[
            :, 0
        ]
    return torch.sigmoid((logits[0] + logits[1].flip(-1)) / 2)


def refine_scores(
    cams_stride4: torch.Tensor,
    boundary: torch.Tensor,
    size: tuple[int, int],
    beta: float = 10.0,
    exp_times: int = 8,
    radius: int = 5,
) -> torch.Tensor:
    """Random walk of CAMs at ``AFFINITY_STRIDE`` (4), upsampled x4 to ``size`` = (H, W),
    divided by the global max. cams_stride4 (K, h, w), boundary (h, w) -> (K, H, W) in [0, 1]."""
    if cams_stride4.shape[0] == 0:
        return cams_stride4.new_zeros((0, *size))
    walked = random_walk(cams_stride4.float(), boundary.float(), beta, exp_times, radius)
    up = F.interpolate(
        walked[None], scale_factor=AFFINITY_STRIDE, mode="bilinear", align_corners=False
    )[0]
    up = up[:, : size[0], : size[1]]
    return up / up.max().clamp_min(1e-5)


def boundary_net(
    model: AffinityNet, engine: str, graph_path: str | Path
) -> AffinityNet | EngineNet:
    """``model`` itself for ``engine`` "torch", else its forward run by ``engine`` from its
    graph at ``graph_path`` (exported there once: ``models.engine.engine_net``), with its
    ``stride``: ``boundary_map`` takes either."""
    return engine_net(
        model.eval(), engine, graph_path, lambda outputs: outputs[0], ["edges"],
        stride=model.stride,
    )  # fmt: skip
