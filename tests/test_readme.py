"""The README's two commands stay true: CI runs its test line exactly, and its main line names a real command."""

from __future__ import annotations

import re
from pathlib import Path

from hydra_x.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]


def readme_lines() -> tuple[str, str]:
    """(main, tests): the two command lines of the README's "Two commands" block."""
    text = (ROOT / "README.md").read_text()
    block = re.search(r"## Two commands.*?```bash\n(.*?)```", text, re.S).group(1)
    lines = [line for line in block.splitlines() if line and not line.startswith("#")]
    assert len(lines) == 2, lines
    return lines[0], lines[1]


def test_ci_runs_the_readme_test_line_as_written():
    _, tests = readme_lines()
    assert tests.endswith("python -m pytest -q")
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert tests in ci


def test_the_readme_main_line_installs_and_runs_a_hydra_x_command():
    main, _ = readme_lines()
    assert main.startswith("python3 -m venv .venv && . .venv/bin/activate && pip install ")
    command = main.split(" && ")[-1].split()
    assert command[0] == "hydra-x"
    # The subcommand exists (parsing --help of it would exit; the dispatcher knows it).
    known = set(build_parser()._subparsers._group_actions[0].choices)
    assert command[1] in known
