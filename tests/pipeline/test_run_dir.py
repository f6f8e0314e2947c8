"""RunDir.bind: a run belongs to one config; a config file written before a setting existed
still belongs to the same config."""

import pytest
import yaml

from puzzlecam.errors import RunDirError
from puzzlecam.pipeline.config import load_run_config
from puzzlecam.pipeline.run_dir import RunDir


def test_a_config_written_before_a_new_setting_still_binds(tmp_path):
    config = load_run_config("demo")
    run = RunDir(tmp_path / "run")
    run.bind(config)
    written = yaml.safe_load(run.config_path.read_text())
    del written["train_cls"]["optim"]["name"]  # as written before the setting existed
    run.config_path.write_text(yaml.safe_dump(written))
    run.bind(config)  # the missing setting reads as its default: same config

    other = load_run_config("demo", ("train_cls.optim.name=adamw",))
    with pytest.raises(RunDirError, match=r"train_cls\.optim\.name: 'sgd' -> 'adamw'"):
        run.bind(other)
