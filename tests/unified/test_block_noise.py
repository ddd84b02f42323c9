"""The unified model's flow noise with a block share (UnifiedConfig.noise_block_share): training draws it, the
sampler starts from it, and a bad setting is refused."""

from __future__ import annotations

import pytest
import torch

from hydra_x.nn.flow import prior_noise
from hydra_x.unified.config import unified_config
from hydra_x.unified.model import HydraX
from hydra_x.unified.sampling import generate_latents


def one_value_a_cell(noise: torch.Tensor) -> bool:
    """Whether every 2 x 2 cell of tokens of (..., h, w) holds one value (and neighbouring cells differ)."""
    cell = noise[..., ::2, ::2]
    spread = cell.repeat_interleave(2, -2).repeat_interleave(2, -1)
    return torch.equal(spread, noise) and not torch.equal(cell[..., 0, 0], cell[..., 0, 1])


@pytest.mark.parametrize("share", [0.0, 1.0])
def test_training_draws_the_configured_noise(share):
    from hydra_x.data.examples import Example, Visual
    from hydra_x.train.unified.batch import build_batch
    from hydra_x.train.unified.recipes import tiny

    model = HydraX.from_preset("tiny", seed=0, noise_block_share=share, noise_cells=2).eval()
    x = torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(0)) * 2 - 1
    messages = [{"role": "user", "content": "a red circle"}, {"role": "assistant", "content": "<image>"}]
    _, visuals, _ = build_batch(model, [Example("image_gen", messages, [Visual(x, "generate")], "k")], tiny(), 0, 0)
    (noise,) = visuals.noise
    assert noise.shape[-2:] == (4, 4)
    assert one_value_a_cell(noise) == (share == 1.0)


@pytest.mark.parametrize("share", [0.0, 0.5, 1.0])
def test_the_sampler_starts_from_the_configured_noise(share):
    # A fresh model's flow head predicts zero velocity (adaLN-Zero), so one Euler step returns its start exactly.
    model = HydraX.from_preset("tiny", seed=0, noise_block_share=share, noise_cells=2).eval()
    z = generate_latents(model, ["a red circle"], height=64, width=64, steps=1, guidance=1.0, seed=5)
    expected = prior_noise(tuple(z.shape), share, 2, torch.Generator().manual_seed(5))
    torch.testing.assert_close(z.float().cpu(), expected)
    assert one_value_a_cell(z) == (share == 1.0)


@pytest.mark.parametrize("changes", [dict(noise_block_share=1.5), dict(noise_block_share=-0.1), dict(noise_cells=0)])
def test_a_bad_noise_setting_is_refused(changes):
    with pytest.raises(ValueError, match="noise_block_share"):
        unified_config("tiny", **changes)
