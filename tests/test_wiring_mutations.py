"""benchmarks/wiring_mutations.py: every injected wiring bug is caught by the wiring tests (about a minute)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_every_wiring_mutation_is_caught():
    result = subprocess.run(
        [sys.executable, "benchmarks/wiring_mutations.py"], cwd=ROOT, capture_output=True, text=True, timeout=900
    )
    assert result.returncode == 0 and "all caught" in result.stdout, result.stdout[-6000:] + result.stderr[-2000:]
    assert result.stdout.count("\n| ") >= 1 + 12  # the baseline row and at least 12 mutations
