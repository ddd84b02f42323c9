"""Each loss term of the tokenizer's objective against a reference computed by hand on a tiny input.

The forward output is built by hand (a TokenizerOutput of chosen tensors) and the frozen parts are stand-ins
that record what they are given and whose values tell their arguments apart, so every test pins which tensors
a term compares, in which order, on which frames, and with which weight. Term formulas checked here:

    l1 = mean |x_rec - x|                      flow = mean (v - v_target)^2
    mse = mean (x_rec - x)^2
    lpips = mean LPIPS(frames(x_rec), frames(x)), frames 0, 1, 3, 4 of a 5-frame clip (4 evenly spaced)
    kl = mean 0.5 (mu^2 + exp(logvar) - 1 - logvar)
    gan (generator) = -mean D(x_rec); its weight gan * ||d rec / d out|| / (||d gan / d out|| + 1e-4), out = x_rec
        (regression) or the velocity (flow); discriminator = 0.5 (mean relu(1 - D(x)) + mean relu(1 + D(x_rec)))
    distill_image = mean 1 - cos(image_features, T_img(x[:, :, 0]))
    distill_video = mean 1 - cos(video_features, T_vid(x[:, :, 1:]))
    distill_layer{k} = mean 1 - cos(layer_features[k][:, 0], T_img hidden k); distill_layers = their mean
    consistency = mean 1 - cos(h_restored, h), no gradient to h
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn

from hydra_x.teachers import TeacherOutput
from hydra_x.tokenizer.bottleneck import DiagonalGaussian
from hydra_x.tokenizer.outputs import TokenizerOutput
from hydra_x.train.tokenizer.config import LossConfig
from hydra_x.train.tokenizer.objective import TokenizerObjective

B, FRAMES, SIZE, C, D = 2, 5, 8, 4, 6  # a clip: the anchor and 4 frames, 8 x 8 pixels
S, GRID = 2, (2, 2)  # latent steps and token grid (what the objective reads off z)
N = GRID[0] * GRID[1]
LPIPS_FRAMES = [0, 1, 3, 4]  # round(linspace(0, 4, 4)) = round(0, 1.33, 2.67, 4)


def rand(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def cos_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """1 - cos along the last dim, averaged over everything else."""
    return (1 - (a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1))).mean()


def output(x: torch.Tensor, **fields) -> TokenizerOutput:
    """A forward output of chosen tensors for pixels ``x`` (a clip unless x is 4-D)."""
    steps = S if x.ndim == 5 else 1
    base = dict(
        x_rec=None,
        z=torch.zeros(B, C, steps, *GRID),
        posterior=DiagonalGaussian(rand(B, C, steps, *GRID, seed=10), rand(B, C, steps, *GRID, seed=11)),
        s=None,
        h=rand(B, steps, N, D, seed=12),
        h_restored=None,
        image_features=None,
        video_features=None,
    )
    return TokenizerOutput(**{**base, **fields})


class AsymmetricLPIPS(nn.Module):
    """Stands in for LPIPS: per sample mean (a - b / 2)^2, so swapped arguments give another value."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[torch.Tensor, torch.Tensor]] = []

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        self.calls.append((a, b))
        return (a - b / 2).square().flatten(1).mean(1)


class LinearDiscriminator(nn.Module):
    """D(x) = sum_c k_c x_c + bias per pixel (frame by frame for clips); records what it judges."""

    def __init__(self) -> None:
        super().__init__()
        self.k = nn.Parameter(torch.tensor([1.5, -0.5, 0.8]))
        self.bias = nn.Parameter(torch.tensor(0.3))
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x)
        k = self.k.view(1, 3, *([1] * (x.ndim - 2)))
        return (x * k).sum(1, keepdim=True) + self.bias

    def reference(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, 0:1] * 1.5 - x[:, 1:2] * 0.5 + x[:, 2:3] * 0.8 + 0.3


class StubTeacher:
    """Stands in for a frozen teacher: fixed tokens on a fixed grid (and hidden states); records its inputs."""

    def __init__(self, tokens: torch.Tensor, grid: tuple[int, ...], hidden: dict | None = None) -> None:
        self.tokens, self.grid, self.hidden = tokens, grid, hidden or {}
        self.dim = tokens.shape[-1]
        self.seen: list[torch.Tensor] = []

    def _check_layers(self, layers):
        return tuple(layers)

    def __call__(self, x: torch.Tensor, layers=()) -> TeacherOutput:
        self.seen.append(x)
        return TeacherOutput(self.tokens, self.grid, {k: self.hidden[k] for k in layers})


def close(a: torch.Tensor, b: torch.Tensor | float) -> bool:
    return torch.allclose(torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64), rtol=1e-5)


# ---------------------------------------------------------------------------------------------- reconstruction


@pytest.mark.parametrize("clip", [True, False])
def test_l1_lpips_kl_and_the_total_by_hand(clip):
    x = rand(B, 3, FRAMES, SIZE, SIZE, seed=0) if clip else rand(B, 3, SIZE, SIZE, seed=0)
    x_rec = x + 0.3 * rand(*x.shape, seed=1)
    out = output(x, x_rec=x_rec)
    lpips = AsymmetricLPIPS()
    config = LossConfig(l1=2.0, lpips=0.5, kl=1e-2, distill_image=0.0, distill_video=0.0)
    terms = TokenizerObjective(config, 1, lpips=lpips).generator(out, x, step=0)
    assert close(terms.values["l1"], (x_rec - x).abs().mean())
    # LPIPS compares the reconstruction (first) with the input (second), on frames 0, 1, 3, 4 of a clip.
    frames = (lambda t: t[:, :, LPIPS_FRAMES].transpose(1, 2).flatten(0, 1)) if clip else (lambda t: t)
    a, b = frames(x_rec), frames(x)
    assert close(terms.values["lpips"], (a - b / 2).square().flatten(1).mean(1).mean())
    assert not close(terms.values["lpips"], (b - a / 2).square().flatten(1).mean(1).mean())  # the order shows
    assert len(lpips.calls) == 1 and torch.equal(lpips.calls[0][0], a) and torch.equal(lpips.calls[0][1], b)
    mu, logvar = out.posterior.mean, out.posterior.logvar
    kl = 0.5 * (mu.square() + logvar.exp() - 1 - logvar).mean()
    assert close(terms.values["kl"], kl)
    assert terms.weights == {"l1": 2.0, "lpips": 0.5, "kl": 1e-2}
    assert close(terms.total, 2.0 * terms.values["l1"] + 0.5 * terms.values["lpips"] + 1e-2 * terms.values["kl"])


def test_mse_replaces_l1_in_the_total():
    """The shapes-world loss (l1=0, mse=1): L1 is still logged, MSE alone is weighted into the total."""
    x = rand(B, 3, SIZE, SIZE, seed=0)
    x_rec = x + 0.3 * rand(*x.shape, seed=1)
    config = LossConfig(l1=0.0, mse=1.5, lpips=0.0, kl=1e-2, distill_image=0.0, distill_video=0.0)
    terms = TokenizerObjective(config, 1).generator(output(x, x_rec=x_rec), x, step=0)
    assert close(terms.values["mse"], (x_rec - x).square().mean())
    assert close(terms.values["l1"], (x_rec - x).abs().mean()) and terms.weights["l1"] == 0.0
    assert close(terms.total, 1.5 * terms.values["mse"] + 1e-2 * terms.values["kl"])
    off = TokenizerObjective(LossConfig(lpips=0.0), 1).generator(output(x, x_rec=x_rec), x, step=0)
    assert "mse" not in off.values  # off by default: the paper's recipes are unchanged


def test_the_kl_of_a_wide_posterior_counts_its_log_variance():
    """mu = 0, logvar = 2: KL = 0.5 (e^2 - 1 - 2) per element; without the -logvar part it would be 0.5 (e^2 - 1)."""
    x = rand(B, 3, SIZE, SIZE, seed=0)
    posterior = DiagonalGaussian(torch.zeros(B, C, 1, *GRID), torch.full((B, C, 1, *GRID), 2.0))
    terms = TokenizerObjective(LossConfig(lpips=0.0), 1).generator(output(x, x_rec=x, posterior=posterior), x, 0)
    assert close(terms.values["kl"], 0.5 * (math.exp(2.0) - 3.0))


def test_flow_matching_and_its_l1_by_hand():
    x = rand(B, 3, FRAMES, SIZE, SIZE, seed=0)
    velocity, target = rand(*x.shape, seed=1), rand(*x.shape, seed=2)
    x_rec = x + 0.2 * rand(*x.shape, seed=3)
    out = output(x, x_rec=x_rec, velocity=velocity, velocity_target=target)
    config = LossConfig(lpips=0.0, flow=1.5, flow_l1=0.25, kl=0.0)
    terms = TokenizerObjective(config, 1).generator(out, x, step=0)
    assert close(terms.values["flow"], (velocity - target).square().mean())
    assert close(terms.values["l1"], (x_rec - x).abs().mean()) and terms.weights["l1"] == 0.25
    assert close(terms.total, 1.5 * terms.values["flow"] + 0.25 * terms.values["l1"])


# ---------------------------------------------------------------------------------------------- GAN


def test_gan_generator_term_and_its_adaptive_weight_by_hand():
    """rec = l1 * mean |x_rec - x| has gradient l1 sign(x_rec - x) / n at x_rec, of norm l1 / sqrt(n); gan = -mean
    D(x_rec) has gradient -k_c / m at each pixel of channel c (m = logits), of norm ||k|| / sqrt(m)."""
    x = rand(B, 3, FRAMES, SIZE, SIZE, seed=0)
    x_rec = (x + 0.3 * rand(*x.shape, seed=1)).requires_grad_()
    disc = LinearDiscriminator()
    config = LossConfig(l1=2.0, lpips=0.0, kl=0.0, gan=0.1, gan_start=0)
    terms = TokenizerObjective(config, 1, discriminator=disc).generator(output(x, x_rec=x_rec), x, step=3)
    assert len(disc.seen) == 1 and disc.seen[0] is x_rec  # the reconstruction is judged, not the input
    assert close(terms.values["gan"], -disc.reference(x_rec).mean())
    n, m = x.numel(), x.numel() // 3
    rec_norm, gan_norm = 2.0 / math.sqrt(n), disc.k.detach().norm().item() / math.sqrt(m)
    assert close(terms.weights["gan"], 0.1 * rec_norm / (gan_norm + 1e-4))
    assert close(terms.total, 2.0 * terms.values["l1"] + terms.weights["gan"] * terms.values["gan"])
    # Before gan_start the term is absent.
    late = LossConfig(l1=2.0, lpips=0.0, kl=0.0, gan=0.1, gan_start=10)
    assert "gan" not in TokenizerObjective(late, 1, discriminator=disc).generator(output(x, x_rec=x_rec), x, 3).values


def test_the_flow_decoders_gan_weight_is_measured_at_the_velocity():
    """x_rec = x_t - t v: rec = flow * mean (v - v*)^2 + flow_l1 * mean |x_t - t v - x| and gan = -mean D(x_rec),
    both differentiated with respect to v (the flow term never passes through x_rec)."""
    x = rand(B, 3, SIZE, SIZE, seed=0)
    t = torch.tensor([0.3, 0.8]).view(B, 1, 1, 1)
    x_t, target = (1 - t) * x + t * rand(*x.shape, seed=1), rand(*x.shape, seed=2)
    v = rand(*x.shape, seed=3).requires_grad_()
    x_rec = x_t - t * v
    disc = LinearDiscriminator()
    config = LossConfig(lpips=0.0, kl=0.0, flow=1.0, flow_l1=0.5, gan=0.075)
    out = output(x, x_rec=x_rec, velocity=v, velocity_target=target)
    terms = TokenizerObjective(config, 1, discriminator=disc).generator(out, x, step=0)
    rec = (v - target).square().mean() + 0.5 * (x_t - t * v - x).abs().mean()
    (rec_grad,) = torch.autograd.grad(rec, v)
    (gan_grad,) = torch.autograd.grad(-disc.reference(x_t - t * v).mean(), v)
    assert close(terms.weights["gan"], 0.075 * rec_grad.norm() / (gan_grad.norm() + 1e-4))


def test_discriminator_hinge_by_hand():
    """Logits on both sides of +-1, so each relu branch counts and real / fake cannot be swapped unseen."""
    x = rand(B, 3, FRAMES, SIZE, SIZE, seed=0)
    x_rec = (0.5 * rand(*x.shape, seed=1)).requires_grad_()
    disc = LinearDiscriminator()
    objective = TokenizerObjective(LossConfig(lpips=0.0, gan=0.1), 1, discriminator=disc)
    loss = objective.discriminator_loss(x, x_rec)
    real, fake = disc.reference(x), disc.reference(x_rec.detach())
    assert (real < 1).any() and (real > 1).any() and (fake > -1).any() and (fake < -1).any()
    expected = 0.5 * ((1 - real).clamp_min(0).mean() + (1 + fake).clamp_min(0).mean())
    swapped = 0.5 * ((1 - fake).clamp_min(0).mean() + (1 + real).clamp_min(0).mean())
    assert close(loss, expected) and not close(expected, swapped)
    loss.backward()
    assert x_rec.grad is None and disc.k.grad is not None  # only the discriminator learns from its loss


# ---------------------------------------------------------------------------------------------- distillation


def distill_setup(config: LossConfig, layers=()):
    x = rand(B, 3, FRAMES, SIZE, SIZE, seed=0)
    hidden = {k: rand(B, N, D, seed=20 + k) for k in layers}
    image = StubTeacher(rand(B, N, 5, seed=30), GRID, hidden)
    video = StubTeacher(rand(B, FRAMES - 1, N, 7, seed=31), (FRAMES - 1, *GRID))
    out = output(
        x,
        image_features=rand(B, N, 5, seed=40),
        video_features=rand(B, FRAMES - 1, N, 7, seed=41),
        layer_features={k: rand(B, S, N, D, seed=50 + k) for k in layers},
        h_restored=rand(B, S, N, D, seed=42),
    )
    objective = TokenizerObjective(config, 3, image_teacher=image, video_teacher=video, distill_layers=layers)
    return x, out, image, video, objective.generator(out, x, step=0)


def test_image_and_video_distillation_see_the_anchor_and_the_frames_after_it():
    config = LossConfig(distill_image=0.7, distill_video=0.3, consistency=0.0)
    x, out, image, video, terms = distill_setup(config)
    assert len(image.seen) == 1 and torch.equal(image.seen[0], x[:, :, 0])  # the anchor frame
    assert len(video.seen) == 1 and torch.equal(video.seen[0], x[:, :, 1:])  # frames 1..T, as D(s[1:]) covers
    assert close(terms.values["distill_image"], cos_distance(out.image_features, image.tokens))
    assert close(terms.values["distill_video"], cos_distance(out.video_features, video.tokens))
    assert close(terms.total, 0.7 * terms.values["distill_image"] + 0.3 * terms.values["distill_video"])


def test_an_image_batch_goes_to_the_image_teacher_whole():
    x = rand(B, 3, SIZE, SIZE, seed=0)
    image = StubTeacher(rand(B, N, 5, seed=30), GRID)
    out = output(x, image_features=rand(B, N, 5, seed=40))
    terms = TokenizerObjective(LossConfig(), 3, image_teacher=image).generator(out, x, step=0)
    assert torch.equal(image.seen[0], x)
    assert close(terms.values["distill_image"], cos_distance(out.image_features, image.tokens))


def test_layer_distillation_compares_the_anchor_step_of_each_layer():
    layers = (1, 3)
    config = LossConfig(distill_image=0.0, distill_video=0.0, distill_layers=2.0)
    x, out, image, _, terms = distill_setup(config, layers)
    per_layer = {k: cos_distance(out.layer_features[k][:, 0], image.hidden[k]) for k in layers}
    for k in layers:
        assert close(terms.values[f"distill_layer{k}"], per_layer[k]) and terms.weights[f"distill_layer{k}"] == 0
    assert close(terms.values["distill_layers"], sum(per_layer.values()) / 2)
    assert close(terms.total, 2.0 * terms.values["distill_layers"])
    assert torch.equal(image.seen[0], x[:, :, 0])


def test_consistency_pulls_the_restored_features_toward_the_detached_pre_bottleneck_ones():
    config = LossConfig(distill_image=0.0, distill_video=0.0, consistency=1.0)
    h, h_restored = rand(B, S, N, D, seed=60).requires_grad_(), rand(B, S, N, D, seed=61).requires_grad_()
    x = rand(B, 3, FRAMES, SIZE, SIZE, seed=0)
    terms = TokenizerObjective(config, 3).generator(output(x, h=h, h_restored=h_restored), x, step=0)
    assert close(terms.values["consistency"], cos_distance(h_restored, h))
    terms.total.backward()
    assert h.grad is None and h_restored.grad.abs().sum() > 0
