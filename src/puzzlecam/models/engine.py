"""Inference engines: a trained network's forward pass run by PyTorch, ONNX Runtime or
OpenVINO.

On a CPU, ONNX Runtime and OpenVINO run these networks about four times as fast as PyTorch
eager on batches (``bench/bench_cams.py``; on one small image at a time the per-call
overhead can make them slower, ``bench/bench_predict.py``); the results differ by float
rounding only. A network is exported once to an ONNX graph with dynamic batch, height and
width (by torch's tracing exporter), beside its weights, and reused while its weights are
the same (``engine_net``). The returned object is called like the module (a torch tensor of
images in, torch tensors out, shaped as the module's) and carries the attributes the
callers read (``stride``), so the library's inference functions take either.

``auto`` picks an engine installed for the device: ONNX Runtime, then OpenVINO, then
PyTorch on a CPU; PyTorch on a GPU. An engine asked for but not installed falls back
the same way, with a note saying so.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from puzzlecam.errors import ConfigError
from puzzlecam.io import atomic_write

__all__ = [
    "Engine",
    "ENGINE_GRAPH",
    "ENGINES",
    "DEFAULT_OPSET",
    "MIN_OPSET",
    "max_opset",
    "check_opset",
    "require_exporter",
    "export_graph",
    "installed_engines",
    "resolve_engine",
    "EngineNet",
    "engine_net",
]

ENGINE_GRAPH = "engine.onnx"
"""A trained model's graph for the engines, in the model's folder (its key beside it)."""

Engine = Literal["auto", "torch", "onnxruntime", "openvino"]
ENGINES: tuple[str, ...] = ("auto", "torch", "onnxruntime", "openvino")
# ONNX Runtime first: OpenVINO is 1.2x faster here (bench/bench_cams.py), but its Python
# bindings corrupted the memory of a long test session (docs/decisions.md)
_CPU_ORDER = ("onnxruntime", "openvino")
_PACKAGES = {"onnxruntime": "onnxruntime", "openvino": "openvino"}
_EXTRAS = {"onnxruntime": "puzzlecam[onnx]", "openvino": "puzzlecam[openvino]"}

DEFAULT_OPSET = 18
"""Opset of the exported graph: ONNX Runtime >= 1.14, TensorRT 8.6+, OpenVINO 2023+ run it."""

MIN_OPSET = 18
"""The oldest opset the dynamo exporter writes: it asks for an older one with a logged
warning, fails to convert (no adapter for Pad) and writes opset 18 all the same."""

_TORCH_MAX_OPSET = 23  # torch.onnx's ONNX_MAX_OPSET in torch 2.5 .. 2.14


def max_opset() -> int:
    """The newest opset both torch.onnx and the installed ``onnx`` package support (an
    opset past onnx's range makes the exporter keep 18 and write an invalid graph)."""
    try:
        from torch.onnx import _constants  # private, hence the fallback

        newest = int(_constants.ONNX_MAX_OPSET)
    except (ImportError, AttributeError):
        newest = _TORCH_MAX_OPSET
    if importlib.util.find_spec("onnx") is not None:
        import onnx.defs

        newest = min(newest, int(onnx.defs.onnx_opset_version()))
    return newest


def check_opset(opset: int, option: str = "--opset") -> None:
    """Raise ConfigError unless the exporter writes ``opset`` as asked: it otherwise
    writes another opset (or an invalid file) after the whole slow export."""
    newest = max_opset()
    if not MIN_OPSET <= opset <= newest:
        raise ConfigError(
            f"{option} {opset}: torch's ONNX exporter writes opsets {MIN_OPSET} to {newest}; "
            f"choose one of them ({DEFAULT_OPSET}, the default, runs on ONNX Runtime >= 1.14)"
        )


def _exporter_missing() -> list[str]:
    return [name for name in ("onnx", "onnxscript") if importlib.util.find_spec(name) is None]


def require_exporter() -> None:
    """ImportError naming what to install when torch's ONNX exporter cannot run."""
    missing = _exporter_missing()
    if missing:
        raise ImportError(
            f"ONNX export needs {' and '.join(missing)}: pip install 'puzzlecam[onnx]'"
        )


_AXES = ("batch", None, "height", "width")


def export_graph(
    module: nn.Module,
    example: torch.Tensor,
    path: str | Path,
    output_names: Sequence[str],
    opset: int = DEFAULT_OPSET,
    metadata: Mapping[str, str] | None = None,
    tracer: bool = False,
) -> Path:
    """Write ``module`` (eval mode; left in the mode it was in) as an ONNX graph whose one
    input ``images`` has ``example``'s dtype and dynamic batch, height and width, atomically.

    example: (N >= 2, 3, H, W) on the module's device (torch.export specialises a
    dimension whose example size is 1). ``metadata`` goes into the file. ``tracer``: torch's
    TorchScript-tracing exporter instead of the dynamo one: a second instead of a minute for
    an EfficientNet, for graphs made on the fly (``engine_net``; the sizes a traced graph
    runs at are checked by tests/models/test_engine.py).
    """
    import onnx

    require_exporter()
    check_opset(opset, "opset")
    path = Path(path)
    was_training = module.training
    module.eval()
    try:
        if tracer:
            buffer = io.BytesIO()
            with warnings.catch_warnings():  # deprecated in favour of dynamo, still shipped
                warnings.simplefilter("ignore")
                torch.onnx.export(
                    module, (example,), buffer, dynamo=False, input_names=["images"],
                    output_names=list(output_names), opset_version=opset,
                    dynamic_axes={"images": {0: "batch", 2: "height", 3: "width"}},
                )  # fmt: skip
            proto = onnx.load_from_string(buffer.getvalue())
        else:
            dynamic = torch.export.Dim.DYNAMIC
            proto = torch.onnx.export(
                module,
                (example,),
                dynamo=True,
                input_names=["images"],
                output_names=list(output_names),
                dynamic_shapes={"images": {0: dynamic, 2: dynamic, 3: dynamic}},
                opset_version=opset,
                verbose=False,
            ).model_proto
    finally:
        module.train(was_training)
    # readable axis names in place of the exporter's symbolic expressions
    for value in proto.graph.input:
        for dim, name in zip(value.type.tensor_type.shape.dim, _AXES, strict=True):
            if name is not None:
                dim.dim_param = name
    for key, value in (metadata or {}).items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    size = proto.ByteSize()
    if size >= 2**31:
        raise ValueError(f"the model is {size / 2**30:.1f} GB, over ONNX's 2 GB single-file limit")
    with atomic_write(path) as handle:
        handle.write(proto.SerializeToString())
    return path


def installed_engines() -> list[str]:
    """The engines this machine can run besides PyTorch (their package installed, and the
    exporter that makes their graphs)."""
    if _exporter_missing():
        return []
    return [e for e in _CPU_ORDER if importlib.util.find_spec(_PACKAGES[e]) is not None]


def resolve_engine(requested: str, device: torch.device | str) -> tuple[str, str]:
    """The engine to run with, and a note when it is not the one asked for ("" if it is).

    ``auto``: the first installed of ONNX Runtime and OpenVINO (PyTorch on a GPU). An
    engine that is not installed falls back as ``auto`` would; the note says what to install.
    """
    if requested not in ENGINES:
        raise ConfigError(f"engine: {requested!r} is not one of {list(ENGINES)}")
    device = torch.device(device)
    if device.type != "cpu":
        note = "" if requested in ("auto", "torch") else (
            f"engine {requested} runs on the CPU only: PyTorch runs on {device}"
        )  # fmt: skip
        return "torch", note
    if requested == "torch":
        return "torch", ""
    found = installed_engines()
    if requested in found:
        return requested, ""
    chosen = found[0] if found else "torch"
    if requested == "auto":
        return chosen, ""
    missing = [*_exporter_missing(), _PACKAGES[requested]]
    return chosen, (
        f"engine {requested} is not installed ({', '.join(missing)} missing: pip install "
        f"'{_EXTRAS[requested]}'); running with {chosen}"
    )


class EngineNet:
    """A network's exported graph run by an engine, called like the module: ``images``
    (a torch tensor) in, torch tensors (on the CPU) out, shaped by ``wrap`` as the module's
    output. ``attributes`` (e.g. ``stride``) are the module's that callers read."""

    def __init__(
        self,
        run: Callable[[np.ndarray], list[np.ndarray]],
        wrap: Callable[[list[torch.Tensor]], Any],
        engine: str,
        **attributes: Any,
    ) -> None:
        self._run, self._wrap, self.engine = run, wrap, engine
        for name, value in attributes.items():
            setattr(self, name, value)

    def __call__(self, images: torch.Tensor) -> Any:
        feed = np.ascontiguousarray(images.detach().cpu().float().numpy())
        return self._wrap([torch.from_numpy(np.asarray(out)) for out in self._run(feed)])


def _session(engine: str, path: Path, threads: int) -> Callable[[np.ndarray], list[np.ndarray]]:
    if engine == "onnxruntime":
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        session = onnxruntime.InferenceSession(
            str(path), options, providers=["CPUExecutionProvider"]
        )
        name = session.get_inputs()[0].name
        return lambda feed: session.run(None, {name: feed})
    import openvino

    core = openvino.Core()
    # float32 throughout: a CPU with bf16 units would otherwise round to bf16
    config = {"INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": "f32"}
    compiled = core.compile_model(core.read_model(str(path)), "CPU", config)
    outputs = compiled.outputs
    request = compiled.create_infer_request()

    def run(feed: np.ndarray) -> list[np.ndarray]:
        result = request.infer({0: feed})
        return [np.array(result[output]) for output in outputs]  # copies: the buffers are reused

    return run


def _weights_key(module: nn.Module) -> str:
    """A digest of the module's parameters and buffers: its graph is reused while equal."""
    digest = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        digest.update(name.encode("utf-8"))
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def engine_net(
    module: nn.Module,
    engine: str,
    graph_path: str | Path,
    wrap: Callable[[list[torch.Tensor]], Any],
    output_names: Sequence[str],
    example_size: tuple[int, int] = (64, 64),
    threads: int | None = None,
    **attributes: Any,
) -> nn.Module | EngineNet:
    """``module`` itself for ``engine`` "torch"; else its forward run by ``engine`` from the
    ONNX graph at ``graph_path``, exported first when it is missing or was made from other
    weights (a ``.key`` file beside it holds the weights' digest).

    ``wrap`` turns the graph's outputs (torch tensors, in ``output_names`` order) into the
    module's output; ``attributes`` are set on the returned object; ``threads`` defaults to
    PyTorch's (``torch.get_num_threads()``: the cores, or the share torchrun gives). Several processes must not export to one
    path at once: the caller exports on one and waits (``training.distributed.barrier``).
    """
    if engine == "torch":
        return module
    graph_path = Path(graph_path)
    key_path = graph_path.with_name(graph_path.name + ".key")
    key = _weights_key(module)
    fresh = graph_path.is_file() and key_path.is_file() and key_path.read_text().strip() == key
    if not fresh:
        device = next(module.parameters()).device
        example = torch.rand(2, 3, *example_size, device=device) * 255
        export_graph(module, example, graph_path, output_names, tracer=True)
        with atomic_write(key_path) as handle:
            handle.write(key.encode("utf-8"))
    run = _session(engine, graph_path, threads or torch.get_num_threads())
    return EngineNet(run, wrap, engine, **attributes)
