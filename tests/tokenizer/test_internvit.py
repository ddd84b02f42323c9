"""Starting from InternViT (HYDRA-TOK): tiny towers built by transformers from configs, saved, loaded back."""

import json

import pytest
import torch
from transformers import BertConfig, BertModel, InternVLConfig, InternVLForConditionalGeneration

from hydra_x import HydraXTokenizer
from hydra_x.hf import IMAGENET_MEAN, IMAGENET_STD, load_internvl_vision
from hydra_x.teachers import save_tiny_teacher
from tests.helpers import pixels

# A regression decoder keeps these tests about the ViT; the preset's flow decoder is another helper's.
SMALL = dict(decoder="regression")


@pytest.fixture(scope="module")
def tower_folder(tmp_path_factory):
    folder = save_tiny_teacher("internvit", tmp_path_factory.mktemp("internvit"))
    return folder, load_internvl_vision(folder).eval()


def imagenet(x):
    """What InternVL's processor gives the tower for pixels x in [-1, 1]."""
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in (IMAGENET_MEAN, IMAGENET_STD))
    return ((x + 1) / 2 - mean) / std


def gen_hidden(model, x):
    hidden = []
    with torch.no_grad():
        model.gen_vit(x.unsqueeze(2), model.config.gen_attention, hidden=hidden)
    return hidden  # (B, 1, 1 + N, D) each: CLS first, as the tower's


@pytest.mark.parametrize("size", [(32, 32), (24, 40)])  # the tower's 4x4 grid, and a bicubically resized one
def test_gen_and_sem_vit_hidden_states_equal_internvit_hidden_states(tower_folder, size):
    folder, tower = tower_folder
    model = HydraXTokenizer.from_internvit(folder, **SMALL).eval()
    cfg = model.config
    assert (cfg.width, cfg.depth, cfg.gen_depth, cfg.abs_pos_grid, cfg.patch_size) == (32, 4, 2, 4, 8)
    assert cfg.cls_token and not cfg.qkv_bias and cfg.mlp_act == "gelu" and not cfg.final_norm
    x = pixels(2, 3, *size)
    with torch.no_grad():
        theirs = tower(pixel_values=imagenet(x), output_hidden_states=True)
    ours = gen_hidden(model, x)
    assert len(ours) == cfg.gen_depth + 1
    for k, h in enumerate(ours):
        torch.testing.assert_close(h[:, 0], theirs.hidden_states[k], rtol=1e-5, atol=1e-5, msg=f"hidden state {k}")
    # The Sem-ViT fed the Gen-ViT's output (no bottleneck) and its CLS continues the tower exactly.
    sem, cls = [], ours[-1][:, :, :1]
    with torch.no_grad():
        s = model.sem_vit(ours[-1][:, :, 1:], (size[0] // 8, size[1] // 8), cfg.sem_attention_mode, sem, prefix=cls)
    for j, h in enumerate(sem):
        k = cfg.gen_depth + 1 + j
        torch.testing.assert_close(h[:, 0], theirs.hidden_states[k], rtol=1e-5, atol=1e-5, msg=f"hidden state {k}")
    torch.testing.assert_close(s[:, 0], theirs.last_hidden_state[:, 1:], rtol=1e-5, atol=1e-5)


def test_a_tower_with_a_final_norm_and_qkv_bias_loads_exactly(tmp_path):
    folder = save_tiny_teacher("internvit", tmp_path / "t", use_mean_pooling=False, attention_bias=True)
    tower = load_internvl_vision(folder).eval()
    model = HydraXTokenizer.from_internvit(folder, gen_depth=1, **SMALL).eval()
    assert model.config.final_norm and model.config.qkv_bias
    x = pixels(1, 3, 32, 32)
    ours = gen_hidden(model, x)
    with torch.no_grad():
        theirs = tower(pixel_values=imagenet(x), output_hidden_states=True)
        sem = model.sem_vit(ours[-1][:, :, 1:], (4, 4), "tubelet", prefix=ours[-1][:, :, :1])
    torch.testing.assert_close(ours[1][:, 0], theirs.hidden_states[1], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(sem[:, 0], theirs.last_hidden_state[:, 1:], rtol=1e-5, atol=1e-5)


def test_forward_feature_layers_are_the_hidden_states_of_both_halves(tower_folder):
    folder, tower = tower_folder
    model = HydraXTokenizer.from_internvit(folder, **SMALL).eval()
    x = pixels(2, 3, 32, 32)
    with torch.no_grad():
        out = model(x, feature_layers=(0, 2, 3, 4))
        theirs = tower(pixel_values=imagenet(x), output_hidden_states=True).hidden_states
        sem = []
        model.sem_vit(out.h_restored, (4, 4), model.config.sem_attention_mode, sem)
    assert sorted(out.layer_features) == [0, 2, 3, 4]
    for k in (0, 2):  # Gen-ViT layers: the tower's patch tokens (CLS dropped)
        torch.testing.assert_close(out.layer_features[k][:, 0], theirs[k][:, 1:], rtol=1e-5, atol=1e-5)
    for k in (3, 4):  # Sem-ViT layers: the training path, on the restored latent
        torch.testing.assert_close(out.layer_features[k], sem[k - 3])
    torch.testing.assert_close(out.h, out.layer_features[2])
    with pytest.raises(ValueError, match="out of range"):
        model(x, feature_layers=(5,))
    with pytest.raises(ValueError, match="needs semantic=True"):
        model(x, feature_layers=(3,), semantic=False)


@pytest.mark.parametrize("mode", ["tubelet", "causal", "full", "none"])
def test_clips_with_the_cls_token_in_every_attention_mode(tower_folder, mode):
    folder, _ = tower_folder
    model = HydraXTokenizer.from_internvit(
        folder, temporal_folds=(2, 2), fold_at=1, attention=mode, sem_attention=mode, **SMALL
    ).eval()
    clip = pixels(1, 3, 9, 32, 32)
    with torch.no_grad():
        out = model(clip, feature_layers=(1, 2))
        reference = model.gen_vit(clip, mode)  # auto kernels (per-step / step pairs) ...
        model.config.attention_impl = "masked"
        masked = model.gen_vit(clip, mode)  # ... against the boolean-mask reference, CLS in every step
        later = clip.clone()
        later[:, :, 1:] = pixels(1, 3, 8, 32, 32, seed=1)
        changed = model.gen_vit(later, mode)
    assert out.x_rec.shape == clip.shape and torch.isfinite(out.x_rec).all()
    assert out.layer_features[1].shape == (1, 5, 16, 32) and out.layer_features[2].shape == (1, 3, 16, 32)
    torch.testing.assert_close(reference, masked, rtol=1e-5, atol=1e-5)
    # The anchor step sees no later frame except under full attention.
    anchor_moved = not torch.allclose(changed[:, 0], masked[:, 0], atol=1e-6)
    assert anchor_moved == (mode == "full")
    # An image still passes the folds as the tower: the anchor alone equals the image's hidden state.
    with torch.no_grad():
        image = model.gen_vit(clip[:, :, :1], mode)
    if mode != "full":
        torch.testing.assert_close(image[:, 0], masked[:, 0], rtol=1e-5, atol=1e-5)


def test_full_internvl_checkpoint_gives_its_vision_tower(tower_folder, tmp_path):
    _, tower = tower_folder
    text = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, vocab_size=300)
    full = InternVLForConditionalGeneration(
        InternVLConfig(vision_config=tower.config.to_dict(), text_config=text, image_token_id=299)
    )
    full.model.vision_tower.load_state_dict(tower.state_dict())
    full.save_pretrained(tmp_path / "full", max_shard_size="100KB")  # sharded: only vision shards are read
    index = json.loads((tmp_path / "full" / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 1
    loaded = load_internvl_vision(tmp_path / "full")
    for name, value in tower.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], value), name
    model = HydraXTokenizer.from_internvit(tmp_path / "full", **SMALL)
    assert torch.equal(model.sem_vit.blocks[0].mlp.fc1.weight, tower.encoder.layer[2].mlp.fc1.weight)


def test_remote_code_other_and_missing_checkpoints_are_clear_errors(tmp_path):
    old = tmp_path / "old"
    old.mkdir()
    (old / "config.json").write_text(json.dumps({"model_type": "intern_vit_6b", "auto_map": {"AutoConfig": "x.Y"}}))
    with pytest.raises(ValueError, match="remote-code InternViT"):
        HydraXTokenizer.from_internvit(old)
    BertModel(
        BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)
    ).save_pretrained(tmp_path / "bert")
    with pytest.raises(ValueError, match="expected an InternVL vision tower"):
        HydraXTokenizer.from_internvit(tmp_path / "bert")
    with pytest.raises(OSError, match="cannot read the InternVL checkpoint"):
        HydraXTokenizer.from_internvit(tmp_path / "nothing-here", local_files_only=True)
    qk = save_tiny_teacher("internvit", tmp_path / "qk", use_qk_norm=True)
    with pytest.raises(ValueError, match="q/k norm"):
        HydraXTokenizer.from_internvit(qk)
