"""A unified step's flow draws (``draw_generated``): one time and one noise per generated block, shaped like its
latent, each from its own example's key, with larger blocks' times shifted toward the noise."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch

from hydra_x.data.mixture import UnifiedDataLoader
from hydra_x.nn.flow import resolution_shift, shift_time
from hydra_x.train.unified.batch import draw_generated, latent_shape, pack_examples
from hydra_x.unified.model import HydraX

from .test_unified_train import config


def step(cfg, model):
    examples = next(iter(UnifiedDataLoader(cfg.data, start_step=3))).examples
    packed, _ = pack_examples(model.text_tokenizer, model.config.tokenizer, examples, cfg, 3, 0)
    return examples, packed.placements


def test_each_generated_block_gets_a_time_and_a_noise_of_its_latents_shape():
    cfg = config(Path("unused"))
    cfg.data.examples_per_step = 16
    model = HydraX.from_config(cfg.model, seed=0)
    examples, placements = step(cfg, model)
    generated = [p for p in placements if p.role == "generate"]
    t, noise = draw_generated(model.config, cfg, examples, placements, 3, 0).to(torch.device("cpu"))
    shapes = [latent_shape(model.config.tokenizer, examples[p.sample].visuals[p.block].pixels) for p in generated]
    assert len({s[1] for s in shapes}) > 1  # images and clips: blocks of several shapes in one flat tensor
    assert [tuple(x.shape) for x in noise] == shapes and t.shape == (len(generated),)
    assert all(0 < float(x) < 1 for x in t)
    assert all(abs(float(x.std()) - 1) < 0.2 for x in noise)
    # Each block's draws come from its example's global index, not from its place in the step.
    for k, p in enumerate(generated):
        alone = draw_generated(model.config, cfg, [examples[p.sample]], [replace(p, sample=0)], 3, p.sample)
        t1, noise1 = alone.to(torch.device("cpu"))
        assert torch.equal(t1[0], t[k]) and torch.equal(noise1[0], noise[k])


def test_larger_blocks_times_are_shifted_toward_the_noise():
    cfg = config(Path("unused"))
    cfg.data.examples_per_step = 16
    model = HydraX.from_config(cfg.model.replace(time_shift_base_tokens=0), seed=0)
    examples, placements = step(cfg, model)
    plain = draw_generated(model.config, cfg, examples, placements, 3, 0).t
    base = 4
    shifted = draw_generated(model.config.replace(time_shift_base_tokens=base), cfg, examples, placements, 3, 0).t
    lengths = [p.length for p in placements if p.role == "generate"]
    expected = torch.stack(
        [shift_time(t, resolution_shift(n, base, model.config.max_time_shift)) for t, n in zip(plain, lengths)]
    )
    torch.testing.assert_close(shifted, expected)
    assert any(n > base for n in lengths) and bool((shifted >= plain).all()) and bool((shifted > plain).any())
