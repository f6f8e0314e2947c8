"""The segmentation model as ONNX, and a check of the exported file against PyTorch.

The graph takes images (N, 3, H, W) in 0..255 (uint8, or float32 with
``input_dtype="float32"``) of any N, H and W, and returns logits (N, C+1, H, W) float32;
label = argmax over dim 1 (0 = background, i = classes[i-1], the class list is stored in
the file's metadata as JSON under ``classes``). Normalisation, padding to a multiple of
32 and the crop back are inside the graph, as in ``Segmenter.forward``. Exported with
torch's dynamo exporter (``torch.onnx.export(dynamo=True)``, which needs ``onnxscript``).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from puzzlecam.models.engine import (
    DEFAULT_OPSET,
    MIN_OPSET,
    EngineNet,
    check_opset,
    engine_net,
    export_graph,
    max_opset,
)
from puzzlecam.models.segmenter import Segmenter
from puzzlecam.segmentation.predict import image_array

__all__ = [
    "OnnxSegmenter",
    "export_onnx",
    "OnnxCheck",
    "check_onnx",
    "DEFAULT_OPSET",
    "MIN_OPSET",
    "max_opset",
    "check_opset",
    "segmenter_net",
]


class OnnxSegmenter(nn.Module):
    """``Segmenter.forward`` written for export: always pads (by 0 when H, W are already
    multiples of 32), so the graph has no branch on the input size.

    images (N, 3, H, W) uint8 or float 0..255 -> logits (N, C+1, H, W) float32.
    """

    def __init__(self, segmenter: Segmenter) -> None:
        super().__init__()
        self.segmenter = segmenter

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        height, width = images.shape[-2:]
        x = self.segmenter.normalize(images)  # (N, 3, H, W) float
        x = F.pad(x, (0, (-width) % 32, 0, (-height) % 32))  # (N, 3, H', W'), multiples of 32
        return self.segmenter.network(x)[..., :height, :width].float()


def export_onnx(
    model: Segmenter,
    path: str | Path,
    example_size: tuple[int, int] = (512, 512),
    opset: int = DEFAULT_OPSET,
    input_dtype: Literal["uint8", "float32"] = "uint8",
    classes: Sequence[str] | None = None,
) -> Path:
    """Write ``model`` as an ONNX file with dynamic batch, height and width, atomically.

    ``example_size`` (H, W) is the size traced; any other size works (checked by
    ``check_onnx``). ``classes`` (without background) go into the file's metadata.
    The model is exported in eval mode on its own device and left in the mode it was in.
    Raises ConfigError for an opset outside ``MIN_OPSET .. max_opset()``.
    """
    if input_dtype not in ("uint8", "float32"):
        raise ValueError(f"input_dtype must be 'uint8' or 'float32', got {input_dtype!r}")
    device = next(model.parameters()).device
    dtype = torch.uint8 if input_dtype == "uint8" else torch.float32
    example = torch.randint(0, 256, (2, 3, *example_size), dtype=torch.uint8, device=device)
    metadata = {
        "input": f"images (batch, 3, height, width) {input_dtype} RGB in 0..255, any size",
        "output": "logits (batch, classes + 1, height, width) float32; argmax over dim 1: "
        "0 = background, i = classes[i - 1]",
    }
    if classes is not None:
        metadata["classes"] = json.dumps(list(classes))
    was_training = model.training
    try:
        return export_graph(
            OnnxSegmenter(model), example.to(dtype), path, ["logits"], opset, metadata
        )
    finally:
        model.train(was_training)


def segmenter_net(model: Segmenter, engine: str, graph_path: str | Path) -> Segmenter | EngineNet:
    """``model`` itself for ``engine`` "torch", else run by ``engine`` from its float32
    graph at ``graph_path`` (exported there once: ``models.engine.engine_net``)."""
    wrapper = OnnxSegmenter(model).eval()
    net = engine_net(wrapper, engine, graph_path, lambda outs: outs[0], ["logits"])
    return model if net is wrapper else net


@dataclass(frozen=True)
class OnnxCheck:
    """ONNX Runtime against PyTorch on one image.

    ran: False when ONNX Runtime is not installed (``message`` says so; the rest None).
    equal_fraction: pixels with the same argmax label; max_abs_diff: over all logits;
    near_ties: differing pixels whose two best PyTorch logits are closer than twice
    max_abs_diff (rounding decides them, not a fault of the export).
    """

    ran: bool
    message: str
    image_size: tuple[int, int]
    equal_fraction: float | None = None
    max_abs_diff: float | None = None
    tolerance: float | None = None
    differing: int = 0
    near_ties: int = 0

    @property
    def passed(self) -> bool | None:
        """Same masks (up to near ties) and logits within tolerance; None if not run."""
        if not self.ran:
            return None
        return self.differing == self.near_ties and self.max_abs_diff <= self.tolerance


def _session(path: Path):
    import onnxruntime

    return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def check_onnx(
    model: Segmenter, path: str | Path, image: Image.Image | str | Path | np.ndarray
) -> OnnxCheck:
    """Run the ONNX file at ``path`` (ONNX Runtime, CPU) and ``model`` (PyTorch, its own
    device) on one image; compare argmax masks and logits.

    image: a PIL image, an image file, or (H, W, 3) uint8. Pass a size other than the
    export's example size (and not a multiple of 32) to check the dynamic shapes.
    """
    pixels = image_array(image)  # (H, W, 3) uint8
    size = (int(pixels.shape[0]), int(pixels.shape[1]))
    if importlib.util.find_spec("onnxruntime") is None:
        return OnnxCheck(
            False,
            "check skipped: onnxruntime is not installed (pip install 'puzzlecam[onnx]')",
            size,
        )
    try:
        session = _session(Path(path))
    except Exception as error:  # ORT's errors share no base class below Exception
        import onnxruntime

        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        return OnnxCheck(
            False,
            f"check not run: ONNX Runtime {onnxruntime.__version__} cannot load {path} "
            f"({reason}); a newer onnxruntime or a lower --opset may run it",
            size,
        )
    feed = np.ascontiguousarray(pixels.transpose(2, 0, 1)[None])  # (1, 3, H, W) uint8
    if session.get_inputs()[0].type == "tensor(float)":
        feed = feed.astype(np.float32)
    onnx_logits = session.run(None, {session.get_inputs()[0].name: feed})[0]  # (1, K, H, W)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    with torch.no_grad():
        torch_logits = model(torch.from_numpy(feed).to(device)).float().cpu().numpy()
    model.train(was_training)
    if onnx_logits.shape != torch_logits.shape:
        return OnnxCheck(
            True,
            f"FAILED: ONNX logits {onnx_logits.shape}, PyTorch {torch_logits.shape}",
            size,
            0.0,
            float("inf"),
            0.0,
            int(np.prod(size)),
        )
    diff = float(np.abs(onnx_logits - torch_logits).max())
    tolerance = 1e-3 * max(1.0, float(np.abs(torch_logits).max()))
    same = onnx_logits.argmax(1) == torch_logits.argmax(1)  # (1, H, W)
    top2 = np.sort(torch_logits, axis=1)[:, -2:]  # (1, 2, H, W)
    margin = top2[:, 1] - top2[:, 0]
    differing = int((~same).sum())
    near_ties = int(((~same) & (margin <= 2 * diff)).sum())
    check = OnnxCheck(True, "", size, float(same.mean()), diff, tolerance, differing, near_ties)
    verdict = "OK" if check.passed else "FAILED"
    message = (
        f"{verdict}: ONNX Runtime vs PyTorch on a {size[0]}x{size[1]} image: "
        f"{100 * check.equal_fraction:.4f}% of pixels get the same label, "
        f"max |logit difference| {diff:.2e} (tolerance {tolerance:.1e})"
    )
    if differing:
        message += f"; {differing} pixel(s) differ, {near_ties} of them near ties"
    return dataclasses.replace(check, message=message)
