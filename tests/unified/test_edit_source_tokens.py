"""``edit_source_tokens``: an edit target's tokens read the source's latent at their own cell through the
projector, in either layout, in training and sampling alike; no other visual token reads anything there."""

from __future__ import annotations

import copy

import pytest
import torch

from hydra_x.unified.inputs import VisualInputs
from hydra_x.unified.model import HydraX
from hydra_x.unified.packing import pack
from hydra_x.unified.sampling import edit_latents, edit_rows, visual_spec

INSTRUCTION = "make the red circle blue"


def _model(layout: str) -> HydraX:
    m = HydraX.from_preset("tiny", seed=0, edit_layout=layout, edit_source_tokens=True).eval()
    with torch.no_grad():  # the flow head starts at zero: make it say something
        for p in m.flow_head.parameters():
            p.normal_(0, 0.05)
    return m


@pytest.fixture(scope="module", params=["sti", "independent"])
def model(request) -> HydraX:
    return _model(request.param)


def _deaf(model: HydraX) -> HydraX:
    """The model with the projector's source columns zeroed: it reads no source at the target's cells."""
    out = copy.deepcopy(model)
    with torch.no_grad():
        out.projector.mlp[0].weight[:, -model.config.latent_channels :] = 0
    return out


def _edit_velocity(model: HydraX, z_src: torch.Tensor, noise: torch.Tensor, t: float) -> torch.Tensor:
    """The training forward's velocity (tokens, C) of an edit's target at flow time ``t``."""
    spec, _ = visual_spec(model, "image", 32, 48, None)
    batch = pack(edit_rows(model, [INSTRUCTION], spec), 512, model.text_tokenizer.pad_token_id)
    visuals = VisualInputs(z=[z_src, z_src], t=torch.tensor([t]), noise=[noise], pairs=[(0, 1)])
    with torch.no_grad():
        return model(batch, visuals).velocity


def test_training_and_sampling_give_the_target_the_source_alike(model):
    """One Euler step from t = 1 returns noise - v: the sampler's target embedding reads the source as the training
    forward's does, and without the source columns both change."""
    x = torch.rand(3, 32, 48, generator=torch.Generator().manual_seed(0)) * 2 - 1
    z_src = model.encode(x[None])[0]
    edited = edit_latents(model, [x], [INSTRUCTION], steps=1, guidance=1.0, seed=5)
    noise = torch.randn(edited.shape, generator=torch.Generator().manual_seed(5))  # the sampler's draw for seed 5
    v = _edit_velocity(model, z_src, noise[0], 1.0)
    torch.testing.assert_close(edited, noise - v.T.reshape(edited.shape), rtol=1e-4, atol=1e-4)
    deaf = _deaf(model)
    assert not torch.allclose(_edit_velocity(deaf, z_src, noise[0], 0.5), _edit_velocity(model, z_src, noise[0], 0.5))
    assert not torch.allclose(edit_latents(deaf, [x], [INSTRUCTION], steps=1, guidance=1.0, seed=5), edited)


def test_each_target_cell_reads_the_source_at_that_cell_alone(monkeypatch):
    """With a Sem-ViT that says the same of every token, the independent layout's target depends on the source
    only through the new columns: a change of the source at one cell moves the target's embedding there alone."""
    m = _model("independent")
    width = m.config.tokenizer.width
    monkeypatch.setattr(m.tokenizer, "semantic", lambda z, mode=None: torch.ones(*z.shape[:1], z.shape[2], 6, width))
    z_tgt = torch.randn(1, 64, 1, 2, 3, generator=torch.Generator().manual_seed(1))
    z_src = torch.randn(1, 64, 1, 2, 3, generator=torch.Generator().manual_seed(2))
    moved = z_src.clone()
    moved[:, :, 0, 1, 0] += 3.0  # row 1, column 0: token 3
    with torch.no_grad():
        a = m.visual_embeddings(z_tgt, torch.tensor([0.5]), source=z_src)[0]
        b = m.visual_embeddings(z_tgt, torch.tensor([0.5]), source=moved)[0]
    assert ((b - a).abs().amax(dim=-1) > 1e-6).tolist() == [i == 3 for i in range(6)]


def test_no_visual_but_an_edit_target_reads_the_source_columns(model):
    """The source of an edit (a clean image) and a generated image that is no edit target: the projector's source
    columns change neither (they read zeros there)."""
    from hydra_x.unified.sequence import VisualSpec, generation_sample

    tok = model.text_tokenizer
    batch = pack([generation_sample(tok, VisualSpec.image(6), "a red circle")], 256, tok.pad_token_id)
    z = torch.randn(64, 1, 2, 3, generator=torch.Generator().manual_seed(0))
    noise = torch.randn(64, 1, 2, 3, generator=torch.Generator().manual_seed(1))
    visuals = VisualInputs(z=[z], t=torch.tensor([0.5]), noise=[noise])
    deaf = _deaf(model)
    with torch.no_grad():
        torch.testing.assert_close(model(batch, visuals).velocity, deaf(batch, visuals).velocity, rtol=0, atol=0)
        src = torch.randn(1, 64, 1, 2, 3, generator=torch.Generator().manual_seed(2))
        if model.config.edit_layout == "sti":
            source_emb = model.pair_embeddings(src, z[None], torch.tensor([0.5]))[0]
            torch.testing.assert_close(source_emb, deaf.pair_embeddings(src, z[None], torch.tensor([0.5]))[0])
