"""The runner: exact bookkeeping against hydra_x.eval.metrics, streaming = one shot, peers through diffusers."""

import json

import pytest
import torch

from hydra_x.eval.metrics import psnr, ssim, video_psnr, video_ssim
from hydra_x.eval.models import ModelLoadError, load_diffusers
from hydra_x.eval.protocols import resolve_protocol
from hydra_x.eval.recon import MetricUnavailableError, ReconOptions, evaluate
from hydra_x.eval.samples import EvalData, Sample
from hydra_x.losses.lpips import lpips_from_file
from tests.eval.recon_fixtures import CPU, figures, image_folder, run, tiny_nets, video_folder


@pytest.fixture(scope="module")
def nets(tmp_path_factory):
    return tiny_nets(tmp_path_factory.mktemp("nets"))


def _reference(model, data, records, video):
    """Per-sample metrics recomputed one sample at a time on the same preprocessed pairs."""
    samples = {s.index: s for s in data.items() if isinstance(s, Sample)}
    for r in records:
        x = samples[r.index].x[None]
        with torch.inference_mode():
            y = model.decode(model.encode(x), x)
        p, s = (video_psnr, video_ssim) if video else (psnr, ssim)
        assert r.psnr == pytest.approx(p(x, y).item(), abs=1e-9)
        assert r.ssim == pytest.approx(s(x, y).item(), abs=1e-9)


@pytest.mark.parametrize("source", ["embedded", "folder"])
def test_image_run_matches_the_metrics_on_the_same_pairs(tmp_path, nets, source):
    data = "embedded" if source == "embedded" else str(image_folder(tmp_path / "images"))
    result, model, d = run(
        data, "image256", nets, batch_size=1, size=32, max_samples=5 if source == "embedded" else None
    )
    assert len(result.records) == 5 and [r.index for r in result.records] == sorted(r.index for r in result.records)
    _reference(model, d, result.records, video=False)
    m = result.metrics
    assert m["psnr"]["value"] == pytest.approx(sum(r.psnr for r in result.records) / 5, rel=1e-12)
    assert m["ssim"]["value"] == pytest.approx(sum(r.ssim for r in result.records) / 5, rel=1e-12)
    # LPIPS: the same weights on the same pairs, sample by sample.
    lp = lpips_from_file(nets["lpips"])
    x = torch.stack([s.x for s in d.items() if isinstance(s, Sample)])
    with torch.inference_mode():
        expected = lp(x, model.decode(model.encode(x), x)).double()
    assert torch.allclose(torch.tensor([r.lpips for r in result.records], dtype=torch.float64), expected, rtol=1e-4)
    assert m["rfid"]["available"] and m["rfid"]["value"] > 0 and m["rfid"]["feature_net"].startswith("tiny")
    assert set(result.pictures) == {"worst", "median", "best"}
    worst, best = result.pictures["worst"][0], result.pictures["best"][0]
    assert worst.psnr == min(r.psnr for r in result.records) and best.psnr == max(r.psnr for r in result.records)
    assert len(result.skipped) == (0 if source == "embedded" else 3)
    assert result.items == len(result.records) + len(result.skipped)


@pytest.mark.parametrize("source", ["embedded", "folder"])
def test_video_run_matches_the_metrics_on_the_same_pairs(tmp_path, nets, source):
    data = "embedded" if source == "embedded" else str(video_folder(tmp_path / "videos"))
    kw = dict(size=32, frames=5, max_samples=3 if source == "embedded" else None)
    result, model, d = run(data, "video17x256", nets, batch_size=1, **kw)
    assert len(result.records) == 3
    _reference(model, d, result.records, video=True)
    assert result.metrics["rfvd"]["available"] and result.metrics["lpips"]["available"]
    assert result.pictures["median"][0].x.shape == (3, 5, 32, 32)
    if source == "folder":
        assert sorted(s.reason.split(":")[0] for s in result.skipped) == ["corrupt", "too_short"]


def test_streaming_equals_one_shot_for_every_figure(nets):
    kw = dict(size=32, max_samples=7)
    one_shot, _, _ = run("embedded", "image256", nets, batch_size=7, **kw)
    for b in (1, 2, 3):
        streamed, _, _ = run("embedded", "image256", nets, batch_size=b, **kw)
        a, s = figures(one_shot.metrics), figures(streamed.metrics)
        assert set(a) == {"psnr", "ssim", "lpips", "rfid"} and set(s) == set(a)
        for k in a:
            assert s[k] == pytest.approx(a[k], rel=1e-5, abs=1e-8), (b, k)
        assert [p.index for p in streamed.pictures["worst"]] == [p.index for p in one_shot.pictures["worst"]]
        assert [p.index for p in streamed.pictures["median"]] == [p.index for p in one_shot.pictures["median"]]


def test_missing_weights_are_unavailable_or_fatal_with_require_all(tmp_path, monkeypatch, nets):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))  # no cached Inception file
    monkeypatch.setattr("hydra_x.eval.features.check_reachable", lambda url: (_ for _ in ()).throw(OSError("offline")))
    result, model, d = run("embedded", "image256", {**nets, "image": None, "lpips": None}, size=32, max_samples=3)
    rfid, lpips = result.metrics["rfid"], result.metrics["lpips"]
    assert not rfid["available"] and "pt_inception-2015-12-05-6726825d.pth" in rfid["reason"]
    assert "https://github.com/mseitzer/pytorch-fid" in rfid["reason"]
    assert not lpips["available"] and "--lpips-weights" in lpips["reason"]
    assert result.metrics["psnr"]["available"]
    p = resolve_protocol("image256", size=32, max_samples=3)
    with pytest.raises(MetricUnavailableError, match="rfid is unavailable.*pt_inception"):
        evaluate(model, d, p, ReconOptions(require_all=True, lpips_weights=nets["lpips"]))


def test_no_usable_sample_is_an_error(tmp_path, nets):
    root = tmp_path / "bad"
    root.mkdir()
    (root / "x.png").write_bytes(b"")
    with pytest.raises(ValueError, match=f"--data {root}: no usable sample among 1 item.*x.png: empty"):
        run(str(root), "image256", nets, size=32)


# ---------------------------------------------------------------------------- peers through diffusers


def _kl(folder):
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    vae = AutoencoderKL(
        block_out_channels=(8, 16),
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        latent_channels=4,
        norm_num_groups=4,
        layers_per_block=1,
    )
    vae.save_pretrained(folder)
    return folder


def test_diffusers_autoencoder_kl_runs_through_the_protocol(tmp_path, nets):
    folder = _kl(tmp_path / "kl")
    model = load_diffusers(str(folder), CPU, torch.float32)
    assert (
        not model.video
        and model.spec["class"] == "AutoencoderKL"
        and "diffusion_pytorch_model.safetensors" in model.spec["sha256"]
    )
    p = resolve_protocol("image256", size=32, max_samples=4)
    d = EvalData("embedded", p)
    result = evaluate(model, d, p, ReconOptions(batch_size=3, lpips_weights=nets["lpips"], feature_net=nets["image"]))
    assert set(figures(result.metrics)) == {"psnr", "ssim", "lpips", "rfid"}
    x = torch.stack([s.x for s in d.items()])
    with torch.inference_mode():
        y = model.module.decode(model.module.encode(x).latent_dist.mode()).sample.clamp(-1, 1)
    assert [r.psnr for r in result.records] == pytest.approx(psnr(x, y).tolist(), rel=1e-5)
    with pytest.raises(ModelLoadError, match="image autoencoder"):
        evaluate(
            model,
            EvalData("embedded", resolve_protocol("video17x256", size=32, frames=5)),
            resolve_protocol("video17x256", size=32, frames=5),
            ReconOptions(),
        )


def test_diffusers_video_vae_runs_clips_and_images(tmp_path, nets):
    from diffusers import AutoencoderKLWan

    torch.manual_seed(0)
    AutoencoderKLWan(
        base_dim=8, z_dim=4, dim_mult=[1, 2], num_res_blocks=1, temperal_downsample=[True]
    ).save_pretrained(tmp_path / "wan")
    model = load_diffusers(str(tmp_path / "wan"), CPU, torch.float32)
    assert model.video
    for protocol, kw in (("video17x256", dict(frames=5)), ("image256", {})):
        p = resolve_protocol(protocol, size=16, max_samples=2, **kw)
        opts = ReconOptions(batch_size=2, lpips_weights=nets["lpips"], feature_net=nets[p.media])
        result = evaluate(model, EvalData("embedded", p), p, opts)
        assert set(figures(result.metrics)) == set(p.metrics), result.metrics


def test_diffusers_errors_are_clear(tmp_path):
    with pytest.raises(ModelLoadError, match="has no config.json or vae/config.json"):
        load_diffusers(str(tmp_path), CPU, torch.float32)
    (tmp_path / "config.json").write_text(json.dumps({"_class_name": "NoSuchVAE"}))
    with pytest.raises(ModelLoadError, match="'NoSuchVAE' is not a model class of diffusers"):
        load_diffusers(str(tmp_path), CPU, torch.float32)
