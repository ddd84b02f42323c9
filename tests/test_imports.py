"""The package's imports point one way: nn <- models <- training / evaluation <- CLI, with no circles.

Every ``import`` of the package's source files counts, at module level or inside a function (a deferred
import still ties the modules together). Packages are compared by their first component under ``hydra_x``
(``hydra_x.train.tokenizer.loop`` is in ``train``); top-level modules (``hydra_x.hub``) are their own unit.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "hydra_x"
MODEL_UNITS = ("nn", "tokenizer", "unified")  # model code
ABOVE_MODELS = ("train", "eval", "teachers", "cli", "web", "demo")  # what model code must never import
BELOW_WEB = ("nn", "tokenizer", "unified", "data", "train", "eval")  # what must never import the web app (web)


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def module_imports(path: Path, modules: set[str]) -> set[str]:
    """The package's modules that ``path`` imports (``from a import b`` counts a.b when b is a module)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "hydra_x")
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            if base.split(".")[0] != "hydra_x":
                continue
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in modules else base)
    return {m for m in found if m in modules and m != name}


def graph() -> dict[str, set[str]]:
    files = sorted(ROOT.rglob("*.py"))
    modules = {module_name(f) for f in files}
    return {module_name(f): module_imports(f, modules) for f in files}


def unit(module: str) -> str:
    """The part of the package a module belongs to; ``__main__`` modules are command-line entry points, so they
    sit with the CLI at the top of the arrows (``python -m hydra_x.train.tokenizer`` is a command)."""
    parts = module.split(".")
    if parts[-1] == "__main__":
        return "cli"
    return parts[1] if len(parts) > 1 else "hydra_x"


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def unit_graph(edges: dict[str, set[str]]) -> dict[str, set[str]]:
    units: dict[str, set[str]] = defaultdict(set)
    for source, targets in edges.items():
        for target in targets:
            if unit(source) != unit(target) and unit(source) != "hydra_x":  # hydra_x/__init__ re-exports
                units[unit(source)].add(unit(target))
    return units


def test_no_module_imports_itself_through_others():
    assert cycles(graph()) == []


def test_no_two_parts_of_the_package_import_each_other():
    assert cycles(unit_graph(graph())) == []


@pytest.mark.parametrize("model_unit", MODEL_UNITS)
def test_model_code_imports_neither_training_nor_evaluation_nor_teachers_nor_the_cli(model_unit):
    bad = sorted(
        f"{source} -> {target}"
        for source, targets in graph().items()
        if unit(source) == model_unit
        for target in targets
        if unit(target) in ABOVE_MODELS
    )
    assert bad == []


def test_models_data_training_and_evaluation_never_import_the_web_app():
    bad = sorted(
        f"{source} -> {target}"
        for source, targets in graph().items()
        if unit(source) in BELOW_WEB
        for target in targets
        if unit(target) == "web"
    )
    assert bad == []


def test_the_checks_see_a_circle_and_a_wrong_arrow():
    """The checks are not vacuous: a planted circle and a model -> training import are both found."""
    edges = graph()
    assert len(edges) > 50 and sum(map(len, edges.values())) > 100
    edges["hydra_x.nn.layers"] = edges["hydra_x.nn.layers"] | {"hydra_x.tokenizer.model"}
    assert cycles(edges) and cycles(unit_graph(edges))
    assert unit("hydra_x.tokenizer.model") in MODEL_UNITS and unit("hydra_x.train.engine") in ABOVE_MODELS
