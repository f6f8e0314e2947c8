"""Command line: parses arguments and calls the library. Errors the user can fix are
printed as one message (exit status 2), not as a traceback."""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
import time
from pathlib import Path

from puzzlecam.cli.predict import (
    add_predict_commands,
    check_output,
    run_export_onnx,
    run_predict,
)
from puzzlecam.errors import ConfigError, PuzzlecamError


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

    from puzzlecam.pipeline.plan import stage_commands

    # one command per registered stage kind that has one (pipeline.kinds)
    for name, help_text in stage_commands().items():
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

    report = commands.add_parser("report", help="write report/index.html for a run directory")
    report.add_argument("--run-dir", required=True, type=Path)
    report.add_argument("--num-samples", type=int, default=6, help="sample images shown")
    report.add_argument("--no-progress", action="store_true")

    explore = commands.add_parser(
        "explore",
        help="write report/explore.html: the refinement's thresholds tried on the run's "
        "images in a browser, with the --set line that applies them",
    )
    explore.add_argument("--run-dir", required=True, type=Path)
    explore.add_argument(
        "--max-images", type=int, help="images of each split (default: the run's "
        "report.explore_images; all of them when fewer)"
    )  # fmt: skip
    explore.add_argument("--out", type=Path, help="the page's path (default report/explore.html)")
    explore.add_argument("--no-progress", action="store_true")

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
    add_predict_commands(commands)
    return parser


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


def _explore(args: argparse.Namespace) -> int:
    from puzzlecam.pipeline.config import ReportConfig
    from puzzlecam.pipeline.report.collect import load_run
    from puzzlecam.pipeline.report.explorer import write_explorer
    from puzzlecam.pipeline.run_dir import RunDir

    started = time.perf_counter()
    run = RunDir(args.run_dir)
    run.check_exists()
    with run.lock():
        summary = load_run(run)  # write_explorer refuses a run without its config.yaml
        default = summary.config.report if summary.config else ReportConfig()
        count = default.explore_images if args.max_images is None else args.max_images
        if count < 1:
            return _error("explore", f"--max-images must be at least 1, got {count}")
        path = write_explorer(run, count, args.out, not args.no_progress, summary)
    size = path.stat().st_size / 2**20
    print(f"{path} ({size:.1f} MB, {time.perf_counter() - started:.1f} s)")
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
        if args.command == "explore":
            return _explore(args)
        if args.command == "predict":
            return run_predict(args)
        if args.command == "export-onnx":
            return run_export_onnx(args)
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
