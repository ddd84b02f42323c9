"""A hermetic LPIPS lookup for tests: an empty torch.hub cache, no lpips package, no download, and planted
official files (random weights under the real file names, their hashes taken as the published ones)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from hydra_x.hub import file_sha256
from hydra_x.losses import lpips_weights as official
from hydra_x.losses.lpips import LPIPS


class Downloads:
    """Stands in for the network: records each download asked for; serves the files in ``served`` (by URL)."""

    def __init__(self) -> None:
        self.asked: list[str] = []
        self.served: dict[str, bytes] = {}

    def __call__(self, spec: official.OfficialFile, dst: Path, progress: bool = True) -> None:
        self.asked.append(spec.url)
        if spec.url not in self.served:
            raise OSError(f"offline test: no download of {spec.url}")
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_bytes(self.served[spec.url])


@pytest.fixture
def lpips_home(tmp_path, monkeypatch) -> Downloads:
    """TORCH_HOME in tmp_path, no $HYDRA_X_LPIPS_WEIGHTS, no lpips package; returns the fake network."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.delenv(official.ENV_VAR, raising=False)
    monkeypatch.setattr(official, "lpips_package_dir", lambda: None)
    downloads = Downloads()
    monkeypatch.setattr(official, "download", downloads)
    return downloads


def official_state_dicts(model: LPIPS) -> tuple[dict, dict]:
    """``model``'s weights in the two official files' layouts: torchvision's VGG16 (with a classifier the
    conversion must ignore) and lpips' heads (``lin{k}.model.1.weight``, after a Dropout)."""
    state = model.state_dict()
    vgg = {k: v.clone() for k, v in state.items() if k.startswith("features.")}
    vgg["classifier.0.weight"] = torch.zeros(4, 4)
    heads = {f"lin{k}.model.1.weight": state[f"lin{k}.weight"].clone() for k in range(5)}
    return vgg, heads


def write_official(folder: Path, model: LPIPS) -> dict[str, Path]:
    """The two official files of ``model`` under their cache names in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    vgg, heads = official_state_dicts(model)
    paths = {"vgg": folder / official.VGG16.filename, "heads": folder / official.LINEAR_HEADS.filename}
    torch.save(vgg, paths["vgg"])
    torch.save(heads, paths["heads"])
    return paths


def publish(monkeypatch, paths: dict[str, Path]) -> None:
    """Take the planted files' SHA-256 as the published ones (the real files cannot be fetched in tests)."""
    monkeypatch.setattr(official.VGG16, "sha256", file_sha256(paths["vgg"]))
    monkeypatch.setattr(official.LINEAR_HEADS, "sha256", file_sha256(paths["heads"]))
