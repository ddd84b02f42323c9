"""benchmarks/host_index_contention.py: its torch reference builds the runs NumPy's token_runs builds, and it prints a
row per build and number of busy processes."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from host_index_contention import main, torch_token_runs  # noqa: E402

from hydra_x.unified.packing import token_runs  # noqa: E402


def test_the_torch_reference_builds_the_same_runs():
    g = torch.Generator().manual_seed(1)
    starts = torch.randint(0, 900, (30,), generator=g).tolist()
    lengths = torch.randint(0, 9, (30,), generator=g).tolist()  # empty runs among them
    assert torch.equal(torch_token_runs(starts, lengths), token_runs(starts, lengths))


def test_a_row_per_build_and_busy_count(monkeypatch, capsys):
    argv = ["host_index_contention.py", "--runs", "8", "--length", "4", "--busy", "0", "1", "--calls", "3"]
    monkeypatch.setattr(sys, "argv", argv)
    main()
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert [r.split(" | ")[:2] for r in rows] == [
        ["| 0", "torch repeat_interleave"],
        ["| 0", "NumPy repeat"],
        ["| 1", "torch repeat_interleave"],
        ["| 1", "NumPy repeat"],
    ]
