"""PSNR / SSIM equal scikit-image's, per image, on noise and on photographs."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch
from skimage import data, transform
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from hydra_x.eval import metrics, psnr, ssim, video_psnr, video_ssim


def sk_ssim(a: np.ndarray, b: np.ndarray, data_range: float) -> float:
    """The reference: (C, H, W) arrays, the settings the brief fixes."""
    return structural_similarity(
        a,
        b,
        channel_axis=0,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        data_range=data_range,
    )


def photo(name: str, size: tuple[int, int]) -> np.ndarray:
    """A bundled scikit-image photograph, downsized, as (C, H, W) float64 in [0, 1]."""
    img = getattr(data, name)()
    img = transform.resize(img, size, anti_aliasing=True)
    return img[None] if img.ndim == 2 else img.transpose(2, 0, 1)


def distort(a: np.ndarray, rng: np.random.Generator, noise: float) -> np.ndarray:
    """Noise plus a small shift: a distortion that changes luminance, contrast and structure."""
    return np.clip(np.roll(a, 1, axis=-1) * 0.9 + 0.05 + rng.normal(0, noise, a.shape), 0, 1)


def check_against_skimage(a: np.ndarray, b: np.ndarray, data_range: float) -> None:
    """(B, C, H, W) batches: every per-image value equals scikit-image's."""
    x, y = torch.from_numpy(a), torch.from_numpy(b)
    p, s = psnr(x, y, data_range=data_range), ssim(x, y, data_range=data_range)
    assert p.shape == s.shape == (a.shape[0],)
    for i in range(a.shape[0]):
        assert p[i].item() == pytest.approx(peak_signal_noise_ratio(a[i], b[i], data_range=data_range), abs=1e-9)
        assert abs(s[i].item() - sk_ssim(a[i], b[i], data_range)) < 1e-9


@pytest.mark.parametrize("shape", [(3, 3, 32, 48), (2, 1, 11, 11), (2, 3, 37, 53)])
def test_random_images_match_skimage(shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(0)
    a = rng.random(shape)
    b = distort(a, rng, 0.1)
    check_against_skimage(a, b, data_range=1.0)
    check_against_skimage(a * 2 - 1, b * 2 - 1, data_range=2.0)  # the project's [-1, 1] pixels


def test_photographs_match_skimage() -> None:
    rng = np.random.default_rng(1)
    a = np.stack([photo(n, (48, 64)) for n in ("astronaut", "coffee", "chelsea")])  # (3, 3, 48, 64)
    for noise in (0.01, 0.1):
        b = distort(a, rng, noise)
        check_against_skimage(a, b, data_range=1.0)
        check_against_skimage(a * 2 - 1, b * 2 - 1, data_range=2.0)
    gray = photo("camera", (40, 56))[None]  # (1, 1, 40, 56)
    check_against_skimage(gray, distort(gray, rng, 0.05), data_range=1.0)


def test_float32_inputs_are_accurate() -> None:
    """float32 tensors (what the model gives) lose nothing that matters: computed in float64 inside.

    Why float64 and a 1e-9 tolerance (not float32 and ~1e-4): in float32 the local variances of flat regions
    are lost to cancellation in E[x^2] - E[x]^2; measured on a 720p photograph, float32 maps were off by
    up to 6e-8 in the mean SSIM for a 1.8x speed-up, which is not worth a looser comparison with skimage.
    """
    rng = np.random.default_rng(2)
    a = np.stack([photo("astronaut", (48, 48))])
    b = distort(a, rng, 0.05)
    a32, b32 = a.astype(np.float32), b.astype(np.float32)
    s = ssim(torch.from_numpy(a32), torch.from_numpy(b32), data_range=1.0)
    assert abs(s.item() - sk_ssim(a32.astype(np.float64)[0], b32.astype(np.float64)[0], 1.0)) < 1e-9


def test_identical_images_give_inf_psnr_and_ssim_one() -> None:
    x = torch.from_numpy(np.stack([photo("coffee", (32, 40)), photo("chelsea", (32, 40))])) * 2 - 1
    assert torch.isinf(psnr(x, x)).all() and (psnr(x, x) > 0).all()
    assert torch.allclose(ssim(x, x), torch.ones(2, dtype=torch.float64), atol=1e-12)


def test_metrics_decrease_with_noise() -> None:
    rng = np.random.default_rng(3)
    a = np.stack([photo("astronaut", (48, 48))])
    x = torch.from_numpy(a)
    values = [
        (psnr(x, y, 1.0).item(), ssim(x, y, 1.0).item())
        for y in (torch.from_numpy(distort(a, rng, n)) for n in (0.01, 0.05, 0.2))
    ]
    assert values[0][0] > values[1][0] > values[2][0]
    assert values[0][1] > values[1][1] > values[2][1]


def test_psnr_value_by_hand() -> None:
    """A constant error of 0.1 on a range of 2: 10 log10(4 / 0.01) = 26.02 dB."""
    x = torch.zeros(1, 3, 16, 16)
    assert psnr(x, x + 0.1).item() == pytest.approx(10 * math.log10(4 / 0.01), abs=1e-5)


def test_video_metrics_are_means_over_frames() -> None:
    rng = np.random.default_rng(4)
    a = rng.random((2, 3, 4, 24, 32))  # (B, C, F, H, W)
    b = distort(a, rng, 0.1)
    vp = video_psnr(torch.from_numpy(a), torch.from_numpy(b), data_range=1.0)
    vs = video_ssim(torch.from_numpy(a), torch.from_numpy(b), data_range=1.0)
    for i in range(2):
        frames = range(a.shape[2])
        ref_p = np.mean([peak_signal_noise_ratio(a[i, :, f], b[i, :, f], data_range=1.0) for f in frames])
        ref_s = np.mean([sk_ssim(a[i, :, f], b[i, :, f], 1.0) for f in frames])
        assert vp[i].item() == pytest.approx(ref_p, abs=1e-9)
        assert vs[i].item() == pytest.approx(ref_s, abs=1e-9)


def test_bad_inputs_raise() -> None:
    x = torch.zeros(1, 3, 16, 16)
    with pytest.raises(ValueError, match="one shape"):
        psnr(x, torch.zeros(1, 3, 16, 17))
    with pytest.raises(ValueError, match="11x11"):
        ssim(torch.zeros(1, 3, 10, 32), torch.zeros(1, 3, 10, 32))
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        ssim(torch.zeros(3, 16, 16), torch.zeros(3, 16, 16))
    with pytest.raises(ValueError, match="clips"):
        video_psnr(x, x)


# ---------------------------------------------------------------------------- pieces: bounded memory, same values


@pytest.mark.parametrize("budget", [300, 2000, 3 * 37 * 53, 10**6])
def test_row_bands_and_image_groups_match_skimage(budget: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever the piece size (row bands of 20+ rows, whole images, several images), the values are the same."""
    monkeypatch.setattr(metrics, "CHUNK_PIXELS", budget)
    rng = np.random.default_rng(5)
    a = np.stack([photo(n, (37, 53)) for n in ("astronaut", "coffee", "chelsea")])  # (3, 3, 37, 53)
    check_against_skimage(a, distort(a, rng, 0.05), data_range=1.0)
    gray = photo("camera", (64, 23))[None]  # a narrow image: bands of the minimum height
    check_against_skimage(gray, distort(gray, rng, 0.05), data_range=1.0)


def test_metrics_memory_stays_a_fraction_of_the_image(monkeypatch: pytest.MonkeyPatch) -> None:
    """No tensor made while measuring an RGB pair is larger than a quarter of one image: pieces, not images.

    Scaled down (512^2, pieces of 2^15 pixels) to keep the dispatch hook quick. The whole-image float64
    computation made a (15, H, W) float64 stack: 10x one float32 image. Peak RSS measured for the CLI on a
    4096^2 photograph: 1.54 GB (23+ GB before, killed).
    """
    monkeypatch.setattr(metrics, "CHUNK_PIXELS", 1 << 15)
    from torch.utils._python_dispatch import TorchDispatchMode

    class LargestAllocation(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.largest = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            inputs = {a.untyped_storage().data_ptr() for a in args if isinstance(a, torch.Tensor)}
            for t in out if isinstance(out, (tuple, list)) else (out,):
                if isinstance(t, torch.Tensor) and t.untyped_storage().data_ptr() not in inputs:  # not a view
                    self.largest = max(self.largest, t.untyped_storage().nbytes())
            return out

    x = torch.rand(1, 3, 512, 512) * 2 - 1
    y = (x + 0.05 * torch.randn_like(x)).clamp(-1, 1)
    image_bytes = x.numel() * x.element_size()
    for metric in (psnr, ssim):
        with LargestAllocation() as mode:
            metric(x, y)
        assert mode.largest <= image_bytes / 4, (metric.__name__, mode.largest / image_bytes)
    clip_x, clip_y = x.unsqueeze(2).expand(-1, -1, 3, -1, -1), y.unsqueeze(2).expand(-1, -1, 3, -1, -1)
    with LargestAllocation() as mode:
        video_ssim(clip_x, clip_y)
    assert mode.largest <= image_bytes / 4


def test_frame_metrics_are_means_over_frames_of_all_chunks() -> None:
    rng = np.random.default_rng(6)
    a = torch.from_numpy(rng.random((3, 7, 24, 32)))  # (C, F, H, W)
    b = torch.from_numpy(distort(a.numpy(), rng, 0.1))
    acc = metrics.FrameMetrics(data_range=1.0)
    for start, stop in ((0, 3), (3, 6), (6, 7)):  # chunks of unequal length
        acc.add(a[:, start:stop], b[:, start:stop])
    assert acc.frames == 7
    assert acc.psnr == pytest.approx(video_psnr(a[None], b[None], 1.0).item(), abs=1e-9)
    assert acc.ssim == pytest.approx(video_ssim(a[None], b[None], 1.0).item(), abs=1e-9)
    assert re.fullmatch(r"PSNR \d+\.\d\d dB  SSIM -?\d\.\d{4}", acc.summary())
    small = metrics.FrameMetrics()
    small.add(torch.zeros(3, 2, 10, 40), torch.zeros(3, 2, 10, 40) + 0.1)
    assert small.ssim is None and "n/a (under 11 px)" in small.summary()
