"""Starting from SigLIP 2: tiny towers built by transformers from configs, saved to disk, loaded back."""

import pytest
import torch
from einops import rearrange
from transformers import (
    BertConfig,
    BertModel,
    Siglip2Config,
    Siglip2Model,
    Siglip2VisionConfig,
    Siglip2VisionModel,
    SiglipVisionConfig,
    SiglipVisionModel,
)

from hydra_x import HydraXTokenizer
from hydra_x.tokenizer import tokenizer_config
from tests.helpers import pixels

TOWER = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=4, num_attention_heads=4, patch_size=16)


@pytest.fixture(scope="module")
def siglip2_folder(tmp_path_factory):
    torch.manual_seed(0)
    model = Siglip2VisionModel(Siglip2VisionConfig(**TOWER, num_patches=16)).eval()
    folder = tmp_path_factory.mktemp("siglip2")
    model.save_pretrained(folder)
    return folder, model


def siglip2_hidden_states(model, x):
    """transformers' hidden states for images x (B, 3, H, W), patchified as the SigLIP 2 processor does."""
    b, _, h, w = x.shape
    patches = rearrange(x, "b c (h p) (w q) -> b (h w) (p q c)", p=16, q=16)
    with torch.no_grad():
        out = model(
            pixel_values=patches,
            pixel_attention_mask=torch.ones(b, patches.shape[1], dtype=torch.long),
            spatial_shapes=torch.tensor([[h // 16, w // 16]] * b),
            output_hidden_states=True,
        )
    return out.hidden_states


def gen_vit_hidden_states(model, x):
    hidden = []
    with torch.no_grad():
        model.gen_vit(x.unsqueeze(2), model.config.gen_attention, hidden=hidden)
    return [h[:, 0] for h in hidden]  # the image's single step


@pytest.mark.parametrize("size", [(64, 64), (48, 80)])  # the pretrained 4x4 grid, and a resized non-square one
def test_gen_vit_hidden_states_equal_siglip2_hidden_states(siglip2_folder, size):
    folder, reference = siglip2_folder
    model = HydraXTokenizer.from_siglip2(folder, preset="tiny", gen_depth=3, fold_at=1).eval()
    assert (model.config.width, model.config.depth, model.config.abs_pos_grid) == (64, 4, 4)
    x = pixels(2, 3, *size)
    ours = gen_vit_hidden_states(model, x)
    theirs = siglip2_hidden_states(reference, x)
    assert len(ours) == model.config.gen_depth + 1
    for k, (a, b) in enumerate(zip(ours, theirs)):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5, msg=f"hidden state {k}")
    # The Sem-ViT continues the tower: layer gen_depth + j of SigLIP 2 is Sem-ViT block j.
    ref_state = reference.state_dict()
    prefix = next(k for k in ref_state if k.endswith("encoder.layers.3.mlp.fc1.weight"))
    assert torch.equal(model.sem_vit.blocks[0].mlp.fc1.weight, ref_state[prefix])


def test_clips_still_work_after_the_siglip2_start(siglip2_folder):
    folder, _ = siglip2_folder
    model = HydraXTokenizer.from_siglip2(folder, preset="tiny").eval()
    clip = pixels(1, 3, 9, 64, 64)
    out = model(clip)
    assert out.x_rec.shape == clip.shape and torch.isfinite(out.x_rec).all()
    # The learnable RoPE scales start at zero on the spatial axes, one on time.
    scale = model.gen_vit.blocks[0].attn.rope_scale
    assert torch.equal(scale[1:], torch.zeros_like(scale[1:])) and torch.equal(scale[0], torch.ones_like(scale[0]))


@pytest.fixture(scope="module")
def siglip_v1_folder(tmp_path_factory):
    torch.manual_seed(0)
    model = SiglipVisionModel(SiglipVisionConfig(**TOWER, image_size=64)).eval()
    folder = tmp_path_factory.mktemp("siglip_v1")
    model.save_pretrained(folder)
    return folder, model


# v1 resizes its position embedding bicubically (SigLIP 2: bilinear, antialiased); the wrong one is off by ~1 at
# hidden state 0. (48, 80) shrinks one axis and grows the other, where the two resizes differ most.
@pytest.mark.parametrize("size", [(64, 64), (48, 80)])
def test_gen_vit_hidden_states_equal_siglip_v1_hidden_states(siglip_v1_folder, size):
    folder, reference = siglip_v1_folder
    model = HydraXTokenizer.from_siglip2(folder, preset="tiny", gen_depth=3, fold_at=1).eval()
    assert model.config.pos_interpolation == "bicubic"
    x = pixels(2, 3, *size)
    with torch.no_grad():
        theirs = reference(pixel_values=x, interpolate_pos_encoding=True, output_hidden_states=True).hidden_states
    ours = gen_vit_hidden_states(model, x)
    assert len(ours) == model.config.gen_depth + 1
    for k, (a, b) in enumerate(zip(ours, theirs)):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5, msg=f"hidden state {k}")


def test_a_config_that_resizes_positions_otherwise_than_the_tower_is_refused(siglip_v1_folder, siglip2_folder):
    v1, _ = siglip_v1_folder
    config = tokenizer_config("tiny", width=64, heads=4, mlp_dim=128, depth=4, abs_pos_grid=4)
    with pytest.raises(ValueError, match="model.pos_interpolation=bicubic"):
        HydraXTokenizer.from_siglip2(v1, config=config)
    model = HydraXTokenizer.from_siglip2(v1, config=config.replace(pos_interpolation="bicubic"))
    assert model.config.pos_interpolation == "bicubic"
    v2, _ = siglip2_folder
    assert HydraXTokenizer.from_siglip2(v2, config=config).config.pos_interpolation == "bilinear"


def test_a_full_siglip2_checkpoint_loads(tmp_path):
    full = Siglip2Model(
        Siglip2Config(
            text_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2),
            vision_config=dict(**TOWER, num_patches=16),
        )
    )
    full.save_pretrained(tmp_path / "full")
    model = HydraXTokenizer.from_siglip2(tmp_path / "full", preset="tiny")
    reference = full.vision_model.encoder.layers[1].self_attn.out_proj.weight
    assert torch.equal(model.gen_vit.blocks[1].attn.proj.weight, reference)


def test_other_checkpoints_and_missing_paths_are_clear_errors(tmp_path):
    BertModel(
        BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)
    ).save_pretrained(tmp_path / "bert")
    with pytest.raises(ValueError, match="expected SigLIP or SigLIP 2"):
        HydraXTokenizer.from_siglip2(tmp_path / "bert")
    with pytest.raises(OSError):
        HydraXTokenizer.from_siglip2(tmp_path / "nothing-here", local_files_only=True)
