"""hydra_x.demo sits above training and evaluation: only the command line imports it."""

from __future__ import annotations

from tests.test_imports import graph, unit


def test_only_the_command_line_imports_the_demo():
    importers = sorted(
        f"{source} -> {target}"
        for source, targets in graph().items()
        for target in targets
        if unit(target) == "demo" and unit(source) not in ("demo", "cli")
    )
    assert importers == []


def test_the_demo_imports_training_and_evaluation_not_the_cli():
    units = {unit(t) for s, targets in graph().items() if unit(s) == "demo" for t in targets}
    assert {"train", "eval"} <= units and "cli" not in units
