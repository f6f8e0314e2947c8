"""ONNX export: one export (through the CLI) of a tiny model, then ONNX Runtime gives the
PyTorch masks at other sizes and batch sizes than the one traced."""

import contextlib
import importlib.util
import io
import json

import numpy as np
import pytest
import torch

from puzzlecam.cli import main
from puzzlecam.segmentation import export as export_module
from puzzlecam.segmentation.export import check_onnx, export_onnx
from puzzlecam.segmentation.model_io import load_segmenter
from tests.helpers import TINY_CLASSES as CLASSES
from tests.helpers import save_tiny_segmenter

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxscript")
onnxruntime = pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """(weights, onnx path, what the CLI printed): one export for the whole module."""
    folder = tmp_path_factory.mktemp("export")
    weights = save_tiny_segmenter(folder / "model.pt")
    path = folder / "model.onnx"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = main(
            ["export-onnx", "--model", str(weights), "--out", str(path), "--size", "64", "64"]
        )
    assert code == 0, printed.getvalue()
    return weights, path, printed.getvalue()


def test_cli_export_reports_the_check(exported):
    _, path, printed = exported
    assert f"-> {path}" in printed
    # the default check image is 3/4 of --size + 5: 53 x 53, not a multiple of 32
    assert "OK: ONNX Runtime vs PyTorch on a 53x53 image: 100.0000% of pixels" in printed
    assert sorted(p.name for p in path.parent.iterdir()) == ["model.onnx", "model.pt"]


def test_onnx_gives_the_pytorch_mask_at_any_size(exported):
    weights, path, _ = exported
    model, classes = load_segmenter(weights)
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (45, 70, 3), dtype=np.uint8)
    check = check_onnx(model, path, image)
    assert check.ran and check.passed, check.message
    assert check.equal_fraction == 1.0 and check.max_abs_diff < 1e-3
    assert check.image_size == (45, 70)

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    batch = rng.integers(0, 256, (3, 3, 33, 96), dtype=np.uint8)  # another N, H and W
    logits = session.run(None, {"images": batch})[0]
    with torch.no_grad():
        expected = model(torch.from_numpy(batch)).numpy()
    assert logits.shape == (3, len(classes) + 1, 33, 96)
    np.testing.assert_array_equal(logits.argmax(1), expected.argmax(1))
    np.testing.assert_allclose(logits, expected, atol=1e-3)


def test_onnx_metadata_names_the_classes_and_axes(exported):
    _, path, _ = exported
    proto = onnx.load(str(path))
    metadata = {entry.key: entry.value for entry in proto.metadata_props}
    assert json.loads(metadata["classes"]) == list(CLASSES)
    shape = [d.dim_param or d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert shape == ["batch", 3, "height", "width"]
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8


def test_missing_packages_are_explained(exported, tmp_path, monkeypatch):
    weights, path, _ = exported
    model, _ = load_segmenter(weights)
    real = importlib.util.find_spec

    def without(*names):
        return lambda name, *args: None if name in names else real(name, *args)

    monkeypatch.setattr(export_module.importlib.util, "find_spec", without("onnxruntime"))
    check = check_onnx(model, path, np.zeros((20, 20, 3), np.uint8))
    assert (
        not check.ran and check.passed is None and "onnxruntime is not installed" in check.message
    )
    monkeypatch.setattr(export_module.importlib.util, "find_spec", without("onnxscript"))
    with pytest.raises(ImportError, match=r"needs onnxscript: pip install 'puzzlecam\[onnx\]'"):
        export_onnx(model, tmp_path / "never.onnx")
    assert not (tmp_path / "never.onnx").exists()


@pytest.mark.parametrize("opset", [0, 17, 99])
def test_opset_outside_the_exporters_range_is_refused_before_export(
    exported, tmp_path, capsys, monkeypatch, opset
):
    # below 18 torch writes opset 18 anyway, past onnx's newest an invalid graph: both
    # after the whole export, so the CLI refuses them before loading the model
    weights, _, _ = exported
    monkeypatch.setattr(export_module, "export_onnx", lambda *a, **k: pytest.fail("exported"))
    out = tmp_path / "model.onnx"
    argv = ["export-onnx", "--model", str(weights), "--out", str(out), "--opset", str(opset)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    newest = export_module.max_opset()
    assert err.startswith(f"puzzlecam export-onnx: error: --opset {opset}: ")
    assert f"writes opsets 18 to {newest}; choose one" in err
    assert 18 < newest and not out.exists()
    with pytest.raises(ValueError, match=f"opset {opset}: "):
        export_module.check_opset(opset, "opset")


def test_a_file_onnx_runtime_cannot_load_is_reported_not_raised(exported, tmp_path):
    weights, _, _ = exported
    model, _ = load_segmenter(weights)
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a protobuf")
    check = check_onnx(model, broken, np.zeros((20, 20, 3), np.uint8))
    assert not check.ran and check.passed is None
    assert check.message.startswith("check not run: ONNX Runtime ") and str(broken) in check.message
