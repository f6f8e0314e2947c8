import pytest

from puzzlecam.dataclass_yaml import (
    apply_overrides,
    config_hash,
    fingerprint_data,
    from_dict,
    to_dict,
)
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


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ("cams.scales=[]", "cams.scales"),
        ("cams.scales=[0.0]", "cams.scales"),
        ("cams.scales=[1.0, -0.5]", "cams.scales"),
        ("cams.num_workers=-1", "cams.num_workers"),
        ("cams.batch_size=0", "cams.batch_size"),
        ("eval.thresholds=[0.5, 0.3]", "eval.thresholds"),
        ("eval.thresholds=[0.3, 0.3]", "eval.thresholds"),
        ("eval.thresholds=[0.0, 0.5]", "eval.thresholds"),
        ("eval.thresholds=[0.5, 1.0]", "eval.thresholds"),
        ("eval.thresholds=[]", "eval.thresholds"),
        ("train_aff.augment.crop_size=50", "train_aff.augment.crop_size"),
        ("train_cls.augment.crop_size=0", "train_cls.augment.crop_size"),
        ("train_cls.augment.min_long_side=700", "train_cls.augment.max_long_side"),
        ("train_cls.loop.num_workers=-1", "train_cls.loop.num_workers"),
        ("train_cls.loop.batch_size=0", "train_cls.loop.batch_size"),
        ("train_seg.loop.batch_size=10", "train_seg.loop.batch_size"),  # grad_accum 3 below
        ("train_aff.loop.epochs=0", "train_aff.loop.epochs"),
        ("train_cls.loop.max_nonfinite_steps=0", "train_cls.loop.max_nonfinite_steps"),
        ("train_cls.optim.lr=0", "train_cls.optim.lr"),
        ("train_cls.optim.lr=.nan", "train_cls.optim.lr"),
        ("train_cls.optim.warmup=1.0", "train_cls.optim.warmup"),
        ("train_cls.puzzle.start=1.5", "train_cls.puzzle.start"),
        ("pseudo_labels.threshold=7", "pseudo_labels.threshold"),
        ("pseudo_labels.threshold=0", "pseudo_labels.threshold"),
        ("affinity_labels.fg_threshold=0.05", "affinity_labels.fg_threshold"),
        ("affinity_labels.bg_threshold=0.8", "affinity_labels.fg_threshold"),  # = the demo's fg
        ("affinity_labels.bg_threshold=-0.1", "affinity_labels.bg_threshold"),
        ("rw.exp_times=40", "rw.exp_times"),
        ("rw.beta=0", "rw.beta"),
        ("rw.radius=1", "rw.radius"),
        ("data.demo.num_train=-1", "data.demo"),
        ("data.demo.item_size=[8, 400]", "data.demo"),
        ("predict.scales=[]", "predict.scales"),
        ("predict.scales=[0]", "predict.scales"),
        ("predict.batch_size=0", "predict.batch_size"),
        ("report.num_samples=-2", "report.num_samples"),
        ("name=../outside", "name"),
        ("name=a/b", "name"),
        ("name=a\\b", "name"),
        ("name=..", "name"),
        ("name=.hidden", "name"),
        ("name=''", "name"),
        ("device=gpu0", "device"),
        ("device=cuda:x", "device"),
    ],
)
def test_bad_values_are_refused_at_load_naming_the_setting(override, named):
    overrides = (
        (override, "train_seg.loop.grad_accum=3") if "train_seg" in override else (override,)
    )
    with pytest.raises(ConfigError) as caught:
        load_run_config("demo", overrides)
    assert str(caught.value).startswith(f"{named}: "), str(caught.value)


def test_a_bad_value_in_the_file_names_the_file(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("cams:\n  scales: []\n")
    with pytest.raises(ConfigError, match=r"mine\.yaml: cams\.scales: is empty"):
        load_run_config(path)
    # the same value from --set names the setting only
    with pytest.raises(ConfigError, match=r"^cams\.scales: is empty"):
        load_run_config("demo", ("cams.scales=[]",))


def test_yaml_exponent_numbers_are_numbers(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train_cls:\n  optim:\n    lr: 1e-4\n    weight_decay: 5E-5\n")
    config = load_run_config(path, ("train_seg.optim.lr=2e-3",))
    assert config.train_cls.optim.lr == 0.0001 and config.train_cls.optim.weight_decay == 5e-5
    assert config.train_seg.optim.lr == 0.002
    with pytest.raises(ConfigError, match="train_cls.optim.lr: expected a number, got 'fast'"):
        load_run_config(path, ("train_cls.optim.lr=fast",))
    with pytest.raises(ConfigError, match="expected an integer"):
        load_run_config(path, ("train_cls.loop.epochs='1e1'",))


def test_plain_names_and_devices_are_accepted():
    for name in ("run", "voc_resnet50-seed.1", "my run", "ünïcode"):
        assert load_run_config("demo", (f"name={name}",)).name == name
    for device in ("auto", "cpu", "cuda", "cuda:1", "mps"):
        assert load_run_config("demo", (f"device={device}",)).device == device


def test_bare_on_and_off_are_the_choices_not_booleans(tmp_path):
    # YAML 1.1 reads bare on/off as true/false: the AMP and layout switches take them
    config = load_run_config("demo", ("train_cls.loop.amp=off", "train_seg.loop.channels_last=on"))
    assert config.train_cls.loop.amp == "off" and config.train_seg.loop.channels_last == "on"
    path = tmp_path / "run.yaml"
    path.write_text("name: x\ntrain_aff:\n  loop:\n    amp: off\n    channels_last: off\n")
    loop = load_run_config(path).train_aff.loop
    assert (loop.amp, loop.channels_last) == ("off", "off")
    assert load_run_config(path) == load_run_config(path, ("train_aff.loop.amp='off'",))
    with pytest.raises(ConfigError, match=r"amp: True is not one of"):
        load_run_config("demo", ("train_cls.loop.amp=on",))  # amp has no "on": say so


def test_device_and_cam_layout_are_not_fingerprinted_but_other_settings_are():
    assert config_hash(RunConfig(device="cpu")) == config_hash(RunConfig())
    assert to_dict(RunConfig(device="cpu"))["device"] == "cpu"  # kept for the record
    # the CAMs' memory layout is a speed setting: a run resumes with it switched
    off = load_run_config("demo", ("cams.channels_last=false",))
    assert not off.cams.channels_last
    assert config_hash(off) == config_hash(load_run_config("demo"))
    other = load_run_config("demo", ("cams.flip=false",))
    assert config_hash(other) != config_hash(load_run_config("demo"))


def test_an_option_added_at_its_default_keeps_a_run_config_hash():
    # stage fingerprints of runs made before puzzle.tile_scale existed were hashed from
    # the puzzle settings without it: at its default it must still be absent
    config = load_run_config("demo")
    puzzle = fingerprint_data(config)["train_cls"]["puzzle"]
    assert "tile_scale" not in puzzle and "reconstruction_level" in puzzle
    # set to anything else, it counts like any other setting
    zoomed = load_run_config("demo", ("train_cls.puzzle.tile_scale=2",))
    assert fingerprint_data(zoomed)["train_cls"]["puzzle"]["tile_scale"] == 2
    assert config_hash(zoomed) != config_hash(config)
    assert to_dict(config)["train_cls"]["puzzle"]["tile_scale"] == 1  # kept for the record
