"""Tokenizer training end to end on the CPU: learning, exact resume, atomic checkpoints, bad data, stages."""

import json
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from hydra_x import HydraXTokenizer
from hydra_x.data import TokenizerDataLoader
from hydra_x.data.config import SourceConfig
from hydra_x.train.checkpoint import CheckpointManager
from hydra_x.train.tokenizer import train
from hydra_x.train.tokenizer.recipes import tiny

ROOT = Path(__file__).resolve().parents[2]


def config(out: Path, **changes):
    cfg = tiny()
    cfg.out_dir = str(out)
    cfg.steps, cfg.log_every, cfg.eval_every, cfg.ckpt_every = 6, 1, 0, 100
    cfg.heldout_images, cfg.heldout_clips = 2, 1
    cfg.data.image_size, cfg.data.clip_frames = 32, 5
    cfg.data.image_batch_size, cfg.data.video_batch_size = 4, 2
    cfg.optim.warmup_steps = 2
    for key, value in changes.items():
        target = cfg
        *parents, leaf = key.split("__")
        for part in parents:
            target = getattr(target, part)
        setattr(target, leaf, value)
    return cfg


def losses(run: Path, key: str = "loss/total") -> dict[int, float]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r[key] for r in rows if key in r}


@pytest.mark.parametrize("source", ["embedded_images", "embedded_videos"])
def test_a_few_dozen_steps_lower_the_reconstruction_loss(tmp_path, source):
    cfg = config(tmp_path, steps=60, ema_decay=0.0, data__sources=(SourceConfig(source),))
    cfg.optim.lr = 3e-3
    train(cfg)
    l1 = list(losses(tmp_path, "loss/l1").values())
    # The folds start as the identity on the last frame of each group (a plain ViT on images), so the first
    # losses are already lower than with random folds, and the gain over 60 steps smaller (0.91-0.94).
    assert len(l1) == 60 and sum(l1[-10:]) < 0.96 * sum(l1[:10]), l1
    # On fixed batches of the data (posterior mean, so no sampling noise): the trained weights (the
    # export, raw weights with the EMA off) reconstruct them clearly better than the initial weights.
    batches = [b.pixels for _, b in zip(range(3), TokenizerDataLoader(cfg.data))]
    initial = HydraXTokenizer.from_config(cfg.model, seed=cfg.seed).eval()
    trained = HydraXTokenizer.from_pretrained(tmp_path / "export")
    with torch.no_grad():
        before, after = (sum(F.l1_loss(m(x).x_rec, x).item() for x in batches) for m in (initial, trained))
    assert after < 0.97 * before, (before, after)  # 0.74 (images), 0.95 (clips) here


def test_resume_follows_the_uninterrupted_loss_curve(tmp_path):
    changes = dict(steps=8, loss__gan=0.1, loss__gan_start=2, loss__gan_adaptive=False)
    train(config(tmp_path / "straight", **changes))
    stopped = config(tmp_path / "resumed", stop_at_step=4, **changes)
    assert train(stopped)["step"] == 4
    assert CheckpointManager(tmp_path / "resumed" / "checkpoints").latest().name == "step_00000004"
    train(config(tmp_path / "resumed", **changes))  # same command again: resumes at step 4
    straight, resumed = losses(tmp_path / "straight"), losses(tmp_path / "resumed")
    assert sorted(resumed) == list(range(1, 9))
    for step in range(1, 9):
        assert resumed[step] == straight[step], (step, resumed[step], straight[step])
    assert "loss/disc" in json.loads((tmp_path / "straight" / "metrics.jsonl").read_text().splitlines()[-1])


def test_killing_the_run_while_it_writes_a_checkpoint_leaves_the_previous_one(tmp_path):
    marker = tmp_path / "saving"
    env = {
        **os.environ,
        "HYDRA_X_SLOW_CHECKPOINT": "120",
        "HYDRA_X_SLOW_CHECKPOINT_STEP": "4",
        "HYDRA_X_SLOW_CHECKPOINT_MARKER": str(marker),
    }
    args = [f"out_dir={tmp_path / 'run'}", "steps=6", "ckpt_every=2", "eval_every=0", "data.image_size=32"]
    args += ["data.clip_frames=5", "heldout_images=0", "heldout_clips=0"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "hydra_x.train.tokenizer", "--config", "tiny", *args], env=env, cwd=ROOT
    )
    deadline = time.time() + 120
    while not marker.exists():
        assert proc.poll() is None, "the run ended before writing the checkpoint"
        assert time.time() < deadline
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    manager = CheckpointManager(tmp_path / "run" / "checkpoints")
    assert manager.latest().name == "step_00000002"
    assert (tmp_path / "run" / "checkpoints" / "step_00000004.tmp").is_dir()  # the half-written one
    summary = train(config(tmp_path / "run", steps=6, ckpt_every=2))
    assert summary["step"] == 6 and manager.latest().name == "step_00000006"
    assert not list((tmp_path / "run" / "checkpoints").glob("*.tmp"))


def test_stages_2_and_3_freeze_exactly_what_they_should(tmp_path):
    from hydra_x.teachers.tiny import save_tiny_teacher

    teachers = dict(
        teachers__image=str(save_tiny_teacher("siglip2", tmp_path / "siglip2")),
        teachers__video=str(save_tiny_teacher("videomae", tmp_path / "videomae")),
    )
    train(config(tmp_path / "s1", steps=3, **teachers))
    s1 = load_file(tmp_path / "s1" / "export" / "model.safetensors")
    train(config(tmp_path / "s2", steps=3, stage=2, init=str(tmp_path / "s1"), loss__gan=0.1, loss__kl=0.0))
    s2 = load_file(tmp_path / "s2" / "export" / "model.safetensors")
    for name, tensor in s1.items():
        if name.startswith("decoder."):
            continue
        assert torch.equal(tensor, s2[name]), name
    assert not torch.equal(s1["decoder.blocks.0.mlp.fc1.weight"], s2["decoder.blocks.0.mlp.fc1.weight"])

    train(config(tmp_path / "s3", steps=3, stage=3, init=str(tmp_path / "s2"), stage3_stat_batches=2, **teachers))
    s3 = load_file(tmp_path / "s3" / "export" / "model.safetensors")
    assert not torch.equal(s3["latent_std"], torch.ones_like(s3["latent_std"]))  # statistics stored
    # Frozen in stage 3: the Gen-ViT, the bottleneck's encoder side and the decoder. The decoder's input
    # projection was re-parameterised for normalised latents (same function), so check it through that.
    from hydra_x import HydraXTokenizer

    expected = HydraXTokenizer.from_pretrained(tmp_path / "s2" / "export")
    expected.set_latent_stats(s3["latent_mean"], s3["latent_std"])
    reference = expected.state_dict()
    for name, tensor in s3.items():
        trained = name.startswith(
            ("sem_vit.", "bottleneck.from_latent.", "decompressor.", "image_head.", "video_head.")
        )
        if not trained:
            assert torch.equal(tensor, reference[name]), name
    assert not torch.equal(s3["sem_vit.blocks.0.mlp.fc1.weight"], reference["sem_vit.blocks.0.mlp.fc1.weight"])


def test_a_run_with_teachers_distils_from_them(tmp_path):
    from hydra_x.teachers.tiny import save_tiny_teacher

    image_teacher = save_tiny_teacher("siglip2", tmp_path / "siglip2")
    video_teacher = save_tiny_teacher("videomae", tmp_path / "videomae")
    cfg = config(tmp_path / "run", steps=4, teachers__image=str(image_teacher), teachers__video=str(video_teacher))
    train(cfg)
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert any("loss/distill_image" in r for r in rows) and any("loss/distill_video" in r for r in rows)


def test_bad_files_in_folders_and_shards_are_skipped_counted_and_logged(
    tmp_path, bad_image_dir, bad_video_dir, bad_image_shards
):
    sources = (
        SourceConfig("image_folder", str(bad_image_dir)),
        SourceConfig("video_folder", str(bad_video_dir)),
        SourceConfig("image_shards", str(bad_image_shards)),
    )
    summary = train(config(tmp_path, steps=12, data__sources=sources, data__image_batch_size=6))
    assert summary["step"] == 12
    log = (tmp_path / "skipped.log").read_text()
    for name in ("bad_empty.png", "bad_truncated.jpg", "bad_corrupt.png", "bad_empty.mp4", "bad_text.mp4"):
        assert name in log, name
    assert sum(summary["skipped"].values()) == len(log.splitlines())
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["skipped_total"] == len(log.splitlines())


def test_a_time_budget_ends_the_run_where_its_measured_speed_says_and_names_a_spent_budget(tmp_path, capsys):
    probe = dict(time_budget_minutes=30.0, budget_probe_steps=4, budget_reserve_s=0.0)
    train(config(tmp_path / "long", steps=8, **probe))  # ample: every step runs
    assert max(losses(tmp_path / "long")) == 8
    assert "time budget 30.0 min: the run ends at step 8\n" in capsys.readouterr().out
    train(config(tmp_path / "spent", steps=50, **{**probe, "time_budget_minutes": 0.001}))
    assert max(losses(tmp_path / "spent")) == 4  # the probe's steps, then the export
    out = capsys.readouterr().out
    assert "time budget 0.001 min: the run ends at step 4: setup and the first 4 steps took" in out
    assert "spends the budget; give a longer one" in out


def test_a_run_that_slows_after_its_probe_shortens_its_plan_to_keep_its_budget(tmp_path, capsys, monkeypatch):
    import re

    from hydra_x.train.engine import Engine

    end_step = Engine.end_step

    def slow_after_the_probe(engine):  # as a compile stall or a busier machine would make it
        if engine.step >= 6:
            time.sleep(0.3)
        end_step(engine)

    monkeypatch.setattr(Engine, "end_step", slow_after_the_probe)
    budget = dict(time_budget_minutes=0.1, budget_probe_steps=6, budget_reserve_s=0.0)
    train(config(tmp_path, steps=400, **budget))
    out = capsys.readouterr().out
    planned = int(re.search(r"time budget 0.1 min: the run ends at step (\d+)", out).group(1))
    shortened = [int(n) for n in re.findall(r"the run slowed since its probe and now ends at step (\d+)", out)]
    last = max(losses(tmp_path))
    assert planned > 20 and shortened and shortened == sorted(shortened, reverse=True)
    assert last == shortened[-1] < planned  # the old plan would have taken 0.3 s a step past its 6 s
    plans = [planned, *shortened]  # each re-plan cuts at least 1% of the plan it replaces (or ends the run there)
    assert all(b <= a - a // 100 or b == last for a, b in zip(plans, plans[1:]))


def test_a_stall_inside_the_budgets_probe_is_left_out_of_the_speed_it_plans_with(tmp_path, capsys, monkeypatch):
    import re

    from hydra_x.train.engine import Engine

    end_step = Engine.end_step

    def stall_in_the_probe(engine):  # step 10, in the probe's second half (steps 9-16), as a compilation would
        if engine.step == 9:
            time.sleep(3.0)
        end_step(engine)

    monkeypatch.setattr(Engine, "end_step", stall_in_the_probe)
    budget = dict(time_budget_minutes=0.2, budget_probe_steps=16, budget_reserve_s=0.0, slow_step_log_s=2.0)
    start = time.perf_counter()
    train(config(tmp_path, steps=5000, **budget))
    took = time.perf_counter() - start
    out = capsys.readouterr().out
    assert re.search(r"the run ends at step \d+ \(1 step\(s\) over 2 s, 3 s, left out of its speed\)", out), out
    # At the probe's speed with the stall in it (8 steps in over 3 s) the plan would end the run seconds after it.
    assert took > 0.7 * 12, out


def test_a_run_that_speeds_up_after_its_probe_lengthens_its_plan_to_use_its_budget(tmp_path, capsys, monkeypatch):
    import re

    from hydra_x.train.engine import Engine

    end_step = Engine.end_step

    def slow_until_the_probe_ends(engine):  # as a second run on the same GPU would, until it ends
        if engine.step < 8:
            time.sleep(0.25)
        end_step(engine)

    monkeypatch.setattr(Engine, "end_step", slow_until_the_probe_ends)
    budget = dict(time_budget_minutes=0.2, budget_probe_steps=8, budget_reserve_s=0.0)
    start = time.perf_counter()
    train(config(tmp_path, steps=5000, **budget))
    took = time.perf_counter() - start
    out = capsys.readouterr().out
    planned = int(re.search(r"time budget 0.2 min: the run ends at step (\d+)", out).group(1))
    lengthened = [int(n) for n in re.findall(r"the run ran ahead of its plan and now ends at step (\d+)", out)]
    assert lengthened and lengthened[0] > planned and max(losses(tmp_path)) > planned
    assert took > 0.7 * 12, out  # at the probe's speed the run would have ended seconds after it


def test_a_step_slower_than_the_threshold_is_logged_by_number_and_time(tmp_path, capsys, monkeypatch):
    import re

    from hydra_x.train.engine import Engine

    end_step = Engine.end_step

    def stall_at_step_three(engine):  # as a compilation would, inside the step's time
        if engine.step == 2:
            time.sleep(1.5)
        end_step(engine)

    monkeypatch.setattr(Engine, "end_step", stall_at_step_three)
    train(config(tmp_path, steps=5, slow_step_log_s=1.0))
    logged = re.findall(r"step (\d+) took (\d+\.\d) s \((\d+\.\d) s waiting for data\)", capsys.readouterr().out)
    steps = {n: (float(took), float(waited)) for n, took, waited in logged}
    assert set(steps) <= {"1", "3"} and 1.5 <= steps["3"][0] < 5  # step 1 may be a cold start's
    assert steps["3"][1] < 1.0  # the stall was not the data's


def test_the_log_counts_the_seconds_the_steps_wait_for_data(tmp_path, monkeypatch, capsys):
    import re

    train(config(tmp_path / "plain", steps=3))
    assert all(r > 0 for r in losses(tmp_path / "plain", "data_wait_fraction").values())  # measured, not a constant
    iterate = TokenizerDataLoader.__iter__

    def slow_loader(self):  # as data workers that cannot keep up would make it
        for batch in iterate(self):
            time.sleep(1.0)
            yield batch

    monkeypatch.setattr(TokenizerDataLoader, "__iter__", slow_loader)
    train(config(tmp_path / "slow", steps=3))
    waits = sorted(losses(tmp_path / "slow", "data_wait_fraction").values())
    assert len(waits) == 3 and waits[1] > 0.6 and waits[-1] <= 1.0
    # and a step slowed by its data says so (the default threshold is 10 s; here 0.9 s)
    train(config(tmp_path / "slow-logged", steps=2, slow_step_log_s=0.9))
    assert re.search(r"step 2 took 1\.\d s \(1\.\d s waiting for data\)", capsys.readouterr().out)


def test_a_re_plan_waits_until_the_change_is_a_percent_of_the_plan(monkeypatch):
    # The engine's re-planning alone, on a clock set by hand: a 60 s budget, the probe's second half from step 5 at
    # t = 10 s, a plan of 1000 steps, checked at step 500.
    from types import SimpleNamespace

    from hydra_x.train import engine as engine_module

    said = []
    logger = SimpleNamespace(set_total=lambda n: None, info=said.append)
    cfg = SimpleNamespace(time_budget_minutes=1.0, budget_probe_steps=10, budget_reserve_s=0.0, steps=10_000)
    run = SimpleNamespace(cfg=cfg, step=500, start_step=0, planned_steps=1000, _probe_start=10.0, started=0.0,
                          device=None, logger=logger, _stalls=(0, 0.0))  # fmt: skip
    run._budget_steps = lambda *a: engine_module.Engine._budget_steps(run, *a)
    run._steady = lambda *a: engine_module.Engine._steady(run, *a)
    # From a plan of 1000 each time: the speed since the probe fits 993 (kept: under 1% short), 980 (shortened),
    # 1020 (kept: under 5% ahead), 1054 (lengthened, as where a run beside it on the same GPU ended).
    for now, planned in ((34.65, 1000), (35.0, 980), (34.0, 1000), (33.2, 1054)):
        monkeypatch.setattr(engine_module.time, "perf_counter", lambda now=now: now)
        run.planned_steps = 1000
        engine_module.Engine._keep_to_budget(run)
        assert run.planned_steps == planned, now
    assert said == [
        "time budget 1.0 min: the run slowed since its probe and now ends at step 980",
        "time budget 1.0 min: the run ran ahead of its plan and now ends at step 1054",
    ]


def test_a_one_process_checkpoint_saves_and_loads_without_dcps_single_process_warning(tmp_path):
    manager = CheckpointManager(tmp_path)
    weights = {"model": {"w": torch.arange(6.0).reshape(2, 3)}}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        folder = manager.save(3, weights, {}, {})
        restored = {"model": {"w": torch.zeros(2, 3)}}
        CheckpointManager.load(folder, restored)
    assert torch.equal(restored["model"]["w"], weights["model"]["w"])
    assert not [w for w in caught if "single process" in str(w.message)], [str(w.message) for w in caught]
