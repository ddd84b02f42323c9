"""PSNR and SSIM on batched tensors, numerically equal to scikit-image's, in memory bounded at any image size.

Reference definitions (what the tests compare against, per image)::

    skimage.metrics.peak_signal_noise_ratio(a, b, data_range=R)
    skimage.metrics.structural_similarity(a, b, channel_axis=..., gaussian_weights=True, sigma=1.5,
                                          use_sample_covariance=False, data_range=R)

Why not torchmetrics: its SSIM (1.9, ``structural_similarity_index_measure``) pads the images by reflection
(PyTorch's "reflect", which excludes the edge pixel, unlike SciPy's) and averages the SSIM map over the
*whole* image, border included, while scikit-image averages only the pixels whose 11x11 window lies inside
the image; it also clamps negative variances to 0. Measured on 64-128 px photographs with noise, its SSIM
differs from scikit-image's by 1e-2 (1e-4 on pure noise), far outside the 1e-4 we want. So SSIM is computed
here with a "valid" separable Gaussian filter, which is exactly scikit-image's cropped map. torchmetrics'
PSNR does agree (to float32 precision), but it is one line and not worth a dependency.

Everything is computed in float64 (float32 would lose the local variances of flat regions to cancellation
in E[x^2] - E[x]^2) and returned as float64 tensors of shape (B,), one value per image. The work is done
piece by piece, :data:`CHUNK_PIXELS` pixels at a time: groups of whole images while they fit, row bands of
one channel otherwise, so a 4096 x 4096 photograph costs some 30 MiB of float64 maps rather than the ~1.7 KB
a pixel the whole-image computation took (28 GB); on a CPU the pieces stay in cache, which also makes it
several times faster. Pixels in this project are in [-1, 1], hence the default ``data_range=2.0``; pass 1.0 for
[0, 1] and 255.0 for uint8-range images.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import torch

SSIM_SIGMA = 1.5
SSIM_RADIUS = 5  # scikit-image: int(truncate * sigma + 0.5) with truncate = 3.5 -> an 11x11 window
SSIM_K1, SSIM_K2 = 0.01, 0.03
# Pixels handled at once. On a CPU: a float64 map of this size is 2 MiB, so the dozen maps of an SSIM piece
# stay in the L3 cache (measured on a 4096^2 image, one thread: 3.2 s of CPU at 1 << 18, 3.7 s at 1 << 17);
# on a GPU larger pieces keep the kernels busy.
CHUNK_PIXELS = 1 << 18
CHUNK_PIXELS_GPU = 1 << 24

_Index = tuple[slice | int, ...]


def _check_pair(x: torch.Tensor, y: torch.Tensor, ndim: int, layout: str) -> None:
    if x.shape != y.shape:
        raise ValueError(f"the two inputs must have one shape, got {tuple(x.shape)} and {tuple(y.shape)}")
    if x.ndim != ndim:
        raise ValueError(f"expected a batch {layout}, got shape {tuple(x.shape)}")
    if x.shape[0] == 0:
        raise ValueError(f"empty batch: shape {tuple(x.shape)}")


def _pieces(shape: torch.Size, halo: int, budget: int) -> Iterator[tuple[slice, _Index]]:
    """(images, index into the (B, C, H, W) batch) of pieces of about ``budget`` pixels covering it.

    Whole images are grouped while one fits in the budget; a larger image is cut into row bands of one
    channel that overlap by ``halo`` rows (the filter's reach), so every output row is computed exactly once.
    """
    b, c, h, w = shape
    if c * h * w <= budget:
        step = budget // (c * h * w)
        for i in range(0, b, step):
            yield slice(i, min(i + step, b)), (slice(i, min(i + step, b)),)
        return
    rows = max(budget // w - halo, 2 * halo, 1)  # output rows per band; a band of rows + halo input rows
    for i in range(b):
        for ch in range(c):
            for r in range(0, h - halo, rows):
                yield slice(i, i + 1), (slice(i, i + 1), ch, slice(r, min(r + rows, h - halo) + halo))


def _budget(x: torch.Tensor) -> int:
    return CHUNK_PIXELS if x.device.type == "cpu" else CHUNK_PIXELS_GPU


def psnr(x: torch.Tensor, y: torch.Tensor, data_range: float = 2.0) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB per image: (B, C, H, W) x2 -> (B,); identical images give +inf."""
    _check_pair(x, y, 4, "(B, C, H, W)")
    sse = torch.zeros(x.shape[0], dtype=torch.float64, device=x.device)
    for images, index in _pieces(x.shape, 0, _budget(x)):
        d = x[index].double() - y[index].double()
        sse[images] += d.square_().flatten(1).sum(1)
    mse = sse / x[0].numel()
    return 10 * torch.log10(data_range**2 / mse)  # mse = 0 -> inf, like scikit-image (without its warning)


def _gaussian_weights() -> list[float]:
    """SciPy's ``gaussian_filter`` kernel for sigma 1.5, truncate 3.5: 11 floats that sum to 1."""
    w = [math.exp(-0.5 * (r / SSIM_SIGMA) ** 2) for r in range(-SSIM_RADIUS, SSIM_RADIUS + 1)]
    total = math.fsum(w)
    return [v / total for v in w]


_WEIGHTS = _gaussian_weights()


def _filter_valid(maps: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian filter without padding: (..., H, W) -> (..., H - 10, W - 10).

    Each output pixel sees a full window inside the image: exactly the pixels scikit-image keeps after
    filtering with reflected borders and cropping (win_size - 1) // 2 from every side. The window is
    symmetric, so each pass adds the two pixels at one distance before weighting them: six products a
    pixel instead of eleven, on shifted views (no unfolded copies, unlike a float64 convolution on CPU).
    """
    r, w = SSIM_RADIUS, _WEIGHTS
    h, width = maps.shape[-2:]
    rows = maps[..., r : h - r, :] * w[r]  # along H first: its shifted views are contiguous blocks of rows
    pair = torch.empty_like(rows)
    for k in range(r):
        torch.add(maps[..., k : h - 2 * r + k, :], maps[..., 2 * r - k : h - k, :], out=pair)
        rows.add_(pair, alpha=w[k])
    out = rows[..., r : width - r] * w[r]
    pair = pair[..., : width - 2 * r]
    for k in range(r):
        torch.add(rows[..., k : width - 2 * r + k], rows[..., 2 * r - k : width - k], out=pair)
        out.add_(pair, alpha=w[k])
    return out


def _ssim_sum(x: torch.Tensor, y: torch.Tensor, data_range: float) -> torch.Tensor:
    """The SSIM map of one piece (n, ..., H, W), summed per leading index: (n,) float64."""
    x, y = x.double(), y.double()
    mu_x, mu_y = _filter_valid(x), _filter_valid(y)
    xy = _filter_valid(x * y)
    sq = _filter_valid(x * x + y * y)  # only var_x + var_y enters the formula: one map, not two
    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    mu_xy = mu_x * mu_y
    mu_sq = mu_x.square_().add_(mu_y.square_())  # mu_x^2 + mu_y^2
    num = (2 * mu_xy + c1) * (2 * (xy - mu_xy) + c2)
    den = (mu_sq + c1) * (sq - mu_sq + c2)
    return num.div_(den).flatten(1).sum(1)


def ssim(x: torch.Tensor, y: torch.Tensor, data_range: float = 2.0) -> torch.Tensor:
    """Structural similarity per image, mean over channels and pixels: (B, C, H, W) x2 -> (B,).

    Gaussian window (sigma 1.5, 11x11), K1 = 0.01, K2 = 0.03, population (co)variances; H and W must be
    at least 11, as in scikit-image.
    """
    _check_pair(x, y, 4, "(B, C, H, W)")
    b, c, h, w = x.shape
    if min(h, w) < 2 * SSIM_RADIUS + 1:
        raise ValueError(f"SSIM needs images of at least 11x11 pixels (its window), got {h}x{w}")
    total = torch.zeros(b, dtype=torch.float64, device=x.device)
    for images, index in _pieces(x.shape, 2 * SSIM_RADIUS, _budget(x)):
        total[images] += _ssim_sum(x[index], y[index], data_range)
    return total / (c * (h - 2 * SSIM_RADIUS) * (w - 2 * SSIM_RADIUS))  # every channel has as many pixels


def _per_frame_mean(
    metric: Callable[..., torch.Tensor], x: torch.Tensor, y: torch.Tensor, data_range: float
) -> torch.Tensor:
    """A per-image metric on (B, C, F, H, W) clips, frame by frame (bounded memory), mean over frames: (B,)."""
    _check_pair(x, y, 5, "of clips (B, C, F, H, W)")
    values = [metric(x[:, :, f], y[:, :, f], data_range=data_range) for f in range(x.shape[2])]
    return torch.stack(values, dim=1).mean(1)


def video_psnr(x: torch.Tensor, y: torch.Tensor, data_range: float = 2.0) -> torch.Tensor:
    """Mean over frames of the per-frame PSNR (not the PSNR of the clip's mean error): (B, C, F, H, W) -> (B,)."""
    return _per_frame_mean(psnr, x, y, data_range)


def video_ssim(x: torch.Tensor, y: torch.Tensor, data_range: float = 2.0) -> torch.Tensor:
    """Mean over frames of the per-frame SSIM: (B, C, F, H, W) -> (B,)."""
    return _per_frame_mean(ssim, x, y, data_range)


class FrameMetrics:
    """Means over frames of PSNR and SSIM, added chunk by chunk (what ``hydra-x reconstruct`` prints).

    SSIM is left out (None) for frames under 11 pixels a side, where its window does not fit.
    """

    def __init__(self, data_range: float = 2.0) -> None:
        self.data_range, self.frames, self.too_small = data_range, 0, False
        self._psnr_sum, self._ssim_sum = 0.0, 0.0

    def add(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """One chunk: (C, n, H, W) originals and reconstructions."""
        n = x.shape[1]
        self._psnr_sum += video_psnr(x[None], y[None], self.data_range).item() * n
        self.too_small |= min(x.shape[-2:]) < 2 * SSIM_RADIUS + 1
        if not self.too_small:
            self._ssim_sum += video_ssim(x[None], y[None], self.data_range).item() * n
        self.frames += n

    @property
    def psnr(self) -> float:
        return self._psnr_sum / self.frames

    @property
    def ssim(self) -> float | None:
        return None if self.too_small else self._ssim_sum / self.frames

    def summary(self) -> str:
        ssim = f"{self.ssim:.4f}" if self.ssim is not None else f"n/a (under {2 * SSIM_RADIUS + 1} px)"
        return f"PSNR {self.psnr:.2f} dB  SSIM {ssim}"
