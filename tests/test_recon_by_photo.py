"""benchmarks/tokenizer_recon_by_photo.py: one row per embedded photograph, split marked, scores reproducible."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from tokenizer_recon_by_photo import photo_table  # noqa: E402

from hydra_x.data import HELDOUT_PHOTOS, TRAIN_PHOTOS  # noqa: E402
from hydra_x.data.embedded import photo_crop  # noqa: E402
from hydra_x.eval.metrics import psnr  # noqa: E402
from tests.helpers import tiny  # noqa: E402


def test_every_photograph_gets_a_row_with_its_split_and_the_psnr_of_its_crops():
    model = tiny().eval()
    rows = photo_table(model, size=32, crops=2, clips=1, frames=5, seed=3)
    assert [r["photo"] for r in rows] == list(TRAIN_PHOTOS + HELDOUT_PHOTOS)
    assert {r["photo"] for r in rows if r["split"] == "held out"} == set(HELDOUT_PHOTOS)
    assert all(np.isfinite(r["image_psnr"]) and np.isfinite(r["clip_psnr"]) for r in rows)
    assert rows == photo_table(model, size=32, crops=2, clips=1, frames=5, seed=3)
    # The first photograph's image score is that of the same two crops reconstructed directly.
    rng = np.random.default_rng([3, 0])
    x = torch.stack([photo_crop(TRAIN_PHOTOS[0], (32, 32), rng) for _ in range(2)])
    with torch.no_grad():
        expected = psnr(model(x, semantic=False).x_rec.clamp(-1, 1), x).mean().item()
    assert rows[0]["image_psnr"] == expected
