"""The flow maths the unified model samples with: time shift, Euler and Heun on a shifted grid, guidance."""

from __future__ import annotations

import pytest
import torch

from hydra_x.nn.flow import (
    guided,
    interpolate,
    prior_noise,
    resolution_shift,
    sample,
    shift_time,
    time_grid,
    velocity_calls,
)


@pytest.mark.parametrize("shift", [1.0, 0.5, 3.0])
def test_the_time_shift_fixes_the_ends_and_is_monotone(shift):
    t = torch.linspace(0, 1, 101, dtype=torch.float64)
    s = shift_time(t, shift)
    assert s[0] == 0 and s[-1] == 1
    assert (s[1:] > s[:-1]).all()
    if shift > 1:
        assert (s[1:-1] > t[1:-1]).all()  # toward the noise end
    grid = time_grid(8, shift=shift)
    assert grid[0] == 1 and grid[-1] == 0 and len(grid) == 9
    with pytest.raises(ValueError, match="positive"):
        shift_time(t, 0.0)


def test_the_resolution_shift_grows_with_tokens_and_is_one_at_the_base():
    assert resolution_shift(256) == 1.0 and resolution_shift(100) == 1.0
    assert resolution_shift(1024) == pytest.approx(2.0) and resolution_shift(10**6) == 4.0


@pytest.mark.parametrize("method", ["euler", "heun"])
@pytest.mark.parametrize("shift", [1.0, 3.0])
def test_the_true_field_of_the_path_lands_on_the_data(method, shift):
    """v(x_t, t) = (x_t - x0) / t is the path's exact velocity: both samplers follow it to x0 exactly."""
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(3, 4, 5, generator=g), torch.randn(3, 4, 5, generator=g)
    field = lambda x, t: (x - x0) / t.view(-1, 1, 1)  # noqa: E731
    out = sample(field, eps, 5, method, shift)
    torch.testing.assert_close(out, x0, rtol=0, atol=1e-5)
    # and passes through the path's points on the grid on its way
    half = sample(lambda x, t: (x - x0) / t.view(-1, 1, 1), eps, 1, method, 1.0)
    torch.testing.assert_close(half, x0, rtol=0, atol=1e-5)
    assert torch.allclose(interpolate(x0, eps, torch.full((3,), 0.5)), 0.5 * (x0 + eps))


@pytest.mark.parametrize("steps", [2, 5, 16])
def test_heun_integrates_a_field_linear_in_time_exactly_but_for_its_last_euler_step(steps):
    """For v = a + b t the trapezoid rule is exact, so Heun's only error is its last step (Euler, from t = h
    to 0): exactly -b h^2 / 2. Euler errs on every step: -b h / 2 in all."""
    a, b = torch.tensor([[1.0, -2.0]], dtype=torch.float64), torch.tensor([[3.0, 0.5]], dtype=torch.float64)
    field = lambda x, t: a + b * t.view(-1, 1).double()  # noqa: E731
    start = torch.zeros(1, 2, dtype=torch.float64)
    exact = start - a - b / 2  # x(0) = x(1) - integral_0^1 (a + b t) dt
    h = 1 / steps
    torch.testing.assert_close(sample(field, start, steps, "heun").double(), exact - b * h**2 / 2)
    torch.testing.assert_close(sample(field, start, steps, "euler").double(), exact - b * h / 2)


def test_heun_is_second_order_where_euler_is_first():
    """Halving the step size cuts Heun's error about 4x on a nonlinear field, Euler's about 2x."""
    field = lambda x, t: torch.sin(3 * t).view(-1, 1) * (1 + x)  # noqa: E731
    start = torch.full((1, 1), 0.3, dtype=torch.float64)
    ref = sample(field, start, 4096, "heun")

    def error(method, steps):
        return float((sample(field, start, steps, method) - ref).abs().max())

    # The last step is Euler in both, so compare over steps that end at a small t: use many steps.
    euler_ratio = error("euler", 32) / error("euler", 64)
    heun_ratio = error("heun", 32) / error("heun", 64)
    assert 1.6 < euler_ratio < 2.5 and heun_ratio > 2.5


def test_guidance_with_scale_one_is_the_conditional_velocity():
    g = torch.Generator().manual_seed(1)
    cond, uncond = torch.randn(2, 8, generator=g), torch.randn(2, 8, generator=g)
    assert torch.equal(guided(cond, uncond, 1.0), cond)
    torch.testing.assert_close(guided(cond, uncond, 0.0), uncond)
    torch.testing.assert_close(guided(cond, uncond, 3.0), uncond + 3 * (cond - uncond))
    with pytest.raises(ValueError, match="sampler must be one of"):
        sample(lambda x, t: x, cond, 2, "rk4")


@pytest.mark.parametrize("method", ["euler", "heun"])
def test_a_later_start_begins_on_the_path_from_init_and_steps_only_below_it(method):
    """From ``init`` noised to ``start``, the path's true field still lands on its data; a zero field leaves the
    start point itself, and only grid times below ``start`` are visited; start 1 is the plain sampler."""
    g = torch.Generator().manual_seed(1)
    x0, eps, other = (torch.randn(2, 3, generator=g) for _ in range(3))
    field = lambda x, t: (x - x0) / t.view(-1, 1)  # noqa: E731
    torch.testing.assert_close(sample(field, eps, 8, method, init=x0, start=0.4), x0, rtol=0, atol=1e-5)
    seen = []
    still = sample(
        lambda x, t: seen.append(t[0].item()) or torch.zeros_like(x), eps, 10, method, init=other, start=0.35
    )
    torch.testing.assert_close(still, 0.65 * other + 0.35 * eps)
    assert seen[0] == pytest.approx(0.35) and all(0 < t < 0.35 for t in seen[1:]) and len(set(seen)) == 4
    torch.testing.assert_close(sample(field, eps, 5, method, init=other, start=1.0), sample(field, eps, 5, method))
    with pytest.raises(ValueError, match="start time"):
        sample(field, eps, 5, method, init=x0, start=0.0)
    with pytest.raises(ValueError, match="init latents"):
        sample(field, eps, 5, method, start=0.5)


@pytest.mark.parametrize("method", ["euler", "heun"])
@pytest.mark.parametrize(("steps", "shift", "start"), [(10, 1.0, 1.0), (10, 3.0, 0.6), (7, 1.0, 0.35), (20, 2.0, 0.05)])
def test_velocity_calls_counts_what_the_sampler_calls(method, steps, shift, start):
    calls = []
    x = torch.zeros(1, 2)
    sample(lambda x, t: calls.append(1) or torch.zeros_like(x), x, steps, method, shift, init=x, start=start)
    assert velocity_calls(steps, method, shift, start) == len(calls)
    assert len(calls) < velocity_calls(steps, method) or start == 1.0  # a later start skips the grid above it


def test_prior_noise_without_a_block_share_is_the_plain_draw():
    shape = (2, 8, 3, 4, 6)
    drawn = prior_noise(shape, 0.0, 4, torch.Generator().manual_seed(3))
    assert torch.equal(drawn, torch.randn(shape, generator=torch.Generator().manual_seed(3)))


def test_prior_noise_shares_its_block_part_within_a_cell_and_across_steps_only():
    noise = prior_noise((6000, 2, 2, 8, 8), 0.5, 4, torch.Generator().manual_seed(0))
    assert abs(noise.var().item() - 1) < 0.02 and abs(noise.mean().item()) < 0.02
    at = lambda c, s, i, j: noise[:, c, s, i, j]  # noqa: E731
    corr = lambda a, b: torch.corrcoef(torch.stack([a, b]))[0, 1].item()  # noqa: E731
    # a 4 x 4 grid of cells over 8 x 8 tokens: (0, 0), (0, 1), (1, 1) share a cell; (0, 2) and (2, 0) do not
    for other in (at(0, 0, 0, 1), at(0, 0, 1, 1), at(0, 1, 0, 0), at(0, 1, 1, 0)):
        assert abs(corr(at(0, 0, 0, 0), other) - 0.5) < 0.04
    for other in (at(0, 0, 0, 2), at(0, 0, 2, 0), at(1, 0, 0, 0)):
        assert abs(corr(at(0, 0, 0, 0), other)) < 0.04
    whole = prior_noise((1, 1, 1, 8, 8), 1.0, 4, torch.Generator().manual_seed(1))[0, 0, 0]
    assert torch.equal(whole[::2, ::2].repeat_interleave(2, 0).repeat_interleave(2, 1), whole)  # one value a cell
    assert len(set(whole.flatten().tolist())) == 16
    small = prior_noise((1, 1, 1, 2, 3), 1.0, 4, torch.Generator().manual_seed(1))  # fewer tokens than cells
    assert len(set(small.flatten().tolist())) == 6


@pytest.mark.parametrize("share, cells", [(-0.1, 4), (1.5, 4), (0.5, 0)])
def test_prior_noise_refuses_a_bad_share_or_grid(share, cells):
    with pytest.raises(ValueError, match="block share|cell"):
        prior_noise((1, 1, 1, 2, 2), share, cells)
