"""The fixed, versioned prompt set of ``hydra-x eval shapes``: what a model is asked, with its exact ground truth.

Every item comes from the shapes world's HELD-OUT split (:mod:`hydra_x.data.shapes`: combinations never drawn
for training, by construction), with the set's own seed, so a score measures generalisation to new
combinations of known colours, shapes, counts, relations and directions, never recall of a training caption.

- generation, the six GenEval categories (what each one checks is :mod:`hydra_x.eval.shapes`):
  ``single_object`` "a purple circle", ``two_object`` "a purple circle and a red square", ``counting`` "three
  green triangles", ``colors`` "a purple circle", ``position`` "a red circle left of a blue square",
  ``color_attr`` "a purple circle and a green square" (both objects held-out kinds: swapped colours fail).
  The held-out split has few single kinds (3) and counts (9), so those categories cycle through their
  prompts with a new truth scene each time (GenEval also scores several images per prompt);
- understanding: colour, count and position questions about held-out scenes, with their short answers;
- video: one object moving in a direction, every held-out (colour, shape, direction) twice;
- editing: recolour, remove, add, move, resize, each with its held-out source scene and target.

Prompts are the world's own captions (:func:`hydra_x.data.shapes_text.caption`), phrased as in training. A
version never changes: :meth:`PromptSet.digest` is pinned by a test; a new set is a new version.

``shapes-v1-seen`` is its control: the same categories, kinds and ops built the same way from combinations the
training split does draw (new scenes: the set's seed is not a training run's). A model that scores there and not
on ``shapes-v1`` reads and draws what it was shown but does not recombine it; one that scores on neither has not
learnt the task itself.
"""

from __future__ import annotations

import hashlib
import json
import zlib
from dataclasses import asdict, dataclass, replace
from functools import cache

import numpy as np

from hydra_x.data.shapes import (
    COLOURS,
    COUNTS,
    DIRECTIONS,
    RELATIONS,
    SHAPES,
    SIZES,
    STEPS,
    TRAVEL,
    ClipScene,
    MovingObject,
    Scene,
    is_heldout,
    random_object,
    relation_key,
    scene_keys,
    scene_ok,
)
from hydra_x.data.shapes_text import EDIT_OPS, EditSample, Question, ShapesWorld, caption, questions

PROMPT_SET_VERSION = "shapes-v1"
SEEN_VERSION = "shapes-v1-seen"  # the control set: seen combinations (the module docstring)
VERSIONS = (PROMPT_SET_VERSION, SEEN_VERSION)
SPLIT_OF = {PROMPT_SET_VERSION: "heldout", SEEN_VERSION: "train"}  # the shapes world's split each set draws from
PROMPT_SEED = 20270611  # not the training run's held-out check seed: the two sets differ
CATEGORIES = ("single_object", "two_object", "counting", "colors", "position", "color_attr")  # GenEval's names
QUESTION_KINDS = ("colour", "count", "position")
PER_CATEGORY = 24  # generation prompts per category
PER_QUESTION_KIND = 20
VIDEOS = 24  # the 12 held-out motions, twice
PER_EDIT_OP = 8

Kind = tuple[str, str]  # (colour, shape)
Group = tuple[str, str, int]  # (colour, shape, count) asked for


@dataclass(frozen=True)
class GenerationItem:
    """A prompt asking for ``groups`` (in prompt order) and, for "position", ``groups[0]`` ``relation``
    ``groups[1]``; ``scene`` is one truth picture of it; ``key`` its held-out combination key."""

    id: str
    category: str
    prompt: str
    groups: tuple[Group, ...]
    relation: str | None
    scene: Scene
    key: tuple


@dataclass(frozen=True)
class QuestionItem:
    id: str
    kind: str
    scene: Scene
    question: Question  # its ``text`` is asked, its ``answer`` is the truth
    key: tuple


@dataclass(frozen=True)
class VideoItem:
    id: str
    prompt: str
    clip: ClipScene  # one moving object
    key: tuple  # ("motion", colour, shape, direction)

    @property
    def kind(self) -> Kind:
        return self.clip.objects[0].start.kind

    @property
    def direction(self) -> str:
        return self.clip.objects[0].direction


@dataclass(frozen=True)
class EditItem:
    id: str
    sample: EditSample  # source, target, instruction, op and the edited object's indices
    key: tuple  # the source scene's primary key


@dataclass(frozen=True)
class PromptSet:
    version: str
    seed: int
    generation: tuple[GenerationItem, ...]
    questions: tuple[QuestionItem, ...]
    videos: tuple[VideoItem, ...]
    edits: tuple[EditItem, ...]

    def to_dict(self) -> dict:
        return asdict(self)

    def digest(self) -> str:
        """SHA-256 of the whole set as canonical JSON: every prompt, answer, scene coordinate and id."""
        text = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    def counts(self) -> dict[str, int]:
        return {
            "generation": len(self.generation),
            "questions": len(self.questions),
            "videos": len(self.videos),
            "edits": len(self.edits),
        }

    def limited(self, n: int | None) -> PromptSet:
        """The first ``n`` items of each generation category, question kind and edit op, and the first ``n``
        videos (items come in their prompt-cycling order, so a prefix covers distinct prompts first)."""
        if n is None:
            return self
        if n < 1:
            raise ValueError(f"limit must be at least 1, got {n}")
        return replace(
            self,
            generation=_first(self.generation, n, lambda i: i.category),
            questions=_first(self.questions, n, lambda i: i.kind),
            videos=self.videos[:n],
            edits=_first(self.edits, n, lambda i: i.sample.op),
        )


def _first(items: tuple, n: int, group) -> tuple:
    seen: dict[str, int] = {}
    out = []
    for item in items:
        g = group(item)
        if seen.get(g, 0) < n:
            seen[g] = seen.get(g, 0) + 1
            out.append(item)
    return tuple(out)


@cache
def prompt_set(version: str = PROMPT_SET_VERSION) -> PromptSet:
    """The prompt set of ``version`` (built deterministically, in about a second; cached)."""
    if version not in VERSIONS:
        raise ValueError(f"unknown prompt-set version {version!r}; known: {', '.join(VERSIONS)}")
    split = SPLIT_OF[version]
    generation = tuple(item for category in CATEGORIES for item in _generation(category, split))
    return PromptSet(version, PROMPT_SEED, generation, _questions(split), _videos(split), _edits(split))


def _rng(split: str, *tags: str | int) -> np.random.Generator:
    """An independent generator per (purpose, index): items do not depend on each other or on build order. The
    held-out set's tags are as they were before the seen set existed (its digest is pinned)."""
    tags = tags if split == "heldout" else (split, *tags)
    return np.random.default_rng([PROMPT_SEED, *(zlib.crc32(t.encode()) if isinstance(t, str) else t for t in tags)])


def _in(key: tuple, split: str) -> bool:
    """Whether a combination key belongs to ``split`` ("heldout", or "train": every key training may draw)."""
    return is_heldout(key) == (split == "heldout")


# -- generation -------------------------------------------------------------------------------------------------


def _kinds() -> list[Kind]:
    return [(c, s) for c in COLOURS for s in SHAPES]


def singles(split: str = "heldout") -> list[Kind]:
    """The (colour, shape) kinds whose single-object key is in ``split`` (held out: three, one per shape)."""
    return [k for k in _kinds() if _in(("count", 1, *k), split)]


def generation_specs(category: str, split: str = "heldout") -> list[tuple[tuple[Group, ...], str | None]]:
    """Every distinct prompt of ``category`` whose combination is in ``split``, as (groups, relation), in a fixed
    order."""
    ones, kinds = singles(split), _kinds()
    if category in ("single_object", "colors"):
        return [(((*a, 1),), None) for a in ones]
    if category == "counting":
        keys = [(n, *k) for n in COUNTS[1:] for k in kinds if _in(("count", n, *k), split)]
        return [(((c, s, n),), None) for n, c, s in keys]
    if category == "two_object":  # two shapes (GenEval: two classes), the second a training kind
        others = singles("train")
        return [(((*a, 1), (*b, 1)), None) for a in ones for b in others if b[1] != a[1]]
    if category == "color_attr":  # colours and shapes differ; held out, both are, and a swap makes training kinds
        return [(((*a, 1), (*b, 1)), None) for a in ones for b in ones if a[0] != b[0] and a[1] != b[1]]
    if category == "position":
        return [
            (((*a, 1), (*b, 1)), rel)
            for a in kinds
            for b in kinds
            for rel in RELATIONS
            if a != b and _in(relation_key(a, rel, b), split)
        ]
    raise ValueError(f"unknown category {category!r}; expected one of {CATEGORIES}")


def truth_scene(rng: np.random.Generator, groups: tuple[Group, ...], relation: str | None) -> Scene:
    """A random scene that satisfies the prompt, laid out as the world lays out its scenes of that kind."""
    kinds = [(c, s) for c, s, n in groups for _ in range(n)]
    if relation is not None:
        kind, count = "relation", None
    elif len(kinds) == 1:
        kind, count = "single", None
    else:  # the first group is the counted one; a second group is a distractor, as in the world's count scenes
        kind, count = "count", groups[0][2]
    while True:
        objects = tuple(random_object(rng, k, SIZES[kind]) for k in kinds)
        scene = Scene(objects, kind, relation, count)
        if scene_ok(scene):
            return scene


def _generation(category: str, split: str) -> list[GenerationItem]:
    specs = generation_specs(category, split)
    order = _rng(split, "order", category).permutation(len(specs))
    items = []
    for i in range(PER_CATEGORY):
        groups, relation = specs[int(order[i % len(specs)])]
        scene = truth_scene(_rng(split, "generation", category, i), groups, relation)
        key = scene_keys(scene)[0]
        items.append(GenerationItem(f"{category}-{i:03d}", category, caption(scene), groups, relation, scene, key))
    return items


# -- understanding, video, editing ------------------------------------------------------------------------------


def _questions(split: str) -> list[QuestionItem]:
    """Questions of each kind about successive scenes of ``split`` (one question a scene, drawn among that kind)."""
    world = ShapesWorld(PROMPT_SEED, split)
    items: list[QuestionItem] = []
    for kind in QUESTION_KINDS:
        k = 0
        while sum(item.kind == kind for item in items) < PER_QUESTION_KIND:
            scene = world.scene(k + 1000 * QUESTION_KINDS.index(kind))  # a scene stream per kind
            k += 1
            of_kind = [q for q in questions(scene) if q.kind == kind]
            if of_kind:
                q = of_kind[int(_rng(split, "question", kind, k).integers(len(of_kind)))]
                i = sum(item.kind == kind for item in items)
                items.append(QuestionItem(f"question-{kind}-{i:03d}", kind, scene, q, scene_keys(scene)[0]))
    return items


def motion_specs(split: str = "heldout") -> list[tuple[str, str, str]]:
    """The (colour, shape, direction) motions of ``split`` (held out: twelve)."""
    return [(c, s, d) for c, s in _kinds() for d in DIRECTIONS if _in(("motion", c, s, d), split)]


def _videos(split: str) -> list[VideoItem]:
    specs = motion_specs(split)
    order = _rng(split, "order", "video").permutation(len(specs))
    items = []
    for i in range(VIDEOS):
        colour, shape, direction = specs[int(order[i % len(specs)])]
        rng = _rng(split, "video", i)
        dist = TRAVEL[0] + (TRAVEL[1] - TRAVEL[0]) * rng.random()
        dx, dy = STEPS[direction]
        obj = random_object(rng, (colour, shape), SIZES["clip"], (abs(dx) * dist, abs(dy) * dist))
        start = replace(obj, cx=obj.cx + dist * (dx < 0), cy=obj.cy + dist * (dy < 0))  # room ahead, as the world
        clip = ClipScene((MovingObject(start, direction, dist),))
        items.append(VideoItem(f"video-{i:03d}", caption(clip), clip, scene_keys(clip)[0]))
    return items


def _edits(split: str) -> list[EditItem]:
    """The world's edit samples of ``split`` in order, the first PER_EDIT_OP of each op (ops are drawn uniformly)."""
    world = ShapesWorld(PROMPT_SEED, split)
    by_op: dict[str, list[EditSample]] = {op: [] for op in EDIT_OPS}
    k = 0
    while min(map(len, by_op.values())) < PER_EDIT_OP:
        sample = world.edit_sample(k)
        k += 1
        if len(by_op[sample.op]) < PER_EDIT_OP:
            by_op[sample.op].append(sample)
    return [
        EditItem(f"edit-{op}-{i:03d}", s, scene_keys(s.source)[0]) for op in EDIT_OPS for i, s in enumerate(by_op[op])
    ]
