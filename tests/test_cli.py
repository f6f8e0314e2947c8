"""One error path: every failure a user can cause ends as one line
``puzzlecam CMD: error: FILE: PROBLEM; WHAT TO DO`` on stderr with exit status 2, never a
traceback, and is found before slow work where it can be. User files are never changed."""

import json
import logging

import numpy as np
import pytest
import timm
import torch
from huggingface_hub.errors import LocalEntryNotFoundError
from PIL import Image

from puzzlecam import cli
from puzzlecam.cli import main
from puzzlecam.io import save_label_png
from puzzlecam.puzzle.trainer import PuzzleCamTrainer
from puzzlecam.segmentation import export as export_module
from tests.helpers import (
    TINY_OVERRIDES,
    tree_digest,
    write_bomb_png,
    write_folder_dataset,
    write_weight_files,
)


def fails(capsys, argv):
    """Run the CLI, expect exit status 2 and one error line last on stderr; return it."""
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err, err
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"puzzlecam {argv[0]}: error: "), err
    return last


def run_args(tmp_path, *extra):
    args = ["run", "--config", "demo", "--run-dir", str(tmp_path / "run"), "--no-progress"]
    overrides = [*TINY_OVERRIDES, "data.format=folder", f"data.root={tmp_path / 'data'}", *extra]
    for override in overrides:
        args += ["--set", override]
    return args


@pytest.fixture
def folder_data(tmp_path):
    return write_folder_dataset(tmp_path / "data")


def _only_data_and_run(tmp_path):
    assert sorted(p.name for p in tmp_path.iterdir()) <= ["data", "run"]


# --- bad images ----------------------------------------------------------------------


def test_corrupt_image_in_a_worker_is_the_data_error_naming_it(folder_data, tmp_path, capsys):
    bad = folder_data / "images" / "train-05.jpg"
    # cut after its header: the data check (headers only) passes it, a worker's decode fails
    bad.write_bytes(bad.read_bytes()[: bad.stat().st_size // 2])
    before = tree_digest(folder_data)
    line = fails(capsys, run_args(tmp_path, "train_cls.loop.num_workers=2"))
    assert f"error: {bad}: cannot be read as an image" in line
    assert tree_digest(folder_data) == before
    _only_data_and_run(tmp_path)


def test_decompression_bomb_is_a_data_error_naming_it(folder_data, tmp_path, capsys):
    (folder_data / "images" / "train-06.jpg").unlink()
    bomb = write_bomb_png(folder_data / "images" / "train-06.png")
    before = tree_digest(folder_data)
    line = fails(capsys, run_args(tmp_path))
    assert f"error: {bomb}: refused: too many pixels to decode safely" in line
    assert "shrink the image" in line
    assert tree_digest(folder_data) == before


# --- training -------------------------------------------------------------------------


def test_nan_loss_is_one_line_and_saves_nothing(folder_data, tmp_path, capsys, monkeypatch):
    real = PuzzleCamTrainer.forward

    def nan_loss(self, *batch, **kwargs):
        output = real(self, *batch, **kwargs)
        return output._replace(total=output.total * float("nan"))

    monkeypatch.setattr(PuzzleCamTrainer, "forward", nan_loss)
    line = fails(capsys, run_args(tmp_path, "train_cls.loop.max_nonfinite_steps=2"))
    assert "train-cls puzzle_cam: training stopped: the loss was nan at 2 steps in a row" in line
    assert "no checkpoint had been saved yet" in line and "lower train_cls.optim.lr" in line
    classifier = tmp_path / "run" / "classifier" / "puzzle_cam"
    assert not (classifier / "model.pt").exists() and not (classifier / "checkpoint.pt").exists()


@pytest.fixture
def offline(monkeypatch):
    """timm.create_model fails at once for pretrained weights, as the hub does offline."""
    real = timm.create_model

    def create(*args, pretrained=False, **kwargs):
        if pretrained:
            raise LocalEntryNotFoundError("cannot find the requested files in the local cache")
        return real(*args, pretrained=pretrained, **kwargs)

    monkeypatch.setattr(timm, "create_model", create)


def test_timm_weights_offline_say_how_to_train_offline(folder_data, tmp_path, capsys, offline):
    line = fails(capsys, run_args(tmp_path, "train_cls.backbone.pretrained=timm"))
    assert "backbone test_efficientnet, pretrained: timm" in line
    assert "could not be downloaded" in line
    assert "pretrained: /path/to/weights.safetensors" in line
    assert "pretrained: efficientnet-lite0-package" in line and "tf_efficientnet_lite0" in line


@pytest.mark.parametrize(
    ("override", "problem"),
    [
        (
            "train_seg.backbone.pretrained=timm",
            "train_seg.backbone: backbone test_efficientnet, pretrained: timm: its ImageNet "
            "weights could not be downloaded",
        ),
        (
            "train_seg.backbone.pretrained=missing.safetensors",
            "train_seg.backbone: pretrained weights file not found: missing.safetensors",
        ),
        ("train_seg.backbone.name=nosuchnet", "train_seg.backbone: unknown timm model 'nosuchnet'"),
        (
            "train_aff.backbone.pretrained=efficientnet-lite0-package",
            "train_aff.backbone: pretrained: efficientnet-lite0-package holds "
            "tf_efficientnet_lite0 weights, not test_efficientnet",
        ),
    ],
)
def test_later_stages_models_are_checked_before_the_first_stage(
    folder_data, tmp_path, capsys, offline, override, problem
):
    # these failed only when their stage came, after every stage before it had run
    line = fails(capsys, run_args(tmp_path, override))
    assert f"error: {problem}" in line
    assert list(json.loads((tmp_path / "run" / "manifest.json").read_text())) == ["data"]


# --- weights files --------------------------------------------------------------------


@pytest.fixture
def image(tmp_path):
    path = tmp_path / "photo.png"
    Image.fromarray(np.full((40, 48, 3), 120, np.uint8)).save(path)
    return path


@pytest.mark.parametrize("command", ["predict", "export-onnx"])
def test_pickle_payload_is_not_loaded_and_weights_only_is_never_advised(
    tmp_path, capsys, image, command
):
    weights = write_weight_files(tmp_path / "w")
    payload = weights / "payload.pt"
    argv = (
        ["predict", "--model", str(payload), str(image), "--out", str(tmp_path / "out")]
        if command == "predict"
        else ["export-onnx", "--model", str(payload), "--out", str(tmp_path / "m.onnx")]
    )
    line = fails(capsys, argv)
    assert f"error: {payload}: not a plain weights file" in line and "was not loaded" in line
    assert "weights_only" not in line and "False" not in line
    assert not (weights / "PWNED").exists()


@pytest.mark.parametrize("name", ["truncated.pt", "empty.pt", "text.pt"])
def test_damaged_weights_file_is_named(tmp_path, capsys, image, name):
    bad = write_weight_files(tmp_path / "w") / name
    line = fails(capsys, ["predict", "--model", str(bad), str(image), "--out", str(tmp_path / "o")])
    assert f"error: {bad}: cannot be read as a weights file" in line
    assert "weights_only" not in line


# --- devices and config ---------------------------------------------------------------


def test_misspelt_device_is_refused_before_anything_runs(folder_data, tmp_path, capsys, image):
    line = fails(capsys, [*run_args(tmp_path), "--device", "gpu0"])
    assert "error: device: 'gpu0' is not a device; use auto, cpu, cuda" in line
    assert not (tmp_path / "run").exists()
    line = fails(
        capsys,
        [
            "predict",
            "--model",
            "m.pt",
            str(image),
            "--out",
            str(tmp_path / "o"),
            "--device",
            "gpu0",
        ],
    )
    assert "device: 'gpu0' is not a device" in line


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_cuda_without_a_gpu_is_refused_before_anything_runs(folder_data, tmp_path, capsys):
    line = fails(capsys, [*run_args(tmp_path), "--device", "cuda"])
    assert "device: 'cuda' asks for a GPU, but torch sees no CUDA device here" in line
    assert "--device cpu" in line
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ("cams.scales=[]", "cams.scales"),
        ("eval.thresholds=[0.5, 0.3]", "eval.thresholds"),
        ("train_aff.augment.crop_size=66", "train_aff.augment.crop_size"),
        ("train_cls.loop.num_workers=-1", "train_cls.loop.num_workers"),
        ("name=../outside", "name"),
    ],
)
def test_bad_setting_is_refused_before_anything_runs(
    folder_data, tmp_path, capsys, monkeypatch, override, named
):
    monkeypatch.chdir(tmp_path)  # runs/NAME would be made here
    argv = [
        a for a in run_args(tmp_path, override) if a not in ("--run-dir", str(tmp_path / "run"))
    ]
    line = fails(capsys, argv)
    assert f"error: {named}: " in line
    _only_data_and_run(tmp_path)
    assert not (tmp_path / "run").exists()


def test_a_run_made_on_auto_resumes_on_cpu(folder_data, tmp_path, capsys):
    base = [*TINY_OVERRIDES, "data.format=folder", f"data.root={folder_data}"]
    args = ["data", "--config", "demo", "--run-dir", str(tmp_path / "run"), "--no-progress"]
    for override in base:
        args += ["--set", override]
    assert main([*args, "--device", "auto"]) == 0
    assert main([*args, "--device", "cpu"]) == 0
    assert "holds a run of a different config" not in capsys.readouterr().err


# --- output paths ---------------------------------------------------------------------


def test_predict_out_that_is_a_file_is_refused_first(tmp_path, capsys, image):
    out = tmp_path / "existing.txt"
    out.write_text("mine")
    # the model does not exist either: the output is checked before anything else
    line = fails(capsys, ["predict", "--model", "nope", str(image), "--out", str(out)])
    assert f"error: {out}: --out is an existing file, but it must be a folder" in line
    assert out.read_text() == "mine"


def test_eval_out_that_is_a_folder_is_refused_first(tmp_path, capsys):
    line = fails(capsys, ["eval", "--pred", "nope", "--gt", "nope", "--out", str(tmp_path)])
    assert f"error: {tmp_path}: --out is a folder, but it must be a file" in line
    assert f"--out {tmp_path / 'eval.json'}" in line


@pytest.mark.parametrize("kind", ["folder", "under a file"])
def test_export_out_is_checked_before_the_export(tmp_path, capsys, monkeypatch, kind):
    def no_export(*args, **kwargs):
        raise AssertionError("the slow export must not start")

    monkeypatch.setattr(export_module, "export_onnx", no_export)
    (tmp_path / "file").write_text("mine")
    out = tmp_path if kind == "folder" else tmp_path / "file" / "model.onnx"
    line = fails(capsys, ["export-onnx", "--model", "nope", "--out", str(out)])
    if kind == "folder":
        assert f"error: {tmp_path}: --out is a folder, but it must be a file" in line
    else:
        assert f"error: {tmp_path / 'file'}: is a file, so --out {out} cannot be created" in line


def test_run_dir_that_is_a_file_is_refused(folder_data, tmp_path, capsys):
    (tmp_path / "run").write_text("mine")
    line = fails(capsys, run_args(tmp_path))
    assert f"error: {tmp_path / 'run'}: --run-dir is an existing file" in line
    assert (tmp_path / "run").read_text() == "mine"


# --- eval: predictions missing --------------------------------------------------------


@pytest.fixture
def eval_folders(tmp_path):
    rng = np.random.default_rng(0)
    for index in range(5):
        gt = rng.integers(0, 3, (8, 10)).astype(np.uint8)
        save_label_png(tmp_path / "gt" / f"{index}.png", gt)
        if index < 2:  # 3 of 5 ground-truth images have no prediction
            save_label_png(tmp_path / "pred" / f"{index}.png", gt)
    (tmp_path / "classes.txt").write_text("a\nb\n")
    return tmp_path


def test_eval_warns_about_missing_predictions_and_records_them(eval_folders, capsys, caplog):
    root = eval_folders
    out = root / "result.json"
    argv = ["eval", "--pred", str(root / "pred"), "--gt", str(root / "gt"), "--out", str(out)]
    with caplog.at_level(logging.WARNING):  # printed on stderr outside pytest
        assert main([*argv, "--no-progress"]) == 0
    assert "3 of the 5 ground-truth images" in caplog.text and "not scored" in caplog.text
    printed = capsys.readouterr().out
    assert "not scored: 3 ground-truth image(s) without a prediction: 2, 3, 4" in printed
    result = json.loads(out.read_text())
    assert result["num_images"] == 2 and result["missing_predictions"] == ["2", "3", "4"]

    line = fails(capsys, [*argv, "--strict", "--no-progress"])
    assert f"error: {root / 'pred'}: 3 of the 5 ground-truth images" in line
    assert "have no prediction" in line


def test_eval_thresholds_out_of_order_are_a_config_error(eval_folders, capsys):
    root = eval_folders
    line = fails(
        capsys,
        [
            "eval",
            "--pred",
            str(root / "pred"),
            "--gt",
            str(root / "gt"),
            "--thresholds",
            "0.5",
            "0.2",
        ],
    )
    assert "--thresholds: " in line and "strictly increasing" in line


# --- what the system refuses ------------------------------------------------------------


def test_os_errors_and_out_of_memory_are_one_line(capsys, monkeypatch):
    def denied(args):
        raise PermissionError(13, "Permission denied", "/data/out/result.json")

    monkeypatch.setattr(cli, "_eval", denied)
    line = fails(capsys, ["eval", "--pred", "p", "--gt", "g"])
    assert "error: /data/out/result.json: Permission denied;" in line

    def oom(args):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(cli, "_eval", oom)
    line = fails(capsys, ["eval", "--pred", "p", "--gt", "g"])
    assert "error: out of memory; lower the batch size" in line

    def bug(args):
        raise RuntimeError("a bug keeps its traceback")

    monkeypatch.setattr(cli, "_eval", bug)
    with pytest.raises(RuntimeError, match="a bug"):
        main(["eval", "--pred", "p", "--gt", "g"])


def test_text_files_that_are_not_utf8_are_named(folder_data, tmp_path, capsys):
    labels = folder_data / "labels.csv"
    labels.write_bytes(labels.read_bytes().replace(b"train-00,", b"train-\xe9,"))
    line = fails(capsys, ["data", *run_args(tmp_path)[1:]])
    assert f"error: {labels}: is not UTF-8 text (byte 0xe9" in line and "UTF-8 encoding" in line

    config = tmp_path / "mine.yaml"
    config.write_bytes(b"name: caf\xe9\n")
    line = fails(capsys, ["data", "--config", str(config)])
    assert f"error: {config}: not UTF-8 text" in line


def test_damaged_config_of_a_run_is_named(folder_data, tmp_path, capsys):
    args = ["data", *run_args(tmp_path)[1:]]
    assert main(args) == 0
    (tmp_path / "run" / "config.yaml").write_text("name: [unclosed\n")
    line = fails(capsys, args)
    assert f"error: {tmp_path / 'run' / 'config.yaml'}: not a readable config" in line


def test_a_killed_data_worker_is_one_line(capsys, monkeypatch):
    def killed(args):
        raise RuntimeError("DataLoader worker (pid 4242) is killed by signal: Killed. ")

    monkeypatch.setattr(cli, "_eval", killed)
    line = fails(capsys, ["eval", "--pred", "p", "--gt", "g"])
    assert "DataLoader worker (pid 4242) is killed" in line and "num_workers" in line


def test_set_takes_several_overrides_and_repeats():
    args = cli.build_parser().parse_args(
        ["ablate", "--config", "demo", "--set", "a.b=1", "c=[1, 2]", "--set", "d=x"]
    )
    assert args.overrides == ["a.b=1", "c=[1, 2]", "d=x"]
