"""The flow maths: the linear path and its velocity, the clean estimate, training times, the Euler sampler."""

import pytest
import torch

from hydra_x.nn.flow import (
    clean_estimate,
    euler_sample,
    interpolate,
    sample_time,
    time_from_normal,
    time_grid,
    velocity_from_clean,
    velocity_target,
)


def _pair(*shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(*shape, generator=g) * 2 - 1, torch.randn(*shape, generator=g)


def test_x_t_is_on_the_linear_path_and_the_target_is_its_time_derivative():
    x, eps = _pair(3, 3, 5, 8, 8)
    t = torch.tensor([0.0, 0.3, 1.0])
    x_t = interpolate(x, eps, t)
    torch.testing.assert_close(x_t[0], x[0], rtol=0, atol=0)  # t = 0 is the image
    torch.testing.assert_close(x_t[2], eps[2], rtol=0, atol=0)  # t = 1 is the noise
    torch.testing.assert_close(x_t[1], 0.7 * x[1] + 0.3 * eps[1])
    # d x_t / d t, by forward-mode autodiff at random times, is exactly the training target eps - x.
    t = torch.rand(3, generator=torch.Generator().manual_seed(1))
    _, dxdt = torch.func.jvp(lambda tt: interpolate(x, eps, tt), (t,), (torch.ones(3),))
    torch.testing.assert_close(dxdt, velocity_target(x, eps))
    assert not torch.allclose(velocity_target(x, eps), eps)  # the target is not the noise alone


def test_the_clean_estimate_of_the_true_velocity_is_the_image():
    x, eps = _pair(4, 3, 8, 8)
    t = torch.tensor([0.05, 0.5, 0.9, 1.0])
    x_t = interpolate(x, eps, t)
    torch.testing.assert_close(clean_estimate(x_t, t, velocity_target(x, eps)), x)
    assert not torch.allclose(clean_estimate(x_t, t, torch.zeros_like(x)), x)


def test_a_clean_image_prediction_gives_the_velocity_and_back():
    x, eps = _pair(4, 3, 8, 8, seed=4)
    t = torch.tensor([0.05, 0.3, 0.7, 1.0])
    x_t = interpolate(x, eps, t)
    torch.testing.assert_close(velocity_from_clean(x_t, t, x), velocity_target(x, eps))
    x_hat = torch.randn_like(x)
    torch.testing.assert_close(clean_estimate(x_t, t, velocity_from_clean(x_t, t, x_hat)), x_hat)
    # Below t_min the division is clamped: the velocity stays bounded as t -> 0.
    small = torch.full((4,), 1e-6)
    assert velocity_from_clean(interpolate(x, eps, small), small, x_hat).abs().max() < 100


def _true_field(target):
    """The exact velocity field toward one fixed image x*: eps = (x_t - (1 - t) x*) / t, so v = (x_t - x*) / t."""

    def velocity(x_t, t):
        return (x_t - target) / t.view(-1, *([1] * (x_t.ndim - 1)))

    return velocity


@pytest.mark.parametrize("steps", [1, 4, 16])
@pytest.mark.parametrize("shape", [(2, 3, 8, 8), (2, 3, 5, 8, 8)])
def test_euler_with_the_true_field_lands_on_the_target_through_points_of_the_path(steps, shape):
    target, noise = _pair(*shape, seed=2)
    visited = []

    def recording(x_t, t):
        visited.append((x_t.clone(), t.clone()))
        return _true_field(target)(x_t, t)

    out = euler_sample(recording, noise, steps)
    torch.testing.assert_close(out, target, rtol=1e-5, atol=1e-5)
    assert len(visited) == steps
    for (x_t, t), expected_t in zip(visited, time_grid(steps)[:-1]):
        assert torch.all(t == expected_t)
        torch.testing.assert_close(x_t, interpolate(target, noise, t), rtol=1e-5, atol=1e-5)


def test_the_sampler_fails_with_a_wrong_field():
    target, noise = _pair(2, 3, 8, 8, seed=3)
    out = euler_sample(lambda x_t, t: 0.5 * _true_field(target)(x_t, t), noise, 4)
    assert (out - target).abs().mean() > 0.1


def test_one_step_returns_the_clean_estimate_at_t_1():
    noise = torch.randn(2, 3, 8, 8)
    w = torch.randn(3, 3)

    def field(x_t, t):  # any nonlinear field
        return torch.tanh(torch.einsum("bchw,dc->bdhw", x_t, w)) * t.view(-1, 1, 1, 1)

    ones = torch.ones(2)
    torch.testing.assert_close(euler_sample(field, noise, 1), clean_estimate(noise, ones, field(noise, ones)))


def test_time_grid_and_bad_step_counts():
    torch.testing.assert_close(time_grid(4), torch.tensor([1.0, 0.75, 0.5, 0.25, 0.0]))
    for bad in (0, -1, 2.5, True, None):
        with pytest.raises(ValueError, match="sampling steps"):
            time_grid(bad)


def test_training_times_follow_their_distribution():
    n = torch.randn(200_000, generator=torch.Generator().manual_seed(0))
    uniform = time_from_normal(n, "uniform")
    assert uniform.min() > 0 and uniform.max() < 1
    quantiles = torch.quantile(uniform, torch.tensor([0.1, 0.25, 0.5, 0.75, 0.9]))
    torch.testing.assert_close(quantiles, torch.tensor([0.1, 0.25, 0.5, 0.75, 0.9]), rtol=0, atol=5e-3)
    logit_normal = time_from_normal(n.double(), "logit_normal", mean=0.5, std=2.0)
    torch.testing.assert_close(torch.logit(logit_normal), (0.5 + 2.0 * n).double())
    drawn = sample_time(8, "uniform", generator=torch.Generator().manual_seed(5))
    again = sample_time(8, "uniform", generator=torch.Generator().manual_seed(5))
    assert drawn.shape == (8,) and torch.equal(drawn, again)
    with pytest.raises(ValueError, match="logit_normal"):
        time_from_normal(n, "cosine")
    with pytest.raises(ValueError, match="positive std"):
        time_from_normal(n, "logit_normal", std=0.0)


def test_bad_shapes_are_named():
    x = torch.zeros(2, 3, 4, 4)
    with pytest.raises(ValueError, match="noise must have the image's shape"):
        interpolate(x, torch.zeros(2, 3, 4, 5), torch.zeros(2))
    with pytest.raises(ValueError, match=r"t must have shape \(B,\)"):
        interpolate(x, x, torch.zeros(3))
