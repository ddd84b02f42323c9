"""WebDataset shards: the writer, shard lists, per-rank / per-worker splitting, bucket queues, exact positions."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest
import torch

from hydra_x.data import DataConfig
from hydra_x.data.buckets import make_buckets, nearest_bucket
from hydra_x.data.folders import decode_image_bytes, list_files
from hydra_x.data.media import IMAGE_EXTENSIONS
from hydra_x.data.shards import ShardReader, ShardStream, expand_shards, main


def test_writer_packs_every_file_once(image_dir, image_shards, tmp_path):
    shards = expand_shards(str(image_shards))
    files = list_files(image_dir, IMAGE_EXTENSIONS)
    assert len(shards) == -(-len(files) // 3)
    seen = []
    for shard in shards:
        with tarfile.open(shard) as tar:
            names = tar.getnames()
            for name in names:
                if name.endswith(".json"):
                    seen.append(json.loads(tar.extractfile(name).read())["path"])
            assert len(names) == 2 * len([n for n in names if n.endswith(".json")])
    assert sorted(seen) == sorted(str(f.relative_to(image_dir)) for f in files)
    # Bytes are stored as they are; the order is shuffled by the seed, reproducibly.
    again = tmp_path / "again"
    assert main(["write", "--images", str(image_dir), "--out", str(again), "--per-shard", "3"]) == 0
    assert [Path(a).read_bytes() for a in shards] == [Path(b).read_bytes() for b in expand_shards(str(again))]
    with pytest.raises(SystemExit):
        main(["write", "--out", str(tmp_path)])


def test_shard_patterns(image_shards):
    folder = expand_shards(str(image_shards))
    assert folder == sorted(folder) and len(folder) == 5
    assert expand_shards(str(image_shards / "images-*.tar")) == folder
    assert expand_shards(str(image_shards / "images-{000000..000004}.tar")) == folder
    assert expand_shards(str(image_shards / "images-{000001..000002}.tar")) == folder[1:3]
    assert expand_shards(str(image_shards / "missing-{0..3}.tar")) == []


def read_all(reader: ShardReader, n: int) -> list[tuple[str, int, int]]:
    return [(r.shard, r.index, r.epoch) for r in (reader.next() for _ in range(n))]


def test_consumers_split_shards_and_epochs_reshuffle(image_shards):
    shards = expand_shards(str(image_shards))
    total = 14  # samples in these shards
    # 2 ranks x 2 workers: each consumer reads its own shards; together one epoch is every sample once.
    per_consumer = []
    for c in range(4):
        reader = ShardReader(shards, c, 4, seed=0, source_id=0, interleave=2)
        got = []
        while True:
            s = reader.next()
            if s.epoch > 0:
                break
            got.append((s.shard, s.index))
        per_consumer.append(got)
    everything = [x for got in per_consumer for x in got]
    assert len(everything) == len(set(everything)) == total
    assert len({shard for got in per_consumer for shard, _ in got}) == len(shards)
    for a in range(4):
        for b in range(a + 1, 4):
            assert not {s for s, _ in per_consumer[a]} & {s for s, _ in per_consumer[b]}
    # One consumer over several epochs: each epoch is a new shard order, the interleave mixes shards.
    reader = ShardReader(shards, 0, 1, seed=0, source_id=0, interleave=3)
    epochs = [read_all(reader, total) for _ in range(3)]
    for k, e in enumerate(epochs):
        assert {epoch for _, _, epoch in e} == {k}
        assert sorted((s, i) for s, i, _ in e) == sorted((s, i) for s, i, _ in epochs[0])
    assert len({tuple((s, i) for s, i, _ in e) for e in epochs}) == 3
    assert len({s for s, _, _ in epochs[0][:4]}) > 1  # neighbours come from several shards


def test_reader_snapshot_restores_exactly(image_shards):
    shards = expand_shards(str(image_shards))
    reader = ShardReader(shards, 1, 3, seed=5, source_id=2, interleave=2)
    read_all(reader, 7)
    snap = json.loads(json.dumps(reader.snapshot()))
    expected = read_all(reader, 20)
    restored = ShardReader(shards, 1, 3, seed=5, source_id=2, interleave=2, state=snap)
    assert read_all(restored, 20) == expected


def stream_batches(stream: ShardStream, n: int):
    return [stream.next_batch() for _ in range(n)]


def test_bucket_queues_restore_exactly_at_every_step(image_shards):
    cfg = DataConfig(image_size=64, image_batch_size=3, num_workers=0, seed=3)
    buckets = make_buckets(64)
    shards = expand_shards(str(image_shards))
    stream = ShardStream("image", shards, 0, cfg, buckets, consumer=0, consumers=1)
    stream.max_wait = 6  # force buckets often: rare aspect ratios must not wait forever
    states, batches = [], []
    for _ in range(12):
        states.append(json.loads(json.dumps(stream.state())))
        batches.append(stream.next_batch())
    forced = 0
    for i in range(12):
        restored = ShardStream("image", shards, 0, cfg, buckets, consumer=0, consumers=1, state=states[i])
        restored.max_wait = 6
        for keys, xs, bucket, _ in batches[i:]:
            k2, x2, b2, _ = restored.next_batch()
            assert (k2, b2) == (keys, bucket)
            assert all(torch.equal(a, b) for a, b in zip(xs, x2))
    for keys, xs, bucket, _ in batches:
        assert len(keys) == 3 and all(x.shape[-2:] == bucket for x in xs)
        for key in keys:  # the sample's own aspect ratio vs the bucket it went to
            x = read_image_from_shard(key)
            forced += buckets[nearest_bucket(x.shape[-2], x.shape[-1], buckets)] != bucket
    assert forced > 0
    assert sum(len(s["used"]) for s in states) > 0


def read_image_from_shard(name: str) -> torch.Tensor:
    shard, key = name.rsplit(":", 1)
    with tarfile.open(shard) as tar:
        member = next(m for m in tar.getmembers() if m.name.startswith(key + ".") and not m.name.endswith(".json"))
        return decode_image_bytes(tar.extractfile(member).read(), name)


def test_fewer_shards_than_consumers(image_shards):
    shards = expand_shards(str(image_shards))[:1]
    a = ShardReader(shards, 0, 4, seed=0, source_id=0, interleave=2)
    b = ShardReader(shards, 3, 4, seed=0, source_id=0, interleave=2)
    ra, rb = a.next(), b.next()
    assert (ra.shard, ra.index) == (rb.shard, rb.index) and ra.copy != rb.copy  # re-read, augmented apart
