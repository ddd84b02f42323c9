import time

import pytest
import torch

from hydra_x import HydraXTokenizer, TokenizerConfig
from hydra_x.tokenizer import tokenizer_config
from tests.helpers import pixels, tiny


def test_so400m_on_meta_is_instant_and_counts_parameters():
    start = time.perf_counter()
    model = HydraXTokenizer.from_preset("so400m", device="meta")
    assert time.perf_counter() - start < 5.0
    counts = model.parameter_counts()
    assert counts["total"] == sum(v for k, v in counts.items() if k != "total")
    # 13 + 14 SigLIP-sized layers (about 15.2M each) plus embeddings and folds; a 27-layer decoder.
    assert 195e6 < counts["gen_vit"] < 210e6 and 205e6 < counts["sem_vit"] < 220e6
    assert 405e6 < counts["decoder"] < 425e6
    assert counts["bottleneck"] == 2 * 1152 + (1152 * 128 + 128) + (64 * 1152 + 1152)  # norm, moments, un-projection
    cfg = model.config
    assert (cfg.gen_depth, cfg.fold_at, cfg.decoder_unfold_at, cfg.latent_channels) == (13, 6, 21, 64)


def test_init_weights_touches_every_parameter_and_buffer():
    with torch.device("meta"):
        model = HydraXTokenizer(tokenizer_config("tiny", abs_pos_grid=4, image_teacher_dim=8, video_teacher_dim=8))
    model = model.to_empty(device="cpu")
    for tensor in list(model.parameters()) + list(model.buffers()):
        tensor.data.fill_(float("nan"))
    model.init_weights()
    bad = [n for n, t in list(model.named_parameters()) + list(model.named_buffers()) if not torch.isfinite(t).all()]
    assert not bad


def test_seeded_builds_are_identical_and_seeds_differ():
    a, b, c = (HydraXTokenizer.from_preset("tiny", seed=s) for s in (1, 1, 2))
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert not torch.equal(a.decoder.in_proj.weight, c.decoder.in_proj.weight)


def test_latent_stats_normalise_encode_and_keep_decode_and_semantic():
    model = tiny()
    x = pixels(2, 3, 5, 32, 32)
    z_raw = model.encode(x)
    before_rec, before_s = model.decode(z_raw, video=True), model.semantic(z_raw)
    mean, std = z_raw.mean(dim=(0, 2, 3, 4)), z_raw.std(dim=(0, 2, 3, 4))
    model.set_latent_stats(mean, std)
    z = model.encode(x)
    torch.testing.assert_close(z.mean(dim=(0, 2, 3, 4)), torch.zeros(64), atol=1e-5, rtol=0)
    torch.testing.assert_close(z.std(dim=(0, 2, 3, 4)), torch.ones(64), atol=1e-5, rtol=0)
    torch.testing.assert_close(model.decode(z, video=True), before_rec, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(model.semantic(z), before_s, rtol=1e-4, atol=1e-5)
    # Setting statistics again composes correctly (stage 3 run twice).
    model.set_latent_stats(mean * 0.5, std * 2)
    torch.testing.assert_close(model.decode(model.encode(x), video=True), before_rec, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="positive standard deviation"):
        model.set_latent_stats(mean, -std)


def test_every_trainable_parameter_gets_a_gradient():
    model = tiny(image_teacher_dim=8, video_teacher_dim=8, abs_pos_grid=2).train()
    out = model(pixels(2, 3, 17, 32, 32))
    loss = sum(
        t.float().square().mean()
        for t in (out.x_rec, out.s, out.image_features, out.video_features, out.posterior.mean, out.posterior.logvar)
    )
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing


def test_bf16_matches_fp32_roughly():
    model = tiny()
    x = pixels(1, 3, 9, 32, 32)
    ref = model(x)
    out = tiny().to(torch.bfloat16)(x.bfloat16())
    assert out.x_rec.dtype == torch.bfloat16
    rel = (out.x_rec.float() - ref.x_rec).norm() / ref.x_rec.norm()
    assert rel < 3e-2


def test_config_overrides_rederive_defaults_and_bad_configs_are_errors():
    cfg = tokenizer_config("so400m", depth=12)
    assert (cfg.gen_depth, cfg.fold_at, cfg.decoder_depth) == (6, 3, 12)
    assert TokenizerConfig.from_dict(cfg.to_dict()) == cfg
    for bad, message in [
        (dict(temporal_folds=(2,)), "temporal_folds must be two positive factors"),
        (dict(attention="diagonal"), "attention must be one of"),
        (dict(gen_depth=9), "gen_depth must be in"),
        (dict(fold_at=3), "fold_at must be in"),
        (dict(heads=5), "not divisible by heads"),
        (dict(width=40, heads=10), "even head dimension of at least 6"),
    ]:
        with pytest.raises(ValueError, match=message):
            tokenizer_config("tiny", **bad)
    with pytest.raises(ValueError, match="unknown tokenizer preset 'huge'"):
        tokenizer_config("huge")
