"""The flow-matching pixel decoder: shapes, determinism, causality, training forward, checkpoints and the CLI."""

import json
import logging
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hydra_x import HydraXTokenizer
from hydra_x.cli import main
from hydra_x.data.media import write_image
from hydra_x.data.video import write_video
from hydra_x.nn.flow import clean_estimate, interpolate
from tests.helpers import pixels, tiny

FRAMES = 17  # latent steps: 0 <- frame 0, 1 <- frames 1-4, 2 <- 5-8, 3 <- 9-12, 4 <- 13-16


def flow(**overrides) -> HydraXTokenizer:
    model = tiny(decoder="flow", **overrides)
    # adaLN-Zero starts every time-modulated block as the identity; perturb the modulations so that the
    # tests see a decoder that uses t and its attention (as a trained one does).
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        for name, p in model.decoder.named_parameters():
            if "modulation" in name:
                p.normal_(0, 0.05)
    return model


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------------------- sampling


@pytest.mark.parametrize("folds", [(2, 2), (4, 1), (1, 1)])
def test_any_step_count_gives_the_right_shapes_and_a_seed_fixes_the_pixels(folds):
    model = flow(temporal_folds=folds)
    factor = model.config.temporal_factor
    frames = 1 + 2 * factor
    for x in (pixels(2, 3, 32, 48), pixels(2, 3, frames, 32, 48)):
        z = model.encode(x)
        outputs = {}
        for steps in (1, 4, 16):
            out = model.decode(z, steps=steps, generator=gen(3))
            assert out.shape == x.shape and out.dtype == torch.float32 and torch.isfinite(out).all()
            assert torch.equal(out, model.decode(z, steps=steps, generator=gen(3)))
            outputs[steps] = out
        assert not torch.allclose(outputs[4], model.decode(z, steps=4, generator=gen(4)))
        assert not torch.allclose(outputs[1], outputs[16])
    one_frame = model.decode(model.encode(pixels(1, 3, 32, 32)), video=True, steps=2, generator=gen())
    assert one_frame.shape == (1, 3, 1, 32, 32)


def test_decode_defaults_to_the_configured_steps_and_one_step_is_the_clean_estimate():
    model = flow(flow_steps=3)
    z = model.encode(pixels(2, 3, 32, 32))
    torch.testing.assert_close(model.decode(z, generator=gen()), model.decode(z, steps=3, generator=gen()))
    # One Euler step from t = 1: the decoder's clean estimate of the noise it started from.
    noise = torch.randn(2, 3, 1, 32, 32, generator=gen())
    tokens = z.flatten(3).permute(0, 2, 3, 1)  # (B, S, N, C)
    ones = torch.ones(2)
    estimate = clean_estimate(noise, ones, model.decoder(tokens, (2, 2), noise, ones))[:, :, 0]
    torch.testing.assert_close(model.decode(z, steps=1, generator=gen()), estimate, rtol=1e-5, atol=1e-5)


def test_bfloat16_sampling_keeps_the_model_dtype():
    model = flow().to(torch.bfloat16)
    z = model.encode(pixels(1, 3, 5, 32, 32).bfloat16())
    out = model.decode(z, steps=4, generator=gen())
    assert out.dtype == torch.bfloat16 and out.shape == (1, 3, 5, 32, 32) and torch.isfinite(out).all()


# ---------------------------------------------------------------------------- causality and layout


def _velocity(model, z, x_t, t):
    tokens = z.flatten(3).permute(0, 2, 3, 1)
    return model.decoder(tokens, (z.shape[-2], z.shape[-1]), x_t, t)


@pytest.mark.parametrize("mode", ["tubelet", "causal"])
def test_later_latent_steps_and_later_noisy_frames_do_not_change_earlier_velocities(mode):
    model = flow(attention=mode)
    zx = model.encode(pixels(1, 3, FRAMES, 32, 32))
    zy = torch.cat((zx[:, :, :3], model.encode(pixels(1, 3, FRAMES, 32, 32, seed=1))[:, :, 3:]), 2)
    x_t = torch.randn(1, 3, FRAMES, 32, 32, generator=gen())
    y_t = x_t.clone()
    y_t[:, :, 9:] = torch.randn(1, 3, FRAMES - 9, 32, 32, generator=gen(1))  # frames of steps 3 and 4
    t = torch.tensor([0.6])
    vx, vy = _velocity(model, zx, x_t, t), _velocity(model, zy, y_t, t)
    assert torch.equal(vx[:, :, :9], vy[:, :, :9])  # frames 0-8 come only from steps 0-2
    assert not torch.allclose(vx[:, :, 9:], vy[:, :, 9:])
    # So does sampling, from the same noise.
    dx, dy = (model.decode(z, steps=3, generator=gen()) for z in (zx, zy))
    assert torch.equal(dx[:, :, :9], dy[:, :, :9])


def test_full_attention_lets_later_steps_change_earlier_velocities():
    model = flow(attention="full")
    zx = model.encode(pixels(1, 3, FRAMES, 32, 32))
    zy = zx.clone()
    zy[:, :, 3:] += 1.0
    x_t, t = torch.randn(1, 3, FRAMES, 32, 32, generator=gen()), torch.tensor([0.6])
    assert not torch.allclose(_velocity(model, zx, x_t, t)[:, :, :9], _velocity(model, zy, x_t, t)[:, :, :9])


@pytest.mark.parametrize("mode", ["tubelet", "causal"])
def test_an_image_decodes_like_the_anchor_of_a_clip(mode):
    model = flow(attention=mode)
    clip = pixels(2, 3, 9, 32, 48)
    z_clip = model.encode(clip)
    x_t = torch.randn(2, 3, 9, 32, 48, generator=gen())
    t = torch.tensor([0.3, 0.8])
    v_clip = _velocity(model, z_clip, x_t, t)
    v_image = _velocity(model, z_clip[:, :, :1], x_t[:, :, :1], t)
    torch.testing.assert_close(v_image[:, :, 0], v_clip[:, :, 0], rtol=1e-5, atol=1e-5)


def test_the_decoder_depends_on_t_and_starts_as_adaln_zero():
    fresh = tiny(decoder="flow")
    split = fresh.config.decoder_unfold_at
    assert split == fresh.config.decoder_depth // 2  # the flow decoder's default split
    for block in fresh.decoder.blocks[split:]:
        assert not block.modulation.weight.any() and not block.modulation.bias.any()
    model = flow()
    z = model.encode(pixels(2, 3, 32, 32))
    x_t = torch.randn(2, 3, 1, 32, 32, generator=gen())
    assert not torch.allclose(_velocity(model, z, x_t, torch.full((2,), 0.2)), _velocity(model, z, x_t, torch.ones(2)))


# ---------------------------------------------------------------------------- training forward


@pytest.mark.parametrize("prediction", ["x", "velocity"])
def test_the_training_forward_returns_velocity_target_and_clean_estimate_and_trains_every_part(prediction):
    model = flow(flow_prediction=prediction).train()
    x = pixels(2, 3, 5, 32, 32)
    eps, t = torch.randn(2, 3, 5, 32, 32, generator=gen()), torch.tensor([0.25, 0.75])
    out = model(x, noise=torch.zeros(2, 2, 4, 64), flow_noise=eps, flow_t=t)
    torch.testing.assert_close(out.velocity_target, eps - x)
    torch.testing.assert_close(out.x_rec, clean_estimate(interpolate(x, eps, t), t, out.velocity))
    torch.testing.assert_close(out.velocity, _velocity(model, out.z, interpolate(x, eps, t), t))
    (out.velocity - out.velocity_target).square().mean().backward()
    for name, p in model.decoder.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert model.gen_vit.blocks[0].mlp.fc1.weight.grad.abs().sum() > 0  # through z into the encoder
    image = model(x[:, :, 0], flow_noise=eps[:, :, 0], flow_t=t)
    assert image.velocity.shape == image.velocity_target.shape == image.x_rec.shape == (2, 3, 32, 32)


def test_sampling_through_forward_equals_decode_with_the_same_noise():
    model = flow(flow_steps=5)
    x = pixels(2, 3, 5, 32, 32)
    noise = torch.randn(2, 3, 5, 32, 32, generator=gen(9))
    with torch.no_grad():
        out = model(x, flow_noise=noise, semantic=False)
    torch.testing.assert_close(out.x_rec, model.decode(model.encode(x), generator=gen(9)), rtol=1e-5, atol=1e-5)
    assert out.velocity is None


# ---------------------------------------------------------------------------- config, counts, checkpoints


def test_bad_decoder_options_are_named():
    with pytest.raises(ValueError, match="decoder must be one of"):
        tiny(decoder="diffusion")
    with pytest.raises(ValueError, match="flow_steps must be a positive integer"):
        tiny(decoder="flow", flow_steps=0)
    with pytest.raises(ValueError, match="flow_prediction"):
        tiny(decoder="flow", flow_prediction="eps")
    with pytest.raises(ValueError, match="flow_time_dim"):
        tiny(decoder="flow", flow_time_dim=7)
    z = tiny().encode(pixels(1, 3, 32, 32))
    with pytest.raises(ValueError, match="regression decoder"):
        tiny().decode(z, steps=4)
    with pytest.raises(ValueError, match="sampling steps"):
        flow().decode(z, steps=0)


def test_parameter_counts_include_the_flow_decoder():
    counts = HydraXTokenizer.from_preset("so400m", device="meta", decoder="flow").parameter_counts()
    model = HydraXTokenizer.from_preset("so400m", device="meta", decoder="flow")
    assert counts["decoder"] == sum(p.numel() for p in model.decoder.parameters())
    assert counts["total"] == sum(p.numel() for p in model.parameters())
    regression = HydraXTokenizer.from_preset("so400m", device="meta").parameter_counts()
    assert counts["decoder"] > regression["decoder"] and counts["gen_vit"] == regression["gen_vit"]


def test_checkpoints_record_their_decoder_kind_and_refuse_the_other_kind(tmp_path, caplog):
    model = flow()
    model.save_pretrained(tmp_path / "flow")
    tiny().save_pretrained(tmp_path / "regression")
    assert json.loads((tmp_path / "flow" / "config.json").read_text())["decoder"] == "flow"
    assert json.loads((tmp_path / "regression" / "config.json").read_text())["decoder"] == "regression"
    loaded = HydraXTokenizer.from_pretrained(tmp_path / "flow")
    z = model.encode(pixels(1, 3, 32, 32))
    assert torch.equal(loaded.decode(z, steps=2, generator=gen()), model.decode(z, steps=2, generator=gen()))
    with pytest.raises(ValueError, match=r"regression pixel decoder, but the config asks for decoder='flow'"):
        HydraXTokenizer.from_pretrained(tmp_path / "regression", decoder="flow")
    with pytest.raises(ValueError, match=r"flow pixel decoder, but the config asks for decoder='regression'"):
        HydraXTokenizer.from_pretrained(tmp_path / "flow", decoder="regression")
    # strict=False: an encoder reused under a fresh decoder of the other kind, with a warning that says so.
    with caplog.at_level(logging.WARNING):
        mixed = HydraXTokenizer.from_pretrained(tmp_path / "regression", decoder="flow", strict=False)
    assert "keeps its initialisation" in caplog.text and mixed.config.decoder == "flow"
    assert torch.equal(mixed.gen_vit.blocks[0].mlp.fc1.weight, tiny().gen_vit.blocks[0].mlp.fc1.weight)


def test_an_old_config_without_the_decoder_field_loads_as_regression(tmp_path):
    model = tiny()
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    for key in ("decoder", "flow_steps", "flow_time_dim"):
        del config[key]
    (tmp_path / "config.json").write_text(json.dumps(config))
    loaded = HydraXTokenizer.from_pretrained(tmp_path)
    assert loaded.config.decoder == "regression"
    z = model.encode(pixels(1, 3, 32, 32))
    assert torch.equal(loaded.decode(z), model.decode(z))


# ---------------------------------------------------------------------------- command line


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    root = tmp_path_factory.mktemp("flow-cli")
    paths = {"image": root / "image.png", "video": root / "clip.mp4"}
    write_image(paths["image"], pixels(3, 48, 64, seed=4))
    write_video(paths["video"], pixels(3, 7, 32, 32, seed=5).clamp(-0.8, 0.8), 24)
    flow().save_pretrained(root / "flow-ckpt")
    tiny().save_pretrained(root / "regression-ckpt")
    paths["flow"], paths["regression"] = root / "flow-ckpt", root / "regression-ckpt"
    return paths


def cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def png(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im)


def test_cli_reconstruct_with_steps_is_deterministic_under_a_seed(capsys, media, tmp_path):
    outs = {}
    for name, seed, steps in (("a", 3, 4), ("b", 3, 4), ("c", 4, 4), ("d", 3, 1)):
        code, out, err = cli(
            capsys, "reconstruct", media["image"], tmp_path / f"{name}.png", "--ckpt", media["flow"], "--steps", steps,
            "--seed", seed,
        )  # fmt: skip
        assert code == 0, err
        assert re.search(r"PSNR \S+ dB", out)
        outs[name] = png(tmp_path / f"{name}.png")
    assert outs["a"].shape == (48, 64, 3)
    assert np.array_equal(outs["a"], outs["b"])
    assert not np.array_equal(outs["a"], outs["c"]) and not np.array_equal(outs["a"], outs["d"])
    # decode of encode repeats reconstruct (same seed), for an image and for a video in chunks.
    code, _, err = cli(capsys, "encode", media["image"], tmp_path / "z.safetensors", "--ckpt", media["flow"])
    assert code == 0, err
    code, _, err = cli(capsys, "decode", tmp_path / "z.safetensors", tmp_path / "dec.png", "--steps", 4, "--seed", 3)
    assert code == 0, err
    assert np.array_equal(png(tmp_path / "dec.png"), outs["a"])
    args = ("--ckpt", media["flow"], "--clip-frames", 5, "--steps", 2)
    code, out, err = cli(capsys, "reconstruct", media["video"], tmp_path / "v.mp4", *args)
    assert code == 0 and "mean over 7 frames" in out, err
    code, out, _ = cli(capsys, "info", "--ckpt", media["flow"])
    assert code == 0 and "pixel decoder: flow" in out


def test_cli_steps_on_a_regression_checkpoint_is_a_one_line_error(capsys, media, tmp_path):
    cases = {
        "has a regression decoder": ("reconstruct", media["image"], "--ckpt", media["regression"], "--steps", 4),
        "preset tiny (random weights) has a regression": ("reconstruct", media["image"], "--steps", 4),
        "must be at least 1": ("reconstruct", media["image"], "--ckpt", media["flow"], "--steps", 0),
    }
    for needle, (command, source, *options) in cases.items():
        code, _, err = cli(capsys, command, source, tmp_path / "r.png", *options)
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and lines[0].startswith("hydra-x: error: --steps"), err
        assert needle in lines[0], (needle, lines[0])
    code, _, err = cli(capsys, "encode", media["image"], tmp_path / "z.safetensors", "--ckpt", media["regression"])
    assert code == 0, err
    code, _, err = cli(capsys, "decode", tmp_path / "z.safetensors", tmp_path / "r.png", "--steps", 2)
    assert code == 2 and "regression decoder" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r.png").exists()
    code, out, _ = cli(capsys, "info", "--ckpt", media["regression"])
    assert code == 0 and "pixel decoder: regression" in out
