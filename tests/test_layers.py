"""No module imports a layer above its own (docs/ARCHITECTURE.md, "The import rule").

Every import is read with ``ast``, including those inside functions and under
``TYPE_CHECKING``: a lazy or type-only import up the layers is still a dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import puzzlecam

PACKAGE = Path(puzzlecam.__file__).resolve().parent

# Bottom to top. A unit (a top-level module or sub-package of puzzlecam) may import units
# of its own layer or of a layer below; units of one layer must not form a cycle.
LAYERS: tuple[tuple[str, ...], ...] = (
    # foundations; __init__ (the package root) holds only __version__ and imports nothing
    ("__init__", "constants", "errors", "io", "dataclass_yaml", "crf", "parallel", "visualize"),
    ("data", "models"),
    ("training",),  # the one training loop, over data.loader
    ("cams", "metrics", "puzzle", "affinity", "segmentation"),  # the methods
    ("pipeline",),  # stages, run directory, run config, report
    ("api", "cli", "__main__"),  # entry points
)
LAYER_OF = {unit: level for level, units in enumerate(LAYERS) for unit in units}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    if parts[-1] == "__init__" and len(parts) > 1:
        parts = parts[:-1]
    return ".".join(parts)


def _unit(module: str) -> str:
    """``puzzlecam.data.voc`` -> ``data``; the package itself -> ``__init__``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _is_unit(name: str) -> bool:
    """Whether ``puzzlecam.{name}`` is a sub-package or module (not, say, ``__version__``)."""
    return (PACKAGE / name / "__init__.py").is_file() or (PACKAGE / f"{name}.py").is_file()


def _imports(path: Path, text: str | None = None) -> list[tuple[int, str]]:
    """(line, module) of every puzzlecam import in the file (or in ``text`` as if it were
    that file), relative ones resolved; ``from puzzlecam import pipeline`` (or ``from ..
    import pipeline``) is an import of ``puzzlecam.pipeline``, not of the package root."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    if text is None:
        text = path.read_text(encoding="utf-8")
    found = []
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join([*base, node.module] if node.module else base)
            else:
                source = node.module or ""
            names = [source]
            if source == "puzzlecam":
                # the imported names are the units themselves
                names = [
                    f"puzzlecam.{alias.name}" if _is_unit(alias.name) else source
                    for alias in node.names
                ]
        else:
            continue
        found += [(node.lineno, name) for name in names if name.split(".")[0] == "puzzlecam"]
    return found


SOURCES = sorted(PACKAGE.rglob("*.py"))


def _edges() -> dict[str, dict[str, str]]:
    """unit -> {imported unit: "file:line" of one such import}, across units only."""
    edges: dict[str, dict[str, str]] = {}
    for path in SOURCES:
        unit = _unit(_module_name(path))
        for line, name in _imports(path):
            target = _unit(name)
            if target != unit:
                where = f"{path.relative_to(PACKAGE.parent)}:{line}"
                edges.setdefault(unit, {}).setdefault(target, where)
    return edges


def test_every_unit_has_a_layer():
    units = {_unit(_module_name(path)) for path in SOURCES}
    missing = sorted(units - set(LAYER_OF))
    assert not missing, f"add {missing} to LAYERS in tests/test_layers.py (and ARCHITECTURE.md)"


def _upward(path: Path, text: str | None = None) -> list[str]:
    """Each import of the file (or of ``text`` as if it were that file) from a layer above
    its own, as ``"line N: module (layer L, unit)"``."""
    unit = _unit(_module_name(path))
    return [
        f"line {line}: {name} (layer {LAYER_OF.get(_unit(name))}, {_unit(name)})"
        for line, name in _imports(path, text)
        if LAYER_OF.get(_unit(name), -1) > LAYER_OF[unit]
    ]


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_import_from_a_layer_above(path: Path):
    unit = _unit(_module_name(path))
    upward = _upward(path)
    assert not upward, (
        f"{unit} (layer {LAYER_OF[unit]}) imports from a layer above: {upward}; pass plain "
        "arguments (or a settings dataclass of the lower layer) instead"
    )


def test_no_cycle_between_units():
    edges = _edges()
    done: set[str] = set()

    def visit(unit: str, trail: list[str]) -> None:
        if unit in trail:
            cycle = trail[trail.index(unit) :] + [unit]
            steps = [f"{a} -> {b} ({edges[a][b]})" for a, b in zip(cycle, cycle[1:], strict=False)]
            pytest.fail(f"import cycle between units: {'; '.join(steps)}")
        if unit in done:
            return
        for target in edges.get(unit, {}):
            visit(target, [*trail, unit])
        done.add(unit)

    for unit in sorted(edges):
        visit(unit, [])


def test_the_check_sees_lazy_relative_and_type_only_imports():
    text = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from puzzlecam.pipeline.config import RunConfig\n"
        "def f():\n    import puzzlecam.cli\n    from ..segmentation import predict\n"
    )
    found = sorted(name for _, name in _imports(PACKAGE / "data" / "probe.py", text))
    assert found == ["puzzlecam.cli", "puzzlecam.pipeline.config", "puzzlecam.segmentation"]


def test_package_root_imports_are_attributed_to_the_unit_they_name():
    text = "from puzzlecam import pipeline, errors, __version__\nfrom .. import cli\n"
    found = sorted(name for _, name in _imports(PACKAGE / "data" / "probe.py", text))
    assert found == ["puzzlecam", "puzzlecam.cli", "puzzlecam.errors", "puzzlecam.pipeline"]


# the checker itself: a module of layer `data` (1) importing `pipeline` (4) in each form
@pytest.mark.parametrize(
    "text",
    [
        "import puzzlecam.pipeline\n",
        "from puzzlecam.pipeline.config import RunConfig\n",
        "from puzzlecam import pipeline\n",
        "from puzzlecam import errors, pipeline\n",
        "from .. import pipeline\n",
        "def f():\n    from ..pipeline import plan\n",
    ],
)
def test_the_check_flags_an_upward_import(text: str):
    upward = _upward(PACKAGE / "data" / "probe.py", text)
    assert len(upward) == 1 and "puzzlecam.pipeline" in upward[0] and "layer 4" in upward[0]


@pytest.mark.parametrize(
    "text",
    [
        "import puzzlecam\nfrom puzzlecam import __version__\n",  # the package root: layer 0
        "from puzzlecam import errors, io\n",  # a layer below
        "from puzzlecam.models import backbone\n",  # the same layer
        "from . import voc\n",  # its own unit
    ],
)
def test_the_check_passes_a_downward_import(text: str):
    assert _upward(PACKAGE / "data" / "probe.py", text) == []
