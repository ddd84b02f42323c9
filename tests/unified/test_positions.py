"""Grid positions of visual tokens (``visual_positions``): zero at the start, a function of the coordinates only,
and what lets the LLM tell apart tokens that the Sem-ViT leaves alike."""

from __future__ import annotations

import pytest
import torch

from hydra_x.unified.heads import GridPositions, Projector
from hydra_x.unified.model import HydraX


@pytest.fixture(scope="module")
def model() -> HydraX:
    return HydraX.from_preset("tiny", seed=0, visual_positions=True).eval()


def test_positions_start_at_zero_so_a_new_model_computes_what_it_would_without_them(model):
    z = torch.randn(2, model.config.latent_channels, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        with_positions = model.visual_embeddings(z, torch.tensor([0.3, 0.7]))
        kept, model.projector.positions = model.projector.positions, None
        try:
            without = model.visual_embeddings(z, torch.tensor([0.3, 0.7]))
        finally:
            model.projector.positions = kept
    torch.testing.assert_close(with_positions, without)


def test_without_a_zero_start_a_new_model_tells_tokens_apart_by_position():
    model = HydraX.from_preset("tiny", seed=0, visual_positions=True, visual_positions_zero_init=False).eval()
    z = torch.zeros(1, model.config.latent_channels, 2, 3, 3)  # a constant latent: every token the same
    with torch.no_grad():
        placed = model.visual_embeddings(z)[0]
        kept, model.projector.positions = model.projector.positions, None
        plain = model.visual_embeddings(z)[0]
        model.projector.positions = kept
    assert torch.unique(placed, dim=0).shape[0] == placed.shape[0] == 2 * 3 * 3
    # the positions are as large as the projector's own output, not a vanishing start
    assert (placed - plain).norm(dim=-1).mean() > 0.2 * plain.norm(dim=-1).mean()


def test_features_depend_on_the_coordinates_alone_in_step_major_row_major_order():
    pos = GridPositions(8)
    small, large = pos.features(2, 3, 4, torch.device("cpu")), pos.features(3, 5, 6, torch.device("cpu"))
    assert small.shape == (2 * 3 * 4, 96)
    assert torch.unique(small, dim=0).shape[0] == small.shape[0]  # every token its own features
    for s, y, x in [(0, 0, 0), (0, 1, 2), (1, 2, 3), (1, 0, 1)]:
        # The same (step, row, column) gets the same features in any grid: aspect buckets and clip lengths agree.
        torch.testing.assert_close(small[s * 12 + y * 4 + x], large[s * 30 + y * 6 + x])


def test_with_positions_the_llm_inputs_tell_apart_tokens_the_sem_vit_leaves_alike(model):
    z = torch.zeros(1, model.config.latent_channels, 2, 3, 3)  # a constant latent: every token the same
    with torch.no_grad():
        kept, model.projector.positions = model.projector.positions, None
        try:
            plain = model.visual_embeddings(z)[0]
        finally:
            model.projector.positions = kept
        torch.nn.init.normal_(model.projector.positions.proj.weight, std=0.02)
        try:
            placed = model.visual_embeddings(z)[0]
        finally:
            model.projector.positions.init_zero()
    torch.testing.assert_close(plain, plain[:1].expand_as(plain))  # rotary attention alone: all alike
    assert torch.unique(placed, dim=0).shape[0] == placed.shape[0] == 2 * 3 * 3


def test_positions_are_saved_and_loaded_with_the_heads(model, tmp_path):
    with torch.no_grad():
        torch.nn.init.normal_(model.projector.positions.proj.weight, std=0.02)
    try:
        loaded = HydraX.from_pretrained(model.save_pretrained(tmp_path / "hydra"))
        assert loaded.config.visual_positions
        torch.testing.assert_close(loaded.projector.positions.proj.weight, model.projector.positions.proj.weight)
    finally:
        model.projector.positions.init_zero()


def test_bad_position_settings_are_named():
    with pytest.raises(ValueError, match="multiple of 6"):
        GridPositions(8, freq_dim=10)
    with pytest.raises(ValueError, match="grid="):
        Projector(4, 8, positions=True)(torch.zeros(1, 2, 4))
