"""The shapes world: deterministic unlimited samples, exact geometry, text that matches the scene, a held-out split."""

from __future__ import annotations

import ast
import itertools
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from hydra_x.data import shapes, shapes_text
from hydra_x.data.shapes import (
    BACKGROUND,
    COLOURS,
    COUNTS,
    DIRECTIONS,
    RELATIONS,
    SHAPES,
    ClipScene,
    MovingObject,
    Scene,
    ShapeObject,
    in_split,
    is_heldout,
    pixel_box,
    render_clip,
    render_image,
    sample_scene,
    scene_keys,
)
from hydra_x.data.shapes_text import Question, ShapesWorld, answer_question, caption, questions

ALLOWED_IMPORTS = {"__future__", "collections", "dataclasses", "math", "typing", "zlib", "numpy", "torch"}


def _obj(colour: str, shape: str, cx: float, cy: float, size: float = 0.2) -> ShapeObject:
    return ShapeObject(shape, colour, cx, cy, size)


def test_modules_import_only_the_standard_library_numpy_torch_and_each_other():
    root = Path(shapes.__file__).parents[2]
    for rel in ("hydra_x/data/shapes.py", "hydra_x/data/shapes_text.py", "hydra_x/eval/shapes_read.py"):
        tree = ast.parse((root / rel).read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom | ast.Import):
                names = [node.module] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
                for name in names:
                    assert name.split(".")[0] in ALLOWED_IMPORTS or name.startswith("hydra_x.data.shapes"), (rel, name)


def test_palette_colours_are_far_apart_and_from_the_background():
    rgb = np.asarray(list(COLOURS.values()), dtype=float)
    pairwise = np.linalg.norm(rgb[:, None] - rgb[None], axis=-1)[np.triu_indices(len(rgb), 1)]
    assert pairwise.min() >= 100 and np.linalg.norm(rgb - BACKGROUND, axis=1).min() >= 130
    assert len(COLOURS) == 6 and SHAPES == ("circle", "square", "triangle") and COUNTS == (1, 2, 3, 4)
    assert set(RELATIONS) == {"left", "right", "above", "below"} and set(DIRECTIONS) == {"left", "right", "up", "down"}


@pytest.mark.parametrize("method", ["caption_sample", "question_sample", "clip_sample", "edit_sample"])
def test_samples_are_a_pure_function_of_seed_split_and_index(method):
    def sample(world, k):
        return getattr(world, method)(k)

    a, b = ShapesWorld(seed=3), ShapesWorld(seed=3)
    forward = [sample(a, k) for k in range(12)]
    backward = [sample(b, k) for k in reversed(range(12))][::-1]  # call order does not matter
    assert forward == backward
    assert len({repr(s) for s in forward}) == 12  # different k, different samples
    assert all(sample(ShapesWorld(seed=4), k) != forward[k] for k in range(12))
    assert all(sample(ShapesWorld(seed=3, split="heldout"), k) != forward[k] for k in range(12))
    for k in (0, 1):
        pixels = [_render(s, 40, 56) for s in (forward[k], sample(ShapesWorld(seed=3), k))]
        assert torch.equal(*pixels)


def _render(sample, height: int, width: int) -> torch.Tensor:
    if hasattr(sample, "clip"):
        return render_clip(sample.clip, 5, height, width)
    return render_image(sample.source if hasattr(sample, "source") else sample.scene, height, width)


def test_rendering_shapes_range_and_exact_colours():
    scene = Scene((_obj("red", "square", 0.3, 0.5, 0.3), _obj("blue", "circle", 0.75, 0.5, 0.3)))
    x = render_image(scene, 48, 80)  # (3, H, W), non-square
    assert x.shape == (3, 48, 80) and x.dtype == torch.float32 and x.min() >= -1 and x.max() <= 1
    to_rgb = lambda p: tuple(int(v) for v in ((p + 1) * 127.5).round())  # noqa: E731
    assert to_rgb(x[:, 0, 0]) == BACKGROUND and to_rgb(x[:, 24, 24]) == COLOURS["red"]
    assert to_rgb(x[:, 24, 60]) == COLOURS["blue"]
    # a shape keeps its proportions: the square is 0.3 * 48 px on both axes whatever the width
    red = (x - torch.tensor(COLOURS["red"]).view(3, 1, 1) / 127.5 + 1).abs().amax(0) < 1e-3
    assert red.any(0).sum() == red.any(1).sum() == 14  # 14.4 px, antialiased edges half covered
    clip = ClipScene((MovingObject(_obj("green", "triangle", 0.3, 0.5), "right", 0.4),))
    v = render_clip(clip, 4, 32, 48)  # (3, F, H, W)
    assert v.shape == (3, 4, 32, 48)
    assert torch.equal(v[:, 0], render_image(clip.at(0.0), 32, 48)) and torch.equal(
        v[:, 3], render_image(clip.at(1.0), 32, 48)
    )
    assert torch.equal(render_clip(clip, 1, 32, 48)[:, 0], v[:, 0])


def test_scenes_stay_inside_the_frame_and_never_overlap():
    for split in ("train", "heldout"):
        world = ShapesWorld(seed=1, split=split)
        scenes = [world.scene(k) for k in range(300)] + [world.edit_sample(k).target for k in range(100)]
        clips = [world.clip(k) for k in range(150)]
        frames = [c.at(t) for c in clips for t in (0.0, 0.37, 1.0)]
        for scene in scenes + frames:
            boxes = [pixel_box(o, 64, 64) for o in scene.objects]
            for o in scene.objects:
                assert o.cx - o.size / 2 > 0.0 and o.cx + o.size / 2 < 1.0, o
                assert o.cy - o.size / 2 > 0.0 and o.cy + o.size / 2 < 1.0, o
            for a, b in itertools.combinations(boxes, 2):  # at least 2 px of background between pixel boxes
                assert a[2] + 2 <= b[0] or b[2] + 2 <= a[0] or a[3] + 2 <= b[1] or b[3] + 2 <= a[1], scene
        for clip in clips:  # the whole path is clear of the other object
            swept = [m.swept_box() for m in clip.objects]
            for a, b in itertools.combinations(swept, 2):
                assert a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1]


def test_relation_scenes_state_the_true_relation():
    world = ShapesWorld(seed=2)
    for k in range(200):
        s = world.scene(k, kind="relation")
        a, b = s.objects
        dx, dy = a.cx - b.cx, a.cy - b.cy
        expected = ("left" if dx < 0 else "right") if abs(dx) > abs(dy) else ("above" if dy < 0 else "below")
        assert s.relation == expected and a.kind != b.kind
    assert {world.scene(k, kind="relation").relation for k in range(100)} == set(RELATIONS)


def test_bad_inputs_raise_clear_errors():
    scene = Scene((_obj("red", "circle", 0.5, 0.5),))
    clip = ClipScene((MovingObject(_obj("red", "circle", 0.3, 0.5), "right", 0.3),))
    with pytest.raises(ValueError, match="at least 16 px"):
        render_image(scene, 15, 64)
    with pytest.raises(ValueError, match="at least 16 px"):
        render_clip(clip, 4, 64, 8)
    for frames in (0, -2, 2.5):
        with pytest.raises(ValueError, match="frames must be an integer >= 1"):
            render_clip(clip, frames, 32, 32)
    with pytest.raises(ValueError, match="unknown split 'test'"):
        ShapesWorld(split="test")
    with pytest.raises(ValueError, match="seed must be a non-negative integer"):
        ShapesWorld(seed=-1)
    with pytest.raises(ValueError, match="sample index k"):
        ShapesWorld().caption_sample(-1)
    with pytest.raises(ValueError, match="unknown colour 'pink'"):
        _obj("pink", "circle", 0.5, 0.5)
    with pytest.raises(ValueError, match="unknown shape 'star'"):
        _obj("red", "star", 0.5, 0.5)
    with pytest.raises(ValueError, match=r"size must be in \(0, 1\]"):
        _obj("red", "circle", 0.5, 0.5, 0.0)
    with pytest.raises(ValueError, match="unknown scene kind 'crowd'"):
        sample_scene(np.random.default_rng(0), "train", "crowd")
    with pytest.raises(ValueError, match="a relation scene has two objects"):
        Scene((_obj("red", "circle", 0.2, 0.5),), "relation", "left")
    with pytest.raises(ValueError, match="direction must be one of"):
        MovingObject(_obj("red", "circle", 0.2, 0.5), "sideways", 0.3)


# -- held-out split -----------------------------------------------------------------------------------------------


def _all_keys(world: ShapesWorld, n: int) -> tuple[list[list[tuple]], list[list[tuple]]]:
    """The combination keys of every kind of sample, and (apart) of edit targets."""
    samples = [scene_keys(world.scene(k)) for k in range(n)]
    samples += [scene_keys(world.clip(k)) for k in range(n // 2)]
    samples += [scene_keys(world.question_sample(k).scene) for k in range(n // 4)]
    samples += [scene_keys(world.clip_sample(k).clip) for k in range(n // 4)]
    edits = [world.edit_sample(k) for k in range(n // 4)]
    return samples + [scene_keys(e.source) for e in edits], [scene_keys(e.target) for e in edits]


def test_heldout_split_is_disjoint_from_training_by_construction():
    train, train_targets = _all_keys(ShapesWorld(seed=5, split="train"), 600)
    heldout, _ = _all_keys(ShapesWorld(seed=5, split="heldout"), 600)
    assert not any(is_heldout(key) for keys in train + train_targets for key in keys)  # training never sees one
    assert all(is_heldout(keys[0]) for keys in heldout)  # held-out samples always show one
    assert not {keys[0] for keys in train} & {keys[0] for keys in heldout}
    # single attributes all still appear in training
    flat = [key for keys in train for key in keys]
    colours = {k[2] for k in flat if k[0] == "count"} | {k[1] for k in flat if k[0] in ("relation", "motion")}
    assert colours == set(COLOURS)
    assert {k[3] for k in flat if k[0] == "count"} | {k[2] for k in flat if k[0] == "motion"} == set(SHAPES)
    assert {k[1] for k in flat if k[0] == "count"} == set(COUNTS)
    assert {k[3] for k in flat if k[0] == "relation"} == {"left", "above"}
    assert {k[3] for k in flat if k[0] == "motion"} == set(DIRECTIONS)
    # the held-out samples cover several combinations of each kind, not one
    for kind in ("count", "relation", "motion"):
        assert len({keys[0] for keys in heldout if keys[0][0] == kind}) >= 8


def test_heldout_rule_holds_out_one_combination_in_five_to_ten():
    counts = list(itertools.product(COUNTS, COLOURS, SHAPES))
    motions = list(itertools.product(COLOURS, SHAPES, DIRECTIONS))
    pairs = [p for p in itertools.product(COLOURS, SHAPES, ("left", "above"), COLOURS, SHAPES) if p[:2] != p[3:]]
    for kind, combos in (("count", counts), ("motion", motions), ("relation", pairs)):
        share = np.mean([is_heldout((kind, *c)) for c in combos])
        assert 0.1 <= share <= 0.2, (kind, share)
    # both phrasings of one picture fall on the same side
    a, b = ShapeObject("circle", "red", 0.2, 0.5, 0.2), ShapeObject("square", "blue", 0.8, 0.5, 0.2)
    assert scene_keys(Scene((a, b), "relation", "left")) == scene_keys(Scene((b, a), "relation", "right"))
    with pytest.raises(ValueError, match="unknown combination key"):
        is_heldout(("colour", "red"))


# -- text ---------------------------------------------------------------------------------------------------------


def test_captions_name_what_is_drawn():
    red, blue = _obj("red", "circle", 0.2, 0.5), _obj("blue", "square", 0.8, 0.5)
    orange = _obj("orange", "triangle", 0.5, 0.2)
    assert caption(Scene((red,), "single")) == "a red circle"
    assert caption(Scene((blue, replace(blue, cx=0.2, cy=0.8)), "count", count=2)) == "two blue squares"
    assert caption(Scene((blue, replace(blue, cx=0.2, cy=0.8), orange), "count", count=2)) == (
        "two blue squares and an orange triangle"
    )
    assert caption(Scene((red, blue), "relation", "left")) == "a red circle left of a blue square"
    assert caption(Scene((orange, blue), "relation", "above")) == "an orange triangle above a blue square"
    clip = ClipScene((MovingObject(_obj("purple", "square", 0.3, 0.5), "right", 0.3),))
    assert caption(clip) == "a purple square moving right"


def test_questions_have_exact_answers():
    red, blue = _obj("red", "triangle", 0.2, 0.3), _obj("blue", "circle", 0.7, 0.7)
    scene = Scene((red, blue, replace(blue, cx=0.7, cy=0.2)))
    by_text = {q.text: q.answer for q in questions(scene)}
    assert by_text["What colour is the triangle?"] == "red"
    assert by_text["How many circles are there?"] == "two"
    assert by_text["How many squares are there?"] == "zero"
    assert by_text["What shape is the red object?"] == "triangle"
    assert by_text["Is there a red triangle?"] == "yes" and by_text["Is there a red circle?"] == "no"
    assert "What colour is the circle?" not in by_text  # two circles: ambiguous, never asked
    pair = Scene((red, _obj("blue", "square", 0.75, 0.8)), "relation", "left")
    by_text = {q.text: q.answer for q in questions(pair)}
    assert by_text["Is the red triangle left or right of the blue square?"] == "left"
    assert by_text["Is the blue square left or right of the red triangle?"] == "right"
    assert by_text["Is the red triangle above or below the blue square?"] == "above"
    clip = ClipScene((MovingObject(_obj("green", "triangle", 0.3, 0.5), "right", 0.3),))
    (q,) = questions(clip)
    assert (q.text, q.answer) == ("Which way is the green triangle moving?", "right")
    assert answer_question(Question("colour", "", "", shape="square"), scene) is None


def test_sampled_captions_and_answers_agree_with_the_scene():
    world = ShapesWorld(seed=6)
    kinds = Counter()
    for k in range(300):
        s = world.question_sample(k)
        kinds[s.question.kind] += 1
        assert answer_question(s.question, s.scene) == s.question.answer
        c = world.caption_sample(k)
        words = c.caption.split()
        for o in c.scene.objects:
            assert f"{o.colour} {o.shape}" in c.caption
        if c.scene.kind == "relation":
            a, b = c.scene.objects
            assert c.caption.index(a.colour + " " + a.shape) < c.caption.index(b.colour + " " + b.shape)
            assert shapes_text.RELATION_WORDS[c.scene.relation] in c.caption
        if c.scene.kind == "count":
            assert shapes_text.number_word(c.scene.count) in words or c.scene.count == 1
    assert set(kinds) == {"colour", "shape", "count", "exists", "position"} and min(kinds.values()) >= 25
    for k in range(60):
        s = world.clip_sample(k)
        m = next(m for m in s.clip.objects if m.start.kind == (s.question.colour, s.question.shape))
        assert s.question.answer == m.direction and f"moving {m.direction}" in s.caption


def test_edits_change_exactly_the_edited_object():
    world = ShapesWorld(seed=7)
    ops = Counter()
    for k in range(250):
        e = world.edit_sample(k)
        ops[e.op] += 1
        src, tgt = e.source.objects, e.target.objects
        i, j = e.source_index, e.target_index
        kept_src = [o for n, o in enumerate(src) if n != i]
        kept_tgt = [o for n, o in enumerate(tgt) if n != j]
        assert kept_src == kept_tgt  # every other object is untouched
        if e.op == "recolour":
            assert (
                tgt[j].colour != src[i].colour
                and e.instruction == f"make the {src[i].colour} {src[i].shape} {tgt[j].colour}"
            )
        elif e.op == "remove":
            assert (
                j is None and len(tgt) == len(src) - 1 and e.instruction == f"remove the {src[i].colour} {src[i].shape}"
            )
        elif e.op == "add":
            assert i is None and len(tgt) == len(src) + 1
            assert e.instruction.startswith(f"add {shapes_text.noun(tgt[j].kind)}") and e.target.relation is not None
        elif e.op == "move":
            step = (tgt[j].cx - src[i].cx, tgt[j].cy - src[i].cy)
            sign = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}[e.instruction.split()[-1]]
            assert tuple(np.sign(step)) == sign and max(map(abs, step)) >= 0.15
        else:
            ratio = tgt[j].size / src[i].size
            assert ratio == pytest.approx(1.5 if e.instruction.endswith("bigger") else 1 / 1.5)
        for h, w in ((64, 64), (48, 80)):
            diff = (render_image(e.source, h, w) != render_image(e.target, h, w)).any(0)  # (H, W)
            mask = e.changed_mask(h, w)
            assert not (diff & ~mask).any() and diff.any()
        assert in_split(e.source, "train") and in_split(e.target, "train")
    assert set(ops) == set(shapes_text.EDIT_OPS) and min(ops.values()) >= 25
