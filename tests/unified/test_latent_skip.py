"""The latent skip (``visual_latent_skip``): the projector reads each token's own latent beside the Sem-ViT's
feature of it, in the token's place, on every path that embeds visuals (single blocks and STI pairs)."""

from __future__ import annotations

import pytest
import torch

from hydra_x.unified.model import HydraX


@pytest.fixture(scope="module")
def model() -> HydraX:
    return HydraX.from_preset("tiny", seed=0, visual_latent_skip=True).eval()


def _latent(model: HydraX, seed: int, steps: int = 1) -> torch.Tensor:
    return torch.randn(1, model.config.latent_channels, steps, 3, 4, generator=torch.Generator().manual_seed(seed))


def test_each_token_reads_its_own_latent_where_the_sem_vit_gives_every_token_the_same_feature(model, monkeypatch):
    z = _latent(model, 0)

    def constant(z, mode=None):
        return torch.ones(z.shape[0], z.shape[2], z.shape[3] * z.shape[4], model.config.tokenizer.width)

    monkeypatch.setattr(model.tokenizer, "semantic", constant)
    with torch.no_grad():
        emb = model.visual_embeddings(z)[0]  # (12, D)
        changed = z.clone()
        changed[:, :, 0, 1, 2] += 3.0  # row 1, column 2: token 1 * 4 + 2 = 6
        moved = model.visual_embeddings(changed)[0]
    assert torch.unique(emb, dim=0).shape[0] == 12  # the Sem-ViT alone would make them all alike
    differs = (moved - emb).abs().amax(dim=-1) > 1e-6
    assert differs.tolist() == [i == 6 for i in range(12)]  # only that token, in its own place


def test_the_pair_path_reads_the_latents_too_and_the_source_still_sees_only_itself(model):
    z_src, z_tgt = _latent(model, 1), _latent(model, 2)
    t = torch.tensor([0.6])
    with torch.no_grad():
        src, tgt = model.pair_embeddings(z_src, z_tgt, t)
        _, other_tgt = model.pair_embeddings(z_src, _latent(model, 3), t)
        alone = model.visual_embeddings(z_src)
        # The skip's own weights: zeroing them changes the pair's embeddings, so the pair path reads the latents.
        weight = model.projector.mlp[0].weight
        kept = weight[:, -model.config.latent_channels :].clone()
        weight[:, -model.config.latent_channels :] = 0
        try:
            src_no_skip, _ = model.pair_embeddings(z_src, z_tgt, t)
        finally:
            weight[:, -model.config.latent_channels :] = kept
    torch.testing.assert_close(src, alone)
    assert not torch.allclose(tgt, other_tgt)
    assert (src - src_no_skip).abs().max() > 1e-3


def test_the_skip_is_saved_and_loaded(model, tmp_path):
    loaded = HydraX.from_pretrained(model.save_pretrained(tmp_path / "hydra"))
    assert loaded.config.visual_latent_skip
    width = model.config.tokenizer.width + model.config.latent_channels
    assert loaded.projector.mlp[0].weight.shape[1] == width
    torch.testing.assert_close(loaded.projector.mlp[0].weight, model.projector.mlp[0].weight)
    z = _latent(model, 4)
    with torch.no_grad():
        torch.testing.assert_close(loaded.visual_embeddings(z), model.visual_embeddings(z))


def test_without_the_skip_the_projector_reads_the_sem_vit_alone():
    plain = HydraX.from_preset("tiny", seed=0)
    assert plain.projector.mlp[0].weight.shape[1] == plain.config.tokenizer.width
