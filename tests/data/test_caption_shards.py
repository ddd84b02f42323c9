"""Caption pairs from WebDataset shards: pairs stay paired, streams split each epoch, bad samples reported once."""

from __future__ import annotations

import json
import tarfile
from collections import Counter
from pathlib import Path

import pytest

from hydra_x.data.caption_shards import CaptionShardSource, ShardCursor
from hydra_x.data.config import DataSourceError
from hydra_x.data.media import MediaError
from hydra_x.data.mixture import UnifiedDataConfig, UnifiedDataLoader, UnifiedSource
from hydra_x.data.shards import ShardFailure, iter_shard
from hydra_x.eval.shapes_read import read_objects
from tests.data.unified_data import caption_kinds, corrupt_png, mp4_bytes, shapes_png, write_tar
from tests.media_fixtures import frame_index


@pytest.fixture(scope="module")
def image_shards(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("caption_shards")
    good = [shapes_png(k) for k in range(12)]
    a = [{"png": png, "txt": cap.encode()} for png, cap in good[:4]]
    a += [{"png": png, "json": json.dumps({"caption": cap}).encode()} for png, cap in good[4:6]]
    a += [{"png": good[0][0]}, {"png": corrupt_png(), "txt": b"x"}, {"txt": b"a caption, no image"}]
    write_tar(out / "a-000.tar", a)
    write_tar(out / "a-001.tar", [{"png": png, "txt": cap.encode()} for png, cap in good[6:10]])
    full = write_tar(out / "full.tar", [{"png": png, "txt": cap.encode()} for png, cap in good[10:12] * 2])
    with tarfile.open(full) as tar:
        last = tar.getmembers()[-1]
    (out / "a-002.tar").write_bytes(full.read_bytes()[: last.offset_data + last.size // 2])  # cut in its last member
    full.unlink()
    return out


def loader(pattern: str, kind: str, ratios: dict, **kw) -> UnifiedDataLoader:
    base = dict(image_size=64, clip_frames=5, frame_stride=2, examples_per_step=4, num_workers=0, shard_streams=1)
    cfg = UnifiedDataConfig(sources=(UnifiedSource(kind, pattern),), task_ratios=ratios, **{**base, **kw})
    return UnifiedDataLoader(cfg)


def readable(path: Path) -> int:
    n = 0
    try:
        for _ in iter_shard(str(path)):
            n += 1
    except ShardFailure:
        pass
    return n


def test_image_pairs_stay_paired_every_good_sample_once_per_epoch_and_bad_ones_reported_once(image_shards):
    stream = loader(str(image_shards / "a-*.tar"), "caption_shards", {"image_caption": 1.0, "image_gen": 1.0})
    it = iter(stream)
    steps = [next(it) for _ in range(10)]
    examples = [e for s in steps for e in s.examples]
    for ex in examples:
        caption = ex.messages[0]["content"] if ex.task == "image_gen" else ex.messages[1]["content"]
        assert Counter(o.kind for o in read_objects(ex.visuals[0].pixels)) == caption_kinds(caption), ex.key
        assert ex.visuals[0].pixels.shape == (3, 64, 64)
    per_epoch = 6 + 4 + readable(image_shards / "a-002.tar")
    keys = [e.key for e in examples]
    assert readable(image_shards / "a-002.tar") == 3
    for epoch in range(len(keys) // per_epoch):
        assert len(set(keys[epoch * per_epoch : (epoch + 1) * per_epoch])) == per_epoch  # each one once
    assert {e.task for e in examples} == {"image_caption", "image_gen"}
    reported = [name for s in steps for name, _ in s.skipped]
    assert len(reported) == len(set(reported)) == 4  # three bad samples and the cut shard, over 3 epochs
    assert stream.skip_counts == {"no_caption": 1, "corrupt": 2, "no_media": 1}


def test_video_pairs_take_strided_frames_from_the_middle(tmp_path):
    samples = [{"mp4": mp4_bytes(tmp_path, f"{k}.mp4"), "txt": f"clip {k}".encode()} for k in range(3)]
    samples.append({"mp4": mp4_bytes(tmp_path, "short.mp4", frames=4), "txt": b"too short"})
    write_tar(tmp_path / "v.tar", samples)
    stream = loader(str(tmp_path / "v.tar"), "video_caption_shards", {"video_caption": 1.0, "video_gen": 2.0})
    it = iter(stream)
    steps = [next(it) for _ in range(2)]
    for ex in (e for s in steps for e in s.examples):
        k = int(ex.key.rsplit(":", 1)[1])
        caption = ex.messages[0]["content"] if ex.task == "video_gen" else ex.messages[1]["content"]
        assert caption == f"clip {k}"
        clip = ex.visuals[0].pixels
        assert clip.shape == (3, 5, 64, 64) and frame_index(clip) == [11, 13, 15, 17, 19]  # stride 2 from the middle
        assert ex.visuals[0].role == ("generate" if ex.task == "video_gen" else "understand")
    assert [r.split(":")[0] for s in steps for _, r in s.skipped] == ["too_short"]


def test_a_stream_refuses_a_sample_that_failed_in_an_earlier_epoch_without_decoding_it(image_shards):
    source = CaptionShardSource(str(image_shards / "a-000.tar"), "image", 0, 0, 64, 5, 1, "a")
    stream = source.open_stream(0, 1)
    decoded = Counter()
    real = source.example
    source.example = lambda task, sample: decoded.update([sample.index]) or real(task, sample)
    failures = []
    for _ in range(3 * 9):  # three epochs of the 9 samples
        try:
            stream.next_example("image_gen")
        except MediaError as err:
            failures.append((stream.cursor.epoch, err.seen))
    assert failures == [(e, e > 0) for e in range(3) for _ in range(3)]
    assert decoded == Counter({i: 3 for i in range(6)} | {i: 1 for i in range(6, 9)})


def text_shards(folder: Path, sizes: list[int]) -> list[str]:
    return [str(write_tar(folder / f"t{i}.tar", [{"txt": b"x"}] * n)) for i, n in enumerate(sizes)]


@pytest.mark.parametrize(("sizes", "streams"), [([5, 3, 4, 6, 2], 2), ([7, 4], 3), ([9], 4)])
def test_streams_split_every_epoch_without_overlap(tmp_path, sizes, streams):
    shards = text_shards(tmp_path, sizes)
    for epoch in range(2):
        read = Counter()
        for c in range(streams):
            cur = ShardCursor(shards, c, streams, 0, 0, "t", {"epoch": epoch, "cursor": 0, "next": 0})
            while (s := cur.next()) and cur.epoch == epoch:
                read[s.shard, s.index] += 1
                if sum(read.values()) > 100:
                    break
        assert read == Counter({(p, i): 1 for p, n in zip(shards, sizes) for i in range(n)})


def test_a_cursor_resumes_exactly_from_its_state(tmp_path):
    shards = text_shards(tmp_path, [5, 3, 4])
    cur = ShardCursor(shards, 0, 1, 0, 0, "t")
    for _ in range(7):
        cur.next()
    again = ShardCursor(shards, 0, 1, 0, 0, "t", cur.state())
    assert [(s.shard, s.index) for s in (cur.next() for _ in range(20))] == [
        (s.shard, s.index) for s in (again.next() for _ in range(20))
    ]


def test_shard_sources_that_cannot_be_used_are_clear_errors(tmp_path):
    with pytest.raises(DataSourceError, match="no shard file"):
        loader(str(tmp_path / "none-*.tar"), "caption_shards", {"image_gen": 1.0})
    (tmp_path / "empty.tar").write_bytes(b"")
    stream = loader(str(tmp_path / "empty.tar"), "caption_shards", {"image_gen": 1.0})
    with pytest.raises(DataSourceError, match="read no sample in epoch 0"):
        next(iter(stream))
