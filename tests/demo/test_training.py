"""Reuse, resume, stop and retrain of the demo's trainings, with a stand-in for the training function (instant)."""

from __future__ import annotations

import json
import signal
from dataclasses import dataclass
from pathlib import Path

import pytest

from hydra_x.demo.config import DemoError
from hydra_x.demo.training import DemoStopped, is_finished, remove_run, train_or_reuse


@dataclass
class Cfg:
    out_dir: str
    steps: int = 3
    time_budget_minutes: float | None = None


def fake_train(exit_code: int = 0, export: bool = True):
    calls = []

    def train(cfg: Cfg) -> dict:
        calls.append(cfg)
        run = Path(cfg.out_dir)
        (run / "checkpoints" / "step_00000003").mkdir(parents=True, exist_ok=True)
        signal.signal(signal.SIGINT, lambda *a: None)  # as the engine does: its own handler, left installed
        if export:
            (run / "export").mkdir(exist_ok=True)
            (run / "export" / "config.json").write_text("{}")
        (run / "summary.json").write_text(json.dumps({"step": 3}))
        return {"step": 3, "exit_code": exit_code}

    train.calls = calls
    return train


def test_a_finished_run_is_reused_and_an_unfinished_one_resumed(tmp_path):
    cfg, log = Cfg(str(tmp_path / "run")), []
    train = fake_train()
    first = train_or_reuse("tokenizer", cfg, train, log.append)
    assert not first.reused and first.summary == {"step": 3} and is_finished(tmp_path / "run")
    second = train_or_reuse("tokenizer", cfg, train, log.append)
    assert second.reused and len(train.calls) == 1
    assert log[0].startswith("tokenizer: training") and log[1].startswith("tokenizer: reusing the trained run")
    (tmp_path / "run" / "export" / "config.json").unlink()  # stopped before its export: resumed
    train_or_reuse("tokenizer", cfg, train, log.append)
    assert log[-1].startswith("tokenizer: resuming") and len(train.calls) == 2


def test_the_signal_handlers_are_put_back_after_a_training(tmp_path):
    before = signal.getsignal(signal.SIGINT)
    train_or_reuse("unified", Cfg(str(tmp_path / "run")), fake_train(), lambda m: None)
    assert signal.getsignal(signal.SIGINT) is before


def test_a_training_stopped_by_a_signal_stops_the_demo_with_its_exit_code(tmp_path):
    with pytest.raises(DemoStopped, match="rerun the demo to resume") as stop:
        train_or_reuse("unified", Cfg(str(tmp_path / "run")), fake_train(exit_code=130, export=False), print)
    assert stop.value.exit_code == 130


def test_retrain_deletes_only_what_looks_like_a_run(tmp_path):
    assert remove_run(tmp_path / "absent") is False
    run = tmp_path / "run"
    train_or_reuse("tokenizer", Cfg(str(run)), fake_train(), lambda m: None)
    assert remove_run(run) and not run.exists()
    other = tmp_path / "photos"
    other.mkdir()
    (other / "cat.png").write_bytes(b"")
    with pytest.raises(DemoError, match="is not a training run"):
        remove_run(other)
    assert (other / "cat.png").exists()
