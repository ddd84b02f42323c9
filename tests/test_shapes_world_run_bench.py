"""benchmarks/shapes_world_run.py: a failed phase process is named with why it ended, every failed one; the
picture size reaches every run; the tokenizer trains for a number of steps or minutes; an arm whose run left no
export is not scored, and the others are."""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from hydra_x.train.command import override
from hydra_x.train.tokenizer.recipes import small
from hydra_x.train.unified.recipes import tiny

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from shapes_world_run import (  # noqa: E402
    eval_phase,
    exit_reason,
    parse_arms,
    shapes_sources,
    size_overrides,
    tokenizer_length,
    wait,
)


def test_every_failed_run_is_named_with_its_exit_or_the_signal_that_killed_it(tmp_path):
    logs = {name: tmp_path / f"{name}.log" for name in ("ok", "error", "killed")}
    commands = {
        "ok": "print('fine')",
        "error": "raise SystemExit('bad config')",
        "killed": "import os, signal; print('started', flush=True); os.kill(os.getpid(), signal.SIGKILL)",
    }
    procs = {
        name: subprocess.Popen([sys.executable, "-c", code], stdout=logs[name].open("w"), stderr=subprocess.STDOUT)
        for name, code in commands.items()
    }
    with pytest.raises(SystemExit) as raised:
        wait(procs, logs)
    message = str(raised.value)
    assert "error failed (exit 1)" in message and "bad config" in message
    assert "killed failed (killed by SIGKILL, likely for the host's memory)" in message and "started" in message
    assert "ok failed" not in message
    assert wait({"ok": subprocess.Popen([sys.executable, "-c", "pass"])}, {}) is None


def test_exit_reasons_in_words():
    assert exit_reason(0) == "exit 0" and exit_reason(2) == "exit 2"
    assert exit_reason(-signal.SIGTERM) == "killed by SIGTERM"
    assert exit_reason(-250) == "killed by signal 250"


def test_arms_are_layouts_or_named_overrides():
    arms = parse_arms(["sti", "copy=model.edit_layout=sti,model.edit_copy_prior=true"])
    assert arms == {
        "sti": ["model.edit_layout=sti"],
        "copy": ["model.edit_layout=sti", "model.edit_copy_prior=true"],
    }
    json_arm = parse_arms(['b=data.sources=[{"kind":"shapes","balanced_answers":true}],lr_scale=20'])
    assert json_arm == {"b": ['data.sources=[{"kind":"shapes","balanced_answers":true}]', "lr_scale=20"]}
    cfg = override(tiny(), json_arm["b"])  # the real command line's parsing of what the arm passes on
    assert cfg.data.sources[0].balanced_answers is True and cfg.lr_scale == 20
    for bad in (["other"], ["a=lr"], ["sti", "sti"]):
        with pytest.raises(SystemExit):
            parse_arms(bad)


def test_the_tokenizer_trains_for_its_steps_without_a_budget_or_for_its_minutes():
    by_steps = override(small(), tokenizer_length(argparse.Namespace(tokenizer_steps=2400, tokenizer_minutes=3.5)))
    assert by_steps.steps == 2400 and by_steps.time_budget_minutes is None
    by_time = override(small(), tokenizer_length(argparse.Namespace(tokenizer_steps=None, tokenizer_minutes=3.5)))
    assert by_time.time_budget_minutes == 3.5 and by_time.steps == 100000


def test_size_and_frames_reach_both_runs():
    args = argparse.Namespace(size=64, frames=9)
    tokenizer, unified = size_overrides(args, "tokenizer"), size_overrides(args, "unified")
    assert tokenizer == ["data.image_size=64", "data.clip_frames=9"]
    assert set(unified) == {*tokenizer, "model.image_size=64", "model.clip_frames=9"}


def test_an_arm_without_an_export_is_left_out_of_the_scoring_and_the_others_are_scored(tmp_path, capsys):
    (tmp_path / "unified-kept" / "export").mkdir(parents=True)
    (tmp_path / "eval-kept").mkdir()  # scored already: eval_phase reads its report instead of running the scorer
    (tmp_path / "eval-kept" / "report.json").write_text('{"generation": {"overall": 0.5}}')
    (tmp_path / "unified-lost").mkdir()  # a run that died before its export
    args = argparse.Namespace(arms={"lost": [], "kept": []}, guidance=[3.0], edit_guidance=None)
    assert eval_phase(args, tmp_path) == {"kept": ("kept", {"generation": {"overall": 0.5}})}
    assert f"unified (lost): no export in {tmp_path / 'unified-lost'}, not scored" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="no arm of \\['lost'\\] has an export"):
        eval_phase(argparse.Namespace(arms={"lost": []}, guidance=[3.0], edit_guidance=None), tmp_path)


def test_the_scorer_gets_each_guidance_and_the_edits_their_own(tmp_path, monkeypatch):
    import shapes_world_run

    (tmp_path / "unified-one" / "export").mkdir(parents=True)
    commands = []

    def scorer(cli, log):  # writes the report the real scorer would
        commands.append(cli)
        folder = Path(cli[cli.index("--out") + 1])
        folder.mkdir()
        (folder / "report.json").write_text("{}")

    monkeypatch.setattr(shapes_world_run, "run", scorer)
    monkeypatch.setattr(shapes_world_run, "wait", lambda procs, logs: None)
    args = argparse.Namespace(
        arms={"one": []},
        guidance=[3.0, 6.0],
        edit_guidance=3.0,
        smoke=False,
        size=64,
        frames=9,
        sample_steps=20,
        samples_per_prompt=1,
    )
    args.eval_limit = None
    assert set(eval_phase(args, tmp_path)) == {"one", "one g6"}
    for cli, guidance in zip(commands, ("3.0", "6.0")):
        assert cli[cli.index("--guidance") + 1] == guidance and cli[cli.index("--edit-guidance") + 1] == "3.0"
        assert "--samples-per-prompt" not in cli  # one sample a prompt unless asked
    commands.clear()
    shutil.rmtree(tmp_path / "eval-one")  # scored again, now without an edit guidance of its own, 4 samples a prompt
    eval_phase(
        argparse.Namespace(**{**vars(args), "guidance": [1.5], "edit_guidance": None, "samples_per_prompt": 4}),
        tmp_path,
    )
    assert len(commands) == 1 and "--edit-guidance" not in commands[0]
    assert commands[0][commands[0].index("--samples-per-prompt") + 1] == "4"


def test_the_reading_size_gives_the_tokenizer_a_source_of_its_own_at_that_size(tmp_path):
    from hydra_x.data import DataConfig, TokenizerDataLoader
    from hydra_x.data.media import read_image

    base = dict(smoke=False, size=32, frames=5, shapes_images=3, shapes_clips=0, shapes_weight=3.0)
    plain = shapes_sources(argparse.Namespace(**base), tmp_path, photos=False)
    assert [s["path"] for s in plain] == [str(tmp_path / "shapes-images")]
    sources = shapes_sources(argparse.Namespace(**base), tmp_path, photos=False, read_size=48)
    assert sources[0] == plain[0]
    assert sources[1] == {
        "kind": "image_folder",
        "path": str(tmp_path / "shapes-images-48"),
        "weight": 1.5,
        "image_size": 48,
    }
    assert read_image(tmp_path / "shapes-images-48" / "000000.png").shape == (3, 48, 48)
    cfg = DataConfig(sources=sources, image_size=32, aspect_buckets=False, image_batch_size=2, num_workers=0)
    it = iter(TokenizerDataLoader(cfg))
    sides = {next(it).pixels.shape[-1] for _ in range(12)}  # the tokenizer's batches come at both sizes
    assert sides == {32, 48}


def test_the_clips_weigh_half_the_images_unless_given(tmp_path, monkeypatch):
    base = dict(smoke=False, size=32, frames=5, shapes_images=2, shapes_clips=2, shapes_weight=3.0)
    weights = lambda sources: [(s["kind"], s["weight"]) for s in sources]  # noqa: E731
    plain = shapes_sources(argparse.Namespace(**base), tmp_path, photos=False)
    assert weights(plain) == [("image_folder", 3.0), ("video_folder", 1.5)]
    heavy = shapes_sources(argparse.Namespace(**base), tmp_path, photos=False, clips_weight=6.0)
    assert weights(heavy) == [("image_folder", 3.0), ("video_folder", 6.0)]
    # the option reaches the tokenizer run's sources
    sources = tokenizer_sources(tmp_path, monkeypatch, **base, read_size=None, clips_weight=4.5)
    assert weights(json.loads(sources)) == [("image_folder", 3.0), ("video_folder", 4.5)]


def tokenizer_sources(tmp_path: Path, monkeypatch, **options) -> str:
    """The data.sources= value of the tokenizer command that tokenizer_phase builds from ``options`` (recorded, not
    run)."""
    import shapes_world_run

    commands = []
    monkeypatch.setattr(shapes_world_run, "run", lambda command, log: commands.append(command))
    monkeypatch.setattr(shapes_world_run, "wait", lambda procs, logs: None)
    fixed = dict(with_photos=False, tokenizer_steps=10, tokenizer_minutes=None, tokenizer_set=[], tokenizer_extra=[])
    shapes_world_run.tokenizer_phase(argparse.Namespace(**fixed, **options), tmp_path)
    (sources,) = [c.split("=", 1)[1] for c in commands[0] if c.startswith("data.sources=")]
    return sources


def test_the_tokenizer_phase_trains_on_the_renders_at_the_reading_size_too(tmp_path, monkeypatch):
    base = dict(smoke=False, size=32, frames=5, shapes_images=2, shapes_clips=0, shapes_weight=3.0)
    sources = tokenizer_sources(tmp_path, monkeypatch, **base, read_size=48, clips_weight=None)
    cfg = override(small(), [f"data.sources={sources}", "data.image_size=32"])  # as the command line reads them
    assert [(s.path, s.image_size) for s in cfg.data.sources] == [
        (str(tmp_path / "shapes-images"), None),
        (str(tmp_path / "shapes-images-48"), 48),
    ]


def test_the_warm_up_compiles_what_the_timed_run_will_from_a_tokenizer_of_the_same_architecture(tmp_path, monkeypatch):
    # The compile caches hold graphs of the model's architecture and settings; the warm-up must differ from the
    # timed run in nothing else than its length, its tokenizer's weights, its folder and the FLOP-counted step.
    import shapes_world_run

    from hydra_x.tokenizer import HydraXTokenizer
    from hydra_x.train.tokenizer.__main__ import parse_config as tokenizer_config
    from hydra_x.train.unified.__main__ import parse_config as unified_config

    commands = {}
    monkeypatch.setattr(shapes_world_run, "run", lambda cli, log: commands.setdefault(Path(log).stem, cli))
    monkeypatch.setattr(shapes_world_run, "wait", lambda procs, logs: None)
    sti = "model.edit_layout=sti,data.task_ratios.edit=4,model.head_attention_layers=2,head_attention_from_share=0.84"
    args = argparse.Namespace(
        arms=parse_arms([f"one={sti}"]), smoke=False, size=64, frames=9, unified_minutes=14.0, workers=6,
        compile=True, examples=512, unified_set=[], warm_steps=30, tokenizer_set=["loss.mse=1", "optim.lr=3e-4"],
        tokenizer_extra=["model.temporal_unfold=shared"],
    )  # fmt: skip
    shapes_world_run.warm_phase(args, tmp_path)
    shapes_world_run.unified_phase(args, tmp_path, tmp_path / "tokenizer")
    warm, timed = (
        unified_config(commands[name][commands[name].index("--config") :]) for name in ("warm-one", "unified-one")
    )
    assert warm.tokenizer_init == str(tmp_path / "warm-tokenizer") and warm.out_dir == str(tmp_path / "warm-one")
    assert (warm.steps, warm.time_budget_minutes, warm.head_attention_from_share, warm.mfu) == (30, None, 0.5, False)
    assert (timed.steps, timed.time_budget_minutes, timed.head_attention_from_share, timed.mfu) == (
        100000,
        14.0,
        0.84,
        True,
    )
    same = dict(
        tokenizer_init="", out_dir="", steps=1, time_budget_minutes=1.0, head_attention_from_share=0.0, mfu=True
    )
    assert dataclasses.replace(warm, **same) == dataclasses.replace(timed, **same)
    made = HydraXTokenizer.from_pretrained(tmp_path / "warm-tokenizer")
    expected = tokenizer_config(["--config", "small", "model.temporal_unfold=shared"]).model
    assert made.config == expected and made.config.temporal_unfold == "shared"
