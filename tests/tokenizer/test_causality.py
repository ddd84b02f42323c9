"""Causality across time, the image/anchor identity, and Source-Target Interaction."""

import pytest
import torch

from tests.helpers import pixels, tiny

FRAMES = 17  # latent steps: 0 <- frame 0, 1 <- frames 1-4, 2 <- 5-8, 3 <- 9-12, 4 <- 13-16


def _encode_pair_of_clips(mode):
    model = tiny(attention=mode)
    x = pixels(1, 3, FRAMES, 32, 32)
    y = x.clone()
    y[:, :, 9:] = pixels(1, 3, FRAMES - 9, 32, 32, seed=1)  # change frames 9.. (latent steps 3 and 4)
    zx, zy = model.encode(x), model.encode(y)
    return model, zx, zy, model.semantic(zx), model.semantic(zy)


@pytest.mark.parametrize("mode", ["tubelet", "causal"])
def test_later_frames_do_not_change_earlier_steps(mode):
    model, zx, zy, sx, sy = _encode_pair_of_clips(mode)
    assert torch.equal(zx[:, :, :3], zy[:, :, :3])
    assert torch.equal(sx[:, :3], sy[:, :3])
    assert not torch.allclose(zx[:, :, 3:], zy[:, :, 3:])
    # The decoder is causal in the same way: frames 0-8 come only from steps 0-2.
    assert torch.equal(model.decode(zx)[:, :, :9], model.decode(torch.cat((zx[:, :, :3], zy[:, :, 3:]), 2))[:, :, :9])


def test_full_attention_lets_later_frames_change_earlier_steps():
    _, zx, zy, sx, sy = _encode_pair_of_clips("full")
    assert not torch.allclose(zx[:, :, :3], zy[:, :, :3])
    assert not torch.allclose(sx[:, :3], sy[:, :3])


@pytest.mark.parametrize("mode", ["tubelet", "causal"])
def test_the_anchor_step_ignores_every_later_frame(mode):
    model = tiny(attention=mode)
    x = pixels(1, 3, FRAMES, 32, 32)
    y = x.clone()
    y[:, :, 1:] = 0.0
    zx, zy = model.encode(x), model.encode(y)
    assert torch.equal(zx[:, :, 0], zy[:, :, 0])
    assert torch.equal(model.semantic(zx)[:, 0], model.semantic(zy)[:, 0])


@pytest.mark.parametrize("mode", ["tubelet", "causal", "none"])
@pytest.mark.parametrize("folds", [(2, 2), (4, 1)])
def test_an_image_encodes_exactly_like_the_anchor_of_a_clip(mode, folds):
    model = tiny(attention=mode, temporal_folds=folds)
    clip = pixels(2, 3, 9, 32, 48)
    image = clip[:, :, 0]
    z_image, z_clip = model.encode(image), model.encode(clip)
    torch.testing.assert_close(z_image[:, :, 0], z_clip[:, :, 0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(model.semantic(z_image)[:, 0], model.semantic(z_clip)[:, 0], rtol=1e-5, atol=1e-5)


def test_fast_tubelet_model_equals_masked_reference_forward_and_gradients():
    fast = tiny(attention="tubelet", attention_impl="auto", image_teacher_dim=16, video_teacher_dim=16)
    ref = tiny(attention="tubelet", attention_impl="masked", image_teacher_dim=16, video_teacher_dim=16)
    ref.load_state_dict(fast.state_dict())
    x = pixels(2, 3, 17, 32, 32)
    outs, grads = [], []
    for model in (fast, ref):
        out = model(x, sample=False)
        loss = out.x_rec.square().mean() + out.s.square().mean() + out.video_features.square().mean()
        loss.backward()
        outs.append(out)
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    for name in ("x_rec", "s", "video_features"):
        torch.testing.assert_close(getattr(outs[0], name), getattr(outs[1], name), rtol=1e-5, atol=1e-5)
    assert grads[0].keys() == grads[1].keys() and len(grads[0]) > 50
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], rtol=1e-4, atol=1e-6, msg=name)


def _pairs(model, layout=None):
    """encode_pair of (src, tgt), (src, other) and (other, tgt): what changes when one side changes."""
    src, tgt, other = pixels(2, 3, 32, 32, seed=1), pixels(2, 3, 32, 32, seed=2), pixels(2, 3, 32, 32, seed=3)
    kwargs = {} if layout is None else {"layout": layout}
    return src, tgt, [model.encode_pair(a, b, **kwargs) for a, b in ((src, tgt), (src, other), (other, tgt))]


# The model's own sem_attention must not leak into the pair: `full` would let the source see the target,
# `none` would drop the interaction.
@pytest.mark.parametrize("sem_attention", ["tubelet", "full", "none", "causal"])
def test_sti_source_semantics_ignore_the_target_and_target_semantics_see_the_source(sem_attention):
    model = tiny(sem_attention=sem_attention)
    src, tgt, (a, b, c) = _pairs(model)
    assert a.layout == "sti" and a.z.shape == (2, 64, 2, 2, 2) and a.s.shape == (2, 2, 4, model.config.width)
    torch.testing.assert_close(a.s[:, 0], b.s[:, 0], rtol=0, atol=0)  # new target: the source's s is unchanged
    assert (a.s[:, 1] - c.s[:, 1]).abs().amax() > 1e-3  # new source: the target's s changes
    # The source's s is the source alone through the Sem-ViT; the target's is not the target alone.
    source_alone, target_alone = (model.semantic(a.z[:, :, k : k + 1])[:, 0] for k in (0, 1))
    torch.testing.assert_close(a.s[:, 0], source_alone, rtol=1e-5, atol=1e-5)
    assert (a.s[:, 1] - target_alone).abs().amax() > 1e-3
    # The Gen-ViT encodes each image alone: the pair's latents are the images' latents.
    torch.testing.assert_close(a.z[:, :, 1], model.encode(tgt)[:, :, 0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(a.z[:, :, 1], c.z[:, :, 1], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("sem_attention", ["tubelet", "full"])
def test_independent_pairs_have_no_attention_between_source_and_target(sem_attention):
    model = tiny(sem_attention=sem_attention)
    src, tgt, (a, b, c) = _pairs(model, "independent")
    assert a.layout == "independent"
    torch.testing.assert_close(a.s[:, 0], b.s[:, 0], rtol=0, atol=0)
    torch.testing.assert_close(a.s[:, 1], c.s[:, 1], rtol=1e-5, atol=1e-6)  # a new source leaves the target alone
    # Each step is its image's semantics on its own.
    torch.testing.assert_close(a.s[:, 1], model.semantic(model.encode(tgt))[:, 0], rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="layout must be one of"):
        model.encode_pair(src, tgt, layout="tubelet")
