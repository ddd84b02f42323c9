"""The image size limit: one rule, said in one line, raised on request; never Pillow's raw warning or error.

Real files: a 13500 x 13500 JPEG (over the default limit) and a 10000 x 10000 one (inside it, but over the
size from which Pillow warns), both solid grey, so they encode fast and small; headers are all most tests read.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import hydra_x.data.media as media
from hydra_x.cli import main
from hydra_x.data.media import (
    DEFAULT_MAX_IMAGE_PIXELS,
    PIXEL_LIMIT_ENV,
    MediaError,
    image_pixel_limit,
    max_image_pixels,
    read_image,
    read_image_size,
    set_max_image_pixels,
)


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("big")
    files = {"huge": root / "huge.jpg", "100mp": root / "100mp.jpg", "small": root / "small.png"}
    Image.new("L", (13500, 13500), 128).save(files["huge"], quality=50)  # 182,250,000 pixels
    Image.new("L", (10000, 10000), 128).save(files["100mp"], quality=50)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)).save(files["small"])  # 1200 pixels
    return files


@pytest.fixture(autouse=True)
def default_limits(monkeypatch: pytest.MonkeyPatch):
    """Every test starts from the defaults and leaves them so (both settings are process-wide)."""
    monkeypatch.delenv(PIXEL_LIMIT_ENV, raising=False)
    monkeypatch.setattr(media, "_max_pixels", media._UNSET)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)


def test_a_huge_valid_jpeg_is_refused_with_its_size_the_limit_and_the_way_out(big: dict[str, Path]) -> None:
    with pytest.raises(MediaError) as info:
        read_image(big["huge"])
    message = str(info.value)
    assert "\n" not in message and str(big["huge"]) in message
    assert "13500x13500 = 182,250,000 pixels" in message and f"{DEFAULT_MAX_IMAGE_PIXELS:,}" in message
    for way in ("--max-image-pixels", PIXEL_LIMIT_ENV, "set_max_image_pixels"):
        assert way in message
    assert "corrupt" not in message and "truncated" not in message


def test_raising_the_limit_reads_the_huge_jpeg(big: dict[str, Path]) -> None:
    """Header only here (a decode would be a 2.2 GB tensor): the same check guards both."""
    with pytest.raises(MediaError, match="over the limit"):
        read_image_size(big["huge"])
    set_max_image_pixels(200_000_000)
    assert read_image_size(big["huge"]) == (13500, 13500)
    set_max_image_pixels(0)  # no limit at all
    assert max_image_pixels() is None and read_image_size(big["huge"]) == (13500, 13500)
    set_max_image_pixels(100_000_000)
    with pytest.raises(MediaError, match="over the limit of 100,000,000 pixels"):
        read_image_size(big["huge"])


def test_pillows_warning_size_reads_without_a_warning(big: dict[str, Path]) -> None:
    """100 MP is over Pillow's warning size (89.5 MP) and inside the limit: no raw DecompressionBombWarning."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert read_image_size(big["100mp"]) == (10000, 10000)


def test_in_pillows_warning_band_a_decode_is_silent(big: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """The same band, scaled down (Pillow warns above its MAX_IMAGE_PIXELS): a full decode stays silent."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # the 1200-pixel image is now in Pillow's warning band
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert read_image(big["small"]).shape == (3, 30, 40)


def test_the_limit_applies_to_decoding_with_exact_boundaries(big: dict[str, Path]) -> None:
    with image_pixel_limit(1200):
        assert read_image(big["small"]).shape == (3, 30, 40)  # exactly at the limit: read
    with image_pixel_limit(1199), pytest.raises(MediaError, match=r"40x30 = 1,200 pixels, over the limit of 1,199"):
        read_image(big["small"])
    assert max_image_pixels() == DEFAULT_MAX_IMAGE_PIXELS  # the block put the default back


def test_the_environment_variable(big: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PIXEL_LIMIT_ENV, "1_000")
    with pytest.raises(MediaError, match="over the limit of 1,000"):
        read_image(big["small"])
    monkeypatch.setenv(PIXEL_LIMIT_ENV, "200000000")  # above Pillow's own refusal size: Pillow is raised too
    assert read_image_size(big["huge"]) == (13500, 13500)
    set_max_image_pixels(1000)  # the function wins over the environment
    with pytest.raises(MediaError, match="over the limit of 1,000"):
        read_image(big["small"])
    monkeypatch.setattr(media, "_max_pixels", media._UNSET)
    monkeypatch.setenv(PIXEL_LIMIT_ENV, "lots")
    with pytest.raises(ValueError, match=f"{PIXEL_LIMIT_ENV}='lots' is not a number of pixels"):
        read_image(big["small"])


def test_a_pillow_limit_lowered_by_someone_else_is_kept_and_named(
    big: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 500)  # Pillow refuses over 1000 pixels
    with pytest.raises(MediaError, match=r"40x30 = 1,200 pixels, over the limit Pillow was given"):
        read_image(big["small"])
    assert Image.MAX_IMAGE_PIXELS == 500


# ---------------------------------------------------------------------------- the command line


def run(capsys: pytest.CaptureFixture, *argv: object) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_huge_image_is_one_error_line(capsys: pytest.CaptureFixture, big: dict[str, Path], tmp_path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a DecompressionBombWarning would fail the run
        code, out, err = run(capsys, "reconstruct", big["huge"], tmp_path / "o.png", "--device", "cpu")
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hydra-x: error: ") and "13500x13500" in lines[0], err
    assert "--max-image-pixels N" in lines[0] and "Decompression" not in err
    assert list(tmp_path.iterdir()) == []


def test_cli_max_image_pixels_option(capsys: pytest.CaptureFixture, big: dict[str, Path], tmp_path: Path) -> None:
    code, _, err = run(capsys, "encode", big["small"], tmp_path / "z.safetensors", "--max-image-pixels", 1199)
    assert code == 2 and "40x30 = 1,200 pixels, over the limit of 1,199" in err and len(err.strip().splitlines()) == 1
    code, out, err = run(capsys, "reconstruct", big["small"], tmp_path / "o.png", "--max-image-pixels", 1200)
    assert code == 0 and "PSNR" in out, err
    code, _, err = run(capsys, "reconstruct", big["small"], tmp_path / "o.png", "--max-image-pixels", -1)
    assert code == 2 and "--max-image-pixels must be at least 0" in err
    assert max_image_pixels() == DEFAULT_MAX_IMAGE_PIXELS  # a command's option does not outlive it
    code, out, _ = run(capsys, "reconstruct", "--help")
    assert "--max-image-pixels" in out and f"{DEFAULT_MAX_IMAGE_PIXELS:,}" in out


def test_cli_reads_an_image_between_pillows_warning_and_the_limit(
    capsys: pytest.CaptureFixture, big: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # the warning band, scaled down as above
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        code, out, err = run(capsys, "reconstruct", big["small"], tmp_path / "o.png", "--no-metrics")
    assert code == 0, err
    assert "Decompression" not in err and read_image(tmp_path / "o.png").shape == (3, 30, 40)
