"""The commands of a trained segmentation model: ``predict`` (masks and overlays of new
images) and ``export-onnx``; and ``check_output``, the check every command makes of the
file or folder it is told to write."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
from pathlib import Path
from typing import Literal

from puzzlecam.errors import ConfigError, DataError

__all__ = ["add_predict_commands", "check_output", "run_predict", "run_export_onnx"]


def add_predict_commands(commands: argparse._SubParsersAction) -> None:
    model_help = "a run directory (its segmentation/VARIANT/model.pt) or a segmentation model.pt"
    predict = commands.add_parser(
        "predict",
        help="segment new images with a trained model: mask PNGs and colour overlays",
        description="Writes OUT/masks/NAME.png (VOC palette, 0 = background, i = the i-th "
        "class of OUT/classes.txt) and OUT/overlays/NAME.jpg for every image. Settings "
        "default to the run's `predict` section when --model is a run directory.",
    )
    predict.add_argument("--model", required=True, help=model_help)
    predict.add_argument("images", nargs="+", help="image files, folders (not recursive) or globs")
    predict.add_argument("--out", required=True, type=Path, help="output folder")
    predict.add_argument(
        "--variant",
        choices=("weak", "full"),
        default="weak",
        help="weak: trained on pseudo labels (default); full: on ground truth",
    )
    predict.add_argument(
        "--scales",
        type=float,
        nargs="+",
        help="test-time scales, e.g. 1.0 1.5 (name the images before this option)",
    )
    predict.add_argument(
        "--flip",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="average with the mirrored image (--no-flip: don't)",
    )
    predict.add_argument(
        "--crf",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="dense CRF on the probabilities (needs pydensecrf2)",
    )
    predict.add_argument(
        "--max-long-side",
        type=int,
        metavar="N",
        help="segment larger images at this long side, masks resized back",
    )
    predict.add_argument("--batch-size", type=int, metavar="N", help="images of one size per batch")
    predict.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:1 ...")
    predict.add_argument(
        "--engine",
        default="auto",
        choices=("auto", "torch", "onnxruntime", "openvino"),
        help="what runs the network: auto (default: ONNX Runtime, else OpenVINO, on a CPU; "
        "its graph is exported once, beside the weights when that folder is writable)",
    )
    predict.add_argument("--no-progress", action="store_true", help="no progress bar")

    export = commands.add_parser(
        "export-onnx",
        help="export the segmentation model to ONNX and check it against ONNX Runtime",
        description="The ONNX graph takes images (N, 3, H, W) in 0..255 of any N, H, W and "
        "returns logits (N, C+1, H, W); argmax over dim 1 gives the labels.",
    )
    export.add_argument("--model", required=True, help=model_help)
    export.add_argument("--out", required=True, type=Path, help="the .onnx file to write")
    export.add_argument("--variant", choices=("weak", "full"), default="weak")
    export.add_argument(
        "--size",
        type=int,
        nargs=2,
        default=(512, 512),
        metavar=("H", "W"),
        help="example image size traced (default 512 512; any size works after)",
    )
    export.add_argument(
        "--input-dtype",
        choices=("uint8", "float32"),
        default="uint8",
        help="element type of the image input (default uint8)",
    )
    export.add_argument(
        "--opset", type=int, help="ONNX opset, 18 to the newest torch.onnx writes (default 18)"
    )
    export.add_argument(
        "--check-image",
        type=Path,
        metavar="IMAGE",
        help="image to compare ONNX Runtime with PyTorch on (default: a synthetic "
        "one whose size differs from --size and is not a multiple of 32)",
    )


def _predict_config(args: argparse.Namespace):
    from dataclasses import replace

    from puzzlecam.pipeline.config import PredictConfig, load_run_config
    from puzzlecam.pipeline.run_dir import RunDir

    run_config = RunDir(args.model).config_path
    base = load_run_config(run_config).predict if run_config.is_file() else PredictConfig()
    changes = {
        "scales": tuple(args.scales) if args.scales else None,
        "flip": args.flip,
        "crf": args.crf,
        "max_long_side": args.max_long_side,
        "batch_size": args.batch_size,
    }
    if args.scales is not None and not all(0 < s <= 8 for s in args.scales):
        raise ConfigError(f"--scales: every scale must be in (0, 8], got {args.scales}")
    if args.batch_size is not None and args.batch_size < 1:
        raise ConfigError(f"--batch-size must be at least 1, got {args.batch_size}")
    if args.max_long_side is not None and args.max_long_side < 32:
        raise ConfigError(f"--max-long-side must be at least 32, got {args.max_long_side}")
    return replace(base, **{k: v for k, v in changes.items() if v is not None})


def check_output(
    path: Path, kind: Literal["file", "folder"], example: str = "", option: str = "--out"
) -> None:
    """Refuse ``option`` (``--out``) before any slow work when it cannot be written as
    ``kind``: a folder that is a file, a file that is a folder, a path under a file, or a
    place this user may not write. ``example`` is a file name to suggest inside a folder."""
    if kind == "folder" and path.exists() and not path.is_dir():
        raise DataError(
            path, f"{option} is an existing file, but it must be a folder; name a folder instead"
        )
    if kind == "file" and path.is_dir():
        inside = f", e.g. {option} {path / example}" if example else ""
        raise DataError(
            path, f"{option} is a folder, but it must be a file; name the file to write{inside}"
        )
    existing = path if kind == "folder" else path.parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise DataError(
            existing,
            f"is a file, so {option} {path} cannot be created under it; choose another {option}",
        )
    if not os.access(existing, os.W_OK | os.X_OK):
        raise DataError(existing, f"is not writable, so {option} {path} cannot be written there")


def run_predict(args: argparse.Namespace) -> int:
    from puzzlecam.models.engine import ENGINE_GRAPH, resolve_engine
    from puzzlecam.pipeline.run_dir import resolve_weights
    from puzzlecam.segmentation.export import segmenter_net
    from puzzlecam.segmentation.inputs import collect_images
    from puzzlecam.segmentation.model_io import load_segmenter
    from puzzlecam.segmentation.predict import check_out_dir, predict_images
    from puzzlecam.training.distributed import resolve_device

    check_output(args.out, "folder")
    check_out_dir(args.out)
    device = resolve_device(args.device)
    weights = resolve_weights(args.model, args.variant)
    config = _predict_config(args)
    paths = collect_images(args.images)
    model, classes = load_segmenter(weights, device)
    engine, note = resolve_engine(args.engine, device)
    if note:
        print(f"predict: note: {note}")
    print(
        f"predict: {len(paths)} file(s) with {weights} ({len(classes)} classes) on {device} "
        f"({engine}); "
        f"scales {list(config.scales)}, flip {'on' if config.flip else 'off'}, "
        f"CRF {'on' if config.crf else 'off'}, max long side {config.max_long_side}"
    )
    with contextlib.ExitStack() as stack:
        folder = weights.parent
        if engine != "torch" and not os.access(folder, os.W_OK):  # a graph of its own
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        net = segmenter_net(model, engine, folder / ENGINE_GRAPH)
        summary = predict_images(
            net, classes, paths, args.out, config, device, progress=not args.no_progress
        )
    for path, name in summary.renamed:
        print(f"  {path} -> {name}.png (name clash)")
    print(f"predict: {summary.line()}")
    return 0 if summary.written else 1


def _check_image(size: tuple[int, int]):
    """A smooth synthetic RGB image (H, W, 3) uint8 of about 3/4 of ``size`` (+5 px, so not
    a multiple of 32): the ONNX check then runs at a size other than the traced one."""
    import numpy as np
    from PIL import Image

    height, width = max(8, size[0] * 3 // 4 + 5), max(8, size[1] * 3 // 4 + 5)
    rng = np.random.default_rng(0)
    coarse = Image.fromarray(rng.integers(0, 256, (6, 6, 3), dtype=np.uint8))
    return np.asarray(coarse.resize((width, height), Image.Resampling.BICUBIC))


def run_export_onnx(args: argparse.Namespace) -> int:
    from puzzlecam.pipeline.run_dir import resolve_weights
    from puzzlecam.segmentation.export import DEFAULT_OPSET, check_onnx, check_opset, export_onnx
    from puzzlecam.segmentation.model_io import load_segmenter
    from puzzlecam.segmentation.predict import image_array

    # everything the slow export and check need, checked first
    check_output(args.out, "file", "model.onnx")
    if min(args.size) < 32:
        raise ConfigError(f"--size must be at least 32 32 (H W), got {list(args.size)}")
    opset = DEFAULT_OPSET if args.opset is None else args.opset  # --opset 0 is not "default"
    check_opset(opset)
    image = image_array(args.check_image) if args.check_image else _check_image(tuple(args.size))
    weights = resolve_weights(args.model, args.variant)
    model, classes = load_segmenter(weights, "cpu")
    try:
        export_onnx(model, args.out, tuple(args.size), opset, args.input_dtype, classes)
    except ImportError as error:
        print(f"puzzlecam export-onnx: error: {error}", file=sys.stderr)
        return 2
    megabytes = args.out.stat().st_size / 2**20
    print(
        f"export-onnx: {weights} -> {args.out} ({megabytes:.1f} MB, opset {opset}); input "
        f"'images' {args.input_dtype} (batch, 3, height, width) in 0..255, output 'logits' "
        f"(batch, {len(classes) + 1}, height, width), label = argmax over dim 1"
    )
    check = check_onnx(model, args.out, image)
    print(f"export-onnx: {check.message}")
    return 1 if check.passed is False else 0
