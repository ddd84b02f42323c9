"""benchmarks/host_index_contention.py: its torch reference builds the runs NumPy's token_runs builds, and it prints a
row per build and number of busy processes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "host_index_contention.py"
sys.path.insert(0, str(BENCH.parent))
from host_index_contention import torch_token_runs  # noqa: E402

from hydra_x.unified.packing import token_runs  # noqa: E402


def test_the_torch_reference_builds_the_same_runs():
    g = torch.Generator().manual_seed(1)
    starts = torch.randint(0, 900, (30,), generator=g).tolist()
    lengths = torch.randint(0, 9, (30,), generator=g).tolist()  # empty runs among them
    assert torch.equal(torch_token_runs(starts, lengths), token_runs(starts, lengths))


def test_a_row_per_build_and_busy_count():
    out = subprocess.run(
        [sys.executable, str(BENCH), "--runs", "8", "--length", "4", "--busy", "0", "1", "--calls", "3"],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    rows = [line for line in out.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert [r.split(" | ")[:2] for r in rows] == [
        ["| 0", "torch repeat_interleave"],
        ["| 0", "NumPy repeat"],
        ["| 1", "torch repeat_interleave"],
        ["| 1", "NumPy repeat"],
    ]
