"""The FID Inception-v3 (TensorFlow's 2015-12-05 graph as ported by pytorch-fid), in plain torch.

pytorch-fid, torch-fidelity and torchmetrics all compute FID with this network, but all three import
torchvision, which hydra-x does not depend on. This module rebuilds the same network:

- state-dict keys are those of ``pt_inception-2015-12-05-6726825d.pth`` (pytorch-fid) -- the same file
  torch-fidelity ships as ``weights-inception-2015-12-05-6726825d.pth``: torchvision's Inception3 names
  (``Conv2d_1a_3x3.conv.weight``, ``Mixed_5b.branch1x1.bn.running_mean``, ..., ``fc.weight`` with 1008
  classes), loaded with ``torch.load(weights_only=True)`` and ``load_state_dict(strict=True)``;
- the TF graph's differences from torchvision's Inception3 (pytorch-fid's FIDInceptionA/C/E_1/E_2): average
  pools inside blocks exclude the zero padding, and the last block (Mixed_7c) max-pools its pool branch;
- the input pipeline of torch-fidelity's ``FeatureExtractorInceptionV3``: 8-bit pixel values, resized to
  299 x 299 with TensorFlow 1.x's bilinear resize (``align_corners=False``, no half-pixel centres; this is
  not ``F.interpolate``), then ``(x - 128) / 128``;
- the FID features are pool3: the 2048-d global average pool after Mixed_7c.

Our images are floats in [-1, 1]. They are first quantised to the 8-bit levels a saved PNG would hold
(``round((x + 1) * 127.5)``, as :func:`hydra_x.data.media.to_uint8`), so a reconstruction scores the same
whether it is evaluated in memory or written to disk and given to torch-fidelity.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn as nn
import torch.nn.functional as F

FID_INPUT_SIZE = 299
FID_FEATURE_DIM = 2048
FID_NUM_CLASSES = 1008  # the TF graph's classifier (1000 ImageNet classes + 8 unused); only its keys matter here


@contextmanager
def full_fp32_convolutions() -> Iterator[None]:
    """cuDNN convolutions in true fp32 inside the block (TF32 off), restored afterwards.

    PyTorch lets cuDNN use TF32 by default. Measured on an H100 with this network, TF32 moves the pool3
    features by 8e-4 relative to the CPU's; with TF32 off they agree to 1e-6. A metric should not depend on
    the GPU generation, so the feature nets run in fp32 (at about half the speed; still far faster than
    any tokenizer being evaluated).
    """
    previous = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32 = previous


def resize_bilinear_tf1(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """TensorFlow 1.x ``resize_bilinear(align_corners=False)``: (N, C, H, W) float -> (N, C, h, w).

    Output pixel i samples input coordinate ``i * H / h`` (no half-pixel offset), clamped at the last row
    and column. The coordinates are computed in the input's dtype, as torch-fidelity does, so that its
    float32 results are reproduced bit for bit on CPU.
    """

    def axis(n_in: int, n_out: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        pos = torch.arange(n_out, dtype=x.dtype, device=x.device) * torch.tensor(n_in / n_out, dtype=x.dtype)
        lo = pos.long()  # pos >= 0, so truncation is floor
        hi = (lo + 1).clamp_max(n_in - 1)
        return lo, hi, pos - lo.to(x.dtype)

    y_lo, y_hi, dy = axis(x.shape[2], size[0])
    x_lo, x_hi, dx = axis(x.shape[3], size[1])
    top, bottom = x[:, :, y_lo], x[:, :, y_hi]  # (N, C, h, W)
    top = top[..., x_lo] + (top[..., x_hi] - top[..., x_lo]) * dx  # (N, C, h, w)
    bottom = bottom[..., x_lo] + (bottom[..., x_hi] - bottom[..., x_lo]) * dx
    return top + (bottom - top) * dy[:, None]


class BasicConv2d(nn.Module):
    """Conv (no bias) -> BatchNorm (eps 1e-3, as in the TF graph) -> ReLU."""

    def __init__(self, cin: int, cout: int, kernel_size, stride=1, padding=0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel_size, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


def _tf_avg_pool(x: torch.Tensor) -> torch.Tensor:
    # TF's 3x3 SAME average pool divides by the number of real (unpadded) pixels.
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


class InceptionA(nn.Module):  # Mixed_5b..5d: 35 x 35
    def __init__(self, cin: int, pool_features: int) -> None:
        super().__init__()
        self.branch1x1 = BasicConv2d(cin, 64, 1)
        self.branch5x5_1 = BasicConv2d(cin, 48, 1)
        self.branch5x5_2 = BasicConv2d(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, padding=1)
        self.branch_pool = BasicConv2d(cin, pool_features, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([self.branch1x1(x), b5, b3, self.branch_pool(_tf_avg_pool(x))], 1)


class InceptionB(nn.Module):  # Mixed_6a: 35 -> 17
    def __init__(self, cin: int) -> None:
        super().__init__()
        self.branch3x3 = BasicConv2d(cin, 384, 3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([self.branch3x3(x), b3, F.max_pool2d(x, kernel_size=3, stride=2)], 1)


class InceptionC(nn.Module):  # Mixed_6b..6e: 17 x 17, factorised 7x7
    def __init__(self, cin: int, c7: int) -> None:
        super().__init__()
        self.branch1x1 = BasicConv2d(cin, 192, 1)
        self.branch7x7_1 = BasicConv2d(cin, c7, 1)
        self.branch7x7_2 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(cin, c7, 1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, (1, 7), padding=(0, 3))
        self.branch_pool = BasicConv2d(cin, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        d = x
        for i in range(1, 6):
            d = getattr(self, f"branch7x7dbl_{i}")(d)
        return torch.cat([self.branch1x1(x), b7, d, self.branch_pool(_tf_avg_pool(x))], 1)


class InceptionD(nn.Module):  # Mixed_7a: 17 -> 8
    def __init__(self, cin: int) -> None:
        super().__init__()
        self.branch3x3_1 = BasicConv2d(cin, 192, 1)
        self.branch3x3_2 = BasicConv2d(192, 320, 3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(cin, 192, 1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3_2(self.branch3x3_1(x))
        b7 = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
        return torch.cat([b3, b7, F.max_pool2d(x, kernel_size=3, stride=2)], 1)


class InceptionE(nn.Module):  # Mixed_7b (avg pool branch) and Mixed_7c (max pool branch, as in the TF graph)
    def __init__(self, cin: int, pool: str) -> None:
        super().__init__()
        self.pool = pool
        self.branch1x1 = BasicConv2d(cin, 320, 1)
        self.branch3x3_1 = BasicConv2d(cin, 384, 1)
        self.branch3x3_2a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(cin, 448, 1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(cin, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3_1(x)
        b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
        d = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        d = torch.cat([self.branch3x3dbl_3a(d), self.branch3x3dbl_3b(d)], 1)
        p = F.max_pool2d(x, kernel_size=3, stride=1, padding=1) if self.pool == "max" else _tf_avg_pool(x)
        return torch.cat([self.branch1x1(x), b3, d, self.branch_pool(p)], 1)


class FIDInceptionV3(nn.Module):
    """Images (N, 3, H, W) in [-1, 1], any size -> pool3 features (N, 2048) float32. Satisfies FeatureNet."""

    kind = "image"
    dim = FID_FEATURE_DIM
    name = "inception-v3-fid"  # TF 2015-12-05 Inception, pool3: the features of pytorch-fid / torch-fidelity

    def __init__(self) -> None:
        super().__init__()
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, 3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, 1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, 3)
        self.Mixed_5b = InceptionA(192, pool_features=32)
        self.Mixed_5c = InceptionA(256, pool_features=64)
        self.Mixed_5d = InceptionA(288, pool_features=64)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = InceptionC(768, c7=128)
        self.Mixed_6c = InceptionC(768, c7=160)
        self.Mixed_6d = InceptionC(768, c7=160)
        self.Mixed_6e = InceptionC(768, c7=192)
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = InceptionE(1280, pool="avg")
        self.Mixed_7c = InceptionE(2048, pool="max")
        self.fc = nn.Linear(FID_FEATURE_DIM, FID_NUM_CLASSES)  # unused for FID; present so the file loads strictly
        self.requires_grad_(False).eval()

    def train(self, mode: bool = True) -> FIDInceptionV3:
        return super().train(False)  # BatchNorm must always use the graph's running statistics

    @property
    def device(self) -> torch.device:
        return self.fc.weight.device

    @staticmethod
    def to_pixel_levels(x: torch.Tensor) -> torch.Tensor:
        """[-1, 1] floats -> the 8-bit levels 0..255 (as float32), exactly as a saved 8-bit image holds them."""
        x = torch.nan_to_num(x.float(), nan=0.0).clamp(-1, 1)
        return ((x + 1) * 127.5).round()

    def features_from_levels(self, x: torch.Tensor) -> torch.Tensor:
        """Pixel levels in [0, 255] (N, 3, H, W) -> (N, 2048): torch-fidelity's forward, '2048' output."""
        x = resize_bilinear_tf1(x.float(), (FID_INPUT_SIZE, FID_INPUT_SIZE))  # (N, 3, 299, 299)
        x = (x - 128) / 128
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))  # (N, 64, 147, 147)
        x = F.max_pool2d(x, kernel_size=3, stride=2)  # (N, 64, 73, 73)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))  # (N, 192, 71, 71)
        x = F.max_pool2d(x, kernel_size=3, stride=2)  # (N, 192, 35, 35)
        for block in ("5b", "5c", "5d", "6a", "6b", "6c", "6d", "6e", "7a", "7b", "7c"):
            x = getattr(self, f"Mixed_{block}")(x)  # ... -> (N, 2048, 8, 8)
        return F.adaptive_avg_pool2d(x, 1).flatten(1)  # (N, 2048): pool3

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"the FID Inception takes images (N, 3, H, W) in [-1, 1], got shape {tuple(x.shape)}")
        with full_fp32_convolutions():
            return self.features_from_levels(self.to_pixel_levels(x.to(self.device)))
