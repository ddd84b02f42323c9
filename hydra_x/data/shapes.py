"""The shapes world: procedural scenes of flat coloured shapes with exact ground truth, for the unified model.

Nothing is downloaded: a sample is a pure function of (seed, split, kind, index), unlimited, and rendered at any
size afterwards. Scenes are chosen to be read back exactly (:mod:`hydra_x.eval.shapes_read`): six colours far
apart and far from the background, three shapes that differ in fill ratio (square 1, circle pi/4, triangle 1/2)
and vertical balance, axis-aligned and upright, never overlapping (a gap between their boxes) and never
touching the border. The text side (captions, questions, edits) is :mod:`hydra_x.data.shapes_text`.

Coordinates are normalised: ``cx`` is a fraction of the width, ``cy`` of the height, ``size`` (the side of the
shape's square box) a fraction of the shorter image side, so shapes keep their proportions at any aspect ratio.
The footprint is therefore never larger than ``size`` along either normalised axis, which is what sampling
checks, so placement holds at every image size.

Held-out split (by construction, independent of the seed). With indices into :data:`COLOURS`, :data:`SHAPES`,
:data:`DIRECTIONS` (c, s, d), a count n and a canonical relation r (0 = left of, 1 = above):

* counts and single objects, key (n, colour, shape): held out iff ``(n + c + 2 s) % 6 == 0``
  (12 of 72; each colour twice, each (count, shape) pair once);
* two-object relations, key (colour A, shape A, relation, colour B, shape B) written canonically
  ("B right of A" is "A left of B", "B below A" is "A above B", so both phrasings of one picture fall on the
  same side): held out iff ``(cA + 2 sA + 3 r + 4 cB + sB) % 7 == 0`` (about 1 in 7);
* moving objects in clips, key (colour, shape, direction): held out iff ``(c + 2 s + d) % 6 == 3``
  (12 of 72; each (shape, direction) pair once, each colour twice).

``split="train"`` never produces a scene with a held-out key in it; ``split="heldout"`` always produces scenes
whose primary key (the counted group, the relation, the first moving object) is held out. Edit samples follow
their source scene (and training targets hold no held-out key either). Every single colour, shape, count,
relation and direction still appears in training.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, replace

import numpy as np
import torch

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (210, 30, 30),
    "orange": (250, 140, 20),
    "yellow": (245, 235, 60),
    "green": (40, 180, 60),
    "blue": (40, 90, 240),
    "purple": (175, 60, 230),
}
BACKGROUND: tuple[int, int, int] = (48, 48, 48)  # dark grey: at least 130 (of 255) from every colour
SHAPES = ("circle", "square", "triangle")
RELATIONS = ("left", "right", "above", "below")  # "left" reads "left of": objects[0] is left of objects[1]
DIRECTIONS = ("left", "right", "up", "down")
COUNTS = (1, 2, 3, 4)
SPLITS = ("train", "heldout")
SCENE_KINDS = ("single", "relation", "count")

MIN_SIDE = 16  # px; below this a shape is a handful of pixels
SUPERSAMPLE = 4  # antialiasing: coverage from 4 x 4 samples per pixel
EDGE = 0.03  # free border around every box (normalised)
GAP = 0.06  # free gap between boxes (normalised): about 4 px at 64 px, so components never merge
SIZES = {"single": (0.2, 0.45), "relation": (0.16, 0.3), "count": (0.16, 0.24), "clip": (0.16, 0.26)}
TRAVEL = (0.25, 0.45)  # clip displacement (normalised): at least 2 px per frame at 64 px and 8 frames
# unit steps (x, y) of motions, and of relations ("above": a is a step up from b)
STEPS = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1), "above": (0, -1), "below": (0, 1)}
_TAGS = {"scene": 1, "clip": 2, "caption": 3, "question": 4, "clip_sample": 5, "edit": 6}


@dataclass(frozen=True)
class ShapeObject:
    """One shape: ``(cx, cy)`` the centre of its square box, ``size`` the box side (see the module docstring)."""

    shape: str
    colour: str
    cx: float
    cy: float
    size: float

    def __post_init__(self) -> None:
        if self.shape not in SHAPES:
            raise ValueError(f"unknown shape {self.shape!r}; expected one of {SHAPES}")
        if self.colour not in COLOURS:
            raise ValueError(f"unknown colour {self.colour!r}; expected one of {tuple(COLOURS)}")
        if not (0.0 < self.size <= 1.0):
            raise ValueError(f"size must be in (0, 1], got {self.size}")

    @property
    def kind(self) -> tuple[str, str]:
        return self.colour, self.shape

    def box(self) -> tuple[float, float, float, float]:
        """Normalised (x0, y0, x1, y1) that contains the shape at every aspect ratio."""
        h = self.size / 2
        return self.cx - h, self.cy - h, self.cx + h, self.cy + h


@dataclass(frozen=True)
class Scene:
    """Objects on the background. ``relation`` relates objects[0] to objects[1] ("relation" scenes);
    ``count`` says objects[:count] are the counted group, an optional distractor follows ("count" scenes)."""

    objects: tuple[ShapeObject, ...]
    kind: str = "free"
    relation: str | None = None
    count: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "objects", tuple(self.objects))  # hashable and comparable, lists accepted
        if self.kind not in ("free", "clip", *SCENE_KINDS):
            raise ValueError(f"unknown scene kind {self.kind!r}; expected one of {('free', 'clip', *SCENE_KINDS)}")
        if (self.kind == "relation") != (self.relation in RELATIONS) or (self.relation and len(self.objects) != 2):
            raise ValueError(f"a relation scene has two objects and one of {RELATIONS}, got {self!r}")


@dataclass(frozen=True)
class MovingObject:
    """An object moving at constant speed: ``distance`` (normalised, along its axis) over the whole clip."""

    start: ShapeObject
    direction: str
    distance: float

    def __post_init__(self) -> None:
        if self.direction not in DIRECTIONS or not self.distance >= 0:
            raise ValueError(f"direction must be one of {DIRECTIONS} and distance >= 0, got {self!r}")

    def at(self, t: float) -> ShapeObject:
        dx, dy = STEPS[self.direction]
        return replace(self.start, cx=self.start.cx + dx * self.distance * t, cy=self.start.cy + dy * self.distance * t)

    def swept_box(self) -> tuple[float, float, float, float]:
        a, b = self.at(0.0).box(), self.at(1.0).box()
        return min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])


@dataclass(frozen=True)
class ClipScene:
    """A clip: time runs from 0 (first frame) to 1 (last frame) whatever the frame count."""

    objects: tuple[MovingObject, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "objects", tuple(self.objects))

    def at(self, t: float) -> Scene:
        return Scene(tuple(m.at(t) for m in self.objects), kind="clip")


# -- geometry ---------------------------------------------------------------------------------------------------


def inside_frame(box: tuple[float, float, float, float], margin: float = EDGE) -> bool:
    return box[0] >= margin and box[1] >= margin and box[2] <= 1 - margin and box[3] <= 1 - margin


def boxes_apart(a: tuple[float, ...], b: tuple[float, ...], gap: float = GAP) -> bool:
    return a[2] + gap <= b[0] or b[2] + gap <= a[0] or a[3] + gap <= b[1] or b[3] + gap <= a[1]


def relation_holds(a: ShapeObject, b: ShapeObject, relation: str) -> bool:
    """``a`` is clearly ``relation`` ``b``: apart along that axis by more than both half sizes plus the gap,
    and the offset along the other axis at most half of it (so the relation is the dominant one)."""
    dx, dy = STEPS[relation]
    along = dx * (a.cx - b.cx) + dy * (a.cy - b.cy)
    across = abs(dy * (a.cx - b.cx) + dx * (a.cy - b.cy))
    return along >= (a.size + b.size) / 2 + GAP and across <= along / 2


def scene_ok(scene: Scene) -> bool:
    """Every object inside the frame, every pair apart, and the stated relation holding."""
    boxes = [o.box() for o in scene.objects]
    apart = all(boxes_apart(a, b) for i, a in enumerate(boxes) for b in boxes[i + 1 :])
    if not apart or not all(inside_frame(b) for b in boxes):
        return False
    return scene.relation is None or relation_holds(scene.objects[0], scene.objects[1], scene.relation)


def pixel_box(obj: ShapeObject, height: int, width: int) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1), end exclusive: every pixel the object touches when rendered lies inside."""
    half, x, y = obj.size * min(height, width) / 2, obj.cx * width, obj.cy * height
    x0, y0, x1, y1 = math.floor(x - half), math.floor(y - half), math.ceil(x + half), math.ceil(y + half)
    return max(0, x0), max(0, y0), min(width, x1), min(height, y1)


# -- held-out split ---------------------------------------------------------------------------------------------


def _ci(colour: str) -> int:
    return list(COLOURS).index(colour)


def relation_key(a: tuple[str, str], relation: str, b: tuple[str, str]) -> tuple:
    """The canonical key ("relation", colour A, shape A, "left" | "above", colour B, shape B) of "A relation B",
    A and B given as (colour, shape)."""
    if relation in ("right", "below"):
        a, b, relation = b, a, {"right": "left", "below": "above"}[relation]
    return "relation", *a, relation, *b


def is_heldout(key: tuple) -> bool:
    """Whether a combination key (see :func:`scene_keys`) belongs to the held-out split (module docstring)."""
    if key[0] == "count":
        _, n, colour, shape = key
        return (n + _ci(colour) + 2 * SHAPES.index(shape)) % 6 == 0
    if key[0] == "relation":
        _, ca, sa, rel, cb, sb = key
        r = ("left", "above").index(rel)
        return (_ci(ca) + 2 * SHAPES.index(sa) + 3 * r + 4 * _ci(cb) + SHAPES.index(sb)) % 7 == 0
    if key[0] == "motion":
        _, colour, shape, direction = key
        return (_ci(colour) + 2 * SHAPES.index(shape) + DIRECTIONS.index(direction)) % 6 == 3
    raise ValueError(f"unknown combination key {key!r}")


def scene_keys(scene: Scene | ClipScene) -> list[tuple]:
    """The combination keys of a scene, primary first: what the held-out rule is about."""
    if isinstance(scene, ClipScene):
        return [("motion", m.start.colour, m.start.shape, m.direction) for m in scene.objects]
    obj = scene.objects
    if scene.kind == "relation":
        return [relation_key(obj[0].kind, scene.relation, obj[1].kind)]
    if scene.kind == "count":
        return [("count", scene.count, *obj[0].kind), *(("count", 1, *o.kind) for o in obj[scene.count :])]
    return [("count", 1, *o.kind) for o in obj]


def in_split(scene: Scene | ClipScene, split: str) -> bool:
    keys = scene_keys(scene)
    return not any(map(is_heldout, keys)) if split == "train" else bool(keys) and is_heldout(keys[0])


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")


# -- sampling ---------------------------------------------------------------------------------------------------


def _pick(rng: np.random.Generator, items):
    return items[int(rng.integers(len(items)))]


def random_object(
    rng: np.random.Generator, kind: tuple[str, str], sizes: tuple[float, float], free: tuple[float, float] = (0, 0)
) -> ShapeObject:
    """A (colour, shape) of a random size in ``sizes`` at a random place where its box, grown by ``free`` along
    x and y (room to travel), fits in the frame."""
    size = sizes[0] + (sizes[1] - sizes[0]) * rng.random()
    lo = EDGE + size / 2
    cx, cy = lo + rng.random() * (1 - 2 * lo - free[0]), lo + rng.random() * (1 - 2 * lo - free[1])
    return ShapeObject(kind[1], kind[0], cx, cy, size)


def _accept(key: tuple, split: str, primary: bool = True) -> bool:
    """Training takes no held-out key; the held-out split takes a held-out primary key and training others."""
    return is_heldout(key) == (split == "heldout" and primary)


def _any_kind(rng: np.random.Generator) -> tuple[str, str]:
    return _pick(rng, list(COLOURS)), _pick(rng, SHAPES)


def sample_scene(rng: np.random.Generator, split: str, kind: str | None = None) -> Scene:
    """One image scene of ``kind`` ("single", "relation", "count"; by default 25%, 40%, 35% of them) on the
    ``split`` side of the held-out rule. Every rejection loop here accepts at least one draw in seven."""
    _check_split(split)
    kind = kind or SCENE_KINDS[int(np.searchsorted(np.cumsum([0.25, 0.4, 0.35]), rng.random(), side="right"))]
    if kind not in SCENE_KINDS:
        raise ValueError(f"unknown scene kind {kind!r}; expected one of {SCENE_KINDS}")
    if kind == "relation":
        while True:
            a, b, rel = _any_kind(rng), _any_kind(rng), _pick(rng, RELATIONS)
            if a != b and _accept(relation_key(a, rel, b), split):
                break
        while True:
            scene = Scene((random_object(rng, a, SIZES[kind]), random_object(rng, b, SIZES[kind])), kind, rel)
            if scene_ok(scene):
                return scene
    n = 1 if kind == "single" else int(_pick(rng, COUNTS))
    while not _accept(("count", n, *(main := _any_kind(rng))), split):
        pass
    kinds = [main] * n
    if kind == "count" and (n == 1 or rng.random() < 0.5):
        while (other := _any_kind(rng)) == main or not _accept(("count", 1, *other), split, primary=False):
            pass
        kinds.append(other)
    while not (objects := _scatter(rng, kinds, SIZES[kind])):
        pass
    return Scene(objects, kind, count=n if kind == "count" else None)


def _scatter(rng: np.random.Generator, kinds: list[tuple[str, str]], sizes: tuple[float, float]) -> tuple:
    """Objects placed one by one, each by rejection; () when the frame gets too full for one."""
    placed: list[ShapeObject] = []
    for kind in kinds:
        for _ in range(200):
            obj = random_object(rng, kind, sizes)
            if all(boxes_apart(obj.box(), p.box()) for p in placed):
                placed.append(obj)
                break
        else:
            return ()
    return tuple(placed)


def sample_clip(rng: np.random.Generator, split: str) -> ClipScene:
    """One or two objects, each moving its own way at constant speed; swept boxes apart and inside the frame."""
    _check_split(split)
    while True:
        moving: list[MovingObject] = []
        for i in range(1 + int(rng.random() < 0.5)):
            while not _accept(("motion", *(kind := _any_kind(rng)), (d := _pick(rng, DIRECTIONS))), split, i == 0):
                pass
            dist = TRAVEL[0] + (TRAVEL[1] - TRAVEL[0]) * rng.random()
            dx, dy = STEPS[d]
            obj = random_object(rng, kind, SIZES["clip"], (abs(dx) * dist, abs(dy) * dist))
            start = replace(obj, cx=obj.cx + dist * (dx < 0), cy=obj.cy + dist * (dy < 0))  # travel ahead of it
            moving.append(MovingObject(start, d, dist))
        boxes = [m.swept_box() for m in moving]
        if len({m.start.kind for m in moving}) == len(moving) and (len(boxes) == 1 or boxes_apart(*boxes)):
            return ClipScene(tuple(moving))


class SceneWorld:
    """Unlimited seeded scenes: the k-th sample of each method is a pure function of (seed, split, k). The
    language side (captions, questions, edits) is ``hydra_x.data.shapes_text.ShapesWorld``, which extends this.

    Each sample draws from its own ``numpy`` generator seeded by (seed, split, method tag, k) through
    ``SeedSequence`` hashing, so samples are independent of each other and of call order. Scenes come back
    unrendered: render them at whatever size the caller needs with :func:`render_image` / :func:`render_clip`.
    """

    def __init__(self, seed: int = 0, split: str = "train") -> None:
        _check_split(split)
        if int(seed) != seed or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        self.seed, self.split = int(seed), split

    def rng(self, tag: str, k: int) -> np.random.Generator:
        if int(k) != k or k < 0:
            raise ValueError(f"sample index k must be a non-negative integer, got {k!r}")
        return np.random.default_rng([self.seed, zlib.crc32(self.split.encode()), _TAGS[tag], int(k)])

    def scene(self, k: int, kind: str | None = None) -> Scene:
        """The k-th image scene (of ``kind``, or of the mix in :func:`sample_scene`)."""
        return sample_scene(self.rng("scene", k), self.split, kind)

    def clip(self, k: int) -> ClipScene:
        return sample_clip(self.rng("clip", k), self.split)


# -- rendering --------------------------------------------------------------------------------------------------


def _check_size(height: int, width: int) -> None:
    if int(height) != height or int(width) != width or min(height, width) < MIN_SIDE:
        raise ValueError(f"image size must be at least {MIN_SIDE} px on each side, got {height}x{width}")


def _coverage(obj: ShapeObject, height: int, width: int, box: tuple[int, int, int, int]) -> np.ndarray:
    """Fraction of each pixel of ``box`` covered by the shape, from SUPERSAMPLE^2 point samples."""
    x0, y0, x1, y1 = box
    ss = SUPERSAMPLE
    xs = x0 + (np.arange((x1 - x0) * ss) + 0.5) / ss  # (w * ss,)
    ys = y0 + (np.arange((y1 - y0) * ss) + 0.5) / ss  # (h * ss,)
    cx, cy, half = obj.cx * width, obj.cy * height, obj.size * min(height, width) / 2
    u, v = np.abs(xs[None, :] - cx), ys[:, None] - cy  # (h * ss, w * ss) after broadcasting
    if obj.shape == "circle":
        inside = u**2 + v**2 <= half**2
    elif obj.shape == "square":
        inside = (u <= half) & (np.abs(v) <= half)
    else:  # upright isosceles triangle, base = height = size: half-width grows from 0 at the apex to half
        inside = (v <= half) & (u <= (v + half) / 2)
    return inside.reshape(y1 - y0, ss, x1 - x0, ss).mean(axis=(1, 3))  # (h, w)


def render_image(scene: Scene, height: int, width: int) -> torch.Tensor:
    """The scene as a (3, H, W) float32 tensor in [-1, 1]; antialiased, deterministic, any size >= 16 px."""
    _check_size(height, width)
    img = np.empty((3, int(height), int(width)))
    img[:] = np.asarray(BACKGROUND, dtype=np.float64)[:, None, None]  # (3, H, W), 0..255
    for obj in scene.objects:
        x0, y0, x1, y1 = box = pixel_box(obj, height, width)
        if x1 > x0 and y1 > y0:
            region = img[:, y0:y1, x0:x1]  # (3, h, w), a view
            region += _coverage(obj, height, width, box) * (np.asarray(COLOURS[obj.colour])[:, None, None] - region)
    # numpy, not torch, to the end: torch splits large copies across threads, slow on a busy CPU
    return torch.from_numpy((img / 127.5 - 1.0).astype(np.float32))  # (3, H, W)


def render_clip(clip: ClipScene, frames: int, height: int, width: int) -> torch.Tensor:
    """The clip as a (3, F, H, W) float32 tensor in [-1, 1]; frame f shows time f / (F - 1)."""
    if int(frames) != frames or frames < 1:
        raise ValueError(f"frames must be an integer >= 1, got {frames!r}")
    _check_size(height, width)
    times = [f / (frames - 1) if frames > 1 else 0.0 for f in range(frames)]
    return torch.from_numpy(np.stack([render_image(clip.at(t), height, width).numpy() for t in times], axis=1))
