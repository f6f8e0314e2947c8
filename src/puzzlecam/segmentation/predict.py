"""Segmenting images: multi-scale + flip averaged probabilities, optional CRF.

``predict_probs`` / ``segment_arrays`` serve the pipeline's evaluation stage;
``predict_images`` segments the files ``segmentation.inputs.collect_images`` finds
(``puzzlecam predict``): a VOC-palette PNG mask and a colour overlay per image, at the
image's own (EXIF-upright) size.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps
from tqdm import tqdm

from puzzlecam.cams.inference import check_scales, scales_and_flips
from puzzlecam.crf import crf_iterations, crf_refine_probs
from puzzlecam.data.ids import id_path
from puzzlecam.dataclass_yaml import EXECUTION, require_at_least
from puzzlecam.errors import DataError
from puzzlecam.io import atomic_write, load_image, save_label_png
from puzzlecam.models.segmenter import Segmenter
from puzzlecam.segmentation.inputs import output_names
from puzzlecam.visualize import overlay_labels

__all__ = [
    "PredictConfig",
    "predict_probs",
    "image_array",
    "working_size",
    "image_tensor",
    "upsample_argmax",
    "segment_arrays",
    "PredictSummary",
    "check_out_dir",
    "predict_images",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PredictConfig:
    """How images are segmented (the ``predict:`` section of a run's config): scales x
    flip, optional CRF.

    Images whose long side exceeds ``max_long_side`` are segmented at that size and the
    masks resized back to the image (a 4000x3000 photo at scale 2 would not fit memory).
    """

    scales: tuple[float, ...] = (0.5, 1.0, 1.5, 2.0)
    flip: bool = True
    crf: bool = False
    crf_iterations: int = 10
    batch_size: int = field(default=4, metadata=EXECUTION)
    max_long_side: int = 1024

    def __post_init__(self) -> None:
        check_scales(self.scales)
        require_at_least(self.crf_iterations, "crf_iterations", 0)
        require_at_least(self.batch_size, "batch_size", 1)
        require_at_least(self.max_long_side, "max_long_side", 32)


@torch.no_grad()
def predict_probs(
    model: Segmenter, images: torch.Tensor, scales: Sequence[float] = (1.0,), flip: bool = True
) -> torch.Tensor:
    """Class probabilities averaged over scales and flips.

    images: (B, 3, H, W) uint8 (or 0..255 float) of one size -> (B, C+1, H, W) float32
    summing to 1.
    """
    height, width = images.shape[-2:]

    def probabilities(batch: torch.Tensor) -> torch.Tensor:  # (N, C+1, H, W)
        logits = model(batch).float()
        if logits.shape[-2:] != (height, width):
            logits = F.interpolate(
                logits, size=(height, width), mode="bilinear", align_corners=False
            )
        return logits.softmax(dim=1)

    total = None
    for probs in scales_and_flips(probabilities, images, scales, flip):  # (B, C+1, H, W)
        total = probs if total is None else total + probs
    count = len(scales) * (2 if flip else 1)
    return total / count


def image_array(image: Image.Image | str | Path | np.ndarray) -> np.ndarray:
    """Upright RGB pixels (H, W, 3) uint8 of an image file, a PIL image or an array.

    Files go through ``io.load_image`` (EXIF orientation, grey/CMYK/16-bit/alpha), as in
    ``predict_images``; PIL images get their EXIF orientation applied and alpha composited
    onto white; arrays must be uint8 (H, W, 3) RGB, (H, W, 4) RGBA (alpha composited onto
    white) or (H, W) grey, and are never modified.
    """
    if isinstance(image, (str, Path)):
        return np.asarray(load_image(image))
    if isinstance(image, Image.Image):
        image = ImageOps.exif_transpose(image)
        if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
            rgba = image.convert("RGBA")
            image = Image.alpha_composite(Image.new("RGBA", rgba.size, (255,) * 4), rgba)
        return np.asarray(image.convert("RGB"))
    if isinstance(image, np.ndarray):
        if image.ndim in (2, 3) and 0 in image.shape[:2]:
            raise ValueError(f"image array of shape {image.shape} holds no pixels")
        if image.dtype != np.uint8:
            raise ValueError(
                f"image array has dtype {image.dtype}; pass uint8 RGB in 0..255 "
                "(e.g. (array * 255).round().astype(np.uint8))"
            )
        if image.ndim == 2:
            return np.repeat(image[..., None], 3, axis=2)
        if image.ndim == 3 and image.shape[2] == 3:
            return np.ascontiguousarray(image)
        if image.ndim == 3 and image.shape[2] == 4:  # RGBA onto white, as load_image does
            alpha = image[..., 3:].astype(np.float32) / 255
            return (image[..., :3] * alpha + 255 * (1 - alpha)).round().astype(np.uint8)
        raise ValueError(
            f"image array must be (H, W, 3) RGB, (H, W, 4) RGBA or (H, W) grey, got {image.shape}"
        )
    raise TypeError(
        f"expected a PIL image, an image path or a uint8 array, got {type(image).__name__}"
    )


# --- large images -------------------------------------------------------------------------


def working_size(size: tuple[int, int], max_long_side: int) -> tuple[int, int]:
    """The (H, W) an image of ``size`` is segmented at: its own, or shrunk (aspect kept)
    so that the long side is ``max_long_side``."""
    height, width = size
    long_side = max(height, width)
    if long_side <= max_long_side:
        return height, width
    scale = max_long_side / long_side
    return max(1, round(height * scale)), max(1, round(width * scale))


def _source_rows(out_size: int, in_size: int, rows: torch.Tensor) -> tuple:
    """Source indices and weights of output ``rows`` for bilinear resizing with
    align_corners=False, exactly as F.interpolate computes them."""
    scale = in_size / out_size
    source = ((rows.double() + 0.5) * scale - 0.5).clamp_(min=0)
    low = source.long()
    high = torch.where(low < in_size - 1, low + 1, low)
    weight = (source - low).float()
    return low, high, weight


def upsample_argmax(probs: torch.Tensor, size: tuple[int, int], rows: int = 256) -> np.ndarray:
    """argmax over classes of ``probs`` resized bilinearly to ``size``, in strips of rows.

    probs: (K, h, w) float -> (H, W) uint8. The same labels as
    ``F.interpolate(probs[None], size, mode="bilinear").argmax(1)`` (up to float ties),
    without holding the (K, H, W) map of a large photo (21 classes x 4000 x 3000 would be
    1 GB): bilinear resizing is separable, so each strip blends its source rows first
    (at the small width), then resizes along W only.
    """
    in_h = probs.shape[1]
    height, width = size
    out = np.empty((height, width), dtype=np.uint8)
    for start in range(0, height, rows):
        index = torch.arange(start, min(start + rows, height), device=probs.device)
        low, high, weight = _source_rows(height, in_h, index)
        strip = torch.lerp(
            probs.index_select(1, low), probs.index_select(1, high), weight[None, :, None]
        )  # (K, r, w)
        strip = F.interpolate(
            strip[None], size=(len(index), width), mode="bilinear", align_corners=False
        )[0]  # (K, r, W): rows unchanged
        out[start : start + len(index)] = strip.max(0).indices.to(torch.uint8).cpu().numpy()
    return out


def image_tensor(
    image: np.ndarray, size: tuple[int, int], device: torch.device | str
) -> torch.Tensor:
    """(H, W, 3) uint8 -> float (3, h, w) in 0..255 on ``device`` for ``size`` = (h, w),
    resized (bicubic, antialiased) when that is not (H, W). ``image`` is not modified."""
    pixels = np.ascontiguousarray(image)
    if not pixels.flags.writeable:  # torch wants writable memory (PIL's arrays are not)
        pixels = pixels.copy()
    tensor = torch.from_numpy(pixels).permute(2, 0, 1).to(device).float()
    if tuple(tensor.shape[-2:]) == size:
        return tensor
    resized = F.interpolate(
        tensor[None], size=size, mode="bicubic", align_corners=False, antialias=True
    )
    return resized[0].clamp_(0, 255)


def segment_arrays(
    model: Segmenter,
    images: Sequence[np.ndarray],
    config: PredictConfig,
    device: torch.device | str,
    crf_iterations: int = 0,
) -> list[np.ndarray]:
    """Label maps of images that share one working size (see ``working_size``).

    images: (H_i, W_i, 3) uint8 each -> one (H_i, W_i) uint8 label map each, label 0 =
    background. Probabilities are averaged over ``config.scales`` x flip at the working
    size, resized back to each image's size, then CRF-refined (when ``crf_iterations`` >
    0, on the full-size image) and argmaxed. ``model`` must be on ``device`` in eval mode.
    """
    sizes = {working_size(image.shape[:2], config.max_long_side) for image in images}
    if len(sizes) != 1:
        raise ValueError(f"images of one batch must share one working size, got {sorted(sizes)}")
    size = sizes.pop()
    batch = torch.stack([image_tensor(image, size, device) for image in images])
    probs = predict_probs(model, batch, config.scales, config.flip)  # (B, K, h, w)
    labels = []
    for image, prob in zip(images, probs, strict=True):
        full = tuple(image.shape[:2])
        if crf_iterations > 0:
            if full != size:
                prob = F.interpolate(prob[None], size=full, mode="bilinear", align_corners=False)[0]
            refined = crf_refine_probs(image, prob.cpu().numpy(), crf_iterations)
            labels.append(refined.argmax(axis=0).astype(np.uint8))
        elif full != size:
            labels.append(upsample_argmax(prob, full))
        else:
            labels.append(prob.max(0).indices.to(torch.uint8).cpu().numpy())
    return labels


# --- whole folders ------------------------------------------------------------------------


@dataclass(frozen=True)
class PredictSummary:
    """What ``predict_images`` did: ``written`` (image, output name), ``skipped`` (image,
    reason), whether the CRF ran, and where the files are."""

    out_dir: Path
    written: tuple[tuple[Path, str], ...]
    skipped: tuple[tuple[Path, str], ...]
    crf: bool

    @property
    def renamed(self) -> tuple[tuple[Path, str], ...]:
        """Images whose outputs are not named after their stem (a name clash)."""
        return tuple((path, name) for path, name in self.written if name != path.stem)

    def line(self) -> str:
        """One line for people: counts, where, and every skipped file with its reason."""
        text = (
            f"{len(self.written)} image(s) segmented{' with CRF' if self.crf else ''}: "
            f"masks in {self.out_dir / 'masks'}, overlays in {self.out_dir / 'overlays'}"
        )
        if self.renamed:
            text += f"; {len(self.renamed)} renamed for clashing names"
        if self.skipped:
            reasons = "; ".join(f"{path.name}: {why}" for path, why in self.skipped[:5])
            more = f"; and {len(self.skipped) - 5} more" if len(self.skipped) > 5 else ""
            text += f"; {len(self.skipped)} skipped ({reasons}{more})"
        return text


_MARKER = ".puzzlecam-predict"  # in an output folder predict_images wrote
_OUTPUTS = ("masks", "overlays", "classes.txt")


def check_out_dir(out_dir: str | Path) -> None:
    """Refuse an ``out_dir`` whose masks/, overlays/ or classes.txt ``predict_images`` did
    not write: it would overwrite them (``--out`` given a data set's root would replace
    its ground-truth masks). Folders predict wrote before are reused."""
    out_dir = Path(out_dir)
    if (out_dir / _MARKER).is_file():
        return

    def in_use(path: Path) -> bool:  # a file, or a folder with something in it
        return path.is_file() or (path.is_dir() and any(path.iterdir()))

    found = [name for name in _OUTPUTS if in_use(out_dir / name)]
    if found:
        raise DataError(
            out_dir,
            f"holds {', '.join(found)} that puzzlecam predict did not write, and predicting "
            "there would overwrite them; choose a new or empty --out folder",
        )


def _save_jpeg(path: Path, image: np.ndarray, quality: int = 90) -> None:
    with atomic_write(path) as handle:
        Image.fromarray(image).save(handle, format="JPEG", quality=quality)


def _read(path: Path) -> np.ndarray | str:
    """(H, W, 3) uint8 upright pixels, or the reason the file cannot be used."""
    try:
        return np.asarray(load_image(path))
    except DataError as error:
        return error.problem


def predict_images(
    model: Segmenter,
    classes: Sequence[str],
    paths: Sequence[Path],
    out_dir: str | Path,
    config: PredictConfig,
    device: torch.device | str,
    progress: bool = True,
) -> PredictSummary:
    """Segment every image of ``paths``: ``out_dir/masks/{name}.png`` (VOC-palette labels at
    the image's upright size, 0 = background, i = ``classes[i-1]``) and
    ``out_dir/overlays/{name}.jpg``, names from ``output_names``; ``out_dir/classes.txt``
    lists the classes. Files that cannot be read are skipped, one printed line each.
    Raises DataError, before writing anything, for an ``out_dir`` that ``check_out_dir``
    refuses.

    Consecutive images of one working size go through the model together, up to
    ``config.batch_size``. ``model`` must be on ``device`` in eval mode. Existing outputs
    are overwritten (every file is written atomically).
    """
    out_dir = Path(out_dir)
    check_out_dir(out_dir)
    crf_steps = crf_iterations(config.crf_iterations if config.crf else 0, "predict", tqdm.write)
    names = output_names(list(paths))
    # every output name checked before anything is written
    targets = {
        name: (
            id_path(out_dir / "masks", name, ".png"),
            id_path(out_dir / "overlays", name, ".jpg"),
        )
        for name in names
    }
    with atomic_write(out_dir / _MARKER) as handle:
        handle.write(b"masks/, overlays/ and classes.txt written by puzzlecam predict\n")
    with atomic_write(out_dir / "classes.txt") as handle:
        handle.write("".join(f"{name}\n" for name in classes).encode("utf-8"))
    written: list[tuple[Path, str]] = []
    skipped: list[tuple[Path, str]] = []
    pending: list[tuple[Path, str, np.ndarray]] = []
    bar = tqdm(
        total=len(paths), desc="predict", unit="img", disable=not progress, dynamic_ncols=True
    )

    def flush() -> None:
        arrays = [image for _, _, image in pending]
        labels = segment_arrays(model, arrays, config, device, crf_steps)
        for (path, name, image), label in zip(pending, labels, strict=True):
            mask_path, overlay_path = targets[name]
            save_label_png(mask_path, label)
            _save_jpeg(overlay_path, overlay_labels(image, label))
            written.append((path, name))
        bar.update(len(pending))
        pending.clear()

    for path, name in zip(paths, names, strict=True):
        image = _read(Path(path))
        if isinstance(image, str):
            tqdm.write(f"skipped {path}: {image}")
            skipped.append((Path(path), image))
            bar.update(1)
            continue
        size = working_size(image.shape[:2], config.max_long_side)
        if pending and working_size(pending[0][2].shape[:2], config.max_long_side) != size:
            flush()
        pending.append((Path(path), name, image))
        if len(pending) >= config.batch_size:
            flush()
    if pending:
        flush()
    bar.close()
    return PredictSummary(out_dir, tuple(written), tuple(skipped), crf_steps > 0)
