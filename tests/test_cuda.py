"""The CUDA code path against the CPU: the tiny pipeline end to end on a GPU, training in
each AMP mode with channels_last, CAMs in bf16, segmentation, the API, and 2-GPU DDP.

Every test is marked ``gpu`` and skipped without a CUDA device (``pytest -m gpu`` runs
them where there is one). To check their logic on a machine without a GPU, run them on
the CPU: ``PUZZLECAM_GPU_TESTS_DEVICE=cpu pytest -m gpu tests/test_cuda.py`` (bf16 and
fp16 autocast and the GradScaler run on the CPU too; the DDP test needs 2 GPUs).

Tolerances, with CPU float32 as the reference:

- bf16 keeps 8 significant bits: a relative rounding of 2^-9 = 0.2% per stored
  activation. Through the ~15 layers of a backbone the errors add up to about 1% of a
  map's peak (measured with CPU bf16 autocast on these models: see ``BF16_TOL``). CAMs
  are compared max-normalised, so 0.05 leaves a wide margin and still catches a real
  bug (a wrong flip, scale, layout or class moves maps by 0.3 and more).
- float32 on CUDA runs convolutions in TF32 by default (cuDNN ``allow_tf32``): a 10-bit
  mantissa, 2^-11 = 5e-4 relative per product. ``TF32_TOL`` on probabilities (in
  [0, 1]) is 10x that; argmax labels must agree wherever the CPU's best class leads the
  second by more than twice it.
"""

from __future__ import annotations

import copy
import json
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import Dataset

from puzzlecam import api
from puzzlecam.affinity.inference import boundary_map
from puzzlecam.cams.inference import multiscale_cams, normalize_cams
from puzzlecam.cams.scores import load_scores
from puzzlecam.cams.writer import write_cams
from puzzlecam.cli import main
from puzzlecam.crf import crf_available
from puzzlecam.data.voc import read_voc
from puzzlecam.io import load_label_png, read_jsonl
from puzzlecam.models.classifier import CamClassifier
from puzzlecam.pipeline.branches import BRANCH_SCORES, SEGMENTER_SCORES
from puzzlecam.pipeline.config import load_run_config
from puzzlecam.pipeline.context import RunContext
from puzzlecam.pipeline.run_dir import RunDir
from puzzlecam.pipeline.trained import load_affinitynet, load_classifier
from puzzlecam.puzzle.losses import PuzzleConfig
from puzzlecam.puzzle.trainer import PuzzleCamTrainer
from puzzlecam.segmentation.model_io import load_segmenter
from puzzlecam.segmentation.predict import PredictConfig, predict_probs, segment_arrays
from puzzlecam.training.distributed import DistContext, resolve_device
from puzzlecam.training.loop import LoopConfig, fit, load_weights, save_weights
from puzzlecam.training.optim import OptimConfig, parameter_groups
from tests.helpers import TINY_BACKBONE, TINY_OVERRIDES, save_tiny_segmenter
from tests.helpers import TINY_CLASSES as CLASSES

# where the tests run: cuda (cuda:0), or cpu to check their logic without a GPU
DEVICE_NAME = os.environ.get("PUZZLECAM_GPU_TESTS_DEVICE", "cuda")
ON_CUDA = DEVICE_NAME.startswith("cuda")

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(ON_CUDA and not torch.cuda.is_available(), reason="needs a CUDA device"),
]

# max-normalised maps of the seeded random classifier, bf16 autocast vs CPU float32: CPU
# bf16 autocast measured at most 0.016 on them (the module docstring has the reasoning)
BF16_TOL = 0.05
TF32_TOL = 5e-3  # probabilities, CUDA float32 (TF32 convolutions) vs CPU float32
SCALES = (1.0, 1.5)


def _device() -> torch.device:
    return resolve_device(DEVICE_NAME)  # cuda -> cuda:0, as the command line resolves it


def _pixels(height: int, width: int, seed: int = 0) -> np.ndarray:
    """(H, W, 3) uint8 smooth colour blobs (maps with shape, unlike noise)."""
    rng = np.random.default_rng(seed)
    coarse = Image.fromarray(rng.integers(0, 256, (5, 6, 3), dtype=np.uint8))
    return np.array(coarse.resize((width, height), Image.Resampling.BICUBIC))


def _images(count: int, height: int, width: int, seed: int = 0) -> torch.Tensor:
    """(count, 3, H, W) uint8 of ``_pixels``."""
    arrays = [_pixels(height, width, seed + i) for i in range(count)]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


def _classifier(seed: int = 0) -> CamClassifier:
    torch.manual_seed(seed)
    return CamClassifier(TINY_BACKBONE, len(CLASSES)).eval()


def _top2_margin(probs: torch.Tensor) -> torch.Tensor:
    """(K, H, W) probabilities -> (H, W): the best class's lead over the second best."""
    top = probs.topk(2, dim=0).values
    return top[0] - top[1]


def _agree_where_clear(labels: np.ndarray, reference_probs: torch.Tensor) -> None:
    """``labels`` are the argmax of ``reference_probs`` (K, H, W) wherever its best class
    leads by more than 2 * TF32_TOL; that is most pixels."""
    clear = (_top2_margin(reference_probs) > 2 * TF32_TOL).numpy()
    expected = reference_probs.argmax(0).numpy()
    assert clear.mean() > 0.5, clear.mean()
    np.testing.assert_array_equal(labels[clear], expected[clear])


def _check_weights_file(path: Path) -> None:
    """Loads on the CPU without pickle; every float tensor is float32 (autocast never
    changes the weights' dtype) and finite."""
    payload = torch.load(path, map_location="cpu", weights_only=True)
    state = payload["state_dict"] if "state_dict" in payload else payload["model"]
    assert state, path
    for name, tensor in state.items():
        if tensor.is_floating_point():
            assert tensor.dtype == torch.float32, (path, name, tensor.dtype)
            assert torch.isfinite(tensor).all(), (path, name)


# --- the whole tiny pipeline ---------------------------------------------------------------


def test_tiny_pipeline_end_to_end(tmp_path, capsys):
    """`puzzlecam run --config demo --device cuda`, tiny: every stage on the GPU (training
    with bf16 autocast and channels_last, CAMs in bf16, random walk, prediction); sane
    metrics; every file it wrote loads and runs on the CPU."""
    run = tmp_path / "run"
    args = ["run", "--config", "demo", "--device", DEVICE_NAME, "--run-dir", str(run)]
    args += ["--no-progress", "--set", f"data.root={tmp_path / 'data'}"]
    for override in TINY_OVERRIDES:
        args += ["--set", override]
    code = main(args)
    out, err = capsys.readouterr()
    assert code == 0, err[-4000:]
    assert "Table 2" in out and "total" in out

    metrics = json.loads((run / "metrics.json").read_text())
    expected = [(s.key, split) for s in BRANCH_SCORES for split in ("train", "val")]
    expected += [(s.key, "val") for s in SEGMENTER_SCORES]
    for key, split in expected:
        miou = metrics[key][split]["miou"]
        assert math.isfinite(miou) and 0.0 <= miou <= 100.0, (key, split, miou)
    assert 0.05 <= metrics["puzzle_cam"]["val"]["threshold"] <= 0.95

    # every weights file and checkpoint written from the GPU loads on the CPU, pickle-free
    weights = sorted(run.rglob("model.pt"))
    assert len(weights) == 6, weights  # 2 classifiers, 2 AffinityNets, 2 DeepLabV3+
    for path in [*weights, *run.rglob("checkpoint.pt")]:
        _check_weights_file(path)

    # ... and its models run there: the API and the AffinityNet, on the CPU
    trained = api.load_run(run, device="cpu")
    pixels = _pixels(64, 64)
    mask = trained.segment(pixels)
    assert mask.shape == (64, 64) and mask.max() <= len(trained.classes)
    assert all(0.0 <= p <= 1.0 for p in trained.predict_classes(pixels).values())
    ctx = RunContext(load_run_config(run / "config.yaml"), RunDir(run), progress=False)
    affinitynet = load_affinitynet(ctx.run, ctx.config, "puzzle_cam", "cpu")
    boundary = boundary_map(affinitynet, torch.from_numpy(pixels).permute(2, 0, 1))
    assert boundary.shape == (16, 16) and bool(((boundary >= 0) & (boundary <= 1)).all())

    # the CAM files the GPU wrote in bf16 are the CPU's float32 CAMs of the same classifier.
    # After one epoch some tagged classes' maps peak at 0.005 (vs 0.05 and more for the
    # others), so max-normalising magnifies bf16's rounding there: CPU bf16 autocast
    # measured at most 0.066 on one pixel, 0.006 on average over a map. Hence the
    # mean (what a wrong flip, scale or class moves by 0.1 and more) is held tight and
    # the max only loosely.
    val = ctx.split("val")
    classifier = load_classifier(ctx.run, ctx.config, "puzzle_cam", val.num_classes, "cpu")
    reference = tmp_path / "cams_cpu"
    scales = ctx.config.cams.scales
    write_cams(classifier, val.samples, reference, scales, num_workers=0, progress=False)
    for sample in val.samples:
        gpu = load_scores(ctx.run.cams_dir("puzzle_cam", "val") / f"{sample.image_id}.npz")
        cpu = load_scores(reference / f"{sample.image_id}.npz")
        np.testing.assert_array_equal(gpu.keys, cpu.keys)
        diff = np.abs(gpu.scores.astype(np.float32) - cpu.scores.astype(np.float32))
        if diff.size:
            assert diff.mean() < 0.02 and diff.max() < 0.25, (sample.image_id, diff.max())


# --- training: AMP modes and channels_last ---------------------------------------------------


class _FixedBatch(Dataset):
    """The same 8 (image (3, 64, 64) uint8, tags (2,)) pairs every epoch: class 0 a red
    square, class 1 a blue bar, on grey noise; learnable in a few steps."""

    def __init__(self) -> None:
        rng = np.random.default_rng(0)
        self.images, self.targets = [], []
        for index in range(8):
            pixels = rng.integers(100, 156, (64, 64, 3), dtype=np.uint8)
            tags = np.array([index % 2 == 0, index % 4 < 2 or index == 7], dtype=np.float32)
            if tags[0]:
                top, left = rng.integers(4, 36, 2)
                pixels[top : top + 20, left : left + 20] = (230, 30, 30)
            if tags[1]:
                top, left = rng.integers(4, 20, 2)
                pixels[top : top + 40, left : left + 8] = (30, 30, 230)
            self.images.append(torch.from_numpy(pixels).permute(2, 0, 1).contiguous())
            self.targets.append(torch.from_numpy(tags))

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[index], self.targets[index]


@pytest.mark.parametrize("amp", ["auto", "bf16", "fp16", "off"])
def test_training_each_amp_mode_with_channels_last(amp, tmp_path):
    """`fit` of the classifier's puzzle trainer in each ``loop.amp`` mode: the loss falls,
    the forward runs in the mode's dtype on channels_last inputs, the GradScaler only in
    fp16, and the weights stay finite float32 channels_last on the device."""
    device = _device()
    model = _classifier()
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    trainer = PuzzleCamTrainer(model, PuzzleConfig(alpha_max=0.5))
    inputs_seen: list[torch.Tensor] = []  # what the model was given (full images, tiles)
    outputs_seen: list[torch.Tensor] = []  # its class maps
    model.register_forward_pre_hook(lambda module, args: inputs_seen.append(args[0]))
    model.classifier.register_forward_hook(lambda module, args, out: outputs_seen.append(out))
    optim = OptimConfig(name="adamw", lr=1e-3)
    loop = LoopConfig(
        epochs=12, batch_size=8, num_workers=1, amp=amp, channels_last="on", log_every_steps=1
    )
    groups = parameter_groups(model, model.new_modules, optim)
    context = DistContext(device=device)
    out = fit(trainer, _FixedBatch(), groups, optim, loop, tmp_path, "fp", context, progress=False)

    bf16 = torch.bfloat16
    dtype = {"auto": bf16 if ON_CUDA else torch.float32, "bf16": bf16, "fp16": torch.float16}
    expected = dtype.get(amp, torch.float32)
    assert outputs_seen and {(t.dtype, t.device.type) for t in outputs_seen} == {
        (expected, device.type)
    }
    full = [t for t in inputs_seen if t.shape[-2:] == (64, 64)]  # the tiles are 32 x 32
    assert len(full) == 12 and all(t.device.type == device.type for t in full)
    assert all(t.is_contiguous(memory_format=torch.channels_last) for t in full)
    records = [r for r in read_jsonl(tmp_path / "metrics.jsonl") if "type" not in r]
    losses = [r["cls_loss"] for r in records]
    assert len(losses) == 12 and all(math.isfinite(x) for x in losses), losses
    assert sum(losses[-3:]) / 3 < 0.9 * sum(losses[:3]) / 3, losses

    checkpoint = torch.load(tmp_path / "checkpoint.pt", map_location="cpu", weights_only=True)
    assert ("scaler" in checkpoint) == (amp == "fp16")  # GradScaler only for fp16
    four_d = 0
    for name, parameter in model.named_parameters():
        assert parameter.device.type == device.type, name
        assert parameter.dtype == torch.float32 and torch.isfinite(parameter).all(), name
        if parameter.dim() == 4:
            assert parameter.is_contiguous(memory_format=torch.channels_last), name
            four_d += not parameter.is_contiguous()  # channels_last for real, not trivially
    assert four_d > 0
    assert any(not torch.equal(v.cpu(), initial[k]) for k, v in model.state_dict().items())

    # model.pt holds the trained weights: on the CPU they give the device's logits
    _check_weights_file(out)
    on_cpu = _classifier(seed=1)
    on_cpu.load_state_dict(load_weights(out)["state_dict"])
    images = torch.stack([_FixedBatch()[i][0] for i in range(4)])
    with torch.no_grad():
        expected_logits = on_cpu(images).logits
        logits = model.eval()(images.to(device)).logits.cpu()
    torch.testing.assert_close(logits, expected_logits, rtol=1e-2, atol=1e-2)


# --- CAMs ----------------------------------------------------------------------------------


def test_multiscale_cams_bf16_channels_last_match_cpu_float32():
    """multiscale_cams on the device under bf16 autocast, model and images channels_last,
    is the CPU's float32 result up to bf16 rounding (float32 maps on the device)."""
    device = _device()
    model = _classifier()
    images = _images(2, 72, 88)
    full_cpu, low_cpu = multiscale_cams(model, images, SCALES)
    fast = copy.deepcopy(model).to(device).to(memory_format=torch.channels_last)
    batch = images.to(device).contiguous(memory_format=torch.channels_last)
    with torch.autocast(device.type, dtype=torch.bfloat16):
        full, low = multiscale_cams(fast, batch, SCALES)
    for result, reference in ((full, full_cpu), (low, low_cpu)):
        assert result.device.type == device.type and result.dtype == torch.float32
        assert result.shape == reference.shape
        assert reference.amax(dim=(2, 3)).min() > 0  # every map has a peak to divide by
        diff = (normalize_cams(result).cpu() - normalize_cams(reference)).abs().max()
        assert diff < BF16_TOL, float(diff)


def test_write_cams_on_the_device_match_the_cpu_files(voc_tree, tmp_path):
    """write_cams as the CAM stage runs it on a GPU (bf16, channels_last, 2 loader workers)
    writes the files the CPU writes in float32, up to bf16 rounding; they read on the CPU."""
    split = read_voc(voc_tree, "train")
    model = _classifier()
    kwargs = {"scales": SCALES, "batch_size": 4, "progress": False}
    write_cams(copy.deepcopy(model), split.samples, tmp_path / "cpu", num_workers=0, **kwargs)
    device = _device()
    written = write_cams(
        model, split.samples, tmp_path / "dev", device=device, num_workers=2, amp=True,
        channels_last=True, overlay_ids=[split.samples[0].image_id],
        overlay_dir=tmp_path / "overlays", **kwargs,
    )  # fmt: skip
    assert written == len(split.samples)
    assert (tmp_path / "overlays" / f"{split.samples[0].image_id}.png").is_file()
    for sample in split.samples:
        cpu = load_scores(tmp_path / "cpu" / f"{sample.image_id}.npz")
        dev = load_scores(tmp_path / "dev" / f"{sample.image_id}.npz")
        np.testing.assert_array_equal(dev.keys, cpu.keys)
        for got, want in ((dev.scores, cpu.scores), (dev.scores_stride4, cpu.scores_stride4)):
            assert isinstance(got, np.ndarray) and got.shape == want.shape
            assert np.isfinite(got).all() and got.min() >= 0 and got.max() <= 1
            diff = np.abs(got.astype(np.float32) - want.astype(np.float32)).max()
            assert diff < BF16_TOL, (sample.image_id, diff)
        np.testing.assert_allclose(dev.class_probs, cpu.class_probs, atol=0.02)


# --- segmentation and the API ------------------------------------------------------------


@pytest.fixture(scope="module")
def segmenter_weights(tmp_path_factory):
    return save_tiny_segmenter(tmp_path_factory.mktemp("segmenter") / "model.pt")


def test_predict_probs_and_segment_arrays_match_the_cpu(segmenter_weights):
    """The segmentation model on the device: probabilities within TF32 rounding of the
    CPU's, the same labels where they are clear, for images at their size and shrunk to
    max_long_side (the strip-wise upsampling on the device), and with the CRF."""
    device = _device()
    cpu_model, classes = load_segmenter(segmenter_weights, "cpu")
    model, _ = load_segmenter(segmenter_weights, device)
    assert classes == CLASSES
    assert all(p.device.type == device.type for p in model.parameters())

    config = PredictConfig(scales=(1.0, 0.75), flip=True, batch_size=2, max_long_side=64)
    images = _images(2, 48, 64, seed=3)
    probs_cpu = predict_probs(cpu_model, images, config.scales)
    probs = predict_probs(model, images.to(device), config.scales)
    assert probs.device.type == device.type and probs.dtype == torch.float32
    torch.testing.assert_close(probs.sum(1).cpu(), torch.ones(2, 48, 64), rtol=0, atol=1e-4)
    assert (probs.cpu() - probs_cpu).abs().max() < TF32_TOL

    pixels = [image.permute(1, 2, 0).numpy() for image in images]
    labels = segment_arrays(model, pixels, config, device)
    for label, reference in zip(labels, probs_cpu, strict=True):
        assert label.dtype == np.uint8
        _agree_where_clear(label, reference)

    large = _pixels(96, 150, seed=4)  # working size 41 x 64, labels upsampled on the device
    (label,) = segment_arrays(model, [large], config, device)
    assert label.shape == (96, 150)
    small = torch.from_numpy(large).permute(2, 0, 1)[None].float()
    small = F.interpolate(small, size=(41, 64), mode="bicubic", antialias=True).clamp(0, 255)
    reference = predict_probs(cpu_model, small, config.scales)
    reference = F.interpolate(reference, size=(96, 150), mode="bilinear", align_corners=False)
    _agree_where_clear(label, reference[0])

    if crf_available():
        with_crf = segment_arrays(model, pixels, config, device, crf_iterations=3)
        reference = segment_arrays(cpu_model, pixels, config, "cpu", crf_iterations=3)
        for got, want in zip(with_crf, reference, strict=True):
            assert (got == want).mean() > 0.98


def test_predict_command_on_the_device_writes_cpu_readable_masks(segmenter_weights, tmp_path):
    """`puzzlecam predict --device cuda`: masks the CPU reads, the labels the CPU gives
    where they are clear."""
    folder = tmp_path / "photos"
    folder.mkdir()
    arrays = {f"p{i}": _pixels(40 + 8 * i, 56, seed=10 + i) for i in range(3)}
    for name, pixels in arrays.items():
        Image.fromarray(pixels).save(folder / f"{name}.png")
    out = tmp_path / "out"
    argv = ["predict", "--model", str(segmenter_weights), str(folder), "--out", str(out)]
    argv += ["--device", DEVICE_NAME, "--scales", "1.0", "--no-progress"]
    assert main(argv) == 0
    cpu_model, _ = load_segmenter(segmenter_weights, "cpu")
    for name, pixels in arrays.items():
        mask = load_label_png(out / "masks" / f"{name}.png")
        assert mask.shape == pixels.shape[:2]
        image = torch.from_numpy(pixels).permute(2, 0, 1)[None]
        _agree_where_clear(mask, predict_probs(cpu_model, image, (1.0,))[0])
        assert (out / "overlays" / f"{name}.jpg").is_file()


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, segmenter_weights):
    """A hand-made finished run: a seeded classifier and the tiny segmenter."""
    root = tmp_path_factory.mktemp("run")
    run = RunDir(root)
    overrides = (
        "train_cls.backbone.name=test_efficientnet",
        "train_cls.backbone.pretrained=none",
        "train_seg.backbone.name=test_efficientnet",
        "train_seg.backbone.pretrained=none",
        f"cams.scales={list(SCALES)}",
        "predict.scales=[1.0, 0.75]",
        "predict.max_long_side=64",
    )
    run.bind(load_run_config(None, overrides))
    meta = {"classes": list(CLASSES), "method": "puzzle_cam"}
    save_weights(run.classifier_dir("puzzle_cam") / "model.pt", _classifier(), "test", meta)
    target = run.segmentation_dir("weak") / "model.pt"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(segmenter_weights.read_bytes())
    return root


def test_api_on_the_device_matches_the_cpu(run_dir):
    """load_run(device=cuda): its models live on the GPU; class scores, CAMs and masks
    are the CPU's up to TF32 rounding (float32, no autocast in the API)."""
    device = _device()
    on_device = api.load_run(run_dir, device=DEVICE_NAME)
    on_cpu = api.load_run(run_dir, device="cpu")
    assert on_device.device == device
    assert next(on_device.classifier.parameters()).device.type == device.type
    assert next(on_device.segmenter.parameters()).device.type == device.type

    pixels = _pixels(80, 120, seed=5)  # long side over max_long_side: computed at 64, resized
    scores, reference = on_device.predict_classes(pixels), on_cpu.predict_classes(pixels)
    assert list(scores) == list(CLASSES)
    for name in CLASSES:
        assert abs(scores[name] - reference[name]) < TF32_TOL, (name, scores, reference)

    maps, reference = on_device.cams(pixels, list(CLASSES)), on_cpu.cams(pixels, list(CLASSES))
    for name in CLASSES:
        assert maps[name].dtype == np.float32 and maps[name].shape == (80, 120)
        assert np.abs(maps[name] - reference[name]).max() < 0.02, name  # ~4x TF32's

    small = _pixels(48, 64, seed=6)  # at its own size: the mask is predict_probs' argmax
    mask = on_device.segment(small)
    image = torch.from_numpy(small).permute(2, 0, 1)[None]
    _agree_where_clear(mask, predict_probs(on_cpu.segmenter, image, (1.0, 0.75))[0])
    mask = api.segment(run_dir, small, device=DEVICE_NAME)
    _agree_where_clear(mask, predict_probs(on_cpu.segmenter, image, (1.0, 0.75))[0])


# --- DDP -------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.skipif(
    ON_CUDA and torch.cuda.device_count() < 2, reason="needs 2 CUDA devices (NCCL DDP)"
)
def test_two_gpu_ddp_matches_one_gpu(voc_tree, tmp_path):
    """train-cls under torchrun with 2 NCCL processes gives the weights of one process with
    the same global batch (float32, TF32 off: up to the order of sums); the CAMs sharded
    over the 2 GPUs write every image once. (On the CPU: 2 gloo processes.)"""
    (voc_tree / "run.yaml").write_text("name: ddp\n")
    overrides = [
        "name=ddp", "until=cams", f"device={DEVICE_NAME}", f"data.root={voc_tree}", "data.format=voc",
        "train_cls.backbone.name=test_efficientnet", "train_cls.backbone.pretrained=none",
        "train_cls.backbone.norm=fix", "train_cls.loop.epochs=2", "train_cls.loop.batch_size=4",
        "train_cls.loop.num_workers=0", "train_cls.loop.amp=off",
        "train_cls.augment.min_long_side=40", "train_cls.augment.max_long_side=56",
        "train_cls.augment.crop_size=32", "cams.scales=[1.0]", "cams.num_workers=0",
    ]  # fmt: skip
    env = dict(os.environ, OMP_NUM_THREADS="1", NVIDIA_TF32_OVERRIDE="0")

    def puzzlecam(command: str, run: Path, nproc: int) -> None:
        args = ["--config", str(voc_tree / "run.yaml"), "--run-dir", str(run), "--no-progress"]
        for override in overrides:
            args += ["--set", override]
        prefix = [sys.executable, "-m", "puzzlecam"]
        if nproc > 1:
            prefix = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc),
                      "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
                      "-m", "puzzlecam"]  # fmt: skip
        result = subprocess.run(
            [*prefix, command, *args], capture_output=True, text=True, env=env, timeout=300
        )
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]

    puzzlecam("train-cls", tmp_path / "one", 1)
    puzzlecam("train-cls", tmp_path / "two", 2)
    one, two = (
        load_weights(tmp_path / name / "classifier" / "puzzle_cam" / "model.pt")["state_dict"]
        for name in ("one", "two")
    )
    for key, value in one.items():
        if value.is_floating_point():
            torch.testing.assert_close(two[key], value, rtol=1e-3, atol=1e-4, msg=key)
    puzzlecam("cams", tmp_path / "two", 2)
    written = sorted(
        p.stem for p in (tmp_path / "two" / "cams" / "puzzle_cam" / "train").glob("*.npz")
    )
    expected = sorted((voc_tree / "ImageSets" / "Segmentation" / "train.txt").read_text().split())
    assert written == expected
