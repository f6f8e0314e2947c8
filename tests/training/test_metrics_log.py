"""The training log: interval means over finite steps, epoch summaries, resuming."""

import logging
import sys

from puzzlecam.io import append_jsonl, read_jsonl
from puzzlecam.training.metrics_log import MetricsLog


def test_intervals_and_epochs_average_the_finite_steps(tmp_path):
    path = tmp_path / "metrics.jsonl"
    log = MetricsLog(path, "train", batch_size=4)
    log.add_step({"loss": 1.0})
    log.add_step({"loss": 3.0})
    record = log.log_interval(step=2, epoch=0, lr=0.1)
    assert (record["step"], record["epoch"], record["lr"], record["loss"]) == (2, 1, 0.1, 2.0)
    log.add_step({"loss": 5.0})  # then a skipped step, not added
    log.end_epoch(step=4, epoch=0, seconds=1.5, skipped=1)
    log.close()
    interval, summary = read_jsonl(path)
    assert interval == record
    assert summary == {
        "step": 4, "epoch": 1, "type": "epoch", "seconds": 1.5, "loss": 3.0, "nonfinite_steps": 1
    }  # fmt: skip


def test_a_resumed_log_drops_what_came_after_the_checkpoint(tmp_path):
    path = tmp_path / "metrics.jsonl"
    for step in (5, 10, 15):
        append_jsonl(path, {"step": step})
    MetricsLog(path, "train", batch_size=4, resumed_at=10).close()
    assert read_jsonl(path) == [{"step": 5}, {"step": 10}]
    MetricsLog(path, "train", batch_size=4, enabled=False, resumed_at=0).close()
    assert len(read_jsonl(path)) == 2  # only the main process writes


def test_missing_tensorboard_is_a_warning_not_a_print(tmp_path, monkeypatch, caplog, capsys):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails
    with caplog.at_level(logging.WARNING, logger="puzzlecam"):
        MetricsLog(tmp_path / "metrics.jsonl", "train", 4, tensorboard_dir=tmp_path / "tb")
    assert "tensorboard is not installed" in caplog.text
    assert capsys.readouterr().out == ""
