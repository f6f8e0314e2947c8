"""The training loop: resume gives the same weights, sharding covers each batch once,
the poly schedule and the parameter groups are the reference's."""

import pytest
import torch
from torch import nn

from puzzlecam.data.datasets import ClassificationDataset
from puzzlecam.data.transforms import AugmentConfig
from puzzlecam.data.voc import read_voc
from puzzlecam.errors import RunDirError, TrainingError
from puzzlecam.io import read_jsonl
from puzzlecam.models.backbone import BackboneConfig
from puzzlecam.models.classifier import CamClassifier
from puzzlecam.puzzle.losses import PuzzleConfig
from puzzlecam.puzzle.trainer import PuzzleCamTrainer
from puzzlecam.training.distributed import DistContext
from puzzlecam.training.loop import LoopConfig, StepSampler, fit, load_weights
from puzzlecam.training.optim import OptimConfig, build_optimizer, parameter_groups, poly_factor
from tests.helpers import TINY_BACKBONE

LOOP = LoopConfig(epochs=2, batch_size=4, num_workers=0, log_every_steps=1)
OPTIM = OptimConfig(lr=0.01)


class _Interrupt(Exception):
    pass


class _StopAfter(nn.Module):
    """Wraps a trainer and raises on its n-th call: a run killed mid-epoch."""

    def __init__(self, trainer, calls):
        super().__init__()
        self.trainer, self.model, self.left = trainer, trainer.model, calls

    def forward(self, *batch, progress):
        if self.left == 0:
            raise _Interrupt
        self.left -= 1
        return self.trainer(*batch, progress=progress)


def _setup(voc_tree):
    torch.manual_seed(0)
    split = read_voc(voc_tree, "train")
    model = CamClassifier(TINY_BACKBONE, split.num_classes)
    trainer = PuzzleCamTrainer(model, PuzzleConfig(alpha_max=1.0))
    dataset = ClassificationDataset(split, AugmentConfig(40, 56, 32), (128, 128, 128), seed=3)
    return trainer, dataset, parameter_groups(model, model.new_modules, OPTIM)


def _train(voc_tree, out_dir, stop_after=None, loop=LOOP):
    trainer, dataset, groups = _setup(voc_tree)
    if stop_after is not None:
        trainer = _StopAfter(trainer, stop_after)
    return fit(trainer, dataset, groups, OPTIM, loop, out_dir, "fp-1", progress=False)


def test_resume_after_interruption_gives_same_weights(voc_tree, tmp_path):
    reference = load_weights(_train(voc_tree, tmp_path / "straight"))["state_dict"]
    # killed in epoch 2 (steps 1-2 are epoch 1, the 3rd call is epoch 2's first step)
    with pytest.raises(_Interrupt):
        _train(voc_tree, tmp_path / "resumed", stop_after=2 + 1)
    assert (tmp_path / "resumed" / "checkpoint.pt").is_file()
    assert not (tmp_path / "resumed" / "model.pt").exists()
    resumed = load_weights(_train(voc_tree, tmp_path / "resumed"))["state_dict"]
    for key, value in reference.items():
        torch.testing.assert_close(resumed[key], value, rtol=0, atol=0, msg=key)
    steps = [
        r["step"] for r in read_jsonl(tmp_path / "resumed" / "metrics.jsonl") if "type" not in r
    ]
    assert steps == [1, 2, 3, 4]  # no duplicated log lines after the resume


def test_mid_epoch_checkpoints_resume_exactly(voc_tree, tmp_path):
    loop = LoopConfig(epochs=1, batch_size=2, num_workers=0, checkpoint_every_steps=1)
    reference = load_weights(_train(voc_tree, tmp_path / "a", loop=loop))["state_dict"]
    with pytest.raises(_Interrupt):
        _train(voc_tree, tmp_path / "b", stop_after=2, loop=loop)
    resumed = load_weights(_train(voc_tree, tmp_path / "b", loop=loop))["state_dict"]
    for key, value in reference.items():
        torch.testing.assert_close(resumed[key], value, rtol=0, atol=0)


def test_loss_decreases_on_a_learnable_task(voc_tree, tmp_path):

    loop = LoopConfig(epochs=6, batch_size=4, num_workers=0, log_every_steps=1)
    _train(voc_tree, tmp_path / "run", loop=loop)
    losses = [
        r["cls_loss"] for r in read_jsonl(tmp_path / "run" / "metrics.jsonl") if "type" not in r
    ]
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3


def test_checkpoint_of_other_config_is_refused(voc_tree, tmp_path):
    with pytest.raises(_Interrupt):
        _train(voc_tree, tmp_path / "r", stop_after=2 + 1)
    trainer, dataset, groups = _setup(voc_tree)
    with pytest.raises(RunDirError, match="another configuration"):
        fit(trainer, dataset, groups, OPTIM, LOOP, tmp_path / "r", "fp-2", progress=False)


def test_two_ranks_see_exactly_the_one_rank_batches():
    one = list(StepSampler(10, 4, DistContext(), seed=1, epoch=2))
    ranks = [
        list(StepSampler(10, 2, DistContext(rank=r, world_size=2), seed=1, epoch=2))
        for r in range(2)
    ]
    assert len(one) == 2  # 10 // 4, the incomplete batch dropped
    for step, batch in enumerate(one):
        assert ranks[0][step] + ranks[1][step] == batch
    resumed = list(StepSampler(10, 4, DistContext(), seed=1, epoch=2, start_micro=1))
    assert resumed == one[1:]
    assert list(StepSampler(10, 4, DistContext(), seed=1, epoch=3)) != one


def test_poly_factor_and_groups():
    assert poly_factor(0, 100, 0.9) == 1.0
    assert poly_factor(50, 100, 0.9) == pytest.approx(0.5**0.9)
    assert poly_factor(100, 100, 0.9) == 0.0
    # warm-up over the first 10 of 100 steps: (step + 1) / 11 times the poly factor
    assert poly_factor(0, 100, 1.0, warmup=0.1) == pytest.approx(1 / 11)
    assert poly_factor(5, 100, 1.0, warmup=0.1) == pytest.approx(0.95 * 6 / 11)
    assert poly_factor(10, 100, 1.0, warmup=0.1) == pytest.approx(0.9)
    model = CamClassifier(TINY_BACKBONE, 3)
    groups = {
        g["name"]: g
        for g in parameter_groups(model, model.new_modules, OptimConfig(lr=0.1, weight_decay=1e-4))
    }
    assert groups["new_weights"]["params"] == [model.classifier.weight]
    assert (
        groups["new_weights"]["lr"] == pytest.approx(1.0)
        and groups["new_weights"]["weight_decay"] == 1e-4
    )
    assert "new_biases" not in groups  # the classifier has no bias
    assert (
        groups["pretrained_biases"]["lr"] == pytest.approx(0.2)
        and groups["pretrained_biases"]["weight_decay"] == 0
    )
    assert groups["pretrained_weights"]["lr"] == pytest.approx(0.1)
    total = sum(len(g["params"]) for g in groups.values())
    assert total == len(list(model.parameters()))


def test_gradient_accumulation_matches_the_full_batch(voc_tree, tmp_path):
    one = LoopConfig(epochs=1, batch_size=4, num_workers=0)
    two = LoopConfig(epochs=1, batch_size=4, grad_accum=2, num_workers=0)
    full = load_weights(_train(voc_tree, tmp_path / "full", loop=one))["state_dict"]
    accumulated = load_weights(_train(voc_tree, tmp_path / "accum", loop=two))["state_dict"]
    for key, value in full.items():
        if value.is_floating_point():
            torch.testing.assert_close(accumulated[key], value, rtol=1e-4, atol=1e-6, msg=key)


def test_adamw_keeps_each_groups_lr_and_decay():
    """One AdamW step by hand: p1 = p0 * (1 - lr * wd) - lr * sign(g) (first step, m/sqrt(v) = sign)."""
    decayed = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    plain = torch.nn.Parameter(torch.tensor([3.0]))
    groups = [
        {"params": [decayed], "lr": 0.1, "initial_lr": 0.1, "weight_decay": 0.5},
        {"params": [plain], "lr": 0.2, "initial_lr": 0.2, "weight_decay": 0.0},
    ]
    optimizer = build_optimizer(groups, OptimConfig(name="adamw", lr=0.01, weight_decay=0.9))
    (decayed * torch.tensor([2.0, -3.0])).sum().add(plain.sum() * 5).backward()
    optimizer.step()
    expected = torch.tensor([1.0 * (1 - 0.05) - 0.1, -2.0 * (1 - 0.05) + 0.1])
    torch.testing.assert_close(decayed.detach(), expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(plain.detach(), torch.tensor([3.0 - 0.2]), atol=1e-5, rtol=0)


def test_unknown_optimiser_name_is_refused():
    with pytest.raises(ValueError, match="sgd.*adamw"):
        OptimConfig(name="lamb")


class _NonFiniteOn(nn.Module):
    """Wraps a trainer; on the chosen calls (0-based) the loss is NaN (``loss``), the
    gradients are NaN with a finite loss (``grad``), or the images are NaN so that the
    forward pass itself (BatchNorm statistics included) sees NaN (``input``)."""

    def __init__(self, trainer, calls, kind="loss"):
        super().__init__()
        self.trainer, self.model, self.calls, self.kind, self.n = (
            trainer,
            trainer.model,
            calls,
            kind,
            0,
        )

    def forward(self, images, *rest, progress):
        bad = self.n in self.calls
        self.n += 1
        if bad and self.kind == "input":
            images = images.float() * float("nan")
        output = self.trainer(images, *rest, progress=progress)
        if not bad or self.kind == "input":
            return output
        if self.kind == "loss":
            return output._replace(total=output.total * float("nan"))
        zero = sum(p.sum() for p in self.model.parameters()) * 0.0
        return output._replace(total=output.total + torch.sqrt(zero))  # d sqrt(0) = inf * 0


def _fit_nonfinite(voc_tree, out_dir, calls, kind="loss", loop=LOOP, norm="fix"):
    torch.manual_seed(0)
    split = read_voc(voc_tree, "train")
    model = CamClassifier(BackboneConfig(TINY_BACKBONE.name, "none", norm), split.num_classes)
    trainer = _NonFiniteOn(PuzzleCamTrainer(model, PuzzleConfig(alpha_max=1.0)), calls, kind)
    dataset = ClassificationDataset(split, AugmentConfig(40, 56, 32), (128, 128, 128), seed=3)
    groups = parameter_groups(model, model.new_modules, OPTIM)
    return fit(
        trainer, dataset, groups, OPTIM, loop, out_dir, "fp-1", progress=False, section="train_cls"
    )


@pytest.mark.parametrize("kind", ["loss", "grad", "input"])
def test_a_non_finite_step_is_skipped_and_changes_nothing(voc_tree, tmp_path, capsys, kind):
    # 8 images, batch 4: 2 steps per epoch, 4 in all; the 2nd step is bad
    weights = _fit_nonfinite(voc_tree, tmp_path / "r", {1}, kind, norm="train")
    state = load_weights(weights)["state_dict"]
    assert all(torch.isfinite(t).all() for t in state.values() if t.is_floating_point())
    err = capsys.readouterr().err
    assert "train: warning: step 2:" in err and "step skipped (1 in a row" in err
    epochs = [r for r in read_jsonl(tmp_path / "r" / "metrics.jsonl") if r.get("type") == "epoch"]
    assert [r.get("nonfinite_steps", 0) for r in epochs] == [1, 0]
    logged = [r for r in read_jsonl(tmp_path / "r" / "metrics.jsonl") if "type" not in r]
    assert all(r["cls_loss"] == r["cls_loss"] for r in logged if "cls_loss" in r)  # no NaN


def test_non_finite_steps_in_a_row_stop_and_keep_the_last_good_checkpoint(voc_tree, tmp_path):
    loop = LoopConfig(
        epochs=2, batch_size=4, num_workers=0, checkpoint_every_steps=1, max_nonfinite_steps=2
    )
    with pytest.raises(TrainingError) as caught:
        _fit_nonfinite(voc_tree, tmp_path / "r", {1, 2, 3}, loop=loop)
    message = str(caught.value)
    assert "\n" not in message
    assert "training stopped: the loss was nan at 2 steps in a row (steps 2-3" in message
    assert "train_cls.loop.max_nonfinite_steps" in message and "train_cls.optim.lr" in message
    assert f"{tmp_path / 'r' / 'checkpoint.pt'} keeps the last good state (step 1)" in message
    checkpoint = torch.load(tmp_path / "r" / "checkpoint.pt", weights_only=True)
    assert checkpoint["step"] == 1  # not the skipped step 2
    assert all(
        torch.isfinite(t).all() for t in checkpoint["model"].values() if t.is_floating_point()
    )
    assert not (tmp_path / "r" / "model.pt").exists()
