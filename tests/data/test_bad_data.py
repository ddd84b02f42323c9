"""Bad data never stops a run: corrupt, truncated, empty, undecodable and too-short files are skipped,
counted by reason and logged with their names (each bad file once), and every batch keeps its size. A source
that cannot be used at all is one clear error naming it."""

from __future__ import annotations

import logging
import tarfile
from collections import Counter

import pytest
import torch

from hydra_x.data import DataConfig, SourceConfig, TokenizerDataLoader
from hydra_x.data.config import DataSourceError
from hydra_x.data.video import write_video
from hydra_x.errors import InputError
from tests.media_fixtures import add_member, bad_image_bytes, bad_video_files, index_clip


def run(cfg: DataConfig, steps: int, caplog) -> tuple[TokenizerDataLoader, list, str]:
    caplog.set_level(logging.WARNING, logger="hydra_x.data")
    loader = TokenizerDataLoader(cfg)
    it = iter(loader)
    batches = [next(it) for _ in range(steps)]
    for b in batches:
        assert b.pixels.shape[0] == cfg.batch_size(b.kind)
        assert torch.isfinite(b.pixels).all()
    return loader, batches, caplog.text


def reported(batches) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    names = [name for b in batches for name, _ in b.skipped]
    assert len(names) == len(set(names)), "a bad file was reported more than once"
    for b in batches:
        for name, reason in b.skipped:
            out.setdefault(name.rsplit("/", 1)[-1], set()).add(reason.split(":", 1)[0])
    return out


def test_image_folder(bad_image_dir, caplog):
    cfg = DataConfig(
        sources=(SourceConfig("image_folder", str(bad_image_dir)),), image_size=64, image_batch_size=4, num_workers=0
    )
    loader, batches, log = run(cfg, 30, caplog)
    got = reported(batches)
    assert got["bad_empty.png"] == {"empty"}
    assert got["bad_corrupt.png"] == {"corrupt"}
    assert got["bad_text.jpg"] == {"corrupt"}
    assert got["bad_truncated.jpg"] == {"corrupt"}  # passes the header scan, fails when decoded
    for name in ("bad_empty.png", "bad_corrupt.png", "bad_text.jpg", "bad_truncated.jpg"):
        assert name in log
    assert loader.skip_counts == {"empty": 1, "corrupt": 3}  # distinct files, however often they were drawn
    assert sum(loader.skip_counts.values()) == sum(len(b.skipped) for b in batches)
    keys = {k.rsplit("/", 1)[-1] for b in batches for k in b.keys}
    assert not any(k.startswith("bad_") for k in keys)
    # Grey, RGBA, CMYK and 16-bit images are converted, not skipped.
    assert {"mode_gray.png", "mode_rgba.png", "mode_cmyk.jpg", "mode_16bit.png"} <= keys
    assert loader.state_dict()["skip_counts"] == dict(loader.skip_counts)


def test_video_folder(bad_video_dir, caplog):
    cfg = DataConfig(
        sources=(SourceConfig("video_folder", str(bad_video_dir)),),
        image_size=32,
        clip_frames=9,
        frame_stride=3,  # 25 frames of the 30: the truncated file cannot hold a clip
        video_batch_size=2,
        num_workers=0,
    )
    loader, batches, log = run(cfg, 12, caplog)
    got = reported(batches)
    assert got["bad_empty.mp4"] == {"empty"}
    assert got["bad_text.mp4"] == {"corrupt"}
    assert got["bad_codec.mp4"] == {"undecodable"}
    assert got["bad_short.mp4"] == {"too_short"}
    assert got["bad_audio.mp4"] == {"no_video_stream"}
    assert got["bad_truncated.mp4"] <= {"corrupt", "too_short"} and got["bad_truncated.mp4"]
    for name in ("bad_empty.mp4", "bad_text.mp4", "bad_codec.mp4", "bad_short.mp4", "bad_audio.mp4", "bad_truncated"):
        assert name in log
    assert all(b.pixels.shape == (2, 3, 9, 32, 32) or b.pixels.shape[2] == 9 for b in batches)
    assert not any(k.rsplit("/", 1)[-1].startswith("bad_") for b in batches for k in b.keys)
    assert {"empty", "corrupt", "undecodable", "too_short", "no_video_stream"} <= set(loader.skip_counts)


def test_image_shards(bad_image_shards, caplog):
    cfg = DataConfig(
        sources=(SourceConfig("image_shards", str(bad_image_shards)),),
        image_size=64,
        image_batch_size=3,
        num_workers=0,
        shard_interleave=2,
    )
    loader, batches, log = run(cfg, 14, caplog)  # more than one epoch of the 14 good samples
    got = reported(batches)
    member = {name.split(":")[-1]: cats for name, cats in got.items() if ":" in name}
    shard = {name: cats for name, cats in got.items() if ":" not in name}
    assert member == {
        "b000": {"empty"},
        "b001": {"corrupt"},
        "b002": {"corrupt"},
        "b003": {"corrupt"},
        "b999": {"no_media"},
    }
    assert shard == {"bad-truncated.tar": {"corrupt"}, "bad-empty.tar": {"empty"}, "bad-notatar.tar": {"corrupt"}}
    for name in (
        "bad-members.tar:b000",
        "bad-members.tar:b999",
        "bad-truncated.tar",
        "bad-empty.tar",
        "bad-notatar.tar",
    ):
        assert name in log
    assert set(loader.skip_counts) == {"empty", "corrupt", "no_media"}


def test_video_shards(tmp_path, video_dir, caplog):
    bad = tmp_path / "bad"
    bad.mkdir()
    names = bad_video_files(bad)
    with tarfile.open(tmp_path / "clips.tar", "w") as tar:
        add_member(tar, "g000.mp4", (video_dir / "v0.mp4").read_bytes())
        for i, name in enumerate(names):
            add_member(tar, f"x{i:03d}.mp4", (bad / name).read_bytes())
        add_member(tar, "g001.mp4", (video_dir / "v1.mp4").read_bytes())
    cfg = DataConfig(
        sources=(SourceConfig("video_shards", str(tmp_path / "clips.tar")),),
        image_size=32,
        clip_frames=9,
        frame_stride=3,
        video_batch_size=2,
        num_workers=0,
    )
    loader, batches, log = run(cfg, 3, caplog)
    got = {name.split(":")[-1]: cats for name, cats in reported(batches).items()}
    expected = ["empty", "corrupt", "corrupt", "undecodable", "too_short", "no_video_stream"]
    assert {key: cats for key, cats in got.items() if key != "x001"} == {
        f"x{i:03d}": {cat} for i, cat in enumerate(expected) if i != 1
    }
    assert got["x001"] and got["x001"] <= {"corrupt", "too_short"}  # truncated: fails early or runs short
    assert "clips.tar:x002" in log


def unusable(cfg: DataConfig, pattern: str, iterate: bool = False) -> None:
    """The source fails with one DataSourceError (an InputError: the CLI's one line, exit 2) naming it."""
    with pytest.raises(DataSourceError, match=pattern) as caught:
        loader = TokenizerDataLoader(cfg)
        if iterate:
            next(iter(loader))
    assert isinstance(caught.value, InputError) and "\n" not in str(caught.value)


@pytest.mark.parametrize("workers", [0, 1])  # raised in the main process, or in a worker and passed on
def test_unusable_sources_fail_clearly(tmp_path, workers):
    cfg = lambda kind, path: DataConfig(sources=(SourceConfig(kind, str(path)),), image_size=32, num_workers=workers)
    only_bad = tmp_path / "only_bad"
    only_bad.mkdir()
    for name, content in bad_image_bytes().items():
        if name != "bad_truncated.jpg":
            (only_bad / name).write_bytes(content)
    unusable(cfg("image_folder", only_bad), r"image_folder:.*only_bad: no usable image file, all 3 are unusable")
    unusable(cfg("image_folder", tmp_path / "nope"), r"image_folder:.*nope: no such folder")
    unusable(cfg("video_folder", only_bad / "bad_text.jpg"), r"video_folder:.*bad_text.jpg: not a folder")
    (tmp_path / "empty").mkdir()
    unusable(cfg("image_folder", tmp_path / "empty"), r"image_folder:.*empty: the folder holds no image files")
    # Files that pass the scan but never decode: the loader gives up on the source, naming it.
    truncated = tmp_path / "truncated"
    truncated.mkdir()
    for i in range(3):
        (truncated / f"t{i}.jpg").write_bytes(bad_image_bytes()["bad_truncated.jpg"])
    unusable(cfg("image_folder", truncated), "image_folder:.*truncated: no usable sample in 100 tries", True)
    with tarfile.open(tmp_path / "junk.tar", "w") as tar:
        add_member(tar, "a.jpg", b"")
        add_member(tar, "b.txt", b"no image")
    junk = "image_shards:.*junk.tar: .*(could not be used|no readable)"
    unusable(cfg("image_shards", tmp_path / "junk.tar"), junk, True)
    (tmp_path / "empty_shards").mkdir()
    (tmp_path / "empty_shards" / "a.tar").write_bytes(b"")
    unusable(cfg("image_shards", tmp_path / "empty_shards"), "empty_shards: no readable sample in any of the 1", True)
    unusable(cfg("image_shards", tmp_path / "none-*.tar"), r"none-\*.tar: no shard file \(.tar\) matches")


def test_short_clip_in_a_long_enough_header(tmp_path, caplog):
    """A clip too short for the frame rate asked (no header frame count check can catch it in fps mode)."""
    write_video(tmp_path / "a.mp4", index_clip(30, 32, 32), 25)
    write_video(tmp_path / "b.mp4", index_clip(12, 32, 32), 25)  # 0.48 s: too short for 5 frames at 5 fps
    cfg = DataConfig(
        sources=(SourceConfig("video_folder", str(tmp_path)),),
        image_size=32,
        clip_frames=5,
        fps=5.0,
        video_batch_size=2,
        num_workers=0,
    )
    loader, batches, log = run(cfg, 3, caplog)
    assert Counter(c for b in batches for c in [r.split(":")[0] for _, r in b.skipped]) == Counter({"too_short": 1})
    assert "b.mp4" in log
