"""bf16 weights with fp32 buffers: what FSDP2's mixed-precision policy hands the model on a GPU.

Without autocast nothing casts for the model, so any fp32 tensor that meets a bf16 weight is a crash that CPU
tests in fp32 never see (the latent statistics are fp32 buffers, and the compute dtype was once read from them).
"""

from __future__ import annotations

import pytest
import torch

from hydra_x.tokenizer import HydraXTokenizer


def bf16_weights(decoder: str) -> HydraXTokenizer:
    model = HydraXTokenizer.from_preset("tiny", seed=0, image_teacher_dim=32, video_teacher_dim=24, decoder=decoder)
    model.set_latent_stats(torch.randn(64) * 0.1, torch.rand(64) + 0.5)  # non-trivial fp32 buffers
    for p in model.parameters():
        p.data = p.data.bfloat16()
    assert model.latent_mean.dtype == torch.float32
    return model


@pytest.mark.parametrize("decoder", ["regression", "flow"])
@pytest.mark.parametrize("frames", [1, 9])
def test_bf16_weights_fp32_buffers_run_in_bf16(decoder: str, frames: int) -> None:
    model = bf16_weights(decoder)
    x = torch.rand(2, 3, frames, 32, 32) * 2 - 1
    x = x[:, :, 0] if frames == 1 else x
    out = model(x.bfloat16(), sample=True)
    assert out.x_rec.dtype == out.s.dtype == out.image_features.dtype == torch.bfloat16
    assert out.x_rec.shape == x.shape
    if frames > 1:
        assert out.video_features.dtype == torch.bfloat16
    z = model.encode(x)
    assert z.dtype == torch.bfloat16
    assert model.decode(z).shape == x.shape
    assert model.semantic(z).dtype == torch.bfloat16
