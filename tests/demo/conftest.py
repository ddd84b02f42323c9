"""A demo small enough for the tests: the `smoke` preset cut down to the `tiny` tokenizer, two steps of each training
and one item of each evaluation (seconds on a CPU; the figures are noise, so only files, keys and values that must
agree are checked)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from hydra_x.demo.config import DemoConfig, DemoEvalConfig, ShowcaseConfig, resolve, smoke
from hydra_x.demo.run import DemoResult, run_demo
from hydra_x.tokenizer.config import tokenizer_config


def fast_config(out: Path) -> DemoConfig:
    cfg = smoke()
    cfg.shapes_images = 16
    warm = replace(cfg.tokenizer_warmup, steps=2, log_every=1, ckpt_every=2)
    tok = replace(cfg.tokenizer, steps=2, log_every=1, eval_every=0, ckpt_every=2, heldout_images=1, heldout_clips=1)
    for run in (warm, tok):
        run.model = tokenizer_config("tiny")
        run.data = replace(run.data, image_batch_size=2, video_batch_size=1, clip_frames=5)
    cfg.tokenizer_warmup = warm
    uni = replace(cfg.unified, steps=2, log_every=1, ckpt_every=2, heldout_prompts=0, heldout_questions=0)
    uni.data = replace(uni.data, examples_per_step=4)
    cfg.tokenizer, cfg.unified = tok, uni
    cfg.eval = DemoEvalConfig(recon_size=32, recon_images=1, recon_clips=1, recon_frames=5, steps=1, limit=1)
    cfg.showcase = ShowcaseConfig(
        photos=1,
        clips=1,
        image_prompts=("a red circle",),
        video_prompts=("a red circle moving right",),
        questions=1,
        edits=1,
        display_px=32,
    )
    return resolve(cfg, out_dir=str(out), device="cpu")


class Log(list):
    def __call__(self, message: str) -> None:
        self.append(message)


@pytest.fixture(scope="package")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[DemoConfig, DemoResult, Log]:
    """One whole demo (both trainings, both evaluations, the report) shared by the tests that read its outputs."""
    log = Log()
    cfg = fast_config(tmp_path_factory.mktemp("demo") / "runs")
    return cfg, run_demo(cfg, log=log), log
