"""The hydra-x command line, run in-process (and a few times as a real process) on real image and video files."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open
from skimage import data, transform

import hydra_x
from hydra_x import HydraXTokenizer
from hydra_x.cli import main
from hydra_x.data import video as media
from hydra_x.data.media import read_image, write_image
from hydra_x.data.video import read_video, video_info, write_video
from hydra_x.eval import psnr

WARNING = "no trained weights given"


def photo(name: str, height: int, width: int) -> torch.Tensor:
    """A bundled scikit-image photograph, downsized: (3, H, W) in [-1, 1]."""
    img = transform.resize(getattr(data, name)(), (height, width), anti_aliasing=True)
    return torch.from_numpy(img).permute(2, 0, 1).float() * 2 - 1


def pan_clip(frames: int, size: int = 64) -> torch.Tensor:
    """A pan over a photograph with a moving white square: (3, F, size, size)."""
    base = photo("coffee", 96, 160)
    out = []
    for t in range(frames):
        frame = base[:, 8 : 8 + size, 2 * t : 2 * t + size].clone()
        frame[:, 10 + t : 18 + t, 20:28] = 1.0
        out.append(frame)
    return torch.stack(out, dim=1)


def png_pixels(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Real media files: images from photographs, a 25-frame video, and broken files of every kind."""
    root = tmp_path_factory.mktemp("media")
    paths = {
        "image": root / "astronaut.png",  # 64x48: a multiple of 16
        "odd": root / "chelsea.png",  # 75x50: neither side a multiple of 16
        "jpeg": root / "coffee.jpg",
        "video": root / "pan.mp4",  # 25 frames 64x64 at 24 fps
    }
    write_image(paths["image"], photo("astronaut", 48, 64))
    write_image(paths["odd"], photo("chelsea", 50, 75))
    write_image(paths["jpeg"], photo("coffee", 40, 56))
    write_video(paths["video"], pan_clip(25), 24)
    rng = np.random.default_rng(0)
    for kind, good in (("image", paths["image"]), ("video", paths["video"])):
        suffix = good.suffix
        raw = good.read_bytes()
        paths[f"{kind}-missing"] = root / f"missing{suffix}"
        paths[f"{kind}-empty"] = root / f"empty{suffix}"
        paths[f"{kind}-empty"].write_bytes(b"")
        paths[f"{kind}-truncated"] = root / f"truncated{suffix}"
        paths[f"{kind}-truncated"].write_bytes(raw[: int(len(raw) * 0.7)])
        paths[f"{kind}-corrupt"] = root / f"corrupt{suffix}"
        paths[f"{kind}-corrupt"].write_bytes(rng.integers(0, 256, len(raw), dtype=np.uint8).tobytes())
    return paths


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny checkpoint, as save_pretrained writes it, with weights unlike the default seed-0 preset."""
    folder = tmp_path_factory.mktemp("ckpt") / "tiny-seed7"
    HydraXTokenizer.from_preset("tiny", seed=7).save_pretrained(folder)
    return folder


def run(capsys: pytest.CaptureFixture, *argv: object) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def parse_metrics(stdout: str) -> tuple[float, float]:
    found = re.search(r"PSNR (\S+) dB\s+SSIM (\S+)", stdout)
    assert found, stdout
    return float(found.group(1)), float(found.group(2))


def assert_one_error_line(code: int, err: str, *needles: str) -> None:
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("hydra-x: error: "), err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


# ---------------------------------------------------------------------------- info and help


def test_info_so400m_counts(capsys: pytest.CaptureFixture) -> None:
    code, out, err = run(capsys, "info", "--preset", "so400m")
    assert code == 0 and err == ""
    counts = HydraXTokenizer.from_preset("so400m", device="meta").parameter_counts()
    assert counts["total"] > 800_000_000  # the paper's size
    for part, n in counts.items():
        row = re.search(rf"^{part}\s+(\d+\.\d)\s+(\d+)$", out, flags=re.MULTILINE)
        assert row, (part, out)
        assert int(row.group(2)) == n
        assert row.group(1) == f"{n / 1e6:.1f}"


def test_info_defaults_to_so400m_and_reads_a_checkpoint_config(capsys: pytest.CaptureFixture, ckpt: Path) -> None:
    code, out, _ = run(capsys, "info")
    assert code == 0 and "so400m" in out
    code, out, err = run(capsys, "info", "--ckpt", ckpt)
    total = HydraXTokenizer.from_preset("tiny", device="meta").parameter_counts()["total"]
    assert code == 0 and err == "" and re.search(rf"^total\s+\S+\s+{total}$", out, flags=re.MULTILINE)


@pytest.mark.parametrize("command", [[], ["info"], ["reconstruct"], ["encode"], ["decode"]])
def test_help(capsys: pytest.CaptureFixture, command: list[str]) -> None:
    code, out, _ = run(capsys, *command, "--help")
    assert code == 0 and "usage: hydra-x" in out
    if command in (["reconstruct"], ["encode"]):
        for option in ("--ckpt", "--preset", "--device", "--dtype", "--clip-frames", "--max-frames", "--resize"):
            assert option in out


# ---------------------------------------------------------------------------- reconstruct


def test_reconstruct_image(capsys: pytest.CaptureFixture, files: dict[str, Path], tmp_path: Path) -> None:
    out_path = tmp_path / "rec.png"
    code, out, err = run(capsys, "reconstruct", files["image"], out_path)
    assert code == 0, err
    assert WARNING in err and "'tiny'" in err
    rec, src = read_image(out_path), read_image(files["image"])
    assert rec.shape == src.shape == (3, 48, 64)
    p, s = parse_metrics(out)
    assert -1 <= s <= 1
    # Printed metrics are of the decoded pixels before 8-bit quantisation: within rounding of the file's.
    assert p == pytest.approx(psnr(src[None], rec[None]).item(), abs=0.05)


def test_reconstruct_pads_and_crops_odd_sizes(
    capsys: pytest.CaptureFixture, files: dict[str, Path], tmp_path: Path
) -> None:
    code, out, err = run(capsys, "reconstruct", files["odd"], tmp_path / "rec.webp")
    assert code == 0, err
    with Image.open(tmp_path / "rec.webp") as im:
        assert im.size == (75, 50)
    assert "padding (edge replicate) to 80x64" in err
    parse_metrics(out)
    code, _, err = run(capsys, "reconstruct", files["image"], tmp_path / "rec.png")
    assert "padding" not in err  # 64x48 needs none


def test_reconstruct_resize(capsys: pytest.CaptureFixture, files: dict[str, Path], tmp_path: Path) -> None:
    code, out, err = run(capsys, "reconstruct", files["jpeg"], tmp_path / "rec.png", "--resize", 24)
    assert code == 0, err
    assert read_image(tmp_path / "rec.png").shape == (3, 24, 34)  # 56x40 -> short side 24, aspect kept
    assert "34x24" in out


def test_reconstruct_video_in_chunks(capsys: pytest.CaptureFixture, files: dict[str, Path], tmp_path: Path) -> None:
    out_path = tmp_path / "rec.mp4"
    code, out, err = run(capsys, "reconstruct", files["video"], out_path, "--clip-frames", 9)
    assert code == 0, err
    info = video_info(out_path)
    assert (info.frames, info.width, info.height, info.fps) == (25, 64, 64, 24)
    frames, _ = read_video(out_path)
    assert frames.shape == (3, 25, 64, 64)
    assert "mean over 25 frames" in out
    parse_metrics(out)


def test_reconstruct_video_max_frames_and_gif(
    capsys: pytest.CaptureFixture, files: dict[str, Path], tmp_path: Path
) -> None:
    code, out, err = run(capsys, "reconstruct", files["video"], tmp_path / "rec.gif", "--max-frames", 6)
    assert code == 0, err
    with Image.open(tmp_path / "rec.gif") as im:
        assert im.n_frames == 6 and im.size == (64, 64)
    assert "mean over 6 frames" in out


def test_one_frame_chunks(capsys: pytest.CaptureFixture, files: dict[str, Path], tmp_path: Path) -> None:
    """--clip-frames 1: every frame is its own (image-like) clip, still written as video frames."""
    code, out, err = run(
        capsys, "reconstruct", files["video"], tmp_path / "rec.mp4", "--clip-frames", 1, "--max-frames", 3
    )
    assert code == 0, err
    assert video_info(tmp_path / "rec.mp4").frames == 3 and "mean over 3 frames" in out
    assert (
        run(capsys, "encode", files["video"], tmp_path / "z.safetensors", "--clip-frames", 1, "--max-frames", 3)[0] == 0
    )
    with safe_open(str(tmp_path / "z.safetensors"), framework="pt") as f:
        assert f.get_tensor("latent").shape == (3, 64, 1, 4, 4)
    assert run(capsys, "decode", tmp_path / "z.safetensors", tmp_path / "dec.mp4")[0] == 0
    assert video_info(tmp_path / "dec.mp4").frames == 3


def test_reconstruct_streams_chunk_by_chunk(
    capsys: pytest.CaptureFixture, files: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each chunk is written before the next one is decoded from the input file."""
    events: list[str] = []
    original_iter, original_write = media.iter_video_frames, media.VideoWriter.write

    def iter_frames(*args, **kwargs):
        for frame in original_iter(*args, **kwargs):
            events.append("read")
            yield frame

    def write(self, frames):
        events.append(f"write {frames.shape[1]}")
        original_write(self, frames)

    monkeypatch.setattr("hydra_x.data.inputs.iter_video_frames", iter_frames)
    monkeypatch.setattr(media.VideoWriter, "write", write)
    code, _, err = run(capsys, "reconstruct", files["video"], tmp_path / "rec.mkv", "--clip-frames", 9)
    assert code == 0, err
    writes = [i for i, e in enumerate(events) if e.startswith("write")]
    assert [events[i] for i in writes] == ["write 9", "write 9", "write 7"]
    assert events[: writes[0]].count("read") == 9 and events[writes[0] : writes[1]].count("read") == 9


# ---------------------------------------------------------------------------- encode / decode


def test_encode_decode_image_equals_reconstruct(
    capsys: pytest.CaptureFixture, files: dict[str, Path], tmp_path: Path
) -> None:
    latent = tmp_path / "odd.safetensors"
    code, _, err = run(capsys, "encode", files["odd"], latent)
    assert code == 0, err
    with safe_open(str(latent), framework="pt") as f:
        meta, z = f.metadata(), f.get_tensor("latent")
    assert z.shape == (1, 64, 1, 4, 5)  # 75x50 padded to 80x64, patch 16
    assert meta["kind"] == "image" and (meta["height"], meta["width"]) == ("50", "75")
    assert (meta["padded_height"], meta["padded_width"]) == ("64", "80")
    assert meta["preset"] == "tiny" and meta["checkpoint"] == "" and meta["hydra_x_version"] == hydra_x.__version__
    code, _, err = run(capsys, "decode", latent, tmp_path / "dec.png")
    assert code == 0 and WARNING in err  # the recorded preset: random weights again
    code, _, _ = run(capsys, "reconstruct", files["odd"], tmp_path / "rec.png")
    assert code == 0
    dec, rec = png_pixels(tmp_path / "dec.png"), png_pixels(tmp_path / "rec.png")
    assert dec.shape == (50, 75, 3) and np.array_equal(dec, rec)
    # A different model gives different pixels: the comparison above can fail.
    code, _, _ = run(capsys, "decode", latent, tmp_path / "other.png", "--seed", 1)
    assert code == 0 and not np.array_equal(png_pixels(tmp_path / "other.png"), rec)


def test_encode_decode_video_equals_reconstruct(
    capsys: pytest.CaptureFixture, files: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The frames handed to the video writer (before lossy encoding) are identical, chunk by chunk."""
    recorded: dict[str, list[torch.Tensor]] = {}
    original = media.VideoWriter.write

    def write(self, frames):
        recorded.setdefault(self.path.name, []).append(frames.clone())
        original(self, frames)

    monkeypatch.setattr(media.VideoWriter, "write", write)
    latent = tmp_path / "pan.safetensors"
    code, out, err = run(capsys, "encode", files["video"], latent, "--clip-frames", 9)
    assert code == 0, err
    with safe_open(str(latent), framework="pt") as f:
        meta, z = f.metadata(), f.get_tensor("latent")
    assert z.shape == (3, 64, 3, 4, 4)  # ceil(25 / 9) chunks, 1 + 8 / 4 steps, 64 / 16 tokens a side
    assert (meta["kind"], meta["frames"], meta["clip_frames"], float(meta["fps"])) == ("video", "25", "9", 24.0)
    assert run(capsys, "decode", latent, tmp_path / "dec.mp4")[0] == 0
    assert run(capsys, "reconstruct", files["video"], tmp_path / "rec.mp4", "--clip-frames", 9)[0] == 0
    dec, rec = torch.cat(recorded["dec.mp4"], dim=1), torch.cat(recorded["rec.mp4"], dim=1)
    assert dec.shape == rec.shape == (3, 25, 64, 64)
    assert torch.equal(dec, rec)
    assert video_info(tmp_path / "dec.mp4").frames == 25
    # The files themselves: 25 frames each, close but not necessarily identical bytes (multi-threaded
    # x264 is not bit-reproducible, see VideoWriter).
    dec_file, rec_file = read_video(tmp_path / "dec.mp4")[0], read_video(tmp_path / "rec.mp4")[0]
    assert dec_file.shape == rec_file.shape == (3, 25, 64, 64)
    assert (dec_file - rec_file).abs().mean() < 0.02


def test_bfloat16_encode_decode(capsys: pytest.CaptureFixture, files: dict[str, Path], tmp_path: Path) -> None:
    latent = tmp_path / "a.safetensors"
    assert run(capsys, "encode", files["image"], latent, "--dtype", "bfloat16", "--device", "cpu")[0] == 0
    with safe_open(str(latent), framework="pt") as f:
        assert f.get_tensor("latent").dtype == torch.bfloat16 and f.metadata()["dtype"] == "bfloat16"
    # Every step on the CPU, so that a machine with a GPU runs the same comparison (auto would decode there).
    assert run(capsys, "decode", latent, tmp_path / "dec.png", "--dtype", "bfloat16", "--device", "cpu")[0] == 0
    args = ("reconstruct", files["image"], tmp_path / "rec.png", "--dtype", "bfloat16", "--device", "cpu")
    assert run(capsys, *args)[0] == 0
    assert np.array_equal(png_pixels(tmp_path / "dec.png"), png_pixels(tmp_path / "rec.png"))


def test_decode_checks_its_input(capsys: pytest.CaptureFixture, files: dict[str, Path], tmp_path: Path) -> None:
    latent = tmp_path / "a.safetensors"
    assert run(capsys, "encode", files["image"], latent)[0] == 0
    code, _, err = run(capsys, "decode", latent, tmp_path / "a.mp4")
    assert_one_error_line(code, err, "image latent needs an image output")
    code, _, err = run(capsys, "decode", files["image"], tmp_path / "a.png")
    assert_one_error_line(code, err, "not a readable safetensors file")
    code, _, err = run(capsys, "encode", files["image"], tmp_path / "a.pt")
    assert_one_error_line(code, err, ".safetensors")


# ---------------------------------------------------------------------------- checkpoints and the warning


def test_checkpoint_is_used_and_silences_the_warning(
    capsys: pytest.CaptureFixture, files: dict[str, Path], tmp_path: Path, ckpt: Path
) -> None:
    code, _, err = run(capsys, "reconstruct", files["image"], tmp_path / "ckpt.png", "--ckpt", ckpt)
    assert code == 0 and WARNING not in err and err == ""
    model = HydraXTokenizer.from_pretrained(ckpt)
    with torch.inference_mode():
        expected = model.decode(model.encode(read_image(files["image"])[None])).clamp(-1, 1)[0]
    assert np.array_equal(png_pixels(tmp_path / "ckpt.png"), media.to_uint8(expected))
    code, _, err = run(capsys, "reconstruct", files["image"], tmp_path / "preset.png")
    assert code == 0 and WARNING in err
    assert not np.array_equal(png_pixels(tmp_path / "preset.png"), png_pixels(tmp_path / "ckpt.png"))
    # decode without options uses the checkpoint recorded by encode
    latent = tmp_path / "a.safetensors"
    assert run(capsys, "encode", files["image"], latent, "--ckpt", ckpt)[0] == 0
    code, _, err = run(capsys, "decode", latent, tmp_path / "dec.png")
    assert code == 0 and WARNING not in err
    assert np.array_equal(png_pixels(tmp_path / "dec.png"), png_pixels(tmp_path / "ckpt.png"))


def test_bad_checkpoints_and_presets(capsys: pytest.CaptureFixture, files: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "o.png"
    code, _, err = run(capsys, "reconstruct", files["image"], out, "--ckpt", tmp_path / "nowhere")
    assert_one_error_line(code, err, "nowhere", "no such folder")
    (tmp_path / "emptyckpt").mkdir()
    code, _, err = run(capsys, "reconstruct", files["image"], out, "--ckpt", tmp_path / "emptyckpt")
    assert_one_error_line(code, err, "config.json")
    code, _, err = run(capsys, "reconstruct", files["image"], out, "--preset", "huge")
    assert_one_error_line(code, err, "unknown tokenizer preset 'huge'")
    code, _, err = run(capsys, "info", "--preset", "huge")
    assert_one_error_line(code, err, "huge")
    code, _, err = run(capsys, "reconstruct", files["image"], out, "--preset", "tiny", "--ckpt", tmp_path)
    assert_one_error_line(code, err, "not both")
    assert not out.exists()


# ---------------------------------------------------------------------------- bad inputs


@pytest.mark.parametrize("kind", ["image", "video"])
@pytest.mark.parametrize("problem", ["missing", "empty", "truncated", "corrupt"])
def test_bad_input_files(
    capsys: pytest.CaptureFixture, files: dict[str, Path], tmp_path: Path, ckpt: Path, kind: str, problem: str
) -> None:
    src = files[f"{kind}-{problem}"]
    out = tmp_path / ("out.png" if kind == "image" else "out.mp4")
    code, stdout, err = run(capsys, "reconstruct", src, out, "--ckpt", ckpt)  # --ckpt: no warning line
    assert_one_error_line(code, err, str(src))
    assert stdout == ""
    assert list(tmp_path.iterdir()) == []  # nothing written, not even a partial file


def test_bad_options(capsys: pytest.CaptureFixture, files: dict[str, Path], tmp_path: Path) -> None:
    code, _, err = run(capsys, "reconstruct", files["video"], tmp_path / "o.mp4", "--clip-frames", 10)
    assert_one_error_line(code, err, "--clip-frames 10", "9 or 13")
    code, _, err = run(capsys, "encode", files["video"], tmp_path / "o.safetensors", "--clip-frames", 18)
    assert_one_error_line(code, err, "17 or 21")
    code, _, err = run(capsys, "reconstruct", files["image"], tmp_path / "o.mp4")
    assert_one_error_line(code, err, "image input needs an image output")
    code, _, err = run(capsys, "reconstruct", files["video"], tmp_path / "o.png")
    assert_one_error_line(code, err, "video input needs a video output")
    code, _, err = run(capsys, "reconstruct", files["image"], tmp_path / "no" / "o.png")
    assert_one_error_line(code, err, "does not exist")
    code, _, err = run(capsys, "reconstruct", files["image"], tmp_path / "o.png", "--device", "tpu")
    assert_one_error_line(code, err, "invalid choice")
    code, _, err = run(capsys, "reconstruct", files["image"], tmp_path / "o.png", "--resize", 0)
    assert_one_error_line(code, err, "--resize")
    code, _, err = run(capsys, "frobnicate")
    assert_one_error_line(code, err, "frobnicate")
    assert list(tmp_path.iterdir()) == []


def test_unexpected_errors_are_one_line_unless_debugging(
    capsys: pytest.CaptureFixture, files: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args, **kwargs):
        raise RuntimeError("an internal bug")

    monkeypatch.setattr("hydra_x.tokenizer.io.encode_pixels", broken)  # what reconstruct runs
    monkeypatch.delenv("HYDRA_X_DEBUG", raising=False)
    code, _, err = run(capsys, "reconstruct", files["image"], tmp_path / "o.png")
    assert code == 1 and "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("hydra-x: error: unexpected RuntimeError: an internal bug") and "HYDRA_X_DEBUG" in last
    monkeypatch.setenv("HYDRA_X_DEBUG", "1")
    with pytest.raises(RuntimeError, match="an internal bug"):
        main(["reconstruct", str(files["image"]), str(tmp_path / "o.png")])


def wrapped_out_of_memory() -> RuntimeError:
    """As torch.compile wraps what its compiled code raises: the cause is what ran out."""
    err = RuntimeError("backend compiler failed")
    err.__cause__ = torch.OutOfMemoryError("CUDA out of memory")
    return err


@pytest.mark.parametrize(
    "error",
    [
        torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 400.00 MiB"),
        MemoryError("Unable to allocate 96.0 GiB"),
        wrapped_out_of_memory(),
    ],
    ids=["device", "host", "wrapped"],
)
def test_running_out_of_memory_is_one_line_naming_what_to_lower_not_a_bug(
    error: Exception, capsys: pytest.CaptureFixture, files: dict[str, Path], tmp_path: Path, monkeypatch
) -> None:
    def too_big(*args, **kwargs):
        raise error

    monkeypatch.setattr("hydra_x.tokenizer.io.encode_pixels", too_big)
    monkeypatch.delenv("HYDRA_X_DEBUG", raising=False)
    code, _, err = run(capsys, "reconstruct", files["image"], tmp_path / "o.png")
    assert code == 2 and "Traceback" not in err and "this is a bug" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("hydra-x: error: out of memory: ") and str(error) in last
    assert "data.examples_per_step" in last and "--batch-size" in last
    assert list(tmp_path.iterdir()) == []  # no half-written output


def test_other_errors_with_a_memory_error_nowhere_in_their_chain_stay_bugs() -> None:
    from hydra_x.errors import out_of_memory

    assert not out_of_memory(RuntimeError("CUDA error: an illegal memory access was encountered"))
    looped = RuntimeError("a")
    looped.__context__ = ValueError("b")
    looped.__context__.__context__ = looped  # a cycle ends the walk
    assert not out_of_memory(looped)
    wrapped = RuntimeError("outer")
    wrapped.__context__ = MemoryError()
    assert out_of_memory(wrapped)


# ---------------------------------------------------------------------------- as a real process


def run_process(*argv: object) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_X_DEBUG"}
    return subprocess.run(
        [sys.executable, "-m", "hydra_x.cli", *map(str, argv)], capture_output=True, text=True, env=env, timeout=120
    )


def test_process_bad_files_exit_2_without_traceback(files: dict[str, Path], tmp_path: Path) -> None:
    for src, out in ((files["image-truncated"], "o.png"), (files["video-corrupt"], "o.mp4")):
        proc = run_process("reconstruct", src, tmp_path / out)
        assert proc.returncode == 2, proc.stderr
        assert "Traceback" not in proc.stderr
        assert proc.stderr.splitlines() == [proc.stderr.strip()] and proc.stderr.startswith("hydra-x: error:")


def test_process_reconstruct_video(files: dict[str, Path], tmp_path: Path) -> None:
    proc = run_process("reconstruct", files["video"], tmp_path / "o.mp4", "--clip-frames", 5, "--max-frames", 12)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr and WARNING in proc.stderr
    assert "PSNR" in proc.stdout and video_info(tmp_path / "o.mp4").frames == 12
