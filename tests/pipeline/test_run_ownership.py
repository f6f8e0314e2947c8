"""A run directory never destroys what it did not write (issue part 12): a folder that is
not a run is refused before anything is written, leftovers are cleaned by name, the
report keeps foreign files, and one process at a time writes a run (the lock)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from puzzlecam.cli import main
from puzzlecam.errors import RunDirError
from puzzlecam.io import read_jsonl
from puzzlecam.pipeline.config import load_run_config
from puzzlecam.pipeline.folders import LOCK_FILE, RUN_MARKER, folder_lock
from puzzlecam.pipeline.run_dir import RunDir
from tests.helpers import TINY_OVERRIDES, tree_digest, write_folder_dataset


def _project(folder: Path) -> Path:
    """A user's folder that is not a run, with what the issue found deleted or merged into."""
    (folder / "report").mkdir(parents=True)
    (folder / "report" / "mynotes.txt").write_text("my notes\n")
    (folder / "docs").mkdir()
    (folder / "docs" / ".draft.tmp").write_text("half a thought\n")
    (folder / "metrics.json").write_text('{"mine": 1}\n')
    return folder


def _args(command: str, run: Path, data: Path, *extra: str) -> list[str]:
    args = [command, "--config", "demo", "--run-dir", str(run), "--no-progress"]
    for override in [*TINY_OVERRIDES, f"data.root={data}", "until=cams", *extra]:
        args += ["--set", override]
    return args


def _error_line(capsys) -> str:
    return capsys.readouterr().err.strip().splitlines()[-1]


@pytest.mark.parametrize("command", ["run", "cams"])
def test_a_folder_of_other_files_is_refused_and_left_byte_identical(command, tmp_path, capsys):
    folder = _project(tmp_path / "project")
    before = tree_digest(folder)
    assert main(_args(command, folder, tmp_path / "data")) == 2
    line = _error_line(capsys)
    assert f"{folder} holds other files" in line and "not a puzzlecam run directory" in line
    assert "give --run-dir a new or empty folder" in line
    assert tree_digest(folder) == before
    assert sorted(p.name for p in folder.iterdir()) == ["docs", "metrics.json", "report"]


def test_ablate_into_a_folder_of_other_files_is_refused(tmp_path, capsys):
    folder = _project(tmp_path / "project")
    before = tree_digest(folder)
    argv = ["ablate", "--config", "demo", "--run-dir", str(folder), "--seeds", "0",
            "--variants", "cls", "--no-progress"]  # fmt: skip
    for override in [*TINY_OVERRIDES, f"data.root={tmp_path / 'data'}"]:
        argv += ["--set", override]
    assert main(argv) == 2
    line = _error_line(capsys)
    assert "not a puzzlecam ablation folder" in line and "nothing was written" in line
    assert tree_digest(folder) == before


def test_report_of_a_folder_of_other_files_is_refused(tmp_path, capsys):
    folder = _project(tmp_path / "project")
    before = tree_digest(folder)
    assert main(["report", "--run-dir", str(folder), "--no-progress"]) == 2
    assert "not a puzzlecam run directory" in _error_line(capsys)
    assert tree_digest(folder) == before

    file = tmp_path / "notes.txt"
    file.write_text("x")
    assert main(["report", "--run-dir", str(file)]) == 2
    assert "is a file, not a run directory" in _error_line(capsys)


def test_an_empty_folder_and_a_run_from_before_the_marker_are_runs(tmp_path):
    config = load_run_config("demo")
    empty = RunDir(tmp_path / "empty")
    empty.root.mkdir()
    empty.bind(config)
    assert empty.marker_path.is_file() and empty.is_run()

    legacy = RunDir(tmp_path / "legacy")  # what earlier versions left: no marker
    legacy.bind(config)
    legacy.marker_path.unlink()
    legacy.manifest_path.write_text("{}\n")
    assert legacy.is_run()
    legacy.bind(config)
    assert legacy.marker_path.is_file()


def test_leftover_temp_files_are_cleaned_by_name_only(tmp_path):
    run = RunDir(tmp_path / "run")
    run.bind(load_run_config("demo"))
    cams = run.cams_dir("puzzle_cam", "train")
    cams.mkdir(parents=True)
    ours = [
        run.root / ".metrics.json.ab12cd_3.tmp",  # atomic_write's temp of a run file
        cams / ".train_000001.npz.0a1b2c3d.tmp",  # inside a folder of the run's layout
    ]
    report_build = run.root / ".report.k2j4h5g6"  # a report killed while being built
    report_build.mkdir()
    (report_build / "index.html").write_text("half")
    theirs = [
        run.root / ".draft.tmp",  # no random part: not atomic_write's
        run.root / ".notes.txt.ab12cd_3.tmp",  # the temp of a file the run does not write
        run.root / "mine" / ".a.png.0a1b2c3d.tmp",  # in a folder the run did not make
    ]
    for path in ours + theirs:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x")
    assert run.remove_stale_temp_files() == 3
    assert not any(p.exists() for p in ours) and not report_build.exists()
    assert all(p.read_text() == "x" for p in theirs)


def test_the_report_keeps_foreign_files_and_drops_its_own_stale_ones(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(_args("run", run, tmp_path / "data")) == 0
    notes = run / "report" / "mynotes.txt"
    notes.write_text("mine\n")
    stale = run / "report" / "samples" / "old_figure.png"  # as if an earlier report wrote it
    stale.write_bytes(b"png")
    listing = run / "report" / ".report-files"
    listing.write_text(listing.read_text() + "samples/old_figure.png\n")
    assert main(["report", "--run-dir", str(run), "--no-progress"]) == 0
    assert notes.read_text() == "mine\n" and not stale.exists()
    assert (run / "report" / "index.html").is_file()
    assert "samples/old_figure.png" not in listing.read_text()


_HOLD = (
    "import sys, time; from pathlib import Path; "
    "from puzzlecam.pipeline.folders import folder_lock; "
    "cm = folder_lock(Path(sys.argv[1])); cm.__enter__(); print('held', flush=True); "
    "time.sleep(60)"
)


def _holder(folder: Path) -> subprocess.Popen:
    process = subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(folder)], stdout=subprocess.PIPE, text=True
    )
    assert process.stdout.readline().strip() == "held"
    return process


def test_a_second_writer_is_refused_naming_the_holder(tmp_path, capsys):
    run = RunDir(tmp_path / "run")
    run.bind(load_run_config("demo"))
    holder = _holder(run.root)
    try:
        with pytest.raises(
            RunDirError, match=rf"in use: another puzzlecam process \(pid {holder.pid}\)"
        ):
            with run.lock():
                pass
        before = tree_digest(run.root)
        assert main(["report", "--run-dir", str(run.root), "--no-progress"]) == 2
        assert f"pid {holder.pid}" in _error_line(capsys)
        assert tree_digest(run.root) == before
    finally:
        holder.kill()
        holder.wait()


def test_a_lock_left_by_kill_9_is_taken_over(tmp_path):
    folder = tmp_path / "run"
    holder = _holder(folder)
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    assert (folder / LOCK_FILE).is_file()  # the file stays; the lock went with the process
    with folder_lock(folder):  # at once: a held lock would raise
        assert (folder / LOCK_FILE).read_text().strip() == str(os.getpid())
    assert not (folder / RUN_MARKER).exists()  # a lock alone makes no run


# --- checks made before the first stage --------------------------------------------------


def _folder_args(run: Path, data: Path, *extra: str) -> list[str]:
    args = ["run", "--config", "demo", "--run-dir", str(run), "--no-progress"]
    for override in [*TINY_OVERRIDES, "data.format=folder", f"data.root={data}", *extra]:
        args += ["--set", override]
    return args


def test_a_late_stages_batch_size_is_refused_before_the_first_stage(tmp_path, capsys):
    data = write_folder_dataset(tmp_path / "data")  # 16 train images
    run = tmp_path / "run"
    assert main(_folder_args(run, data, "train_seg.loop.batch_size=32")) == 2
    line = _error_line(capsys)
    assert "train_seg.loop.batch_size: 32 is more than the 16 training images" in line
    assert "train split 'train'" in line and "lower it" in line
    assert set(RunDir(run).manifest()) == {"data"}  # nothing trained
    assert not (run / "classifier").exists()


def test_a_train_split_without_tags_is_named_as_such(tmp_path, capsys):
    data = write_folder_dataset(tmp_path / "data")
    rows = (data / "labels.csv").read_text().splitlines()
    untagged = [rows[0]] + [
        f"{r.split(',')[0]},,{r.split(',')[2]}" if r.endswith(",train") else r for r in rows[1:]
    ]
    (data / "labels.csv").write_text("\n".join(untagged) + "\n")
    assert main(_folder_args(tmp_path / "run", data)) == 2
    line = _error_line(capsys)
    assert "the train split 'train' has no image with a tag" in line
    assert "all 16 listed images have none (train-00, train-01, train-02, ... (16 in all))" in line


def test_until_is_a_stopping_point_not_part_of_the_run(tmp_path, capsys):
    run, data = tmp_path / "run", tmp_path / "data"
    assert main(_args("run", run, data)) == 0  # until: cams
    cams_only = RunDir(run).manifest()
    assert main(_args("run", run, data, "until=pseudo-labels")) == 0
    further = RunDir(run).manifest()
    assert {name: further[name] for name in cams_only} == cams_only  # nothing re-run
    assert any(name.startswith("pseudo_labels/") for name in further)
    assert "until: pseudo-labels" in (run / "config.yaml").read_text()
    assert main(_args("run", run, data)) == 0  # back to cams: stops there, keeps the rest
    assert RunDir(run).manifest() == further
    assert "until: pseudo-labels" in (run / "config.yaml").read_text()  # how far it goes


def test_a_full_disk_names_the_stage_and_the_file_and_keeps_finished_work(
    tmp_path, capsys, monkeypatch
):
    import errno

    real_fsync = os.fsync

    def full_for_cam_files(fd: int) -> None:  # the disk fills up as the CAMs are written
        name = os.readlink(f"/proc/self/fd/{fd}")
        if "/cams/puzzle_cam/train/" in name and ".npz." in name:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    run, data = tmp_path / "run", tmp_path / "data"
    monkeypatch.setattr(os, "fsync", full_for_cam_files)
    assert main(_args("run", run, data)) == 2
    line = _error_line(capsys)
    assert line.startswith("puzzlecam run: error: stage cams/puzzle_cam/train: ")
    assert f"{run / 'cams' / 'puzzle_cam' / 'train'}/train_" in line
    assert "No space left on device; free space on the disk" in line
    done = RunDir(run).manifest()
    assert "train_cls/puzzle_cam" in done and "cams/puzzle_cam/train" not in done
    assert not list((run / "cams").rglob("*.tmp"))  # no half-written file left behind
    monkeypatch.setattr(os, "fsync", real_fsync)  # space freed: the rerun finishes
    assert main(_args("run", run, data)) == 0
    assert RunDir(run).manifest()["train_cls/puzzle_cam"] == done["train_cls/puzzle_cam"]


def test_two_runs_at_once_one_refused_and_the_log_has_each_step_once(tmp_path, capsys):
    run, data = tmp_path / "run", tmp_path / "data"
    first = subprocess.Popen(
        [sys.executable, "-m", "puzzlecam", *_args("run", run, data)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        lock = run / LOCK_FILE
        while first.poll() is None and not (
            lock.is_file() and lock.read_text().strip() == str(first.pid)
        ):
            pass
        assert first.poll() is None, first.stderr.read().decode()
        assert main(_args("run", run, data)) == 2  # the second, while the first trains
        assert f"in use: another puzzlecam process (pid {first.pid})" in _error_line(capsys)
    finally:
        assert first.wait(timeout=300) == 0
    log = read_jsonl(run / "classifier" / "puzzle_cam" / "metrics.jsonl")
    steps = [record["step"] for record in log if "type" not in record]
    assert steps and steps == sorted(set(steps))  # each logged once, in order
