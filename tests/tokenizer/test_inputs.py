"""Every bad input to the public API is a ValueError that names the problem."""

import numpy as np
import pytest
import torch

from tests.helpers import pixels, tiny


@pytest.fixture(scope="module")
def model():
    return tiny()


@pytest.mark.parametrize(
    "x, message",
    [
        (pixels(1, 4, 32, 32), "must have 3 channels in dimension 1; got 4"),
        (pixels(1, 32, 32, 3), "must have 3 channels in dimension 1; got 32 .* channels-last"),
        (pixels(1, 3, 16, 32, 32), "got 16 frames; nearest valid frame counts: 13 or 17"),
        (pixels(1, 3, 0, 32, 32), "got 0 frames"),
        (pixels(1, 3, 40, 32), "height 40 is not divisible by the patch size 16; nearest valid heights: 32 or 48"),
        (pixels(1, 3, 32, 8), "width 8 is not divisible by the patch size 16; nearest valid widths: 16"),
        (pixels(0, 3, 32, 32), "empty batch"),
        (pixels(3, 32, 32), r"shape \(B, C, H, W\) for images or \(B, C, 1 \+ T, H, W\)"),
        (torch.zeros(1, 3, 32, 32, dtype=torch.uint8), "floating-point .* got dtype torch.uint8"),
        (np.zeros((1, 3, 32, 32), dtype=np.float32), "must be a torch.Tensor, got ndarray"),
        (pixels(1, 3, 32, 32) * 200, "values must lie in \\[-1, 1\\].*uint8-range"),
    ],
)
def test_bad_pixels(model, x, message):
    for call in (model.encode, model.forward):
        with pytest.raises(ValueError, match=message):
            call(x)


@pytest.mark.parametrize("bad, name", [(float("nan"), "NaN"), (float("inf"), "Inf"), (-float("inf"), "Inf")])
def test_nan_and_inf_are_caught_unless_the_check_is_off(bad, name):
    model = tiny()
    x = pixels(1, 3, 5, 32, 32)
    x[0, 1, 3, 7, 9] = bad
    with pytest.raises(ValueError, match=f"pixels contains {name} values"):
        model.encode(x)
    z = model.encode(x.nan_to_num(0.0, 0.0, 0.0))
    z[0, 0, 0, 0, 0] = bad
    with pytest.raises(ValueError, match=f"latent contains {name} values"):
        model.decode(z)
    with pytest.raises(ValueError, match=f"latent contains {name} values"):
        model.semantic(z)
    model.validate_inputs = False  # what a training loop does: no device sync per step
    assert model.encode(x).shape == (1, 64, 2, 2, 2)


def test_bad_latents(model):
    with pytest.raises(ValueError, match="64 channels in dimension 1"):
        model.decode(torch.zeros(1, 32, 1, 2, 2))
    with pytest.raises(ValueError, match=r"shape \(B, C, S, h, w\)"):
        model.semantic(torch.zeros(64, 2, 2))
    with pytest.raises(ValueError, match="empty batch"):
        model.decode(torch.zeros(0, 64, 1, 2, 2))
    with pytest.raises(ValueError, match="video=False needs a one-step latent"):
        model.decode(torch.zeros(1, 64, 2, 2, 2), video=False)


def test_pair_inputs_must_match(model):
    with pytest.raises(ValueError, match="two image batches of one shape"):
        model.encode_pair(pixels(1, 3, 32, 32), pixels(1, 3, 32, 48))
    with pytest.raises(ValueError, match="two image batches of one shape"):
        model.encode_pair(pixels(1, 3, 5, 32, 32), pixels(1, 3, 5, 32, 32))
