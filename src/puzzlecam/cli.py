"""Command line: parses arguments and calls the library. Errors the user can fix are
printed as one message (exit status 2), not as a traceback."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from pathlib import Path
from typing import Literal

from puzzlecam.errors import ConfigError, DataError, PuzzlecamError

PIPELINE_COMMANDS = {
    "data": "read the data set (and build the demo benchmark when configured)",
    "train-cls": "train the classifier with the puzzle module (and the plain-CAM baseline)",
    "cams": "multi-scale CAMs for the train and val splits",
    "affinity-labels": "confident fg/bg/ignore labels from the CAMs (dense CRF)",
    "train-aff": "train AffinityNet on the affinity labels",
    "rw": "random walk of the CAMs over the learned affinities",
    "pseudo-labels": "pseudo labels from the random-walk scores",
    "train-seg": "train DeepLabV3+ on the pseudo labels (and on ground truth if configured)",
    "report": "write report/index.html",
}


def _add_run_options(parser: argparse.ArgumentParser, config_required: bool) -> None:
    parser.add_argument(
        "--config", required=config_required, help="YAML config file or bundled preset name"
    )
    parser.add_argument("--run-dir", help="run directory (default runs/<config name>)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="extend",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="override settings: --set train_cls.loop.epochs=3 cams.batch_size=8 (repeatable)",
    )
    parser.add_argument("--device", help="auto (default), cpu, cuda, cuda:1 ...")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="puzzlecam",
        description="Weakly-supervised semantic segmentation from image tags: Puzzle-CAM, random walk, DeepLabV3+.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="run every stage of a config in one run directory")
    _add_run_options(run, config_required=True)

    demo = commands.add_parser(
        "demo", help="the whole pipeline on the bundled demo benchmark (CPU, minutes)"
    )
    _add_run_options(demo, config_required=False)

    for name, help_text in PIPELINE_COMMANDS.items():
        if name != "report":
            _add_run_options(commands.add_parser(name, help=help_text), config_required=True)

    ablate = commands.add_parser(
        "ablate",
        help="the paper's Table 1: the classifier with each set of loss terms, over seeds",
        description="Trains the classifier once per variant and seed (same backbone, budget "
        "and schedule; only the loss terms differ), makes and scores its CAMs on train and "
        "val, and prints CAM mIoU and mAP per variant: mean ± std, every seed, the gain over "
        "L_cls. Each (variant, seed) is a resumable run in RUN_DIR/VARIANT/seedN; the table "
        "is written to RUN_DIR/ablation.{json,txt,png}.",
    )
    _add_run_options(ablate, config_required=True)
    ablate.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], metavar="N")
    ablate.add_argument(
        "--variants",
        nargs="+",
        default=["cls", "pcls", "re", "all"],
        choices=("cls", "pcls", "re", "all"),
        help="cls: L_cls; pcls: + L_p-cls; re: + L_re; all: the three (default: all four)",
    )
    ablate.add_argument(
        "--rw",
        action="store_true",
        help="also the paper's Table 2: each classifier's CAMs through AffinityNet and the "
        "random walk to pseudo labels (the config's refinement settings), scored the same way",
    )

    report = commands.add_parser(
        "report", help=PIPELINE_COMMANDS["report"] + " for a run directory"
    )
    report.add_argument("--run-dir", required=True, type=Path)
    report.add_argument("--num-samples", type=int, default=6, help="sample images shown")
    report.add_argument("--no-progress", action="store_true")

    evaluate = commands.add_parser(
        "eval", help="score predictions (label PNGs or score files) against ground truth"
    )
    evaluate.add_argument("--pred", required=True, type=Path, help="folder of {id}.png or {id}.npz")
    evaluate.add_argument("--gt", required=True, type=Path, help="folder of ground-truth {id}.png")
    evaluate.add_argument(
        "--classes", type=Path, help="class list (default: classes.txt beside --gt, else VOC's)"
    )
    evaluate.add_argument("--out", type=Path, help="write the full result as JSON here")
    evaluate.add_argument(
        "--thresholds", type=float, nargs="+", help="background thresholds (score files)"
    )
    evaluate.add_argument(
        "--strict",
        action="store_true",
        help="refuse to score when a ground-truth image has no prediction (default: warn, "
        "score the others and list them in the JSON)",
    )
    evaluate.add_argument("--no-progress", action="store_true")
    _add_predict_commands(commands)
    return parser


def _add_predict_commands(commands: argparse._SubParsersAction) -> None:
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


def _predict(args: argparse.Namespace) -> int:
    from puzzlecam.pipeline.run_dir import resolve_weights
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
    print(
        f"predict: {len(paths)} file(s) with {weights} ({len(classes)} classes) on {device}; "
        f"scales {list(config.scales)}, flip {'on' if config.flip else 'off'}, "
        f"CRF {'on' if config.crf else 'off'}, max long side {config.max_long_side}"
    )
    summary = predict_images(
        model, classes, paths, args.out, config, device, progress=not args.no_progress
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


def _export_onnx(args: argparse.Namespace) -> int:
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


@contextlib.contextmanager
def _run_context(args: argparse.Namespace, preset: str | None = None):
    """The run's context, its directory bound to the config and locked (on the main
    process: the other ranks of a torchrun job write through it) while the block runs."""
    from puzzlecam.pipeline.config import load_run_config
    from puzzlecam.pipeline.context import RunContext
    from puzzlecam.pipeline.run_dir import RunDir
    from puzzlecam.training.distributed import init_distributed

    overrides = list(args.overrides)
    if args.device:
        overrides.append(f"device={args.device}")
    config = load_run_config(args.config or preset, tuple(overrides))
    run_dir = RunDir(args.run_dir or Path("runs") / config.name)
    check_output(run_dir.root, "folder", option="--run-dir")
    context = init_distributed(config.device)
    with run_dir.lock() if context.is_main else contextlib.nullcontext():
        if context.is_main:
            run_dir.bind(config)
        ctx = RunContext(config=config, run=run_dir, dist=context, progress=not args.no_progress)
        if context.enabled:
            import torch.distributed as dist

            dist.barrier()
            run_dir.bind(config)  # the other ranks check the config too
        yield ctx


def _pipeline(
    args: argparse.Namespace, commands: list[str] | None, preset: str | None = None
) -> int:
    from puzzlecam.pipeline.report import write_report
    from puzzlecam.pipeline.runner import format_summary, run_pipeline

    with _run_context(args, preset) as ctx:
        whole_run = ctx.dist.is_main and commands is None
        try:
            run_pipeline(ctx, commands)
        except BaseException:
            if whole_run:  # a report of what is there helps to see what went wrong
                with contextlib.suppress(Exception):
                    write_report(ctx.run, ctx.config.report.num_samples, progress=False)
            raise
        if whole_run:
            report = write_report(ctx.run, ctx.config.report.num_samples, progress=ctx.progress)
            print()
            print(format_summary(ctx.run.metrics(), ctx.run.manifest()))
            print(f"\nrun directory: {ctx.run.root}\nreport: {report}")
    return 0


def _ablate(args: argparse.Namespace) -> int:
    from puzzlecam.pipeline.ablate import format_ablation, run_ablation
    from puzzlecam.pipeline.config import load_run_config
    from puzzlecam.training.distributed import init_distributed

    overrides = list(args.overrides) + ([f"device={args.device}"] if args.device else [])
    config = load_run_config(args.config, tuple(overrides))
    # refined sub-runs are other runs (they go on to the pseudo labels): their own folder
    default = f"{config.name}-ablation" + ("-rw" if args.rw else "")
    root = Path(args.run_dir or Path("runs") / default)
    dist = init_distributed(config.device)
    summary = run_ablation(
        config,
        root,
        args.variants,
        args.seeds,
        dist,
        progress=not args.no_progress,
        refine=args.rw,
    )
    if dist.is_main:
        print()
        print(format_ablation(summary))
        print(f"\nablation: {root / 'ablation.json'}, {root / 'ablation.png'}")
    return 0


def _eval(args: argparse.Namespace) -> int:
    from puzzlecam.constants import VOC_CLASSES
    from puzzlecam.data.classes import read_class_list
    from puzzlecam.metrics.evaluate import evaluate_directory, format_table, write_result
    from puzzlecam.metrics.sweep import check_thresholds

    if args.out:
        check_output(args.out, "file", "eval.json")
    if args.thresholds is not None:
        try:
            check_thresholds(args.thresholds)
        except ValueError as error:
            raise ConfigError(f"--thresholds: {error}") from error
        if not all(0 < t < 1 for t in args.thresholds):
            raise ConfigError(f"--thresholds must lie between 0 and 1, got {args.thresholds}")
    if args.classes:
        classes = read_class_list(args.classes)
    elif (args.gt.parent / "classes.txt").is_file():
        classes = read_class_list(args.gt.parent / "classes.txt")
    else:
        classes = VOC_CLASSES
    result = evaluate_directory(
        args.pred,
        args.gt,
        classes,
        thresholds=args.thresholds,
        progress=not args.no_progress,
        strict=args.strict,
    )
    print(format_table(result, classes))
    if args.out:
        write_result(args.out, result)
        print(f"written: {args.out}")
    return 0


_OUT_OF_MEMORY = (
    "out of memory; lower the batch size (the stage's loop.batch_size, with grad_accum to "
    "keep the global batch, or cams.batch_size / predict.batch_size), the image sizes, or "
    "use --device cpu"
)


def _error(command: str, message: str) -> int:
    """Print the one-line error of a failure the user can fix; exit status 2."""
    print(f"puzzlecam {command}: error: {message}", file=sys.stderr)
    return 2


@contextlib.contextmanager
def _warnings_on_stderr(command: str):
    """The package's logged warnings as ``puzzlecam CMD: warning: ...`` lines."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(logging.WARNING)
    handler.setFormatter(logging.Formatter(f"puzzlecam {command}: warning: %(message)s"))
    logger = logging.getLogger("puzzlecam")
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with _warnings_on_stderr(args.command):
        return _main(args)


def _main(args: argparse.Namespace) -> int:
    try:
        if args.command == "run":
            return _pipeline(args, None)
        if args.command == "demo":
            return _pipeline(args, None, preset="demo")
        if args.command == "eval":
            return _eval(args)
        if args.command == "ablate":
            return _ablate(args)
        if args.command == "report":
            from puzzlecam.pipeline.report import write_report
            from puzzlecam.pipeline.run_dir import RunDir

            run = RunDir(args.run_dir)
            run.check_exists()  # a report is written into runs only, never a foreign folder
            with run.lock():
                print(write_report(run, args.num_samples, progress=not args.no_progress))
            return 0
        if args.command == "predict":
            return _predict(args)
        if args.command == "export-onnx":
            return _export_onnx(args)
        return _pipeline(args, [args.command])
    except PuzzlecamError as error:
        return _error(args.command, str(error))
    except OSError as error:  # the system refused a read or write: a path, space, permissions
        where = f"{error.filename}: " if error.filename else ""
        reason = error.strerror or str(error) or type(error).__name__
        return _error(
            args.command,
            f"{where}{reason}; check that the path exists and is writable and that the disk "
            "has space",
        )
    except MemoryError:
        return _error(args.command, _OUT_OF_MEMORY)
    except RuntimeError as error:
        if type(error).__name__ == "OutOfMemoryError":  # torch's (CUDA) out-of-memory
            return _error(args.command, _OUT_OF_MEMORY)
        if "DataLoader worker" in str(error) and "killed by signal" in str(error):
            return _error(
                args.command,
                f"{str(error).splitlines()[0].rstrip('. ')}; the system usually kills a worker when memory "
                "runs out: lower the stage's loop.num_workers (or cams.num_workers) or its "
                "batch size",
            )
        raise
    except KeyboardInterrupt:
        print(
            f"\npuzzlecam {args.command}: interrupted; run the same command again to resume",
            file=sys.stderr,
        )
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
