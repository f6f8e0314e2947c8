"""DDP on the CPU with gloo: two processes give one process's weights for the same
global batch, and sharded inference writes every image exactly once."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from puzzlecam.training.distributed import DistContext, init_distributed, shard
from puzzlecam.training.loop import load_weights

pytestmark = pytest.mark.slow

OVERRIDES = [
    "name=ddp",
    "until=cams",
    "train_cls.backbone.name=test_efficientnet",
    "train_cls.backbone.pretrained=none",
    "train_cls.loop.epochs=2",
    "train_cls.loop.batch_size=4",
    "train_cls.loop.num_workers=0",
    "train_cls.augment.min_long_side=40",
    "train_cls.augment.max_long_side=56",
    "train_cls.augment.crop_size=32",
    "cams.scales=[1.0]",
    "cams.num_workers=0",
    "device=cpu",
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _run(voc_tree: Path, run_dir: Path, command: str, nproc: int, extra=()) -> None:
    args = ["--config", str(voc_tree / "run.yaml"), "--run-dir", str(run_dir), "--no-progress"]
    for override in [*OVERRIDES, f"data.root={voc_tree}", "data.format=voc", *extra]:
        args += ["--set", override]
    if nproc == 1:
        prefix = [sys.executable, "-m", "puzzlecam"]
    else:
        prefix = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc),
                  "--master_addr", "127.0.0.1", "--master_port", str(_free_port()), "-m", "puzzlecam"]  # fmt: skip
    env = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run(
        [*prefix, command, *args], capture_output=True, text=True, env=env, timeout=600
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]


@pytest.fixture
def tree(voc_tree):
    (voc_tree / "run.yaml").write_text("name: ddp\n")
    return voc_tree


def test_two_processes_match_one_with_the_same_global_batch(tree, tmp_path):
    # frozen BatchNorm statistics: the math is the same whatever the split of the batch
    # (trainable BatchNorm needs SyncBatchNorm, which torch only has on CUDA)
    extra = ["train_cls.backbone.norm=fix"]
    _run(tree, tmp_path / "one", "train-cls", 1, extra)
    _run(tree, tmp_path / "two", "train-cls", 2, extra)
    for method in ("puzzle_cam",):
        one = load_weights(tmp_path / "one" / "classifier" / method / "model.pt")["state_dict"]
        two = load_weights(tmp_path / "two" / "classifier" / method / "model.pt")["state_dict"]
        for key, value in one.items():
            if value.is_floating_point():
                torch.testing.assert_close(two[key], value, rtol=1e-4, atol=1e-5, msg=key)


def test_sharded_cams_write_every_image_once(tree, tmp_path):
    _run(tree, tmp_path / "run", "train-cls", 1)
    _run(tree, tmp_path / "run", "cams", 2)
    written = sorted(
        p.stem for p in (tmp_path / "run" / "cams" / "puzzle_cam" / "train").glob("*.npz")
    )
    expected = sorted((tree / "ImageSets" / "Segmentation" / "train.txt").read_text().split())
    assert written == expected
    # a rerun with the files present writes nothing and keeps them
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "run" / "cams").rglob("*.npz")}
    _run(tree, tmp_path / "run", "cams", 2)
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "run" / "cams").rglob("*.npz")} == before


def test_shard_partitions_the_list():
    items = list(range(11))
    shards = [shard(items, DistContext(rank=r, world_size=3)) for r in range(3)]
    assert sorted(sum(shards, [])) == items
    assert all(not set(a) & set(b) for i, a in enumerate(shards) for b in shards[i + 1 :])


def test_one_process_on_a_second_gpu_makes_it_the_current_device(monkeypatch):
    # the loaders' pinned memory and the bf16 check use the current CUDA device: under
    # --device cuda:1 it must be cuda:1, not cuda:0 (no GPU needed: torch.cuda faked)
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    made_current = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_device", made_current.append)
    context = init_distributed("cuda:1")
    assert context.device == torch.device("cuda:1") and not context.enabled
    assert made_current == [torch.device("cuda:1")]
    assert init_distributed("cpu").device == torch.device("cpu")
    assert made_current == [torch.device("cuda:1")]  # the CPU leaves CUDA alone
