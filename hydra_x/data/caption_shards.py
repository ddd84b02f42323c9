"""Caption pairs in WebDataset shards: image + caption for image_caption / image_gen, video + caption for
video_caption / video_gen.

A sample is read as ``hydra_x.data.shards.iter_shard`` groups it: its first image member (``jpg``, ``jpeg``,
``png``, ``webp``, ...; video sources: ``mp4``, ``webm``, ``mkv``, ...) and its caption, ``txt`` (UTF-8) or else
``json`` with a "caption" string. The same sample makes a captioning example or a generation example, whichever
task the mixture drew for the slot it fills.

Streams: the loader keeps ``shard_streams`` independent streams per rank (step s of a rank reads stream
s mod shard_streams), so what a stream reads does not depend on the number of DataLoader workers. Every epoch
the shard list is shuffled from (seed, source, epoch); stream c of C (all ranks' streams together) reads shards
c, c + C, ... of it, in order, or, with fewer shards than streams, shares shard c mod n with the other streams
that land on it, taking every m-th of its samples (so no two streams of an epoch read the same sample). A
stream's position is (epoch, shard in its list, next sample): restoring it opens that shard again and skips to
the sample, so a resumed run reads what the uninterrupted one would have.

Bad data: a sample without media or caption, or whose media does not decode, is a SampleError (the loader takes
the stream's next sample instead and counts the bad one); each stream remembers it, so later epochs refuse it
without decoding. A truncated or unreadable shard gives its readable samples and is reported by the stream.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from hydra_x.data.buckets import hash_uniform, name_id, sample_rng
from hydra_x.data.config import DataSourceError
from hydra_x.data.examples import (
    IMAGE_CAPTION_PROMPTS,
    VIDEO_CAPTION_PROMPTS,
    Example,
    Visual,
    fit_image,
    load_clip,
    seen_again,
    task_image_size,
)
from hydra_x.data.failures import SampleError, skip_category
from hydra_x.data.folders import VIDEO_EXTENSIONS, decode_image_bytes
from hydra_x.data.media import IMAGE_EXTENSIONS, MediaError
from hydra_x.data.shards import ShardFailure, expand_shards, iter_shard

MEDIA_KEYS = {
    "image": tuple(e[1:] for e in sorted(IMAGE_EXTENSIONS)),
    "video": tuple(e[1:] for e in sorted(VIDEO_EXTENSIONS)),
}
_TAG_ORDER, _TAG_PROMPT = 51, 52


@dataclass
class ShardSample:
    shard: str
    index: int  # sample number in the shard
    key: str
    members: dict[str, bytes]

    @property
    def name(self) -> str:
        return f"{self.shard}:{self.key}"


class ShardCursor:
    """Stream ``stream`` of ``streams``: its shards and samples epoch after epoch, with an exact position."""

    def __init__(self, shards: list[str], stream: int, streams: int, seed: int, sid: int, name: str, state=None):
        self.shards, self.stream, self.streams, self.name = shards, stream, streams, name
        self.seed, self.sid = seed, sid
        state = state or {"epoch": 0, "cursor": 0, "next": 0}
        self.epoch, self.cursor, self.next_index = int(state["epoch"]), int(state["cursor"]), int(state["next"])
        self._it = None
        self._whole_epoch = self.cursor == 0 and self.next_index == 0  # read from its start in this process
        self._epoch_samples = 0
        self.skipped: list[tuple[str, str]] = []  # unreadable shards met (the loader reports each once)

    def state(self) -> dict:
        return {"epoch": self.epoch, "cursor": self.cursor, "next": self.next_index}

    def assigned(self, epoch: int) -> list[tuple[int, int, int]]:
        """(shard, m, r) to read in ``epoch``: the shard's samples whose number is r modulo m."""
        n, c = len(self.shards), self.streams
        order = sample_rng(self.seed, _TAG_ORDER, self.sid, epoch).permutation(n).tolist()
        if n >= c:
            return [(s, 1, 0) for s in order[self.stream :: c]]
        j = self.stream % n
        m = len(range(j, c, n))  # streams sharing this shard
        return [(order[j], m, (self.stream // n + epoch) % m)]

    def next(self) -> ShardSample:
        while True:
            assigned = self.assigned(self.epoch)
            if self.cursor >= len(assigned):
                if self._whole_epoch and self._epoch_samples == 0:
                    raise DataSourceError(
                        f"data source {self.name}: stream {self.stream} of {self.streams} read no sample in epoch "
                        f"{self.epoch} (unreadable shards, or fewer samples than streams: lower shard_streams)"
                    )
                self.epoch, self.cursor, self.next_index = self.epoch + 1, 0, 0
                self._whole_epoch, self._epoch_samples = True, 0
                continue
            shard, m, r = assigned[self.cursor]
            path = self.shards[shard]
            if self._it is None:
                self._it = iter_shard(path, skip=self.next_index)
            try:
                index, sample = next(self._it)
            except (StopIteration, ShardFailure) as err:
                if isinstance(err, ShardFailure):
                    self.skipped.append((path, str(err)))
                self._it = None
                self.cursor, self.next_index = self.cursor + 1, 0
                continue
            self.next_index = index + 1
            if index % m == r:
                self._epoch_samples += 1
                members = {k: v for k, v in sample.items() if not k.startswith("__")}
                return ShardSample(path, index, str(sample.get("__key__", index)), members)

    def pop_skipped(self) -> list[tuple[str, str]]:
        out, self.skipped = self.skipped, []
        return out


def sample_caption(sample: ShardSample, field: str = "caption") -> str:
    """The caption (or, with ``field``, e.g. an edit's instruction) of a sample: its ``txt`` member, else
    ``json``'s ``field``; SampleError "no_<field>" if none."""
    text, category = None, f"no_{field}"
    if "txt" in sample.members:
        try:
            text = sample.members["txt"].decode("utf-8")
        except UnicodeDecodeError:
            raise SampleError(sample.name, f"the txt {field} is not UTF-8 text", category) from None
    elif "json" in sample.members:
        try:
            meta = json.loads(sample.members["json"])
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise SampleError(sample.name, "the json member is not JSON", category) from None
        text = meta.get(field) if isinstance(meta, dict) else None
    if not isinstance(text, str) or not text.strip():
        have = ", ".join(sorted(sample.members)) or "nothing"
        problem = f"no {field} (a non-empty txt, or json with a {field}; has: {have})"
        raise SampleError(sample.name, problem, category)
    return text.strip()


class CaptionShardSource:
    """Image (``media="image"``) or video caption pairs from the shards a pattern matches, at ``size`` (square) for
    generation and at ``understanding_size`` (None: ``size``) for captioning."""

    def __init__(
        self,
        pattern: str,
        media: str,
        sid: int,
        seed: int,
        size: int,
        frames: int,
        stride: int,
        name: str,
        understanding_size: int | None = None,
    ):
        self.shards = expand_shards(pattern)
        self.name = name
        if not self.shards:
            raise DataSourceError(f"data source {name}: no shard file (.tar) matches")
        self.media, self.sid, self.seed = media, sid, seed
        self.size, self.frames, self.stride = size, frames, stride
        self.understanding_size = understanding_size
        self.tasks = frozenset({f"{media}_caption", f"{media}_gen"})

    def __len__(self) -> int:
        return len(self.shards)

    def open_stream(self, stream: int, streams: int, state: dict | None = None) -> CaptionStream:
        return CaptionStream(self, ShardCursor(self.shards, stream, streams, self.seed, self.sid, self.name, state))

    def example(self, task: str, sample: ShardSample) -> Example:
        caption = sample_caption(sample)
        member = next((k for k in sample.members if k.rsplit(".", 1)[-1] in MEDIA_KEYS[self.media]), None)
        if member is None:
            have = ", ".join(sorted(sample.members)) or "nothing"
            raise SampleError(sample.name, f"no {self.media} member in the sample (has: {have})", "no_media")
        data = sample.members[member]
        size = task_image_size(task, self.size, self.understanding_size)
        if self.media == "image":
            pixels = fit_image(decode_image_bytes(data, sample.name), size)
        else:
            pixels = load_clip(data, sample.name, self.frames, self.stride, size)
        tag = "<image>" if self.media == "image" else "<video>"
        if task.endswith("_gen"):
            messages = [{"role": "user", "content": caption}, {"role": "assistant", "content": tag}]
            return Example(task, messages, [Visual(pixels, "generate")], sample.name)
        prompts = IMAGE_CAPTION_PROMPTS if self.media == "image" else VIDEO_CAPTION_PROMPTS
        u = float(hash_uniform(self.seed, _TAG_PROMPT, self.sid, name_id(sample.name))[0])
        prompt = prompts[min(len(prompts) - 1, int(u * len(prompts)))]
        messages = [{"role": "user", "content": f"{tag}\n{prompt}"}, {"role": "assistant", "content": caption}]
        return Example(task, messages, [Visual(pixels)], sample.name)


class CaptionStream:
    """One stream of a caption shard source: ``next_example(task)`` reads on until a sample is usable."""

    def __init__(self, source: CaptionShardSource, cursor: ShardCursor):
        self.source, self.cursor = source, cursor
        self._failed: dict[tuple[str, int], SampleError] = {}  # (shard, sample number) -> why

    def state(self) -> dict:
        return self.cursor.state()

    def next_example(self, task: str) -> Example:
        """The next sample as a ``task`` example; a bad one is consumed and raised (SampleError), ``seen`` set if
        it failed before in this stream (an earlier epoch)."""
        sample = self.cursor.next()
        where = (sample.shard, sample.index)
        if where in self._failed:
            raise seen_again(self._failed[where])
        try:
            return self.source.example(task, sample)
        except MediaError as err:  # a SampleError, or media.py's error for an undecodable image
            failure = err if isinstance(err, SampleError) else SampleError(err.path, err.problem, skip_category(err))
            self._failed[where] = failure
            raise failure from None

    def pop_skipped(self) -> list[tuple[str, str]]:
        return self.cursor.pop_skipped()
