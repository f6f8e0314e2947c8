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


def _imports(path: Path, text: str | None = None) -> list[tuple[int, str]]:
    """(line, module) of every puzzlecam import in the file (or in ``text`` as if it were
    that file), relative ones resolved."""
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
                names = [".".join([*base, node.module] if node.module else base)]
            else:
                names = [node.module or ""]
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


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_import_from_a_layer_above(path: Path):
    unit = _unit(_module_name(path))
    upward = [
        f"line {line}: {name} (layer {LAYER_OF.get(_unit(name))}, {_unit(name)})"
        for line, name in _imports(path)
        if LAYER_OF.get(_unit(name), -1) > LAYER_OF[unit]
    ]
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
