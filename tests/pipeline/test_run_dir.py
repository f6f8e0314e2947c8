"""RunDir.bind: a run belongs to one config; a config file written before a setting existed
still belongs to the same config. resolve_weights: the segmentation model a path names."""

import pytest
import yaml

from puzzlecam.errors import RunDirError
from puzzlecam.pipeline.config import load_run_config
from puzzlecam.pipeline.folders import claim_output_dir, reclaim_output_dir
from puzzlecam.pipeline.run_dir import RunDir, resolve_weights
from tests.helpers import save_tiny_segmenter


def test_a_config_written_before_a_new_setting_still_binds(tmp_path):
    config = load_run_config("demo")
    run = RunDir(tmp_path / "run")
    run.bind(config)
    written = yaml.safe_load(run.config_path.read_text())
    del written["train_aff"]["optim"]["name"]  # as written before the setting existed
    run.config_path.write_text(yaml.safe_dump(written))
    run.bind(config)  # the missing setting reads as its default: same config

    other = load_run_config("demo", ("train_aff.optim.name=adamw",))
    with pytest.raises(RunDirError, match=r"train_aff\.optim\.name: 'sgd' -> 'adamw'"):
        run.bind(other)


def test_device_is_not_part_of_the_run(tmp_path):
    run = RunDir(tmp_path / "run")
    run.bind(load_run_config("demo", ("device=auto",)))
    run.bind(load_run_config("demo", ("device=cpu",)))  # resumed on another device
    assert yaml.safe_load(run.config_path.read_text())["device"] == "auto"  # as started

    written = yaml.safe_load(run.config_path.read_text())
    del written["train_cls"]["loop"]["max_nonfinite_steps"]  # a run from before the setting
    run.config_path.write_text(yaml.safe_dump(written))
    run.bind(load_run_config("demo", ("train_cls.loop.max_nonfinite_steps=2",)))

    with pytest.raises(RunDirError) as caught:
        run.bind(load_run_config("demo", ("device=cpu", "rw.beta=8")))
    changes = str(caught.value).split("changed settings:")[1]
    assert "rw.beta: 10.0 -> 8.0" in changes and "device" not in changes


def test_outputs_of_other_inputs_are_removed_before_a_stage_runs_again(tmp_path):
    folder = tmp_path / "cams"
    claim_output_dir(folder, "old")
    (folder / "a.npz").write_bytes(b"x")
    with pytest.raises(RunDirError, match="other inputs"):
        claim_output_dir(folder, "new")  # a stage on its own never mixes outputs
    # the runner, for a stage about to run with "new": the old outputs go
    assert reclaim_output_dir(folder, "new", finished_before=True)
    assert sorted(p.name for p in folder.iterdir()) == [".fingerprint"]
    # an interrupted run of "new" keeps what it wrote
    (folder / "b.npz").write_bytes(b"y")
    assert not reclaim_output_dir(folder, "new", finished_before=True)
    assert (folder / "b.npz").is_file()
    # a folder written before markers: removed only when the stage finished with others
    legacy = tmp_path / "classifier"
    legacy.mkdir()
    (legacy / "checkpoint.pt").write_bytes(b"z")
    assert not reclaim_output_dir(legacy, "new", finished_before=False)
    assert (legacy / "checkpoint.pt").is_file()
    (legacy / ".fingerprint").unlink()
    assert reclaim_output_dir(legacy, "new", finished_before=True)
    assert not (legacy / "checkpoint.pt").exists()


def test_resolve_weights(tmp_path):
    weights = save_tiny_segmenter(tmp_path / "model.pt")
    assert resolve_weights(weights) == weights
    assert resolve_weights(tmp_path) == weights  # a folder holding model.pt
    run = tmp_path / "run"
    (run / "segmentation" / "weak").mkdir(parents=True)
    with pytest.raises(RunDirError, match=r"segmentation/weak/model.pt.*train it first"):
        resolve_weights(run)
    save_tiny_segmenter(run / "segmentation" / "weak" / "model.pt")
    assert resolve_weights(run) == run / "segmentation" / "weak" / "model.pt"
    with pytest.raises(RunDirError, match=r"segmentation/full/model.pt.*--variant weak"):
        resolve_weights(run, "full")
    with pytest.raises(RunDirError, match="no such run directory or weights file"):
        resolve_weights(tmp_path / "missing")
