"""LPIPS-VGG in plain torch, on random weights (the real ones cannot be fetched offline); the lookup of its
weights is in test_lpips_lookup.py."""

import pytest
import torch
from safetensors.torch import load_file, save_file

from hydra_x.losses.lpips import LPIPS, convert_official, load_lpips, main, save_lpips, weight_keys
from hydra_x.losses.lpips_weights import LPIPSWeightsError
from tests.helpers import pixels

SIZE = 32  # VGG's four poolings leave 2 x 2 at relu5_3


@pytest.fixture(scope="module")
def lpips():
    torch.manual_seed(0)
    return LPIPS()


def test_identical_is_zero_different_is_positive_and_symmetric(lpips):
    x, y = pixels(2, 3, SIZE, SIZE, seed=0), pixels(2, 3, SIZE, SIZE, seed=1)
    with torch.no_grad():
        same, xy, yx = lpips(x, x), lpips(x, y), lpips(y, x)
    assert same.shape == (2,) and torch.equal(same, torch.zeros(2))
    assert (xy > 0).all()
    torch.testing.assert_close(xy, yx)
    closer = lpips(x, (x + 0.05 * (y - x)))
    assert (closer < xy).all()


def test_frozen_and_gradient_flows_to_the_input(lpips):
    assert all(not p.requires_grad for p in lpips.parameters())
    lpips.train()
    assert not lpips.training  # a parent's .train() leaves it in eval mode
    x = pixels(2, 3, SIZE, SIZE, seed=0).requires_grad_()
    lpips(x, pixels(2, 3, SIZE, SIZE, seed=1)).mean().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in lpips.parameters())


def test_clips_average_over_frames(lpips):
    x, y = pixels(2, 3, 3, SIZE, SIZE, seed=0), pixels(2, 3, 3, SIZE, SIZE, seed=1)
    with torch.no_grad():
        per_frame = torch.stack([lpips(x[:, :, t], y[:, :, t]) for t in range(3)], 1)
        torch.testing.assert_close(lpips(x, y), per_frame.mean(1))
    with pytest.raises(ValueError, match="two"):
        lpips(x, y[:, :, :2])


def test_weights_file_round_trips(lpips, tmp_path):
    path = save_lpips(lpips, tmp_path / "lpips_vgg.safetensors")
    assert sorted(load_file(path)) == sorted(weight_keys())
    x, y = pixels(1, 3, SIZE, SIZE, seed=0), pixels(1, 3, SIZE, SIZE, seed=1)
    for source in (path, tmp_path):  # the file, or a folder holding lpips_vgg.safetensors
        loaded = load_lpips(source)
        assert all(not p.requires_grad for p in loaded.parameters()) and not loaded.training
        with torch.no_grad():
            assert torch.equal(loaded(x, y), lpips(x, y))


def test_bad_weights_files_are_errors_even_when_optional(lpips, tmp_path):
    state = {k: v.clone() for k, v in lpips.state_dict().items()}
    negative = dict(state, **{"lin0.weight": -state["lin0.weight"]})
    save_file(negative, tmp_path / "negative.safetensors")
    with pytest.raises(ValueError, match="non-negative"):
        load_lpips(tmp_path / "negative.safetensors", required=False)
    save_file({k: v for k, v in state.items() if k != "lin4.weight"}, tmp_path / "partial.safetensors")
    with pytest.raises(ValueError, match="missing keys.*lin4.weight"):
        load_lpips(tmp_path / "partial.safetensors")


def test_a_hub_file_that_cannot_be_read_is_an_error_even_when_optional():
    hub = dict(repo_id="nobody/no-lpips", local_files_only=True)  # offline: fails fast, like a missing repo
    with pytest.raises(LPIPSWeightsError, match=r"nobody/no-lpips/lpips_vgg\.safetensors on the Hub"):
        load_lpips(required=False, **hub)


def test_converter_from_official_style_pth_files(lpips, tmp_path):
    """The official files' key layouts: torchvision's VGG16 (with its classifier) and lpips' lin{k}.model.1."""
    state = lpips.state_dict()
    vgg = {k: v for k, v in state.items() if k.startswith("features.")}
    vgg["classifier.0.weight"] = torch.zeros(4, 4)
    lin = {f"lin{k}.model.1.weight": state[f"lin{k}.weight"] for k in range(5)}
    torch.save(vgg, tmp_path / "vgg16.pth")
    torch.save(lin, tmp_path / "vgg.pth")
    out = tmp_path / "out.safetensors"
    main(["convert", "--out", str(out), "--vgg", str(tmp_path / "vgg16.pth"), "--lin", str(tmp_path / "vgg.pth")])
    converted = load_file(out)
    assert sorted(converted) == sorted(weight_keys())
    assert all(torch.equal(converted[k], state[k]) for k in converted)
    with pytest.raises(KeyError, match="lin0.model.1.weight not in"):
        convert_official(out, vgg=tmp_path / "vgg16.pth", lin=tmp_path / "vgg16.pth")
