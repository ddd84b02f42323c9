"""benchmarks/unified_batch_host.py end to end at a small size: one row per step size, the size and clip length
in the title, and a worker's rate that is the step's examples over its time."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from unified_batch_host import main  # noqa: E402


def test_the_table_has_a_row_per_step_size_and_the_rate_is_examples_over_time(monkeypatch, capsys):
    args = ["--examples", "8", "16", "--repeats", "1", "--size", "64", "--frames", "5", "--edit-weight", "4"]
    monkeypatch.setattr(sys, "argv", ["unified_batch_host.py", *args])
    threads = torch.get_num_threads()
    try:
        main()  # in this process: a subprocess would spend most of the test importing torch again
    finally:
        torch.set_num_threads(threads)  # the script runs on one thread, as a data worker does
    out = capsys.readouterr().out
    assert "64 px, 5-frame clips" in out
    rows = [line.strip("|").split("|") for line in out.splitlines() if line.startswith("| ") and "examples" not in line]
    assert [int(r[0]) for r in rows] == [8, 16]
    for n, *times in rows:
        here, there, produce, rate = map(float, times)
        assert 0 < there < here and produce > 0
        # the printed time is rounded to 0.1 ms and the rate to 1 example/s
        assert int(n) / (produce + 0.05) * 1e3 - 0.5 <= rate <= int(n) / (produce - 0.05) * 1e3 + 0.5
