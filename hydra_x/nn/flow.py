"""Stateless flow-matching maths (rectified flow, linear path), shared by the tokenizer's flow decoder (pixels)
and the unified model's flow head (normalised latents).

Time convention: t = 1 is pure noise, t = 0 is the data.

    x_t = (1 - t) x + t eps            (eps ~ N(0, I))
    v   = d x_t / d t = eps - x        (the velocity a model regresses)
    x   = x_t - t v                    (the clean estimate from a velocity prediction)

eps is white noise, or (``prior_noise`` with a block share) unit Gaussian noise of which a share is drawn once per
cell of a coarse grid over the latent grid and shared by the cell's tokens and latent steps: any fixed Gaussian
prior is a valid start for the flow, and with this one the chance fluctuations from which a sample's layout is
decided are object-sized rather than one token each (PYoCo's mixed noise shares a part across a video's frames).

Sampling integrates d x / d t = v(x, t) from t = 1 down to t = 0 with Euler or Heun on a grid that is uniform,
or warped by a time shift (more steps near the noise for larger inputs, as SD3 does); one Euler step returns
exactly the clean estimate at t = 1. Every tensor is (B, ...) with a per-sample time t of shape (B,).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

TIME_DISTRIBUTIONS = ("logit_normal", "uniform")
SAMPLERS = ("euler", "heun")
PREDICTIONS = ("velocity", "x")  # what a flow network's last layer predicts: eps - x, or x itself

VelocityFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (x_t (B, ...), t (B,)) -> v (B, ...)


def _per_sample(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """t (B,) -> (B, 1, ..., 1) broadcastable against ``like`` (B, ...), in ``like``'s dtype."""
    if t.ndim != 1 or t.shape[0] != like.shape[0]:
        raise ValueError(f"t must have shape (B,) = ({like.shape[0]},), got {tuple(t.shape)}")
    return t.to(like).view(-1, *([1] * (like.ndim - 1)))


def prior_noise(
    shape: tuple[int, ...],
    block_share: float = 0.0,
    cells: int = 4,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Unit Gaussian noise of ``shape`` (..., C, S, h, w), float32. With ``block_share`` s > 0, sqrt(1 - s) white
    noise plus sqrt(s) times one draw per channel and cell of a ``cells`` x ``cells`` grid over (h, w) (fewer where
    the grid is smaller), shared by every token and latent step of the cell. s = 0 draws exactly
    ``torch.randn(shape, generator=generator, device=device)``."""
    if not 0.0 <= block_share <= 1.0:
        raise ValueError(f"the noise's block share must be in [0, 1], got {block_share}")
    if cells < 1:
        raise ValueError(f"the noise needs at least 1 cell a side, got {cells}")
    white = torch.randn(shape, generator=generator, device=device)
    if not block_share:
        return white
    *lead, h, w = shape[:-3] + shape[-2:]
    cell_grid = (min(cells, h), min(cells, w))
    coarse = torch.randn((math.prod(lead), 1, *cell_grid), generator=generator, device=device)
    coarse = F.interpolate(coarse, size=(h, w), mode="nearest").view(*lead, 1, h, w)  # one value per cell and step
    return (1.0 - block_share) ** 0.5 * white + block_share**0.5 * coarse


def interpolate(x: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """The point x_t = (1 - t) x + t eps of the linear path; x, noise (B, ...), t (B,)."""
    if x.shape != noise.shape:
        raise ValueError(f"noise must have the image's shape {tuple(x.shape)}, got {tuple(noise.shape)}")
    tt = _per_sample(t, x)
    return (1 - tt) * x + tt * noise


def velocity_target(x: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """The path's velocity d x_t / d t = eps - x (independent of t)."""
    return noise - x


def clean_estimate(x_t: torch.Tensor, t: torch.Tensor, velocity: torch.Tensor) -> torch.Tensor:
    """The image implied by a velocity prediction at (x_t, t): x_t - t v."""
    return x_t - _per_sample(t, x_t) * velocity


# Flow time below which a clean-latent prediction's velocity divides by this instead of t (JiT's 0.05).
CLEAN_MIN_TIME = 0.05


def velocity_from_clean(
    x_t: torch.Tensor, t: torch.Tensor, x_hat: torch.Tensor, t_min: float = CLEAN_MIN_TIME
) -> torch.Tensor:
    """The velocity (x_t - x_hat) / t implied by a clean-image prediction, t clamped below at ``t_min``.

    For a network that predicts the image (JiT, Li & He 2025): near t = 0 the division would amplify its
    errors without bound; the clamp keeps the velocity loss finite there (JiT's 0.05).
    """
    return (x_t - x_hat) / _per_sample(t, x_t).clamp_min(t_min)


def check_time_distribution(kind: str, std: float) -> None:
    if kind not in TIME_DISTRIBUTIONS:
        raise ValueError(f"flow time distribution must be one of {TIME_DISTRIBUTIONS}, got {kind!r}")
    if not std > 0:
        raise ValueError(f"the logit-normal time distribution needs a positive std, got {std}")


def time_from_normal(n: torch.Tensor, kind: str = "logit_normal", mean: float = 0.0, std: float = 1.0) -> torch.Tensor:
    """Training times in (0, 1) from standard-normal draws ``n`` (B,).

    logit_normal: t = sigmoid(mean + std n) (SD3's choice; weights the middle of the path);
    uniform: t = Phi(n), the normal CDF, which is uniform on (0, 1). Taking a normal draw in both cases lets
    the training loop derive t, like all its noise, from one generator per global sample index.
    """
    check_time_distribution(kind, std)
    if kind == "logit_normal":
        return torch.sigmoid(mean + std * n)
    return 0.5 * (1 + torch.erf(n / math.sqrt(2)))


def sample_time(
    batch: int,
    kind: str = "logit_normal",
    mean: float = 0.0,
    std: float = 1.0,
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """``batch`` training times (B,) drawn from ``kind`` (see :func:`time_from_normal`)."""
    n = torch.randn(batch, generator=generator, device=generator.device if generator is not None else device)
    t = time_from_normal(n, kind, mean, std)
    return t if device is None else t.to(device)


def shift_time(t: torch.Tensor | float, shift: float) -> torch.Tensor | float:
    """Warp times toward the noise end: t' = s t / (1 + (s - 1) t), a bijection of [0, 1] fixing 0 and 1.

    A larger input has more tokens that each carry less of the signal, so at one noise level it is less
    destroyed; a shift s > 1 spends more training times and sampling steps at high noise (SD3's
    resolution-dependent shift). s = 1 is the identity.
    """
    if not shift > 0:
        raise ValueError(f"the time shift must be positive, got {shift}")
    return shift * t / (1 + (shift - 1) * t)


def resolution_shift(tokens: int, base_tokens: int = 256, max_shift: float = 4.0) -> float:
    """The shift for ``tokens`` latent tokens: sqrt(tokens / base_tokens), clamped to [1, max_shift]."""
    if tokens < 1 or base_tokens < 1:
        raise ValueError(f"token counts must be positive, got tokens={tokens}, base_tokens={base_tokens}")
    return float(min(max((tokens / base_tokens) ** 0.5, 1.0), max_shift))


def time_grid(steps: int, device: torch.device | str | None = None, shift: float = 1.0) -> torch.Tensor:
    """The sampler's times 1 = t_0 > t_1 > ... > t_steps = 0, uniform then shifted: (steps + 1,) float32."""
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise ValueError(f"the number of sampling steps must be a positive integer, got {steps!r}")
    return shift_time(torch.linspace(1.0, 0.0, steps + 1, device=device), shift)


def guided(v_cond: torch.Tensor, v_uncond: torch.Tensor, scale: float) -> torch.Tensor:
    """Classifier-free guidance: v_uncond + scale (v_cond - v_uncond); scale 1 is the conditional velocity."""
    if scale == 1.0:
        return v_cond
    return v_uncond + scale * (v_cond - v_uncond)


@torch.no_grad()
def euler_sample(velocity: VelocityFn, noise: torch.Tensor, steps: int, shift: float = 1.0) -> torch.Tensor:
    """Integrate from ``noise`` (t = 1) to t = 0 in ``steps`` Euler steps of v = ``velocity(x_t, t)``.

    The state is kept in float32 whatever the model's dtype (``velocity`` casts its input as it needs), so
    many small steps do not accumulate bf16 rounding. Returns float32 (B, ...).
    """
    return sample(velocity, noise, steps, "euler", shift)


def sampling_times(steps: int, shift: float = 1.0, start: float = 1.0) -> list[float]:
    """The times :func:`sample` visits: ``time_grid(steps, shift=shift)``, begun at ``start`` (below 1: ``start``,
    then the grid's times below it)."""
    if not 0.0 < start <= 1.0:
        raise ValueError(f"the start time must be in (0, 1], got {start}")
    times = time_grid(steps, shift=shift).tolist()
    return times if start == 1.0 else [start] + [t for t in times if t < start]


def velocity_calls(steps: int, method: str = "euler", shift: float = 1.0, start: float = 1.0) -> int:
    """How many times :func:`sample` calls ``velocity`` (Heun's last step is a plain Euler one): a progress total."""
    n = len(sampling_times(steps, shift, start)) - 1
    return 2 * n - 1 if method == "heun" else n


@torch.no_grad()
def sample(
    velocity: VelocityFn,
    noise: torch.Tensor,
    steps: int,
    method: str = "euler",
    shift: float = 1.0,
    *,
    init: torch.Tensor | None = None,
    start: float = 1.0,
):
    """Integrate from ``noise`` (t = 1) to t = 0 on ``time_grid(steps, shift=shift)`` with ``method``.

    euler: one velocity per step. heun: Heun's second-order method (two velocities per step, the last step
    Euler, as EDM does: at t = 0 the second evaluation would be at the data itself). float32 state; returns
    float32 (B, ...).

    With clean latents ``init`` (shaped like ``noise``) and ``start`` < 1, the path begins at the point of time
    ``start`` between them, (1 - start) init + start noise, and takes the grid's steps below ``start`` (SDEdit's
    strength): how much of ``init`` a model keeps, or, from a truth latent, how far from the noise it can draw.
    """
    if method not in SAMPLERS:
        raise ValueError(f"the sampler must be one of {SAMPLERS}, got {method!r}")
    times = sampling_times(steps, shift, start)
    if start < 1.0 and (init is None or init.shape != noise.shape):
        got = "none" if init is None else tuple(init.shape)
        want = tuple(noise.shape)
        raise ValueError(f"a start time below 1 needs init latents shaped like the noise, {want}: got {got}")
    x = noise.float()
    if start < 1.0:
        x = (1 - start) * init.to(x) + start * x
    at = lambda t: torch.full((x.shape[0],), t, device=x.device)  # noqa: E731
    for t, t_next in zip(times[:-1], times[1:]):
        v = velocity(x, at(t)).float()
        x_next = x + (t_next - t) * v
        if method == "heun" and t_next > 0:
            v_next = velocity(x_next, at(t_next)).float()
            x_next = x + (t_next - t) * 0.5 * (v + v_next)
        x = x_next
    return x
