"""hydra-x reconstruct as a new user meets it: --no-metrics, every image extension, and being stopped."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hydra_x.cli import main
from hydra_x.data.media import read_image
from hydra_x.data.video import read_video, write_video


def run(capsys: pytest.CaptureFixture, *argv: object) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def ramp_image(path: Path, height: int = 48, width: int = 64, fmt: str | None = None) -> None:
    y, x = np.mgrid[0:height, 0:width]
    rgb = np.stack([x * 4 % 256, y * 5 % 256, (x + y) * 2 % 256], -1).astype(np.uint8)
    Image.fromarray(rgb).save(path, format=fmt, quality=95)


def pan(frames: int, size: int = 32) -> torch.Tensor:
    """(3, F, size, size): a bright square moving over a ramp."""
    base = torch.linspace(-1, 1, size)[None, :].expand(size, size)
    out = []
    for t in range(frames):
        frame = base.clone()
        frame[(t % 20) : (t % 20) + 8, 4:12] = 1.0
        out.append(frame.expand(3, size, size))
    return torch.stack(out, dim=1)


# ---------------------------------------------------------------------------- --no-metrics


def test_no_metrics_writes_the_same_pixels_without_psnr(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    ramp_image(tmp_path / "a.png")
    code, out, err = run(capsys, "reconstruct", tmp_path / "a.png", tmp_path / "m.png")
    assert code == 0 and re.search(r"^PSNR \S+ dB  SSIM \S+  \(image 64x48 -> ", out), err
    code, out, err = run(capsys, "reconstruct", tmp_path / "a.png", tmp_path / "n.png", "--no-metrics")
    assert code == 0 and out == f"wrote {tmp_path / 'n.png'}: image 64x48\n", err
    assert torch.equal(read_image(tmp_path / "m.png"), read_image(tmp_path / "n.png"))


def test_no_metrics_on_a_video(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    write_video(tmp_path / "v.mp4", pan(9), 24)
    code, out, err = run(capsys, "reconstruct", tmp_path / "v.mp4", tmp_path / "o.mp4", "--no-metrics")
    assert code == 0 and out == f"wrote {tmp_path / 'o.mp4'}: 9 frames, 32x32 at 24 fps\n", err
    assert read_video(tmp_path / "o.mp4")[0].shape == (3, 9, 32, 32)
    code, out, _ = run(capsys, "reconstruct", "--help")
    assert "--no-metrics" in out and ".jfif" in out and ".avif" in out


# ---------------------------------------------------------------------------- image extensions


@pytest.mark.parametrize("name", ["photo.jfif", "photo.JPE"])
def test_jpeg_extensions_are_reconstructed_as_images(capsys: pytest.CaptureFixture, tmp_path: Path, name: str) -> None:
    """They went down the video path ('not a readable video') before."""
    ramp_image(tmp_path / name, fmt="JPEG")
    code, out, err = run(capsys, "reconstruct", tmp_path / name, tmp_path / "o.png")
    assert code == 0 and "(image 64x48 -> " in out, err
    code, _, err = run(capsys, "reconstruct", tmp_path / name, tmp_path / "o.mp4")
    assert code == 2 and "an image input needs an image output" in err


# ---------------------------------------------------------------------------- stopped by a signal


@pytest.fixture(scope="module")
def long_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("long") / "long.mp4"
    write_video(path, pan(400), 25)  # one-frame chunks: seconds of work, written chunk by chunk
    return path


@pytest.mark.parametrize(
    ("sig", "status", "word"), [(signal.SIGTERM, 143, "terminated"), (signal.SIGINT, 130, "interrupted")]
)
def test_a_stopped_reconstruct_leaves_no_partial_file(
    long_video: Path, tmp_path: Path, sig: signal.Signals, status: int, word: str
) -> None:
    out = tmp_path / "out.mp4"
    partial = tmp_path / ".out.partial.mp4"
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_X_DEBUG"}
    cmd = [sys.executable, "-m", "hydra_x.cli", "reconstruct", str(long_video), str(out), "--clip-frames", "1"]
    # SIGINT at its default in the child: a suite started in the background by a non-interactive shell (nohup ... &)
    # inherits SIGINT ignored, and a Python started so never raises KeyboardInterrupt, so ^C would do nothing.
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        deadline = time.monotonic() + 120
        while not partial.exists():  # mid-run: the first chunks are written
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the partial file never appeared"
            time.sleep(0.02)
        proc.send_signal(sig)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == status, stderr
    assert stderr.strip().splitlines()[-1] == f"hydra-x: {word}" and "Traceback" not in stderr
    assert stdout == ""
    assert list(tmp_path.iterdir()) == []  # neither the output nor the hidden partial file
