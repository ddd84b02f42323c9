"""benchmarks/unified_step_transfer.py end to end at a small size: one row per step size, with the pictures a step
holds and a time for each way a step can travel."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from unified_step_transfer import main  # noqa: E402


def test_the_table_has_a_row_per_step_size_with_both_ways_timed(monkeypatch, capsys):
    args = ["--examples", "8", "16", "--repeats", "1", "--size", "32", "--frames", "5", "--ready", "0.5"]
    monkeypatch.setattr(sys, "argv", ["unified_step_transfer.py", *args])
    main()  # in this process: a subprocess would spend most of the test importing torch again
    out = capsys.readouterr().out
    assert "32 px, 5-frame clips, edits weighted 4" in out
    header = next(line for line in out.splitlines() if line.startswith("| examples"))
    assert "one tensor per picture" in header and "one stack per picture shape" in header
    rows = [line.strip("|").split("|") for line in out.splitlines() if line.startswith("| ") and line != header]
    assert [int(r[0]) for r in rows] == [8, 16]
    for n, pictures, *times in rows:
        assert int(pictures) >= int(n)  # every shapes-world task has a picture or more
        assert all(float(t) > 0 for t in times)
