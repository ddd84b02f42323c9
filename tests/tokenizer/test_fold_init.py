"""The temporal folds of a model trained from scratch start as those of the pretrained start: an image passes fold 1
as a plain patch embedding and fold 2 as the identity, and each group of a clip starts as its last step."""

import pytest
import torch
import torch.nn.functional as F
from einops import rearrange

from hydra_x import HydraXTokenizer
from hydra_x.tokenizer import tokenizer_config
from tests.helpers import pixels, tiny


def frame_embedding(model: HydraXTokenizer, frames: torch.Tensor) -> torch.Tensor:
    """A plain 2D patch embedding of frames (B, 3, F, H, W) with fold 1's last-step weights: (B, F, N, D)."""
    fold = model.gen_vit.patch_fold
    d, p = fold.proj.out_features, fold.patch
    weight = fold.proj.weight.view(d, fold.factor, -1)[:, -1]
    patches = rearrange(frames, "b c f (h p) (w q) -> b f (h w) (c p q)", p=p, q=p)
    return F.linear(patches, weight, fold.proj.bias)


def test_an_image_passes_fold_1_as_a_patch_embedding_and_fold_2_unchanged():
    model = tiny()
    image = pixels(2, 3, 1, 32, 32)
    with torch.no_grad():
        h = model.gen_vit.patch_fold(image)
        torch.testing.assert_close(h, frame_embedding(model, image), rtol=0, atol=1e-6)
        torch.testing.assert_close(model.gen_vit.token_fold(h), h, rtol=0, atol=0)


@pytest.mark.parametrize("folds", [(2, 2), (4, 1)])
def test_each_group_of_a_clip_starts_as_its_last_step(folds):
    model = tiny(temporal_folds=folds)
    clip = pixels(1, 3, 9, 32, 32)
    f1 = folds[0]
    with torch.no_grad():
        h = model.gen_vit.patch_fold(clip)  # steps: frame 0, then the groups of f1 frames ending at f1, 2 f1, ...
        torch.testing.assert_close(h, frame_embedding(model, clip[:, :, ::f1]), rtol=0, atol=1e-6)
        if model.gen_vit.token_fold is not None:
            folded = model.gen_vit.token_fold(h)  # steps: 0, then the groups of 2 steps ending at 2, 4
            torch.testing.assert_close(folded, h[:, ::2], rtol=0, atol=0)


def test_the_fold_init_is_part_of_init_weights_on_a_model_built_on_meta():
    with torch.device("meta"):
        model = HydraXTokenizer(tokenizer_config("tiny"))
    model = model.to_empty(device="cpu")
    for p in model.parameters():
        p.data.fill_(0.5)
    model.init_weights()
    d = model.config.width
    token = model.gen_vit.token_fold.proj.weight.view(d, 2, d)
    torch.testing.assert_close(token[:, -1], torch.eye(d), rtol=0, atol=0)
    assert not token[:, 0].any() and not model.gen_vit.token_fold.proj.bias.any()
    patch = model.gen_vit.patch_fold.proj.weight.view(d, 2, -1)
    assert not patch[:, 0].any() and not model.gen_vit.patch_fold.proj.bias.any()
    assert 0.01 < patch[:, -1].std() < 0.03  # a random frame embedding of the init std (0.02, truncated)


def test_the_zero_weights_of_the_earlier_steps_still_learn_from_a_clip():
    model = tiny().train()
    model(pixels(1, 3, 9, 32, 32)).x_rec.square().mean().backward()
    d = model.config.width
    assert model.gen_vit.patch_fold.proj.weight.grad.view(d, 2, -1)[:, 0].abs().sum() > 0
    assert model.gen_vit.token_fold.proj.weight.grad.view(d, 2, d)[:, 0].abs().sum() > 0


@pytest.mark.parametrize("decoder", ["regression", "flow"])
def test_shared_unfolds_decode_each_group_as_copies_of_its_last_frame(decoder):
    """temporal_unfold="shared": at the start (also after init_weights on meta) every frame of a group comes out
    of the decoder's unfolds as the group's last."""
    dec = tiny(temporal_unfold="shared", decoder=decoder).decoder
    tokens = torch.randn(2, 3, 4, dec.config.decoder_width)  # (B, S, N, D): an anchor and 2 latent steps
    with torch.no_grad():
        steps = dec.token_unfold(tokens)  # (B, 1 + 2 * 2, N, D)
        frames = dec.patch_unfold(steps, 2)  # (B, C, 1 + 4 * 2, H, W)
    torch.testing.assert_close(steps[:, 1::2], steps[:, 2::2], rtol=0, atol=0)
    for last in (4, 8):  # each latent step's four frames are its last one
        torch.testing.assert_close(frames[:, :, last - 3 : last + 1], frames[:, :, [last] * 4], rtol=0, atol=0)
    assert not torch.equal(frames[:, :, 4], frames[:, :, 8])  # the latent steps differ
    with torch.device("meta"):
        built = HydraXTokenizer(tokenizer_config("tiny", temporal_unfold="shared", decoder=decoder))
    built = built.to_empty(device="cpu")
    for p in built.parameters():
        p.data.fill_(0.5)
    built.init_weights()
    for unfold in (built.decoder.token_unfold, built.decoder.patch_unfold):
        assert not unfold.delta.weight.any() and not unfold.delta.bias.any()


def test_pictures_train_only_the_shared_map_and_clips_the_differences_too():
    """So training on pictures alone keeps every frame of a group a copy of its last."""
    model = tiny(temporal_unfold="shared").train()
    unfolds = (model.decoder.token_unfold, model.decoder.patch_unfold)
    model(pixels(1, 3, 1, 32, 32)).x_rec.square().mean().backward()  # a picture
    for unfold in unfolds:
        assert unfold.proj.weight.grad.abs().sum() > 0
        assert unfold.delta.weight.grad is None or not unfold.delta.weight.grad.any()
    model.zero_grad()
    model(pixels(1, 3, 9, 32, 32)).x_rec.square().mean().backward()  # a clip
    for unfold in unfolds:
        assert unfold.delta.weight.grad.abs().sum() > 0


def test_separate_unfolds_keep_their_weights_layout_and_an_unknown_kind_is_named():
    model = tiny()  # checkpoints saved before the switch load as they were: one map per frame, no differences
    names = {n for n, _ in model.decoder.named_parameters() if "unfold" in n}
    assert names == {
        "token_unfold.proj.weight",
        "token_unfold.proj.bias",
        "patch_unfold.proj.weight",
        "patch_unfold.proj.bias",
    }
    with pytest.raises(ValueError, match="temporal_unfold must be one of"):
        tokenizer_config("tiny", temporal_unfold="copy")
