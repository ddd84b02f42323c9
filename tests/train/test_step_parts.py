"""Parts of the training step: the posterior noise, the EMA, the compile options, the held-out scores."""

from __future__ import annotations

from contextlib import nullcontext

import pytest
import torch
import torch.nn as nn

from hydra_x.data import HELDOUT_PHOTOS, heldout_clips, heldout_images
from hydra_x.data.embedded import heldout_clip, heldout_image
from hydra_x.eval.metrics import psnr, video_psnr
from hydra_x.train.ema import EMA
from hydra_x.train.tokenizer.config import TokenizerTrainConfig
from hydra_x.train.tokenizer.draws import posterior_noise
from hydra_x.train.tokenizer.heldout import evaluate
from tests.helpers import pixels, tiny


@pytest.mark.parametrize("shape", [(4, 3, 32, 32), (4, 3, 5, 32, 32)], ids=["images", "clips"])
def test_posterior_noise_depends_on_the_global_sample_index_only(shape):
    x = pixels(*shape)
    config = tiny().config
    noise = posterior_noise(x, config, seed=0, micro_step=3, first_index=0)
    steps = config.latent_steps(shape[2] if len(shape) == 5 else 1)
    assert noise.shape == (4, steps, 4, config.latent_channels) and noise.device == x.device
    # Two processes with half the batch each draw exactly what one process draws for the whole batch.
    halves = [posterior_noise(x[:2], config, 0, 3, 0), posterior_noise(x[2:], config, 0, 3, 2)]
    assert torch.equal(noise, torch.cat(halves))
    assert not torch.allclose(noise, posterior_noise(x, config, seed=0, micro_step=4, first_index=0))
    assert not torch.allclose(noise, posterior_noise(x, config, seed=1, micro_step=3, first_index=0))
    assert not torch.allclose(noise[0], noise[1])
    assert abs(float(noise.mean())) < 0.1 and abs(float(noise.std()) - 1) < 0.1  # standard normal


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_ema_update_is_the_exponential_average_of_the_weights(dtype):
    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2)).to(dtype)
    model[1].bias.requires_grad_(False)  # frozen: not averaged
    ema = EMA(model, decay=0.9)
    expected = {n: p.detach().float().clone() for n, p in model.named_parameters() if p.requires_grad}
    assert set(ema.shadow) == set(expected)
    for _ in range(3):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        ema.update(model)
        for n, p in model.named_parameters():
            if n in expected:
                expected[n] = 0.9 * expected[n] + 0.1 * p.detach().float()
    for n, value in expected.items():
        assert ema.shadow[n].dtype == torch.float32
        torch.testing.assert_close(ema.shadow[n], value)


def test_compile_mode_must_be_a_known_one():
    with pytest.raises(ValueError, match="compile_mode must be one of .*'max-autotune'"):
        TokenizerTrainConfig(compile_mode="max-autotune")


def test_held_out_psnr_is_reported_per_photograph_and_overall():
    model = tiny().eval()
    images, clips = heldout_images(5, 32), heldout_clips(4, 5, 32)
    result = evaluate(model, images, clips, nullcontext)
    photo_of = {"image": lambda k: heldout_image(k, 32)[0], "clip": lambda k: heldout_clip(k, 5, 32)[0]}
    for kind, originals, score in (("image", images, psnr), ("clip", clips, video_psnr)):
        each = score(result[f"{kind}s"][1], originals)
        assert result[f"heldout_{kind}_psnr"] == pytest.approx(each.mean().item(), rel=1e-5)
        photos = [photo_of[kind](k) for k in range(len(originals))]
        for photo in HELDOUT_PHOTOS:
            mine = each[[p == photo for p in photos]]
            assert result[f"heldout_{kind}_psnr/{photo}"] == pytest.approx(mine.mean().item(), rel=1e-5)
    # Five images of three photographs: 2 + 2 + 1; the overall mean weights the photographs by their counts.
    assert sum(result[f"heldout_image_psnr/{p}"] * n for p, n in zip(HELDOUT_PHOTOS, (2, 2, 1))) / 5 == pytest.approx(
        result["heldout_image_psnr"], rel=1e-5
    )
