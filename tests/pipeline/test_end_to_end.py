"""A tiny run of every stage on a tiny demo benchmark: files exist, metrics are sane,
a second run skips everything, and another config is refused."""

import json

import numpy as np
import pytest
import torch

from puzzlecam.affinity.inference import boundary_map, refine_scores
from puzzlecam.cams.scores import load_scores
from puzzlecam.cli import main
from puzzlecam.data.datasets import InferenceDataset
from puzzlecam.io import load_label_png
from puzzlecam.pipeline.branches import METHODS
from puzzlecam.pipeline.config import load_run_config
from puzzlecam.pipeline.context import RunContext
from puzzlecam.pipeline.run_dir import RunDir
from puzzlecam.pipeline.trained import load_affinitynet
from puzzlecam.training.loop import load_weights
from tests.helpers import TINY_OVERRIDES

PLAIN_KEYS = ("rw", "pseudo_labels_nocrf", "pseudo_labels")  # plain_cam_{key}


def _args(tmp_path, extra=()):
    args = [
        "--run-dir",
        str(tmp_path / "run"),
        "--no-progress",
        "--set",
        f"data.root={tmp_path / 'data'}",
    ]
    for override in TINY_OVERRIDES + list(extra):
        args += ["--set", override]
    return args


def _plain_walk_error(run, image_id, affinitynet="plain_cam"):
    """Largest difference between the plain-CAM branch's random walk of an image and the
    walk of its plain CAMs over ``affinitynet``'s boundaries."""
    ctx = RunContext(load_run_config(run / "config.yaml"), RunDir(run), progress=False)
    sample = next(s for s in ctx.split("train").samples if s.image_id == image_id)
    _, image = InferenceDataset([sample])[0]
    cams = load_scores(ctx.run.cams_dir("plain_cam", "train") / f"{image_id}.npz").scores_stride4
    saved = load_scores(ctx.run.rw_dir("plain_cam", "train") / f"{image_id}.npz").scores
    rw = ctx.config.rw
    with torch.no_grad():
        boundary = boundary_map(load_affinitynet(ctx.run, ctx.config, affinitynet), image)
        cams = torch.from_numpy(cams.astype(np.float32))
        walked = refine_scores(
            cams, boundary, tuple(image.shape[-2:]), rw.beta, rw.exp_times, rw.radius
        )
    return float(np.abs(walked.numpy() - saved.astype(np.float32)).max())


@pytest.mark.slow
def test_demo_pipeline_end_to_end(tmp_path, capsys):
    assert main(["demo", *_args(tmp_path)]) == 0
    out = capsys.readouterr().out
    run = tmp_path / "run"
    metrics = json.loads((run / "metrics.json").read_text())
    for method, split in [
        ("plain_cam", "val"),
        ("plain_cam", "train"),
        ("puzzle_cam", "val"),
        ("puzzle_cam", "train"),
        ("rw", "train"),
        ("pseudo_labels", "train"),
        ("pseudo_labels_nocrf", "val"),
        *[(f"plain_cam_{key}", s) for key in PLAIN_KEYS for s in ("train", "val")],
        ("deeplab_weak", "val"),
        ("deeplab_full", "val"),
    ]:
        miou = metrics[method][split]["miou"]
        assert 0.0 < miou <= 100.0, (method, split, miou)
    assert 0.05 <= metrics["puzzle_cam"]["val"]["threshold"] <= 0.95
    # every train image has its CAMs, affinity labels and pseudo labels, in each branch
    ids = (tmp_path / "data" / "ImageSets" / "Segmentation" / "train.txt").read_text().split()
    for method in ("puzzle_cam", "plain_cam"):
        for image_id in ids:
            assert (run / "cams" / method / "train" / f"{image_id}.npz").is_file()
            affinity = load_label_png(
                run / "affinity_labels" / method / "train" / f"{image_id}.png"
            )
            assert set(np.unique(affinity)) <= set(range(11)) | {255}
            assert (run / "rw" / method / "train" / f"{image_id}.npz").is_file()
            assert (run / "pseudo_labels" / method / "train" / f"{image_id}.png").is_file()
        assert (run / "affinitynet" / method / "model.pt").is_file()
    # two AffinityNets, each trained on its branch's labels; each random walk used its own
    weights = [load_weights(run / "affinitynet" / m / "model.pt") for m in METHODS]
    assert [w["meta"]["method"] for w in weights] == list(METHODS)
    heads = [w["state_dict"] for w in weights]
    assert any(not torch.equal(heads[0][k], heads[1][k]) for k in heads[0])
    first = f"{ids[0]}.npz"
    puzzle, plain = (load_scores(run / "rw" / m / "train" / first).scores for m in METHODS)
    assert puzzle.shape[1:] == plain.shape[1:] and not np.array_equal(puzzle, plain)
    # the plain branch walked over its own AffinityNet: the saved walk is that walk (to the
    # float16 files' rounding) and further from the walk over the Puzzle-CAM AffinityNet
    own_error = _plain_walk_error(run, ids[0])
    assert own_error == pytest.approx(0.0, abs=1e-3)
    assert _plain_walk_error(run, ids[0], "puzzle_cam") > own_error
    assert "plain_cam" in out and "puzzle_cam" in out and "total" in out
    assert "plain_cam_pseudo_labels" in out and "Table 2" in out

    # a second run finds every stage done
    assert main(["demo", *_args(tmp_path)]) == 0
    assert "[run]" not in capsys.readouterr().out

    # the same directory with another config is refused with the changed setting named
    assert main(["demo", *_args(tmp_path, ["rw.beta=5"])]) == 2
    assert "rw.beta: 10.0 -> 5" in capsys.readouterr().err


def test_tiny_overrides_make_a_valid_config():
    config = load_run_config("demo", tuple(TINY_OVERRIDES))
    assert config.train_seg.fully_supervised and config.train_cls.baseline_plain_cam
