"""Small data sets for the unified model's data tests, written by the tests: conversations and caption shards.

Images are shapes-world renders saved as PNG (lossless), so a test can read the objects back and check that an
example's text belongs to its picture; videos are the index-coded clips of tests.media_fixtures (frame i has grey
level 8 i + 4), so a test can tell which frames a clip took.
"""

from __future__ import annotations

import io
import json
import re
import tarfile
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image

from hydra_x.data.media import to_uint8
from hydra_x.data.shapes import COLOURS, SHAPES, render_image
from hydra_x.data.shapes_text import NUMBERS, ShapesWorld
from hydra_x.data.video import write_video
from tests.media_fixtures import VIDEO_FRAMES, index_clip

_NOUN = re.compile(rf"\b(a|an|{'|'.join(NUMBERS[1:])}) ({'|'.join(COLOURS)}) ({'|'.join(SHAPES)})s?\b")


def caption_kinds(text: str) -> Counter:
    """(colour, shape) -> count, parsed from a shapes caption ("two blue squares and a red circle")."""
    found: Counter = Counter()
    for n, colour, shape in _NOUN.findall(text):
        found[colour, shape] += 1 if n in ("a", "an") else NUMBERS.index(n)
    return found


def png_bytes(pixels) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(to_uint8(pixels)).save(buf, format="PNG")
    return buf.getvalue()


def shapes_png(k: int, size: int = 64, seed: int = 7) -> tuple[bytes, str]:
    """(PNG bytes, caption) of shapes caption sample k."""
    sample = ShapesWorld(seed).caption_sample(k)
    return png_bytes(render_image(sample.scene, size, size)), sample.caption


def mp4_bytes(folder: Path, name: str, frames: int = VIDEO_FRAMES, size: int = 32) -> bytes:
    path = folder / name
    write_video(path, index_clip(frames, size, size), 25)
    return path.read_bytes()


def corrupt_png() -> bytes:
    rng = np.random.default_rng(0)
    return b"\x89PNG\r\n\x1a\n" + rng.integers(0, 256, 300, dtype=np.uint8).tobytes()


def add_member(tar: tarfile.TarFile, name: str, content: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(content)
    tar.addfile(info, io.BytesIO(content))


def write_tar(path: Path, samples: list[dict[str, bytes]]) -> Path:
    """A WebDataset shard: sample i's members stored as ``{i:06d}.{ext}``."""
    with tarfile.open(path, "w") as tar:
        for i, members in enumerate(samples):
            for ext, content in members.items():
                add_member(tar, f"{i:06d}.{ext}", content)
    return path


# ---------------------------------------------------------------------------- conversations


def llava(rid: str, turns: list[tuple[str, str]], **media) -> dict:
    return {"id": rid, **media, "conversations": [{"from": f, "value": v} for f, v in turns]}


def write_conversations(folder: Path) -> dict[str, list[str]]:
    """A JSONL file with good and bad records under ``folder``; returns the ids of each kind of record."""
    (folder / "img").mkdir(parents=True)
    (folder / "vid").mkdir()
    for k in range(4):
        (folder / "img" / f"{k}.png").write_bytes(shapes_png(k)[0])
    (folder / "img" / "corrupt.png").write_bytes(corrupt_png())
    mp4_bytes(folder / "vid", "v.mp4")
    good = [
        llava("img0", [("human", "<image>\nWhat is shown?"), ("gpt", "shapes 0")], image="img/0.png"),
        llava(
            "img1",
            [("system", "Be brief."), ("human", "What is this?\n<image>"), ("gpt", "shapes 1")],
            image="img/1.png",
        ),  # fmt: skip
        llava("two", [("human", "<image> then <image>"), ("gpt", "two")], image=["img/2.png", "img/3.png"]),
        llava("vid", [("human", "<video>\nWhich frame?"), ("gpt", "all")], video="vid/v.mp4"),
        llava("txt", [("human", "Say hi."), ("gpt", "hi")]),
        {"id": "oai", "messages": [{"role": "user", "content": "2 + 2?"}, {"role": "assistant", "content": "4"}]},
    ]
    corrupt = [  # two records, one bad file
        llava("corrupt", [("human", "<image>\nWhat?"), ("gpt", "x")], image="img/corrupt.png"),
        llava("corrupt2", [("human", "<image>\nAgain?"), ("gpt", "y")], image="img/corrupt.png"),
    ]
    scan_bad = {
        "missing": llava("missing", [("human", "<image>\nWhat?"), ("gpt", "x")], image="img/none.png"),
        "no_placeholder": llava("no_placeholder", [("human", "What?"), ("gpt", "x")], image="img/0.png"),
        "extra_placeholder": llava("extra_placeholder", [("human", "<image><image>"), ("gpt", "x")], image="img/0.png"),
        "in_reply": llava("in_reply", [("human", "Draw."), ("gpt", "<image>")], image="img/0.png"),
        "gpt_first": llava("gpt_first", [("gpt", "hello"), ("human", "hi")]),
        "no_reply": llava("no_reply", [("human", "hi"), ("gpt", "  ")]),
    }
    lines = [json.dumps(r) for r in good + corrupt + list(scan_bad.values())]
    lines.insert(3, "{not json")
    lines.insert(5, "")  # blank lines are ignored
    (folder / "data.jsonl").write_text("\n".join(lines) + "\n")
    return {"good": [r["id"] for r in good], "corrupt": ["corrupt", "corrupt2"], "scan_bad": list(scan_bad)}
