"""Which frame goes to which time step and back, which step the teachers' features come from, and where the
latent is normalised: the tokenizer's wiring, checked by value rather than by shape.

With attention mode ``none`` no token sees another time step, so a time step of any part depends on exactly the
frames its folds gather; perturbing one input and watching which outputs move reads the wiring off. The folds'
weights are made random first: a fresh model zeroes the weights of every step but the last of a group (so an
image passes the folds exactly), which would hide the other frames.
"""

from __future__ import annotations

import pytest
import torch
from einops import rearrange

from hydra_x.tokenizer.folds import PatchFold, PatchUnfold, TokenFold, TokenUnfold
from tests.helpers import pixels, tiny

FRAMES = 9  # the anchor and 8 frames: 3 latent steps with the default folds (2, 2)
GROUPS = [{0}, {1, 2, 3, 4}, {5, 6, 7, 8}]  # frames of latent step 0, 1, 2: the anchor alone, then 4 by 4


def moved(a: torch.Tensor, b: torch.Tensor, dim: int) -> set[int]:
    """Indices along ``dim`` where a and b differ."""
    diff = (a - b).abs().movedim(dim, 0).flatten(1).amax(1)
    return {i for i, d in enumerate(diff.tolist()) if d > 1e-6}


@pytest.fixture(scope="module")
def model():
    """The tiny tokenizer with no attention across time steps and random weights on every step of each fold."""
    m = tiny(attention="none", image_teacher_dim=24, video_teacher_dim=20)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for fold in (m.gen_vit.patch_fold, m.gen_vit.token_fold):
            fold.proj.weight.copy_(torch.randn(fold.proj.weight.shape, generator=g) * 0.05)
    return m


# ---------------------------------------------------------------------------------------------- folds


def identity_fold(factor: int) -> PatchFold:
    """One channel, 1 x 1 patches, width = factor, identity map: token channel j of step s = frame j of group s."""
    fold = PatchFold(1, 1, factor, factor)
    with torch.no_grad():
        fold.proj.weight.copy_(torch.eye(factor))
        fold.proj.bias.zero_()
    return fold


def frame_numbers(frames: int) -> torch.Tensor:
    """(1, 1, frames, 1, 1): frame i holds i + 1, so the anchor's zero padding shows as 0."""
    return (torch.arange(frames, dtype=torch.float32) + 1).view(1, 1, frames, 1, 1)


@pytest.mark.parametrize(
    "factor,groups",
    [
        (2, [[0, 1], [2, 3], [4, 5]]),  # the anchor after one zero step, then frames (1, 2), (3, 4)
        (4, [[0, 0, 0, 1], [2, 3, 4, 5], [6, 7, 8, 9]]),  # three zero steps, then frames 1-4, 5-8
    ],
)
def test_fold_1_pads_the_anchor_before_it_and_groups_consecutive_frames(factor, groups):
    frames = 1 + 2 * factor
    tokens = identity_fold(factor)(frame_numbers(frames))  # (1, S, 1, factor)
    assert tokens[0, :, 0].tolist() == groups


def test_fold_2_groups_consecutive_token_steps_after_the_padded_anchor():
    fold = TokenFold(1, 2)
    with torch.no_grad():
        fold.proj.weight.copy_(torch.tensor([[1.0, 10.0]]))  # earlier step x 1 + later step x 10
        fold.proj.bias.zero_()
    steps = (torch.arange(5.0) + 1).view(1, 5, 1, 1)  # token steps 1..5
    assert fold(steps).flatten().tolist() == [10.0, 2 + 30.0, 4 + 50.0]  # [0, 1], [2, 3], [4, 5]


def test_the_decoders_unfolds_drop_the_padding_steps_and_keep_time_order():
    unfold = PatchUnfold(2, 1, 1, 2)
    with torch.no_grad():
        unfold.proj.weight.copy_(torch.eye(2))
        unfold.proj.bias.zero_()
    tokens = torch.arange(6.0).view(1, 3, 1, 2)  # steps [0, 1], [2, 3], [4, 5]
    assert unfold(tokens, 1).flatten().tolist() == [1.0, 2.0, 3.0, 4.0, 5.0]  # the first (padding) frame dropped
    token_unfold = TokenUnfold(1, 2)
    with torch.no_grad():
        token_unfold.proj.weight.copy_(torch.tensor([[1.0], [10.0]]))
        token_unfold.proj.bias.zero_()
    out = token_unfold(torch.tensor([1.0, 2.0, 3.0]).view(1, 3, 1, 1))
    assert out.flatten().tolist() == [10.0, 2.0, 20.0, 3.0, 30.0]  # [1, 10], [2, 20], [3, 30] less the first


@pytest.mark.parametrize("factor", [2, 4])
def test_unfold_inverts_fold(factor):
    fold, unfold = identity_fold(factor), PatchUnfold(factor, 1, 1, factor)
    with torch.no_grad():
        unfold.proj.weight.copy_(torch.eye(factor))
        unfold.proj.bias.zero_()
    x = frame_numbers(1 + 2 * factor)
    assert torch.equal(unfold(fold(x), 1), x)


# ---------------------------------------------------------------------------------------------- the model


def test_each_latent_step_sees_exactly_its_frames(model):
    x = pixels(1, 3, FRAMES, 32, 32)
    with torch.no_grad():
        z = model.encode(x)
        for step, frames in enumerate(GROUPS):
            for f in frames:
                bumped = x.clone()
                bumped[:, :, f] = pixels(1, 3, 32, 32, seed=f + 1)
                assert moved(model.encode(bumped), z, dim=2) == {step}, (f, step)


def test_each_latent_step_decodes_to_exactly_its_frames(model):
    z = torch.randn(1, 64, len(GROUPS), 2, 2, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        frames = model.decode(z, video=True)
        assert frames.shape[2] == FRAMES
        for step, group in enumerate(GROUPS):
            bumped = z.clone()
            bumped[:, :, step] += 1.0
            assert moved(model.decode(bumped, video=True), frames, dim=2) == group, step


def test_the_decompressors_output_k_is_frame_k_plus_1(model):
    """Its input is s[:, 1:]; latent step j (frames 4j - 3 .. 4j) comes out as outputs 4(j - 1) .. 4j - 1."""
    s_video = torch.randn(1, 2, 4, model.config.width, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = model.decompressor(s_video, (2, 2))
        assert out.shape[1] == 8
        for j in range(2):
            bumped = s_video.clone()
            bumped[:, j] += 1.0
            frames_of_step = {f - 1 for f in GROUPS[j + 1]}
            assert moved(model.decompressor(bumped, (2, 2)), out, dim=1) == frames_of_step, j
        # End to end: a frame moves only the video features of its own output steps (frame f -> output f - 1).
        x = pixels(1, 3, FRAMES, 32, 32)
        features = model(x).video_features
        for f in (1, 4, 5, 8):
            bumped = x.clone()
            bumped[:, :, f] = pixels(1, 3, 32, 32, seed=f + 1)
            group = next(g for g in GROUPS if f in g)
            assert moved(model(bumped).video_features, features, dim=1) == {k - 1 for k in group}, f


def test_the_teachers_features_come_from_the_anchor_step_and_the_decompressed_rest():
    model = tiny(image_teacher_dim=24, video_teacher_dim=20)
    x = pixels(2, 3, 5, 32, 32)
    with torch.no_grad():
        out = model(x)
        assert out.s.shape[1] == 2
        torch.testing.assert_close(out.image_features, model.image_head(out.s[:, 0]), rtol=0, atol=0)
        assert not torch.allclose(model.image_head(out.s[:, -1]), out.image_features)
        expected = model.video_head(model.decompressor(out.s[:, 1:], (2, 2)))
        torch.testing.assert_close(out.video_features, expected, rtol=0, atol=0)
        image = model(x[:, :, 0])  # an image is the anchor alone: its features are the clip's anchor's
        torch.testing.assert_close(image.image_features, out.image_features, rtol=1e-5, atol=1e-6)
        assert image.video_features is None


# ---------------------------------------------------------------------------------------------- normalisation


@pytest.fixture
def normalised():
    """A tiny tokenizer whose latent statistics are set directly (not through set_latent_stats, which would
    re-parameterise the decoder and hide where normalisation happens)."""
    model = tiny()
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        model.latent_mean.copy_(torch.randn(64, generator=g))
        model.latent_std.copy_(torch.rand(64, generator=g) * 1.5 + 0.5)
    return model


def test_forward_normalises_the_latent_and_decodes_and_restores_the_normalised_one(normalised):
    model, x = normalised, pixels(2, 3, 5, 32, 32)
    mean, std = model.latent_mean.view(1, -1, 1, 1, 1), model.latent_std.view(1, -1, 1, 1, 1)
    with torch.no_grad():
        out = model(x)
        torch.testing.assert_close(out.z, (out.posterior.mean - mean) / std)
        assert not torch.allclose(out.z, out.posterior.mean, atol=1e-3)
        torch.testing.assert_close(model.encode(x), out.z)
        # The decoder is fed the normalised latent: exactly decode(z), and not the decoding of the raw one.
        torch.testing.assert_close(out.x_rec, model.decode(out.z), rtol=1e-5, atol=1e-6)
        assert not torch.allclose(out.x_rec, model.decode(out.posterior.mean), atol=1e-3)
        restored = model.bottleneck.restore(rearrange(out.z, "b c s h w -> b s (h w) c"))
        torch.testing.assert_close(out.h_restored, restored, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(out.s, model.semantic(out.z), rtol=1e-5, atol=1e-5)


def test_a_training_sample_is_normalised_too(normalised):
    model, x = normalised.train(), pixels(2, 3, 32, 32)
    noise = torch.randn(2, 1, 4, 64, generator=torch.Generator().manual_seed(4))
    mean, std = model.latent_mean.view(1, -1, 1, 1, 1), model.latent_std.view(1, -1, 1, 1, 1)
    with torch.no_grad():
        out = model(x, noise=noise)
    post = out.posterior
    sample = post.mean + post.logvar.mul(0.5).exp() * rearrange(noise, "b s (h w) c -> b c s h w", h=2)
    torch.testing.assert_close(out.z, (sample - mean) / std)
