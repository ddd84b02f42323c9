"""Reuse, resume, stop and retrain of the demo's trainings, with a stand-in for the training function (instant)."""

from __future__ import annotations

import json
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from hydra_x.demo import training
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


def test_a_run_past_its_deadline_is_stopped_and_exported_where_it_stopped(tmp_path, monkeypatch):
    """The engine fits its budget to the first steps' speed; the demo's deadline catches a machine that slows."""
    monkeypatch.setattr(training, "deadline_seconds", lambda cfg: 0.3 if cfg.time_budget_minutes else None)
    calls = []

    def train(cfg: Cfg) -> dict:  # resumes from its saved step and stops on SIGTERM at the end of a step
        calls.append((cfg.steps, cfg.time_budget_minutes))
        run, stop = Path(cfg.out_dir), []
        signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
        step = int((run / "step").read_text()) if (run / "step").exists() else 0
        while step < cfg.steps and not stop:
            time.sleep(0.02)
            step += 1
        run.mkdir(parents=True, exist_ok=True)
        (run / "step").write_text(str(step))
        if step == cfg.steps:
            (run / "export").mkdir()
            (run / "export" / "config.json").write_text("{}")
        return {"step": step, "exit_code": 143 if stop else 0}

    log = []
    cfg = Cfg(str(tmp_path / "run"), steps=10_000, time_budget_minutes=1.0)
    outcome = train_or_reuse("unified", cfg, train, log.append)
    (first, budget), (second, none) = calls  # stopped by the deadline, then resumed to export where it stopped
    stopped = int((tmp_path / "run" / "step").read_text())
    assert first == 10_000 and budget == 1.0 and 0 < second == stopped < 10_000 and none is None
    assert not outcome.reused and is_finished(tmp_path / "run") and "past its time budget" in log[-1]


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


@pytest.mark.parametrize("preset", ["cpu", "small"])
def test_each_demo_trainings_ema_spans_a_small_part_of_its_run(preset):
    # The export of an EMA run is the EMA: one that averages over as many steps as the run makes lags its weights
    # (14.9 against 16.6 dB on the held-out photographs in a GPU demo with small's 0.999 over 1136 steps).
    from hydra_x.demo.config import PRESETS

    cfg = PRESETS[preset]()
    for run in (cfg.tokenizer_warmup, cfg.tokenizer, cfg.unified):
        if run.ema_decay:
            assert 1 / (1 - run.ema_decay) <= run.steps / 10, (run.out_dir, run.ema_decay, run.steps)


@pytest.mark.parametrize("preset", ["cpu", "small"])
def test_each_demo_tokenizer_trains_at_a_rate_that_keeps_the_shapes_world(preset):
    # A short `small` tokenizer run at 1e-3 read back 2.8% of the shapes-world truth pictures on an H200, at 3e-4
    # 24% with the photographs mixed in and 97% on the shapes alone (docs/benchmarks.md).
    from hydra_x.demo.config import PRESETS

    cfg = PRESETS[preset]()
    for run in (cfg.tokenizer_warmup, cfg.tokenizer):
        assert run.optim.lr <= 3e-4, (run.out_dir, run.optim.lr)


@pytest.mark.parametrize("preset", ["cpu", "small", "smoke"])
def test_each_demo_scores_at_the_size_and_length_its_runs_trained(preset):
    # The scorers draw, ask and edit at eval.shapes_size: a model trained at another size would be scored on
    # pictures it never saw (and its tokenizer's reconstructions at another patch grid).
    from hydra_x.demo.config import PRESETS

    cfg = PRESETS[preset]()
    uni = cfg.unified
    assert cfg.eval.shapes_size == uni.data.image_size == uni.model.image_size
    assert cfg.eval.shapes_frames == uni.data.clip_frames == uni.model.clip_frames
    assert cfg.eval.recon_size == cfg.tokenizer.data.image_size == cfg.tokenizer_warmup.data.image_size
