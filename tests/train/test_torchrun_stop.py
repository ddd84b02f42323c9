"""A stop asked of one process of several: every process stops at the same step (a step after the ask, which
they learn without waiting for their devices), checkpoints it and exits as the signal says; and the agreement
itself, under torchrun with 2 processes (gloo, CPU)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from unified_multi_gpu import tiny_args  # noqa: E402

from hydra_x.distributed import LaggedMax  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]


def torchrun(script: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [*TORCHRUN, str(Path(__file__).with_name(script)), *args]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_one_process_gets_its_own_value_at_once():
    agreement = LaggedMax(device=None)
    assert [agreement(v) for v in (0.0, 15.0, 0.0)] == [0.0, 15.0, 0.0] and agreement.settle() is None


@pytest.mark.slow
def test_processes_agree_on_the_max_a_call_later(tmp_path):
    proc = torchrun("torchrun_lagged_max.py", str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-4000:]
    answers = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    # rank 0 gives 0, 0, 5, 0 and rank 1 gives 0, 3, 0, 0: each call answers the call before, alike on both ranks
    assert answers[0] == answers[1] == [None, 0.0, 3.0, 5.0, 0.0]


@pytest.mark.slow
def test_a_signal_to_one_process_stops_every_process_at_the_same_step(tmp_path):
    run = tmp_path / "run"
    proc = torchrun(
        "torchrun_stop.py", *tiny_args(run, "cpu", steps=20, ckpt_every=1000, precision="fp32", processes=2)
    )
    assert proc.returncode != 0  # torchrun reports its processes' exit (143) as a failure
    summaries = [json.loads((run / f"rank{r}.json").read_text()) for r in (0, 1)]
    # asked during step 3 (index 2) on rank 1: agreed at the end of step 4 on both
    assert [s["step"] for s in summaries] == [4, 4]
    assert [s["exit_code"] for s in summaries] == [143, 143]  # 128 + SIGTERM, the shell's convention
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step_00000004"]
    meta = json.loads((run / "checkpoints" / "step_00000004" / "meta.json").read_text())
    assert meta["world_size"] == 2 and meta["step"] == 4


@pytest.mark.slow
def test_a_stall_seen_by_one_process_leaves_every_process_the_same_plan(tmp_path):
    # Rank 0 alone counts the stalled step (rank 1 paused outside its timed steps); the budget's plan leaves the
    # most stalls any process counted out of the speed on every process, or the two would plan different last
    # steps and one would wait forever in the other's collectives.
    run = tmp_path / "run"
    budget = ("time_budget_minutes=0.3", "budget_probe_steps=8", "budget_reserve_s=0", "slow_step_log_s=2.0")
    args = tiny_args(run, "cpu", steps=10_000, ckpt_every=100_000, precision="fp32", processes=2, extra=budget)
    proc = torchrun("torchrun_budget_stall.py", *args)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "(1 step(s) over 2 s, 3 s, left out of its speed)" in proc.stdout + proc.stderr
    steps = [json.loads((run / f"rank{r}.json").read_text())["step"] for r in (0, 1)]
    assert steps[0] == steps[1] > 8
