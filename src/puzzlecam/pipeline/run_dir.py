"""The run directory: one object owns every path in it, the manifest and metrics.json.
Which stage writes which folder is its kind's (``pipeline.kinds``, ``StageKind.outputs``);
what makes a folder puzzlecam's, and the rules of writing into one, ``pipeline.folders``.

runs/NAME/
  .puzzlecam-run        the marker: this folder is a run directory (puzzlecam writes, and
                        removes, files only in folders that carry it; docs/decisions.md)
  .puzzlecam.lock       held by the one process writing the run (``RunDir.lock``)
  config.yaml           the resolved config (the run belongs to it)
  manifest.json         stage -> {fingerprint, seconds, finished}
  metrics.json          method -> split -> scores (mIoU in percent)
  data_signature.json   per split: the data's signature and per-id table (ids, tags,
                        file sizes and mtimes), to see what changed since the last run
  data_check.json       the data check's cache: per file (size, mtime_ns) -> what it found
  classifier/{method}/  model.pt, checkpoint.pt, metrics.jsonl
  cams/{method}/{split}/{id}.npz, cams/{method}/{split}_overlays/
  affinity_labels/{method}/train/{id}.png
  affinitynet/{method}/ model.pt, checkpoint.pt, metrics.jsonl
  rw/{method}/{split}/{id}.npz
  pseudo_labels/{method}/{split}/{id}.png
  segmentation/{variant}/   model.pt ... (trained on pseudo_labels/puzzle_cam/train)
  predictions/{variant}/{split}/{id}.png
  eval/{name}.json      full evaluation results (names: puzzlecam.pipeline.plan, Score)
  report/index.html

{method} is a CAM branch, puzzle_cam or plain_cam (puzzlecam.pipeline.branches); the
plain_cam branch exists when train_cls.baseline_plain_cam is set. {variant} is a
segmentation model, weak or full (``branches.VARIANTS``). A training folder holds the
training loop's files (``model_path``, ``log_path``).
"""

from __future__ import annotations

import contextlib
import shutil
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from puzzlecam.dataclass_yaml import (
    config_hash,
    differences,
    dump_yaml,
    fingerprint_data,
    from_dict,
)
from puzzlecam.errors import ConfigError, RunDirError
from puzzlecam.io import atomic_write, claim_folder, read_json, read_text, write_json
from puzzlecam.models.engine import ENGINE_GRAPH
from puzzlecam.pipeline.branches import VARIANTS
from puzzlecam.pipeline.config import UNTIL_PHASES
from puzzlecam.pipeline.folders import (
    OUTPUT_MARKER,
    RUN_MARKER,
    folder_lock,
    is_atomic_temp,
    is_report_build,
    refuse_foreign_folder,
)
from puzzlecam.training.checkpoint import WEIGHTS_FILE
from puzzlecam.training.metrics_log import LOG_FILE

__all__ = ["RunDir", "resolve_weights"]


class RunDir:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    # --- the config the directory belongs to -------------------------------------------
    @property
    def config_path(self) -> Path:
        return self.root / "config.yaml"

    @property
    def marker_path(self) -> Path:
        return self.root / RUN_MARKER

    def is_run(self) -> bool:
        """Whether the folder is a run directory: it carries the marker, or (made before the
        marker existed) both config.yaml and manifest.json."""
        if self.marker_path.is_file():
            return True
        return self.config_path.is_file() and self.manifest_path.is_file()

    def check_exists(self) -> None:
        """Raise RunDirError unless the folder exists and may hold a run (``check_can_hold_run``:
        a run directory, or an empty folder)."""
        if not self.root.exists():
            raise RunDirError(f"{self.root} is not a run directory (it does not exist)")
        if not self.root.is_dir():
            raise RunDirError(f"{self.root} is a file, not a run directory")
        self.check_can_hold_run()

    def check_can_hold_run(self) -> None:
        """Refuse, before anything is written, a folder that is neither new, empty nor a run
        directory: a run never writes into (or cleans up) a folder of other files."""
        refuse_foreign_folder(self.root, self.is_run(), "run directory", RUN_MARKER)

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the run's lock (``folder_lock``) while the block runs."""
        self.check_can_hold_run()
        with folder_lock(self.root):
            yield

    def bind(self, config: Any) -> None:
        """Claim the directory for ``config``, or refuse if it holds another config's run
        or is a folder of other files (``check_can_hold_run``).

        Settings marked ``NOT_FINGERPRINTED`` (``device``) are not compared: a run made
        with ``--device auto`` can be resumed with ``--device cpu``. config.yaml keeps
        what the run was started with.
        """
        self.check_can_hold_run()
        if not self.marker_path.is_file():  # first: a run killed after this is still a run
            self.root.mkdir(parents=True, exist_ok=True)
            write_json(self.marker_path, {"puzzlecam": "run directory", "version": 1})

        def check(path: Path) -> None:
            changed = self.changed_settings(config)
            if changed:
                shown = "\n  ".join(changed[:12])
                raise RunDirError(
                    f"{self.root} holds a run of a different config; changed settings:\n  {shown}\n"
                    "Use another --run-dir for the new config, or delete this directory."
                )

        def write(path: Path) -> None:
            with atomic_write(path) as handle:
                handle.write(dump_yaml(config).encode("utf-8"))

        if not claim_folder(self.root, self.config_path.name, write, check):
            self._record_furthest_until(config)

    def _record_furthest_until(self, config: Any) -> None:
        """config.yaml says how far the run goes: the furthest ``until`` it was given (a
        stopping point, not part of the run, so a run continued further keeps its stages)."""
        until = getattr(config, "until", None)
        stored = yaml.safe_load(read_text(self.config_path)) or {}
        old = stored.get("until")
        if until is None or old not in UNTIL_PHASES:
            return
        if UNTIL_PHASES.index(until) > UNTIL_PHASES.index(old):
            stored["until"] = until
            with atomic_write(self.config_path) as handle:
                handle.write(dump_yaml(from_dict(type(config), stored)).encode("utf-8"))

    def changed_settings(self, config: Any) -> list[str]:
        """The settings (``a.b: old -> new``) in which the run's config.yaml differs from
        ``config``; empty when the run is ``config``'s. Only fingerprinted settings count
        (``device`` does not), and a config written before a setting existed reads as that
        setting's default. Raises RunDirError when config.yaml cannot be read."""
        try:
            existing = yaml.safe_load(read_text(self.config_path)) or {}
        except yaml.YAMLError as error:
            raise RunDirError(
                f"{self.config_path}: not a readable config ({' '.join(str(error).split())}); "
                "restore it, or use another --run-dir"
            ) from error
        with contextlib.suppress(ConfigError):
            existing = fingerprint_data(from_dict(type(config), existing))
        wanted = fingerprint_data(config)
        return [] if config_hash(existing) == config_hash(wanted) else differences(existing, wanted)

    def owned_folders(self) -> list[Path]:
        """The top-level folders of the run's layout (the path methods below are their one
        home): everything in them is the run's."""
        names = [
            self.classifier_dir("-"), self.cams_dir("-", "-"), self.affinity_labels_dir("-", "-"),
            self.affinity_dir("-"), self.rw_dir("-", "-"), self.pseudo_labels_dir("-", "-"),
            self.segmentation_dir("-"), self.predictions_dir("-", "-"), self.eval_dir,
            self.report_dir,
        ]  # fmt: skip
        tops = dict.fromkeys(path.relative_to(self.root).parts[0] for path in names)
        return [self.root / name for name in tops]

    def remove_stale_temp_files(self) -> int:
        """Delete the temp files a killed puzzlecam process left mid-write (their targets
        were never renamed into place, so nothing depends on them), by name: at the top,
        only those of the run's own files; below, only inside the run's folders. Returns
        how many."""
        own = (self.config_path, self.manifest_path, self.metrics_path,
               self.data_signature_path, self.data_check_path, self.marker_path)  # fmt: skip
        count = 0
        for path in self.root.iterdir():
            if path.is_file() and is_atomic_temp(path.name, (p.name for p in own)):
                path.unlink(missing_ok=True)
                count += 1
            elif path.is_dir() and is_report_build(path.name):  # a report being built
                shutil.rmtree(path, ignore_errors=True)
                count += 1
        for folder in self.owned_folders():
            for path in folder.rglob(".*.tmp") if folder.is_dir() else ():
                if path.is_file() and is_atomic_temp(path.name):
                    path.unlink(missing_ok=True)
                    count += 1
        return count

    # --- manifest -----------------------------------------------------------------------
    @property
    def manifest_path(self) -> Path:
        return self.root / "manifest.json"

    def manifest(self) -> dict[str, Any]:
        return read_json(self.manifest_path) if self.manifest_path.is_file() else {}

    def is_done(self, stage: str, fingerprint: str) -> bool:
        entry = self.manifest().get(stage)
        return bool(entry) and entry.get("fingerprint") == fingerprint

    def mark_done(self, stage: str, fingerprint: str, seconds: float) -> None:
        manifest = self.manifest()
        manifest[stage] = {
            "fingerprint": fingerprint,
            "seconds": round(seconds, 2),
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }
        write_json(self.manifest_path, manifest)

    def update_fingerprints(
        self, old: Mapping[str, str], new: Mapping[str, str], outputs: Mapping[str, Iterable[Path]]
    ) -> list[str]:
        """Give the finished stages whose manifest fingerprint is ``old[stage]`` the
        fingerprint ``new[stage]``, in the manifest and in their output folders' markers
        (``outputs[stage]``); returns their names."""
        manifest = self.manifest()
        updated = []
        for name, entry in manifest.items():
            was, now = old.get(name), new.get(name)
            if was is None or now is None or was == now or entry.get("fingerprint") != was:
                continue
            entry["fingerprint"] = now
            updated.append(name)
            for folder in outputs.get(name, ()):
                marker = folder / OUTPUT_MARKER
                if marker.is_file() and marker.read_text(encoding="utf-8").strip() == was:
                    with atomic_write(marker) as handle:
                        handle.write(now.encode("utf-8"))
        if updated:
            write_json(self.manifest_path, manifest)
        return updated

    def forget_stages(self, keep: Iterable[str]) -> list[str]:
        """Drop the manifest entries of stages not in ``keep`` (stages an earlier version
        named or laid out differently; their files stay where they are) and return them."""
        manifest = self.manifest()
        wanted = set(keep)
        stale = [name for name in manifest if name not in wanted]
        if stale:
            write_json(self.manifest_path, {k: v for k, v in manifest.items() if k in wanted})
        return stale

    # --- metrics.json ---------------------------------------------------------------------
    @property
    def metrics_path(self) -> Path:
        return self.root / "metrics.json"

    def metrics(self) -> dict[str, Any]:
        return read_json(self.metrics_path) if self.metrics_path.is_file() else {}

    def add_metrics(self, method: str, split: str, values: dict[str, Any]) -> None:
        metrics = self.metrics()
        metrics.setdefault(method, {})[split] = values
        write_json(self.metrics_path, metrics)

    def drop_metrics(self, method: str, split: str) -> None:
        """Forget a score that no longer holds (e.g. its split has no masks any more)."""
        metrics = self.metrics()
        if split in metrics.get(method, {}):
            del metrics[method][split]
            if not metrics[method]:
                del metrics[method]
            write_json(self.metrics_path, metrics)

    # --- the data the run was made from ---------------------------------------------------
    @property
    def data_signature_path(self) -> Path:
        return self.root / "data_signature.json"

    @property
    def data_check_path(self) -> Path:
        return self.root / "data_check.json"

    # --- paths ----------------------------------------------------------------------------
    def classifier_dir(self, method: str) -> Path:
        return self.root / "classifier" / method

    def cams_dir(self, method: str, split: str) -> Path:
        return self.root / "cams" / method / split

    def cam_overlays_dir(self, method: str, split: str) -> Path:
        return self.root / "cams" / method / f"{split}_overlays"

    def affinity_labels_dir(self, method: str, split: str) -> Path:
        return self.root / "affinity_labels" / method / split

    def affinity_dir(self, method: str) -> Path:
        """The AffinityNet trained on ``method``'s affinity labels."""
        return self.root / "affinitynet" / method

    def rw_dir(self, method: str, split: str) -> Path:
        return self.root / "rw" / method / split

    def pseudo_labels_dir(self, method: str, split: str) -> Path:
        return self.root / "pseudo_labels" / method / split

    def segmentation_dir(self, variant: str) -> Path:
        return self.root / "segmentation" / variant

    def predictions_dir(self, variant: str, split: str) -> Path:
        return self.root / "predictions" / variant / split

    @staticmethod
    def model_path(folder: Path) -> Path:
        """The final weights in a training folder (``classifier_dir``, ``affinity_dir``,
        ``segmentation_dir``)."""
        return folder / WEIGHTS_FILE

    @staticmethod
    def graph_path(folder: Path) -> Path:
        """A trained model's ONNX graph, exported for an inference engine (``engine.onnx``,
        its weights' digest in ``engine.onnx.key``) and reused while the weights are the
        same (``models.engine.engine_net``). Not ``model.onnx``: the name ``export-onnx``
        suggests for a user's own export."""
        return folder / ENGINE_GRAPH

    @staticmethod
    def log_path(folder: Path) -> Path:
        """The training log (metrics.jsonl) in a training folder."""
        return folder / LOG_FILE

    @property
    def eval_dir(self) -> Path:
        return self.root / "eval"

    def eval_path(self, name: str) -> Path:
        return self.eval_dir / f"{name}.json"

    @property
    def report_dir(self) -> Path:
        return self.root / "report"


def resolve_weights(model: str | Path, variant: str = "weak") -> Path:
    """The segmentation weights file that ``model`` names.

    ``model`` is a run directory (-> ``segmentation/{variant}/model.pt`` in it), a folder
    holding ``model.pt`` itself, or a weights file (returned as is). Raises RunDirError
    naming every place looked at when there is none.
    """
    if variant not in VARIANTS:
        raise ConfigError(f"variant {variant!r} is not one of {list(VARIANTS)}")
    path = Path(model)
    if path.is_file():
        return path
    if not path.is_dir():
        raise RunDirError(
            f"{path}: no such run directory or weights file; pass a run directory "
            "(runs/NAME) or a segmentation model.pt"
        )
    run = RunDir(path)
    candidates = [run.model_path(run.segmentation_dir(variant)), run.model_path(path)]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    found = sorted(v for v in VARIANTS if run.model_path(run.segmentation_dir(v)).is_file())
    hint = (
        f"this run has the variant(s) {found}: pass --variant {found[0]}"
        if found
        else "train it first (`puzzlecam train-seg --config ... --run-dir ...`, or "
        "`puzzlecam run`); `full` also needs train_seg.fully_supervised=true"
    )
    looked = ", ".join(str(c) for c in candidates)
    raise RunDirError(f"{path}: no segmentation model found (looked for {looked}); {hint}")
