"""save_pretrained / from_pretrained: identical outputs, reported keys, never unpickling."""

import json
import pickle

import pytest
import torch
from safetensors.torch import load_file, save_file

from hydra_x import HydraXTokenizer
from hydra_x.hub import LoadingInfo
from tests.helpers import pixels, tiny


def test_round_trip_gives_identical_outputs(tmp_path):
    model = tiny(temporal_folds=(4, 1), attention="causal", image_teacher_dim=8)
    model.set_latent_stats(torch.linspace(-1, 1, 64), torch.linspace(0.5, 2, 64))
    model.save_pretrained(tmp_path / "ckpt")
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["config.json", "model.safetensors"]
    loaded = HydraXTokenizer.from_pretrained(tmp_path / "ckpt")
    assert loaded.config == model.config and not loaded.training
    x = pixels(1, 3, 9, 32, 32)
    a, b = model(x), loaded(x)
    for name in ("x_rec", "z", "s", "image_features", "video_features"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    assert torch.equal(loaded.latent_std, model.latent_std)
    config = json.loads((tmp_path / "ckpt" / "config.json").read_text())
    assert config["model_type"] == "hydra-x-tokenizer" and config["temporal_folds"] == [4, 1]
    assert config["gen_depth"] == 2 and config["decoder_unfold_at"] is not None  # stored resolved


def test_bf16_load(tmp_path):
    tiny().save_pretrained(tmp_path)
    model = HydraXTokenizer.from_pretrained(tmp_path, dtype=torch.bfloat16)
    assert model.latent_mean.dtype == torch.bfloat16
    assert model.decode(model.encode(pixels(1, 3, 32, 32).bfloat16())).dtype == torch.bfloat16


def test_missing_and_unexpected_keys_are_reported(tmp_path):
    tiny().save_pretrained(tmp_path)
    state = load_file(tmp_path / "model.safetensors")
    del state["decoder.norm.weight"]
    state["decoder.extra.weight"] = torch.zeros(3)
    state["bottleneck.from_latent.bias"] = torch.zeros(5)
    save_file(state, tmp_path / "model.safetensors")
    with pytest.raises(ValueError) as err:
        HydraXTokenizer.from_pretrained(tmp_path)
    message = str(err.value)
    assert "missing keys: decoder.norm.weight" in message
    assert "unexpected keys: decoder.extra.weight" in message
    assert "bottleneck.from_latent.bias: (5,) vs (96,)" in message
    model, info = HydraXTokenizer.from_pretrained(tmp_path, strict=False, output_loading_info=True)
    assert isinstance(info, LoadingInfo) and not info.clean
    assert info.missing_keys == ["decoder.norm.weight"] and info.unexpected_keys == ["decoder.extra.weight"]
    assert torch.equal(model.decoder.norm.weight, torch.ones(96))  # kept its initialisation


def test_nothing_is_unpickled(tmp_path, monkeypatch):
    tiny().save_pretrained(tmp_path / "good")

    def refuse(*args, **kwargs):
        raise AssertionError("unpickling was attempted")

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(torch, "load", refuse)
    HydraXTokenizer.from_pretrained(tmp_path / "good")  # loads without touching pickle

    bad = tmp_path / "pickled"
    bad.mkdir()
    (bad / "config.json").write_text((tmp_path / "good" / "config.json").read_text())
    (bad / "pytorch_model.bin").write_bytes(b"not even opened")
    with pytest.raises(FileNotFoundError, match=r"pickled weights \['pytorch_model.bin'\], which are never loaded"):
        HydraXTokenizer.from_pretrained(bad)


def test_bad_folders_and_configs_are_clear_errors(tmp_path):
    # local_files_only: huggingface_hub reads HF_HUB_OFFLINE at import, so setting it here would not stop its
    # five retries with back-off (23 s without a network); the error path is the same.
    with pytest.raises(OSError, match="is not a local folder"):
        HydraXTokenizer.from_pretrained("no-such-org/no-such-tokenizer", local_files_only=True)
    tiny().save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "widht": 3}))
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['widht'\]"):
        HydraXTokenizer.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({**config, "model_type": "llama"}))
    with pytest.raises(ValueError, match="holds a 'llama' model"):
        HydraXTokenizer.from_pretrained(tmp_path)
    (tmp_path / "model.safetensors").unlink()
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(FileNotFoundError, match="no model.safetensors"):
        HydraXTokenizer.from_pretrained(tmp_path)
