"""A file that fails after a good header is decoded once per process and reported once per run: the skip
counts are distinct files, and remembering failures changes no batch (same stream for any worker count, and
across resumes)."""

from __future__ import annotations

import json
import shutil
import tarfile
from collections import Counter

import pytest
import torch

from hydra_x.data import DataConfig, SourceConfig, TokenizerDataLoader, folder_source, shards
from hydra_x.data.media import IMAGE_EXTENSIONS
from tests.media_fixtures import add_member, bad_image_bytes

BAD = ("bad_a.jpg", "bad_b.jpg")  # pass the header scan, fail when their data is decoded


@pytest.fixture(scope="module")
def folder(tmp_path_factory, image_dir):
    """Four good images and two truncated JPEGs: every file is drawn many times in a few dozen steps."""
    out = tmp_path_factory.mktemp("skip_once")
    for path in sorted(p for p in image_dir.iterdir() if p.suffix in IMAGE_EXTENSIONS)[:4]:
        shutil.copy(path, out / path.name)
    for name in BAD:
        (out / name).write_bytes(bad_image_bytes()["bad_truncated.jpg"])
    return out


def config(source: SourceConfig, **kw) -> DataConfig:
    base = dict(image_size=32, aspect_buckets=False, image_batch_size=4, num_workers=0, seed=3)
    return DataConfig(sources=(source,), **{**base, **kw})


def take(loader: TokenizerDataLoader, n: int):
    it = iter(loader)
    return [next(it) for _ in range(n)]


def counting(monkeypatch, module, name: str, key=lambda *a: str(a[0])) -> Counter:
    """Count the calls of ``module.name`` by their first argument (the file, or the sample's name)."""
    calls: Counter = Counter()
    original = getattr(module, name)

    def wrapper(*args, **kw):
        calls[key(*args)] += 1
        return original(*args, **kw)

    monkeypatch.setattr(module, name, wrapper)
    return calls


def names(batches) -> list[str]:
    return [name.rsplit("/", 1)[-1] for b in batches for name, _ in b.skipped]


def test_a_bad_image_is_decoded_once_and_counted_once(folder, monkeypatch):
    reads = counting(monkeypatch, folder_source, "read_image")
    loader = TokenizerDataLoader(config(SourceConfig("image_folder", str(folder))))
    batches = take(loader, 30)  # 120 draws of 6 files
    draws = {name: n for name, n in reads.items() if name.endswith(BAD)}
    assert set(draws) == {str(folder / n) for n in BAD} and set(draws.values()) == {1}
    assert sorted(names(batches)) == sorted(BAD)
    assert loader.skip_counts == {"corrupt": 2} and all(b.pixels.shape[0] == 4 for b in batches)
    assert not any(k.endswith(BAD) for b in batches for k in b.keys)


def test_remembering_failures_changes_no_batch_and_resume_reports_nothing_twice(folder):
    cfg = config(SourceConfig("image_folder", str(folder)))
    reference = take(TokenizerDataLoader(cfg), 24)
    workers = take(TokenizerDataLoader(config(SourceConfig("image_folder", str(folder)), num_workers=2)), 24)
    first = TokenizerDataLoader(cfg)
    head = take(first, 10)
    state = json.loads(json.dumps(first.state_dict()))
    assert sorted(n.rsplit("/", 1)[-1] for n in state["skipped_files"]) == sorted(names(head)) == sorted(BAD)
    resumed = TokenizerDataLoader(cfg, start_step=10, state=state)  # a fresh process: no memory of the files
    tail = take(resumed, 14)
    for a, b, c in zip(reference, workers, head + tail):
        assert a.keys == b.keys == c.keys and torch.equal(a.pixels, b.pixels) and torch.equal(a.pixels, c.pixels)
    assert sorted(names(workers)) == sorted(BAD)  # each worker meets them, the rank reports them once
    assert names(tail) == [] and resumed.skip_counts == {"corrupt": 2}


def test_a_bad_shard_sample_is_decoded_once_over_many_epochs(tmp_path, image_dir, monkeypatch):
    good = sorted(p for p in image_dir.iterdir() if p.suffix == ".png")[:3]
    with tarfile.open(tmp_path / "s.tar", "w") as tar:
        for i, path in enumerate(good):
            add_member(tar, f"g{i}.png", path.read_bytes())
        add_member(tar, "bad.jpg", bad_image_bytes()["bad_truncated.jpg"])
        add_member(tar, "meta.json", b"{}")  # no image member
    decodes = counting(monkeypatch, shards, "decode_image_bytes", key=lambda data, name: name)
    cfg = config(SourceConfig("image_shards", str(tmp_path / "s.tar")), image_batch_size=2)
    loader = TokenizerDataLoader(cfg)
    batches = take(loader, 12)  # 24 samples of a 3-image shard: 8 epochs
    assert decodes[f"{tmp_path / 's.tar'}:bad"] == 1
    assert sorted(names(batches)) == ["s.tar:bad", "s.tar:meta"]
    assert loader.skip_counts == {"corrupt": 1, "no_media": 1}
    resumed = TokenizerDataLoader(cfg, start_step=12, state=json.loads(json.dumps(loader.state_dict())))
    assert names(take(resumed, 4)) == []
