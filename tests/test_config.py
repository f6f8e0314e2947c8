import pytest

from puzzlecam.config import apply_overrides, config_hash, from_dict, to_dict
from puzzlecam.errors import ConfigError
from puzzlecam.pipeline.config import RunConfig, load_run_config


def test_yaml_data_and_overrides_build_typed_config():
    data = {"train_cls": {"loop": {"epochs": 3}}}
    data = apply_overrides(data, ["train_cls.optim.lr=0.5", "cams.scales=[1.0, 2]", "name=x"])
    config = from_dict(RunConfig, data)
    assert config.train_cls.loop.epochs == 3 and config.train_cls.optim.lr == 0.5
    assert config.cams.scales == (1.0, 2.0) and config.name == "x"
    assert from_dict(RunConfig, to_dict(config)) == config


def test_unknown_key_lists_valid_ones():
    with pytest.raises(ConfigError, match=r"train_cls.loop.epoch'.*valid keys.*epochs"):
        from_dict(RunConfig, {"train_cls": {"loop": {"epoch": 3}}})


def test_wrong_type_and_literal_are_explained():
    with pytest.raises(ConfigError, match="train_cls.loop.epochs: expected an integer"):
        from_dict(RunConfig, {"train_cls": {"loop": {"epochs": "three"}}})
    with pytest.raises(ConfigError, match=r"norm: 'frozen' is not one of \['fix', 'train'\]"):
        from_dict(RunConfig, {"train_cls": {"backbone": {"norm": "frozen"}}})


def test_hash_changes_with_any_setting():
    base = RunConfig()
    assert config_hash(base) == config_hash(RunConfig())
    changed = from_dict(RunConfig, {"rw": {"beta": 8}})
    assert config_hash(changed) != config_hash(base)


def test_bundled_demo_preset_loads():
    config = load_run_config("demo")
    assert config.data.format == "demo" and config.train_cls.baseline_plain_cam
    with pytest.raises(ConfigError, match="bundled presets"):
        load_run_config("no_such_preset")
