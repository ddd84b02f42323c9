"""The LPIPS weights' default lookup, step by step, on planted files (never a real download)."""

import logging

import pytest
import torch

from hydra_x.hub import file_sha256
from hydra_x.losses import lpips_weights as official
from hydra_x.losses.lpips import LPIPS, find_lpips_weights, load_lpips, main, save_lpips
from hydra_x.losses.lpips_weights import LPIPSWeightsError, WeightsHashError
from tests.losses import lpips_fixtures
from tests.losses.lpips_fixtures import official_state_dicts, publish, write_official

lpips_home = lpips_fixtures.lpips_home  # the fixture: a hermetic cache, no lpips package, no network
REAL_DOWNLOAD = official.download  # before any fixture replaces it


@pytest.fixture(scope="module")
def planted():
    """The LPIPS whose random weights the planted files hold."""
    torch.manual_seed(1)
    return LPIPS()


def same_as(loaded: LPIPS, planted: LPIPS) -> bool:
    """Every weight equal (LPIPS' forward on them is tested in test_lpips.py)."""
    a, b = loaded.state_dict(), planted.state_dict()
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_the_published_files_are_pinned():
    """The URLs and SHA-256 of the two published files (the heads' hash: lpips 0.1.4's wheel from PyPI)."""
    assert official.VGG16.url == "https://download.pytorch.org/models/vgg16-397923af.pth"
    assert official.VGG16.sha256.startswith("397923af")  # torch.hub's naming: the hash's first 8 digits
    assert official.LINEAR_HEADS.url.endswith("/lpips/weights/v0.1/vgg.pth")
    assert all(len(f.sha256) == 64 for f in official.OFFICIAL_FILES)


def test_a_given_path_or_the_environment_variable_comes_first(lpips_home, planted, tmp_path, monkeypatch):
    path = save_lpips(planted, tmp_path / "mine" / "lpips_vgg.safetensors")
    save_lpips(LPIPS(), official.cached_weights_path())  # another file in the cache: never picked over a given one
    for given in (path, path.parent):  # the file, or a folder holding it
        assert same_as(load_lpips(given), planted)
    monkeypatch.setenv(official.ENV_VAR, str(path))
    assert find_lpips_weights() == path and same_as(load_lpips(), planted)
    # A named path that is not there is an error, also where LPIPS is optional: never replaced by another file.
    monkeypatch.setenv(official.ENV_VAR, str(tmp_path / "typo.safetensors"))
    with pytest.raises(LPIPSWeightsError, match=r"typo\.safetensors \(\$HYDRA_X_LPIPS_WEIGHTS\) not found"):
        load_lpips(required=False)
    with pytest.raises(LPIPSWeightsError, match=r"nothing\.safetensors \(the path given\) not found"):
        load_lpips(tmp_path / "nothing.safetensors", required=False)
    assert lpips_home.asked == []


def test_the_converted_file_in_the_torch_hub_cache(lpips_home, planted, tmp_path):
    cached = save_lpips(planted, tmp_path / "torch_home" / "hub" / "checkpoints" / "lpips_vgg.safetensors")
    assert official.cached_weights_path() == cached  # $TORCH_HOME/hub/checkpoints/
    assert same_as(load_lpips(), planted) and lpips_home.asked == []


def test_official_files_in_the_cache_are_hash_checked_converted_and_cached(lpips_home, planted, monkeypatch):
    paths = write_official(official.cache_dir(), planted)
    publish(monkeypatch, paths)
    assert same_as(load_lpips(), planted) and lpips_home.asked == []
    assert official.cached_weights_path().is_file()
    for p in paths.values():  # the next lookup stops at the converted file
        p.unlink()
    assert same_as(load_lpips(), planted)


def test_the_heads_of_an_installed_lpips_package(lpips_home, planted, tmp_path, monkeypatch):
    paths = write_official(official.cache_dir(), planted)
    package = tmp_path / "site-packages" / "lpips"
    (package / "weights" / "v0.1").mkdir(parents=True)
    paths["heads"] = paths["heads"].rename(package / "weights" / "v0.1" / "vgg.pth")
    publish(monkeypatch, paths)
    monkeypatch.setattr(official, "lpips_package_dir", lambda: package)
    assert same_as(load_lpips(), planted) and lpips_home.asked == []


def test_missing_official_files_are_downloaded_then_converted(lpips_home, planted, tmp_path, monkeypatch):
    paths = write_official(tmp_path / "published", planted)
    publish(monkeypatch, paths)
    lpips_home.served = {official.VGG16.url: paths["vgg"].read_bytes()}
    lpips_home.served[official.LINEAR_HEADS.url] = paths["heads"].read_bytes()
    assert same_as(load_lpips(), planted)
    assert lpips_home.asked == [official.VGG16.url, official.LINEAR_HEADS.url]
    assert (official.cache_dir() / official.VGG16.filename).is_file() and official.cached_weights_path().is_file()


def test_download_asks_torch_hub_for_the_full_hash(monkeypatch, tmp_path):
    seen = {}
    monkeypatch.setattr(official, "check_reachable", lambda url: seen.setdefault("checked", url))
    monkeypatch.setattr(torch.hub, "download_url_to_file", lambda url, dst, **kw: seen.update(url=url, dst=dst, **kw))
    official.download(official.VGG16, tmp_path / "x.pth", progress=False)
    assert seen["checked"] == seen["url"] == official.VGG16.url and seen["hash_prefix"] == official.VGG16.sha256


def test_a_download_with_another_hash_is_an_error_not_a_missing_file(lpips_home, monkeypatch):
    def wrong_bytes(url, dst, hash_prefix, progress):  # what torch.hub says when the bytes do not match
        raise RuntimeError(f'invalid hash value (expected "{hash_prefix}", got "0badc0de")')

    monkeypatch.setattr(official, "download", REAL_DOWNLOAD)
    monkeypatch.setattr(official, "check_reachable", lambda url: None)
    monkeypatch.setattr(torch.hub, "download_url_to_file", wrong_bytes)
    with pytest.raises(WeightsHashError, match=r"download of https://download\.pytorch\.org.*0badc0de"):
        load_lpips(required=False)
    assert not (official.cache_dir() / official.VGG16.filename).exists()


def test_a_file_that_is_not_the_published_one_is_an_error(lpips_home, planted, monkeypatch):
    paths = write_official(official.cache_dir(), planted)
    monkeypatch.setattr(official.LINEAR_HEADS, "sha256", file_sha256(paths["heads"]))
    # The VGG file keeps the real published hash, which random weights cannot have.
    with pytest.raises(WeightsHashError, match=r"vgg16-397923af\.pth is not torchvision's VGG16.*397923af8e79"):
        load_lpips(required=False)
    # A download whose bytes are not the published file is caught after the download too.
    paths["vgg"].unlink()
    lpips_home.served = {official.VGG16.url: b"an html error page"}
    with pytest.raises(WeightsHashError, match="its SHA-256 is"):
        load_lpips()


def test_nothing_found_says_how_to_supply_the_weights(lpips_home, caplog):
    with pytest.raises(LPIPSWeightsError) as info:
        load_lpips()
    message = str(info.value)
    for part in ("vgg16-397923af.pth and lpips_v0.1_vgg.pth missing", "lpips_vgg.safetensors (not found)",
                 "offline test: no download", official.VGG16.url, official.LINEAR_HEADS.url, "$HYDRA_X_LPIPS_WEIGHTS",
                 "python -m hydra_x.losses.lpips convert", "--vgg PATH --lin PATH"):  # fmt: skip
        assert part in message, part
    with caplog.at_level(logging.WARNING, logger="hydra_x.losses.lpips"):
        assert load_lpips(required=False) is None
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(lines) == 1 and lines[0].startswith("LPIPS is OFF") and "vgg16-397923af.pth" in lines[0]
    assert not official.cached_weights_path().exists()
    with pytest.raises(LPIPSWeightsError):
        find_lpips_weights(allow_download=False)
    assert lpips_home.asked == official_urls() * 2  # allow_download=False asked for nothing


def official_urls() -> list[str]:
    return [f.url for f in official.OFFICIAL_FILES]


def test_convert_command_fills_the_cache(lpips_home, planted, monkeypatch, capsys):
    paths = write_official(official.cache_dir(), planted)
    publish(monkeypatch, paths)
    main(["convert", "--no-download"])
    assert str(official.cached_weights_path()) in capsys.readouterr().out
    assert same_as(load_lpips(official.cached_weights_path()), planted)
    for p in paths.values():
        p.unlink()
    official.cached_weights_path().unlink()
    with pytest.raises(SystemExit) as exit_info:
        main(["convert", "--no-download"])
    assert exit_info.value.code == 2 and "not available" in capsys.readouterr().err and lpips_home.asked == []


def test_convert_local_copies_of_any_name(lpips_home, planted, tmp_path, caplog):
    vgg, heads = official_state_dicts(planted)
    mine = {"--vgg": tmp_path / "my_vgg.pth", "--lin": tmp_path / "my_heads.pth"}
    torch.save(vgg, mine["--vgg"])
    torch.save(heads, mine["--lin"])
    out = tmp_path / "out.safetensors"
    with caplog.at_level(logging.WARNING, logger="hydra_x.losses.lpips"):
        main(["convert", "--out", str(out), *(str(a) for item in mine.items() for a in item)])
    assert same_as(load_lpips(out), planted)
    assert sum("is not the published" in r.getMessage() for r in caplog.records) == 2  # said, not refused
