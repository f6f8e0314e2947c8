"""Inference engines (issue part 9): each installed engine gives PyTorch's outputs to
float rounding, at sizes other than the traced one; graphs are reused while the weights
are the same; a missing engine falls back to what is installed and says so."""

from __future__ import annotations

import pytest
import torch

from puzzlecam.affinity.inference import boundary_map, boundary_net
from puzzlecam.cams.inference import classifier_net, multiscale_cams
from puzzlecam.errors import ConfigError
from puzzlecam.models import engine as engines
from puzzlecam.models.affinitynet import AffinityNet
from puzzlecam.models.classifier import CamClassifier
from puzzlecam.models.engine import engine_net, installed_engines, resolve_engine
from puzzlecam.models.segmenter import Segmenter
from puzzlecam.segmentation.export import segmenter_net
from puzzlecam.segmentation.predict import predict_probs
from tests.helpers import TINY_BACKBONE

INSTALLED = installed_engines()
needs_an_engine = pytest.mark.skipif(not INSTALLED, reason="no inference engine installed")


def _images(height: int, width: int, count: int = 2) -> torch.Tensor:
    generator = torch.Generator().manual_seed(height * 1000 + width)
    return torch.randint(0, 256, (count, 3, height, width), generator=generator).to(torch.uint8)


@needs_an_engine
@pytest.mark.parametrize("engine", INSTALLED)
def test_each_engine_gives_the_classifiers_cams_at_any_size(engine, tmp_path):
    torch.manual_seed(0)
    model = CamClassifier(TINY_BACKBONE, 3).eval()
    net = classifier_net(model, engine, tmp_path / "graph.onnx")
    assert net.stride == model.stride and net is not model
    for size in ((64, 64), (45, 77)):  # the traced size, and one of no stride's multiple
        images = _images(*size)
        with torch.no_grad():
            want = multiscale_cams(model, images, (1.0, 0.5), flip=True)
            got = multiscale_cams(net, images, (1.0, 0.5), flip=True)
            logits = model(images.float()).logits
        for a, b in zip(got, want, strict=True):
            assert a.shape == b.shape
            assert (a - b).abs().max() <= 1e-3 * max(1.0, b.abs().max().item())
        assert torch.allclose(net(images.float()).logits, logits, atol=1e-3)


@needs_an_engine
@pytest.mark.parametrize("engine", INSTALLED)
def test_each_engine_gives_the_boundary_map_and_the_segmentation(engine, tmp_path):
    torch.manual_seed(0)
    affinity = AffinityNet(TINY_BACKBONE).eval()
    segmenter = Segmenter(TINY_BACKBONE, 4, "group").eval()
    boundary = boundary_net(affinity, engine, tmp_path / "aff.onnx")
    segment = segmenter_net(segmenter, engine, tmp_path / "seg.onnx")
    image = _images(50, 70, count=1)
    with torch.no_grad():
        want = boundary_map(affinity, image[0])
        got = boundary_map(boundary, image[0])
        assert got.shape == want.shape and (got - want).abs().max() <= 1e-3
        probs = predict_probs(segmenter, image, (1.0, 0.75), flip=True)
        assert (predict_probs(segment, image, (1.0, 0.75), flip=True) - probs).abs().max() <= 1e-3


@needs_an_engine
def test_a_graph_is_exported_once_and_again_for_other_weights(tmp_path, monkeypatch):
    engine, path = INSTALLED[0], tmp_path / "graph.onnx"
    calls = []
    export = engines.export_graph
    monkeypatch.setattr(engines, "export_graph", lambda *a, **k: calls.append(1) or export(*a, **k))
    model = AffinityNet(TINY_BACKBONE).eval()
    wrap = lambda outputs: outputs[0]  # noqa: E731
    engine_net(model, engine, path, wrap, ["edges"])
    engine_net(model, engine, path, wrap, ["edges"])
    assert len(calls) == 1 and path.with_name("graph.onnx.key").is_file()
    with torch.no_grad():
        next(model.fuse.parameters()).add_(1.0)  # other weights: another graph
    net = engine_net(model, engine, path, wrap, ["edges"])
    assert len(calls) == 2
    image = _images(40, 40)
    assert torch.allclose(net(image.float()), model(image), atol=1e-3)
    assert engine_net(model, "torch", path, wrap, ["edges"]) is model


def test_engines_resolve_to_what_is_installed(monkeypatch):
    assert resolve_engine("torch", "cpu") == ("torch", "")
    assert resolve_engine("auto", "cpu") == ((INSTALLED or ["torch"])[0], "")
    # a GPU: PyTorch, and a note for an engine asked for by name
    assert resolve_engine("auto", "cuda") == ("torch", "")
    engine, note = resolve_engine("onnxruntime", "cuda")
    assert engine == "torch" and "CPU only" in note
    with pytest.raises(ConfigError, match="tensorrt"):
        resolve_engine("tensorrt", "cpu")
    # neither engine installed: PyTorch, and the note says what to install
    monkeypatch.setattr(engines, "installed_engines", lambda: [])
    engine, note = resolve_engine("openvino", "cpu")
    assert engine == "torch" and "pip install 'puzzlecam[openvino]'" in note
    assert resolve_engine("auto", "cpu") == ("torch", "")
    # only ONNX Runtime: auto and openvino take it
    monkeypatch.setattr(engines, "installed_engines", lambda: ["onnxruntime"])
    assert resolve_engine("auto", "cpu") == ("onnxruntime", "")
    engine, note = resolve_engine("openvino", "cpu")
    assert engine == "onnxruntime" and "running with onnxruntime" in note
