"""Command line: parses arguments and calls the library. Errors the user can fix are
printed as one message (exit status 2), not as a traceback."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from puzzlecam.errors import PuzzlecamError

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
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a setting, e.g. --set train_cls.loop.epochs=3 (repeatable)",
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
        _add_run_options(commands.add_parser(name, help=help_text), config_required=True)

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
    evaluate.add_argument("--no-progress", action="store_true")
    return parser


def _run_context(args: argparse.Namespace, preset: str | None = None):
    from puzzlecam.pipeline.config import load_run_config
    from puzzlecam.pipeline.context import RunContext
    from puzzlecam.pipeline.run_dir import RunDir
    from puzzlecam.training.distributed import init_distributed

    overrides = list(args.overrides)
    if args.device:
        overrides.append(f"device={args.device}")
    config = load_run_config(args.config or preset, tuple(overrides))
    run_dir = RunDir(args.run_dir or Path("runs") / config.name)
    context = init_distributed(config.device)
    if context.is_main:
        run_dir.bind(config)
    ctx = RunContext(config=config, run=run_dir, dist=context, progress=not args.no_progress)
    if context.enabled:
        import torch.distributed as dist

        dist.barrier()
        run_dir.bind(config)  # the other ranks check the config too
    return ctx


def _pipeline(
    args: argparse.Namespace, commands: list[str] | None, preset: str | None = None
) -> int:
    from puzzlecam.pipeline.runner import format_summary, run_pipeline

    ctx = _run_context(args, preset)
    run_pipeline(ctx, commands)
    if ctx.dist.is_main and commands is None:
        print()
        print(format_summary(ctx.run.metrics(), ctx.run.manifest()))
        print(f"\nrun directory: {ctx.run.root}")
    return 0


def _eval(args: argparse.Namespace) -> int:
    from puzzlecam.constants import VOC_CLASSES
    from puzzlecam.data.classes import read_class_list
    from puzzlecam.metrics.evaluate import evaluate_directory, format_table, write_result

    if args.classes:
        classes = read_class_list(args.classes)
    elif (args.gt.parent / "classes.txt").is_file():
        classes = read_class_list(args.gt.parent / "classes.txt")
    else:
        classes = VOC_CLASSES
    result = evaluate_directory(
        args.pred, args.gt, classes, thresholds=args.thresholds, progress=not args.no_progress
    )
    print(format_table(result, classes))
    if args.out:
        write_result(args.out, result)
        print(f"written: {args.out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "run":
            return _pipeline(args, None)
        if args.command == "demo":
            return _pipeline(args, None, preset="demo")
        if args.command == "eval":
            return _eval(args)
        return _pipeline(args, [args.command])
    except PuzzlecamError as error:
        print(f"puzzlecam {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            f"\npuzzlecam {args.command}: interrupted; run the same command again to resume",
            file=sys.stderr,
        )
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
