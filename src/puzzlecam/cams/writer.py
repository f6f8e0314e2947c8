"""The CAM stage's work: every image of a split through multiscale_cams, saved as score files."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader
from tqdm import tqdm

from puzzlecam.cams.inference import multiscale_cams, normalize_cams
from puzzlecam.cams.scores import ScoreMaps, save_scores
from puzzlecam.data.datasets import InferenceDataset
from puzzlecam.data.ids import id_path
from puzzlecam.data.loader import CheckedLoader
from puzzlecam.data.samples import Sample
from puzzlecam.io import DECOMPRESSION_BOMB, atomic_write, load_image
from puzzlecam.models.classifier import CamClassifier
from puzzlecam.models.engine import EngineNet
from puzzlecam.visualize import overlay_heatmap

__all__ = ["write_cams", "same_size_batches", "save_overlay"]


def _header_size(path: Path) -> tuple[int, int]:
    try:
        with Image.open(path) as image:
            return image.size[1], image.size[0]
    except (OSError, *DECOMPRESSION_BOMB):
        return (0, 0)  # unreadable: load_image will raise a DataError naming it


def same_size_batches(
    loader: DataLoader, batch_size: int
) -> Iterator[tuple[list[int], torch.Tensor]]:
    """Group consecutive single images of equal size into batches of up to ``batch_size``.

    loader yields (index (1,), image (1, 3, H, W)); yields (indices, images (B, 3, H, W)).
    """
    indices: list[int] = []
    images: list[torch.Tensor] = []
    for index, image in loader:
        if images and (image.shape[-2:] != images[0].shape[-2:] or len(images) == batch_size):
            yield indices, torch.cat(images)
            indices, images = [], []
        indices.append(int(index[0]))
        images.append(image)
    if images:
        yield indices, torch.cat(images)


def save_overlay(path: Path, image: np.ndarray, heat: np.ndarray) -> None:
    """PNG of a (H, W) heat map in [0, 1] over its (H, W, 3) image, atomically."""
    picture = Image.fromarray(overlay_heatmap(image, heat))
    with atomic_write(path) as handle:
        picture.save(handle, format="PNG")


def write_cams(
    model: CamClassifier | EngineNet,
    samples: Sequence[Sample],
    out_dir: Path,
    scales: Sequence[float],
    flip: bool = True,
    batch_size: int = 8,
    device: torch.device | str = "cpu",
    num_workers: int = 2,
    overlay_ids: Sequence[str] = (),
    overlay_dir: Path | None = None,
    amp: bool = False,
    channels_last: bool = False,
    progress: bool = True,
) -> int:
    """Write ``out_dir/{id}.npz`` for every sample that has none yet; returns how many.

    Each file holds the tagged classes' CAMs at image size and at stride 4, each divided
    by its own maximum, and the classifier's probabilities of all classes at scale 1.
    Images are batched when consecutive ones share a size (they are sorted by size first).
    ``channels_last`` runs a PyTorch model in that memory layout: the same maps up to float
    rounding, 1.7x the images/s on a 2-core CPU (``bench/bench_cams.py``). ``model`` may be
    an engine's (``cams.inference.classifier_net``): about 4x PyTorch's images/s there.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    todo = [s for s in samples if not id_path(out_dir, s.image_id, ".npz").is_file()]
    overlay_ids = set(overlay_ids)
    todo.sort(key=lambda s: _header_size(s.image_path))
    if not todo:
        return 0
    device = torch.device(device)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    if isinstance(model, torch.nn.Module):  # an engine's graph runs as it was compiled
        model.eval().to(device)
        model.to(memory_format=layout)
    loader = CheckedLoader(InferenceDataset(todo), batch_size=1, num_workers=num_workers)
    autocast = (
        torch.autocast(device.type, dtype=torch.bfloat16) if amp else contextlib.nullcontext()
    )
    bar = tqdm(
        total=len(todo),
        desc=f"cams {out_dir.name}",
        disable=not progress,
        dynamic_ncols=True,
        leave=False,
    )
    for indices, images in same_size_batches(loader, batch_size):
        images = images.to(device).contiguous(memory_format=layout)
        with autocast, torch.no_grad():
            full, stride4 = multiscale_cams(model, images, scales, flip)
            class_probs = torch.sigmoid(model(images.float()).logits.float()).cpu().numpy()
        for row, index in enumerate(indices):
            sample = todo[index]
            tags = list(sample.tags)
            cams = normalize_cams(full[row, tags].float()).cpu().numpy()
            small = normalize_cams(stride4[row, tags].float()).cpu().numpy()
            maps = ScoreMaps(sample.keys, cams, small, class_probs=class_probs[row])
            save_scores(id_path(out_dir, sample.image_id, ".npz"), maps)
            if overlay_dir is not None and sample.image_id in overlay_ids:
                pixels = np.asarray(load_image(sample.image_path))
                heat = cams.max(axis=0) if len(tags) else np.zeros(pixels.shape[:2])
                save_overlay(id_path(overlay_dir, sample.image_id, ".png"), pixels, heat)
        bar.update(len(indices))
    bar.close()
    return len(todo)
