"""evaluate_directory on temporary folders of label PNGs and score files."""

import hashlib
import json
import logging

import numpy as np
import pytest

from puzzlecam.cams.scores import ScoreMaps, save_scores, threshold_argmax
from puzzlecam.errors import DataError
from puzzlecam.io import read_json, save_label_png
from puzzlecam.metrics.confusion import ConfusionMatrix, confusion_counts
from puzzlecam.metrics.evaluate import evaluate_directory, format_table, write_result
from puzzlecam.metrics.sweep import DEFAULT_THRESHOLDS

CLASSES = ("cat", "dog", "bird")  # labels 1..3, background 0
NUM_LABELS = len(CLASSES) + 1
SIZES = {"a": (12, 16), "b": (9, 7), "c": (20, 11)}


def labels_at(scores, keys, threshold):
    """(H, W) label map: each channel's key where threshold_argmax picks it, else 0."""
    return np.concatenate([[0], np.asarray(keys, np.int64)])[threshold_argmax(scores, threshold)]


def make_gt(rng, size):
    gt = rng.integers(0, NUM_LABELS, size).astype(np.uint8)
    gt[rng.random(size) < 0.1] = 255
    return gt


@pytest.fixture
def data(tmp_path):
    """gt/, labels/ (PNG predictions) and scores/ (npz) for images a, b, c."""
    rng = np.random.default_rng(0)
    gts, labels, scores = {}, {}, {}
    for image_id, size in SIZES.items():
        gts[image_id] = make_gt(rng, size)
        labels[image_id] = rng.integers(0, NUM_LABELS, size).astype(np.uint8)
        keys = np.sort(rng.choice(np.arange(1, NUM_LABELS), 2, replace=False))
        maps = ScoreMaps(keys=keys, scores=rng.random((2, *size)).astype(np.float16))
        scores[image_id] = maps
        save_label_png(tmp_path / "gt" / f"{image_id}.png", gts[image_id])
        save_label_png(tmp_path / "labels" / f"{image_id}.png", labels[image_id])
        save_scores(tmp_path / "scores" / f"{image_id}.npz", maps)
    return tmp_path, gts, labels, scores


def folder_digest(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


@pytest.mark.parametrize("num_workers", [0, 2])
def test_label_pngs(data, num_workers):
    root, gts, labels, _ = data
    before = folder_digest(root / "labels"), folder_digest(root / "gt")
    result = evaluate_directory(
        root / "labels", root / "gt", CLASSES, progress=False, num_workers=num_workers
    )
    expected = ConfusionMatrix(NUM_LABELS)
    for image_id in SIZES:
        expected.update(labels[image_id], gts[image_id])
    np.testing.assert_array_equal(result.scores.matrix, expected.matrix)
    assert result.kind == "labels" and result.threshold is None and result.sweep == ()
    assert result.num_images == 3 and result.skipped == ()
    data_dict = result.to_dict()
    json.dumps(data_dict, allow_nan=False)
    assert data_dict["kind"] == "labels"
    assert data_dict["threshold"] is None and data_dict["sweep"] == []
    assert data_dict["miou"] == pytest.approx(100 * expected.compute().miou, abs=1e-4)
    assert list(data_dict["per_class"]) == ["background", *CLASSES]
    assert set(data_dict["per_class"]["dog"]) >= {"iou", "precision", "recall", "fp", "fn"}
    assert (folder_digest(root / "labels"), folder_digest(root / "gt")) == before


def test_score_files_sweep_and_best_threshold(data):
    root, gts, _, scores = data
    result = evaluate_directory(root / "scores", root / "gt", CLASSES, progress=False)
    assert result.kind == "scores" and result.thresholds == DEFAULT_THRESHOLDS
    mious = []
    for threshold, entry in zip(DEFAULT_THRESHOLDS, result.sweep, strict=True):
        naive = sum(
            confusion_counts(labels_at(m.scores, m.keys, threshold), gts[i], NUM_LABELS)
            for i, m in scores.items()
        )
        np.testing.assert_array_equal(entry.matrix, naive)
        mious.append(entry.miou)
    best = int(np.argmax(mious))
    assert result.threshold == DEFAULT_THRESHOLDS[best]
    assert result.miou == pytest.approx(max(mious))
    data_dict = result.to_dict()
    json.dumps(data_dict, allow_nan=False)
    assert data_dict["threshold"] == DEFAULT_THRESHOLDS[best]
    assert len(data_dict["sweep"]) == 19
    assert set(data_dict["sweep"][0]) == {"threshold", "miou", "fp", "fn"}
    assert data_dict["miou"] == pytest.approx(100 * max(mious), abs=1e-4)


def test_score_files_known_best_threshold(tmp_path):
    # One image: gt 1 where the score is above 0.25 (see test_sweep): best t = 0.25, mIoU 100%.
    values = np.array([[0.0, 0.1, 0.2, 0.25, 0.3, 0.6, 0.9]] * 3)  # (3, 7)
    gt = (values > 0.25).astype(np.uint8)
    save_label_png(tmp_path / "gt" / "x.png", gt)
    save_scores(tmp_path / "pred" / "x.npz", ScoreMaps(keys=np.array([1]), scores=values[None]))
    result = evaluate_directory(tmp_path / "pred", tmp_path / "gt", ["fg"], progress=False)
    assert result.threshold == 0.25
    assert result.to_dict()["miou"] == 100.0


def test_custom_thresholds_and_image_ids(data):
    root, gts, _, scores = data
    result = evaluate_directory(
        root / "scores", root / "gt", CLASSES, image_ids=["b", "a", "b"],
        thresholds=[0.3, 0.6], progress=False,
    )  # fmt: skip
    assert result.num_images == 2 and result.thresholds == (0.3, 0.6)
    naive = sum(
        confusion_counts(labels_at(scores[i].scores, scores[i].keys, 0.6), gts[i], 4)
        for i in ("a", "b")
    )
    np.testing.assert_array_equal(result.sweep[1].matrix, naive)


def test_prediction_without_gt_is_skipped_and_reported(data, caplog):
    root, *_ = data
    save_label_png(root / "labels" / "extra.png", np.zeros((3, 3), np.uint8))
    with caplog.at_level(logging.WARNING):
        result = evaluate_directory(root / "labels", root / "gt", CLASSES, progress=False)
    assert result.num_images == 3 and result.skipped == ("extra",)
    assert result.to_dict()["num_skipped"] == 1
    assert "extra" in caplog.text
    assert "skipped 1 prediction(s) with no ground truth: extra" in format_table(result)


def test_format_table_and_write_result(data):
    root, *_ = data
    result = evaluate_directory(root / "scores", root / "gt", CLASSES, progress=False)
    table = format_table(result, CLASSES)
    for word in ("background", "cat", "dog", "bird", "mIoU", "threshold", "IoU%", "FP", "FN"):
        assert word in table
    assert f"{result.threshold:.2f} " in table
    assert sum(line.endswith(" *") for line in table.splitlines()) == 1
    write_result(root / "out" / "metrics.json", result)
    assert read_json(root / "out" / "metrics.json") == json.loads(json.dumps(result.to_dict()))


def test_size_mismatch_names_both_files(data):
    root, *_ = data
    save_label_png(root / "labels" / "a.png", np.zeros((5, 5), np.uint8))
    # either can be the wrong one (a mask of the wrong size used to be called a prediction
    # of the wrong size): the message blames neither
    with pytest.raises(DataError, match=r"a\.png.*5x5.*gt.a\.png.*12x16.*check which of the two"):
        evaluate_directory(root / "labels", root / "gt", CLASSES, progress=False)
    save_scores(root / "scores" / "b.npz", ScoreMaps(np.array([1]), np.zeros((1, 4, 4))))
    with pytest.raises(DataError, match=r"b\.npz.*4x4.*gt.b\.png.*9x7"):
        evaluate_directory(root / "scores", root / "gt", CLASSES, progress=False, num_workers=2)


def test_bad_gt_value_names_file_and_values(data):
    root, gts, *_ = data
    bad = gts["c"].copy()
    bad[0, :2] = [7, 9]
    save_label_png(root / "gt" / "c.png", bad)
    with pytest.raises(DataError, match=r"c\.png.*\[7, 9\]") as error:
        evaluate_directory(root / "labels", root / "gt", CLASSES, progress=False)
    assert error.value.path.name == "c.png" and error.value.path.parent.name == "gt"


def test_bad_prediction_value(data):
    root, *_ = data
    save_label_png(root / "labels" / "a.png", np.full(SIZES["a"], 4, np.uint8))
    with pytest.raises(DataError, match=r"a\.png.*\[4\] outside 0\.\.3"):
        evaluate_directory(root / "labels", root / "gt", CLASSES, progress=False)


def test_missing_prediction_lists_ids(data):
    root, *_ = data
    with pytest.raises(DataError, match=r"2 of the 4 listed images have no prediction.*x, y"):
        evaluate_directory(
            root / "labels", root / "gt", CLASSES, image_ids=["a", "x", "b", "y"], progress=False
        )


def test_mixed_formats(data):
    root, *_ = data
    save_label_png(root / "scores" / "a.png", np.zeros(SIZES["a"], np.uint8))
    with pytest.raises(DataError, match="both score files"):
        evaluate_directory(root / "scores", root / "gt", CLASSES, progress=False)


def test_empty_or_missing_folders(tmp_path):
    (tmp_path / "pred").mkdir()
    (tmp_path / "gt").mkdir()
    with pytest.raises(DataError, match="no predictions"):
        evaluate_directory(tmp_path / "pred", tmp_path / "gt", CLASSES)
    with pytest.raises(DataError, match="not found"):
        evaluate_directory(tmp_path / "nope", tmp_path / "gt", CLASSES)
    save_label_png(tmp_path / "pred" / "a.png", np.zeros((2, 2), np.uint8))
    with pytest.raises(DataError, match="none of the 1 predictions"):
        evaluate_directory(tmp_path / "pred", tmp_path / "gt", CLASSES, progress=False)
    save_label_png(tmp_path / "gt" / "a.png", np.full((2, 2), 255, np.uint8))
    with pytest.raises(DataError, match="nothing to score"):
        evaluate_directory(tmp_path / "pred", tmp_path / "gt", CLASSES, progress=False)


def test_class_names_must_be_foreground_only(data):
    root, *_ = data
    with pytest.raises(ValueError, match="foreground"):
        evaluate_directory(root / "labels", root / "gt", ("background", *CLASSES))


def test_ground_truth_without_prediction_is_reported_or_refused(data, caplog, tmp_path):
    root, *_ = data
    (root / "labels" / "b.png").unlink()
    with caplog.at_level(logging.WARNING):
        result = evaluate_directory(root / "labels", root / "gt", CLASSES, progress=False)
    assert result.num_images == 2 and result.missing == ("b",)
    assert "1 of the 3 ground-truth images" in caplog.text and "b" in caplog.text
    summary = result.to_dict()
    assert summary["num_missing_predictions"] == 1 and summary["missing_predictions"] == ["b"]
    assert "not scored: 1 ground-truth image(s) without a prediction: b" in format_table(result)
    with pytest.raises(DataError) as caught:
        evaluate_directory(root / "labels", root / "gt", CLASSES, progress=False, strict=True)
    assert caught.value.path == root / "labels"
    assert (
        "1 of the 3 ground-truth images" in caught.value.problem and ": b;" in caught.value.problem
    )
    complete = evaluate_directory(
        root / "scores", root / "gt", CLASSES, progress=False, strict=True
    )
    assert complete.missing == () and complete.to_dict()["missing_predictions"] == []
