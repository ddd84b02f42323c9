"""Conversations with images or videos (instruction tuning) from a JSONL file, LLaVA style or OpenAI style.

Each line (or each element of a ``.json`` array, as LLaVA ships its mixes) is one record::

    {"id": "000123", "image": "coco/000123.jpg",           # or "video": "clips/7.mp4"; either may be a list
     "conversations": [{"from": "human", "value": "<image>\\nWhat is on the table?"},
                       {"from": "gpt", "value": "A cup of coffee."}]}
    {"id": "x", "messages": [{"role": "user", "content": "..."}, {"role": "assistant", "content": "..."}]}

``from`` is human / gpt / system (user and assistant are accepted too). Media paths are relative to the file's
folder, or to ``media_root``. A record is an ``image_sft`` example if it has images only, ``video_sft`` if it has
a video, ``text`` if neither. Its placeholders take its images and videos in order: the k-th ``<image>`` the k-th
path of "image".

The file is scanned once when the source is built: records that cannot be used whatever happens (not JSON, a
wrong structure, no assistant reply, placeholders that do not match the media, a media file that does not exist)
are left out, each counted once under a named reason (:data:`SCAN_REASONS`) and reported. Media that exist but do
not decode are found when drawn, skipped and counted like the tokenizer's bad files. A file with no usable record
is a :class:`~hydra_x.data.config.DataSourceError`. Draws are with replacement, hashed from (seed, source, draw
counter, attempt), so a draw is a pure function of those numbers and needs no state. Files of edit triples
(:mod:`hydra_x.data.edit_pairs`) are scanned, drawn and skipped the same way, with their own record parser.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hydra_x.data.buckets import hash_uniform
from hydra_x.data.config import DataSourceError
from hydra_x.data.examples import PLACEHOLDER_RE, PLACEHOLDERS, Example, Visual, fit_image, load_clip, seen_again
from hydra_x.data.failures import SampleError, skip_category
from hydra_x.data.media import MediaError, read_image

SCAN_REASONS = ("bad_record", "missing_media", "placeholder_mismatch")
ROLE_NAMES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}
_TAG_DRAW = 41
_EXAMPLES_SHOWN = 3  # skip reasons quoted in the error for a file with no usable record


class RecordError(Exception):
    """A record that can never be used: ``category`` one of SCAN_REASONS."""

    def __init__(self, category: str, problem: str):
        super().__init__(f"{category}: {problem}")
        self.category, self.problem = category, problem


@dataclass(frozen=True)
class Record:
    """A checked record: its task, chat messages, and (kind, path) of its media in placeholder order; ``roles``
    the Visual role of each (empty: all "understand", as in a conversation; an edit generates its target)."""

    key: str
    task: str
    messages: list[dict[str, str]]
    media: list[tuple[str, Path]] = field(default_factory=list)
    roles: tuple[str, ...] = ()


def _messages(obj: dict) -> list[dict[str, str]]:
    if isinstance(obj.get("conversations"), list):
        turns, role_key, text_key = obj["conversations"], "from", "value"
    elif isinstance(obj.get("messages"), list):
        turns, role_key, text_key = obj["messages"], "role", "content"
    else:
        raise RecordError("bad_record", 'no "conversations" or "messages" list')
    out = []
    for i, t in enumerate(turns):
        role = ROLE_NAMES.get(t.get(role_key)) if isinstance(t, dict) else None
        if role is None or not isinstance(t.get(text_key), str):
            raise RecordError("bad_record", f"turn {i} is not {{{role_key!r}: a known role, {text_key!r}: text}}")
        out.append({"role": role, "content": t[text_key]})
    talk = [m for m in out if m["role"] != "system"]
    if not talk or talk[0]["role"] != "user":
        raise RecordError("bad_record", "the conversation does not start with a user (human) turn")
    if not any(m["role"] == "assistant" and m["content"].strip() for m in out):
        raise RecordError("bad_record", "no assistant (gpt) reply to learn")
    return out


def _paths(obj: dict, kind: str) -> list[str]:
    value = obj.get(kind)
    if value is None:
        return []
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(p, str) and p for p in items):
        raise RecordError("bad_record", f'"{kind}" must be a path or a list of paths, got {value!r}')
    return list(items)


def parse_record(obj: object, key: str, root: Path) -> Record:
    """A record as a :class:`Record`, or RecordError saying why it can never be used."""
    if not isinstance(obj, dict):
        raise RecordError("bad_record", f"not a JSON object but {type(obj).__name__}")
    messages = _messages(obj)
    paths = {kind: _paths(obj, kind) for kind in ("image", "video")}
    slots: list[str] = []
    for m in messages:
        found = [PLACEHOLDERS[p] for p in PLACEHOLDER_RE.findall(m["content"])]
        if found and m["role"] == "assistant":
            raise RecordError("placeholder_mismatch", "a placeholder in an assistant reply (it would be generated)")
        slots += found
    for kind, given in paths.items():
        if slots.count(kind) != len(given):
            raise RecordError(
                "placeholder_mismatch", f"{slots.count(kind)} <{kind}> placeholder(s) for {len(given)} {kind}(s)"
            )
    queues = {kind: [root / p for p in given] for kind, given in paths.items()}  # an absolute p replaces root
    media = [(kind, queues[kind].pop(0)) for kind in slots]
    for _, path in media:
        if not path.is_file():
            raise RecordError("missing_media", f"no such file: {path}")
    task = "video_sft" if paths["video"] else "image_sft" if paths["image"] else "text"
    return Record(key, task, messages, media)


def _record_key(path: Path, array: bool, where: int, obj: object) -> str:
    """The key of a record in logs: "data.jsonl:17 (id)" (line 17) or "data.json:#16 (id)" (element 16)."""
    rid = obj.get("id") if isinstance(obj, dict) else None
    return f"{path}:{'#' if array else ''}{where}" + (f" ({rid})" if rid is not None else "")


RecordParser = Callable[[object, str, Path], Record]  # (parsed JSON, record key, media root) -> Record or RecordError


@dataclass
class ConversationIndex:
    """Where the usable records of a file are, per task (byte offsets of lines, or positions in a JSON array)."""

    path: Path
    root: Path
    array: bool  # a .json array, not JSON lines
    positions: dict[str, np.ndarray]  # task -> (n, 2) int64: (byte offset or array position, line or position)
    skipped: list[tuple[str, str]]  # (record key, "category: problem")
    total: int
    parse: RecordParser = parse_record  # what a record is: a conversation, or an edit (hydra_x.data.edit_pairs)
    kind: str = "conversations"  # the source kind, in names and errors


def _iter_raw(path: Path, array: bool, kind: str):
    """(position, line number or array position, parsed object or the JSON error) of each record."""
    if array:
        try:
            items = json.loads(path.read_bytes())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise DataSourceError(f"{kind}:{path}: not a JSON array ({err})") from None
        if not isinstance(items, list):
            raise DataSourceError(f"{kind}:{path}: a .json file must hold an array of records")
        yield from ((i, i, obj) for i, obj in enumerate(items))
        return
    with open(path, "rb") as f:
        offset = 0
        for line_no, line in enumerate(f, 1):
            if line.strip():
                try:
                    obj: object = json.loads(line)
                except (json.JSONDecodeError, UnicodeDecodeError) as err:
                    obj = err
                yield offset, line_no, obj
            offset += len(line)


def scan_conversations(
    path: str | os.PathLike,
    media_root: str | os.PathLike | None = None,
    parse: RecordParser = parse_record,
    kind: str = "conversations",
) -> ConversationIndex:
    """Check every record of a JSONL / JSON file once (see the module docstring); ``parse`` reads one record."""
    path = Path(path)
    if not path.is_file():
        raise DataSourceError(f"{kind}:{path}: {'not a file' if path.exists() else 'no such file'}")
    root = Path(media_root) if media_root is not None else path.parent
    array = path.suffix.lower() == ".json"
    positions: dict[str, list[tuple[int, int]]] = {}
    skipped, total = [], 0
    for pos, where, obj in _iter_raw(path, array, kind):
        total += 1
        key = _record_key(path, array, where, obj)
        try:
            if isinstance(obj, Exception):
                raise RecordError("bad_record", f"not JSON ({obj})")
            record = parse(obj, key, root)
        except RecordError as err:
            skipped.append((key, str(err)))
            continue
        positions.setdefault(record.task, []).append((pos, where))
    if not positions:
        shown = "; ".join(f"{k}: {r}" for k, r in skipped[:_EXAMPLES_SHOWN]) or "the file is empty"
        raise DataSourceError(f"{kind}:{path}: no usable record among {total} ({shown})")
    arrays = {task: np.asarray(p, dtype=np.int64).reshape(-1, 2) for task, p in positions.items()}
    return ConversationIndex(path, root, array, arrays, skipped, total, parse, kind)


class ConversationSource:
    """Map-style: ``draw(task, counter, attempt)`` draws a record of ``task`` with replacement and loads it: its
    images at ``understanding_size`` (None: ``size``), its clips at ``size``."""

    def __init__(
        self,
        index: ConversationIndex,
        source_id: int,
        seed: int,
        size: int,
        frames: int,
        stride: int,
        understanding_size: int | None = None,
    ):
        self.index, self.sid, self.seed = index, source_id, seed
        self.size, self.frames, self.stride = size, frames, stride
        self.image_size = size if understanding_size is None else understanding_size
        self.name = f"{index.kind}:{index.path}"
        self.tasks = frozenset(index.positions)
        self._records: list | None = None  # a .json array, parsed once per process (not pickled to workers)
        self._failed: dict[int, SampleError] = {}  # position -> why it failed, per process

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_records": None}

    def __len__(self) -> int:
        return sum(len(p) for p in self.index.positions.values())

    def _read(self, pos: int) -> object:
        if self.index.array:
            if self._records is None:
                self._records = json.loads(self.index.path.read_bytes())
            return self._records[pos]
        with open(self.index.path, "rb") as f:
            f.seek(pos)
            return json.loads(f.readline())

    def record(self, pos: int, where: int) -> Record:
        """The record at ``pos`` (a byte offset or array position), checked again: the file may have changed."""
        try:
            obj = self._read(pos)
        except (json.JSONDecodeError, UnicodeDecodeError, IndexError) as err:  # the file changed since the scan
            key = _record_key(self.index.path, self.index.array, where, None)
            raise SampleError(key, f"the record changed since the scan: not JSON ({err})", "corrupt") from None
        key = _record_key(self.index.path, self.index.array, where, obj)
        try:
            return self.index.parse(obj, key, self.index.root)
        except RecordError as err:
            raise SampleError(key, f"the record changed since the scan: {err}", "corrupt") from None

    def draw(self, task: str, counter: int, attempt: int) -> Example:
        """Candidate ``attempt`` for draw ``counter``: a MediaError (SampleError) if its media do not load."""
        positions = self.index.positions[task]
        u = float(hash_uniform(self.seed, _TAG_DRAW, self.sid, counter, attempt)[0])
        pos, where = (int(v) for v in positions[min(len(positions) - 1, int(u * len(positions)))])
        if pos in self._failed:  # the outcome decoding would give, without decoding (and reported already)
            raise seen_again(self._failed[pos])
        try:
            record = self.record(pos, where)
            roles = record.roles or ("understand",) * len(record.media)
            visuals = [Visual(self._load(kind, path), role) for (kind, path), role in zip(record.media, roles)]
        except MediaError as err:
            failure = err if isinstance(err, SampleError) else SampleError(err.path, err.problem, skip_category(err))
            self._failed[pos] = failure
            raise failure from None
        except OSError as err:  # unreadable since the scan (permissions, a vanished mount)
            failure = SampleError(self.index.path, f"cannot read ({type(err).__name__}: {err})", "corrupt")
            self._failed[pos] = failure
            raise failure from None
        return Example(record.task, [dict(m) for m in record.messages], visuals, record.key)

    def _load(self, kind: str, path: Path):
        if kind == "image":
            return fit_image(read_image(path), self.image_size)
        return load_clip(path, str(path), self.frames, self.stride, self.size)
