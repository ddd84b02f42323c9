"""Instruction-editing triples (source image, instruction, target image) from a JSONL file or WebDataset shards.

A JSONL (or ``.json`` array) record names the two images and the instruction::

    {"id": "17", "source": "in/17.png", "instruction": "make the cup red", "target": "out/17.png"}

InstructPix2Pix's field names (``input_image``, ``edit_prompt``, ``edited_image``) and MagicBrush's
(``source_img``, ``instruction``, ``target_img``) are read too. Image paths are relative to the file's folder or
to ``media_root``. The file is scanned, drawn and its bad records skipped exactly as a conversations file
(:mod:`hydra_x.data.conversations`): a record without the three fields, or whose image does not exist, is left out
at the scan and reported; an image that does not decode is skipped when drawn and counted.

A shard sample holds ``source.<ext>`` and ``target.<ext>`` (any image extension: ``000017.source.png``,
``000017.target.jpg`` in the tar) and the instruction as ``txt`` or as ``json`` with an "instruction"; shards are
streamed like caption shards (:mod:`hydra_x.data.caption_shards`: streams, epochs, exact resume, bad samples
counted once).

Both give ``edit`` examples: the user turn is the source and the instruction, the assistant's reply the target,
which the model learns to generate. Source and target are fitted alike (cover the square, centre crop), so a
pixel of one lies over the same pixel of the other.
"""

from __future__ import annotations

from pathlib import Path

from hydra_x.data.caption_shards import CaptionShardSource, ShardSample, sample_caption
from hydra_x.data.conversations import Record, RecordError
from hydra_x.data.examples import Example, Visual, edit_messages, fit_image
from hydra_x.data.failures import SampleError
from hydra_x.data.folders import decode_image_bytes
from hydra_x.data.media import IMAGE_EXTENSIONS

# Accepted names of each field, first match wins: ours, InstructPix2Pix's, MagicBrush's.
FIELDS = {
    "source": ("source", "input_image", "source_img"),
    "instruction": ("instruction", "edit_prompt"),
    "target": ("target", "edited_image", "target_img"),
}
EDIT_ROLES = ("understand", "generate")  # the source is read, the target generated


def _field(obj: dict, name: str) -> str:
    names = FIELDS[name]
    key = next((k for k in names if k in obj), None)
    if key is None:
        raise RecordError("bad_record", f"no {name} (one of {', '.join(repr(k) for k in names)})")
    value = obj[key]
    if not isinstance(value, str) or not value.strip():
        raise RecordError("bad_record", f"{key!r} must be a non-empty string, got {value!r}")
    return value.strip()


def parse_edit_record(obj: object, key: str, root: Path) -> Record:
    """An edit record as a :class:`Record` of task ``edit``, or RecordError saying why it can never be used."""
    if not isinstance(obj, dict):
        raise RecordError("bad_record", f"not a JSON object but {type(obj).__name__}")
    instruction = _field(obj, "instruction")
    images = [root / _field(obj, "source"), root / _field(obj, "target")]  # an absolute path replaces root
    for path in images:
        if not path.is_file():
            raise RecordError("missing_media", f"no such file: {path}")
    return Record(key, "edit", edit_messages(instruction), [("image", p) for p in images], EDIT_ROLES)


class EditShardSource(CaptionShardSource):
    """Edit triples streamed from the shards a pattern matches (module docstring)."""

    def __init__(self, pattern: str, sid: int, seed: int, size: int, name: str):
        super().__init__(pattern, "image", sid, seed, size, 1, 1, name)
        self.tasks = frozenset({"edit"})

    def example(self, task: str, sample: ShardSample) -> Example:
        instruction = sample_caption(sample, "instruction")
        pixels = [fit_image(decode_image_bytes(sample.members[m], sample.name), self.size) for m in _members(sample)]
        visuals = [Visual(x, role) for x, role in zip(pixels, EDIT_ROLES)]
        return Example("edit", edit_messages(instruction), visuals, sample.name)


def _members(sample: ShardSample) -> tuple[str, str]:
    """The names of the sample's source and target images; SampleError "no_media" if one is missing."""
    found = []
    for part in ("source", "target"):
        names = [m for m in sample.members if m.startswith(f"{part}.") and Path(m).suffix.lower() in IMAGE_EXTENSIONS]
        if not names:
            have = ", ".join(sorted(sample.members)) or "nothing"
            raise SampleError(sample.name, f"no {part} image ({part}.png, {part}.jpg, ...; has: {have})", "no_media")
        found.append(names[0])
    return found[0], found[1]
