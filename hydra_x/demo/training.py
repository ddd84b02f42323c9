"""The demo's two trainings: a run is trained once (an interrupted one resumes) and reused while its export exists.

A run folder counts as finished when ``export/config.json`` exists: the engine writes the export after the last
step, so a run stopped part-way (^C, a time limit) has checkpoints but no export, and the next demo resumes it
from its latest checkpoint. ``--retrain`` deletes a run folder first, but only one that looks like a run.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from hydra_x.demo.config import DemoError

RUN_MARKS = ("config.json", "checkpoints", "export", "metrics.jsonl")  # what the training engine writes


class DemoStopped(Exception):
    """A training was stopped by a signal (it checkpointed first); ``exit_code`` is 128 + the signal."""

    def __init__(self, name: str, exit_code: int) -> None:
        super().__init__(f"{name} training stopped by a signal after its checkpoint; rerun the demo to resume it")
        self.exit_code = exit_code


@dataclass
class TrainingOutcome:
    name: str
    run_dir: Path
    reused: bool  # True: the finished run was reused, nothing trained
    summary: dict[str, Any]  # the run's summary.json
    seconds: float  # wall time of this demo's phase (0 when reused)


def is_finished(run_dir: Path) -> bool:
    return (run_dir / "export" / "config.json").is_file()


def remove_run(run_dir: Path) -> bool:
    """Delete a training run folder (for --retrain); a folder that holds none of a run's files is refused."""
    if not run_dir.exists():
        return False
    if not run_dir.is_dir() or not any((run_dir / mark).exists() for mark in RUN_MARKS):
        raise DemoError(f"{run_dir} exists but is not a training run (no {', '.join(RUN_MARKS)}): not deleting it")
    shutil.rmtree(run_dir)
    return True


@contextmanager
def signal_handlers_kept() -> Iterator[None]:
    """The training engine installs its own SIGINT / SIGTERM handlers (checkpoint, then stop) and leaves them;
    the previous ones are put back afterwards, so ^C during the evaluation still stops the demo at once."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)


class Deadline:
    """SIGTERM to this process once ``seconds`` have passed (None: never); the training engine then checkpoints and
    stops at the end of its step. The engine re-plans a time budget at its log steps, but a step that stalls for
    long (a machine that turns busy within it) would still make the run overrun; the demo holds each run to its
    budget plus a margin, and exports the checkpoint it stopped at."""

    def __init__(self, seconds: float | None) -> None:
        self.seconds, self.fired, self.timer = seconds, False, None

    def _fire(self) -> None:
        self.fired = True
        os.kill(os.getpid(), signal.SIGTERM)  # handled in the main thread, by the engine's stop flag

    def __enter__(self) -> Deadline:
        if self.seconds is not None:
            self.timer = threading.Timer(self.seconds, self._fire)
            self.timer.daemon = True
            self.timer.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.timer is not None:
            self.timer.cancel()


def deadline_seconds(cfg) -> float | None:
    """A run's budget plus 10 % and 10 s (None without a budget)."""
    return cfg.time_budget_minutes * 66 + 10 if cfg.time_budget_minutes else None


def train_or_reuse(name: str, cfg, train: Callable[[Any], dict], log: Callable[[str], None]) -> TrainingOutcome:
    """Reuse the finished run of ``cfg.out_dir``, or train it with ``train(cfg)`` (resuming its checkpoints)."""
    run_dir = Path(cfg.out_dir)
    if is_finished(run_dir):
        log(f"{name}: reusing the trained run {run_dir} (its export/ exists; --retrain trains it again)")
        return TrainingOutcome(name, run_dir, True, read_summary(run_dir), 0.0)
    started = time.perf_counter()
    resuming = (run_dir / "checkpoints").is_dir() and any((run_dir / "checkpoints").iterdir())
    budget = f", time budget {cfg.time_budget_minutes:g} min" if cfg.time_budget_minutes else ""
    log(f"{name}: {'resuming' if resuming else 'training'} {run_dir} (at most {cfg.steps} steps{budget})")
    with signal_handlers_kept(), Deadline(deadline_seconds(cfg)) as deadline:
        summary = train(cfg)
    if summary.get("exit_code") and deadline.fired and summary.get("step", 0) > 0:
        log(f"{name}: past its time budget (the machine got slower): exporting step {summary['step']} as it is")
        with signal_handlers_kept():  # resumed at its last step, the run exports at once
            summary = train(replace(cfg, steps=summary["step"], time_budget_minutes=None))
    if summary.get("exit_code"):
        raise DemoStopped(name, int(summary["exit_code"]))
    if not is_finished(run_dir):
        raise RuntimeError(f"{name}: the training ended without writing {run_dir / 'export'}")
    return TrainingOutcome(name, run_dir, False, read_summary(run_dir), time.perf_counter() - started)


def read_summary(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "summary.json"
    return json.loads(path.read_text()) if path.is_file() else {}
