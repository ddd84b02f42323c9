"""The shapes prompt set (pinned, held out) and its scorers: 1.0 on ground-truth renders, and every kind of error
caught on perturbed ones."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from hydra_x.data.shapes import (
    COLOURS,
    RELATIONS,
    SIZES,
    ClipScene,
    MovingObject,
    Scene,
    SceneWorld,
    in_split,
    is_heldout,
    random_object,
    render_clip,
    render_image,
    scene_keys,
    scene_ok,
)
from hydra_x.data.shapes_text import EDIT_OPS, caption
from hydra_x.eval.prompts import CATEGORIES, PROMPT_SET_VERSION, QUESTION_KINDS, SEEN_VERSION, prompt_set, truth_scene
from hydra_x.eval.shapes import (
    GenerationScore,
    answer_correct,
    colour_errors,
    count_answers,
    edit_summary,
    generation_summary,
    masked_consistency,
    names_another_object,
    score_edit,
    score_generation,
    score_video,
    video_summary,
    wilson_interval,
)

# Changing the set changes this: a new set is a new version (PROMPT_SET_VERSION), never a silent edit of one.
SHAPES_V1_SHA256 = "bf24ba4712909884715110e8e9be2fd5e27ac50f5d8dd0829750641f261d7344"
SHAPES_V1_SEEN_SHA256 = "c1fe928f4f25c9d7d19b478cefd394aef112a57c227eb7b41aee79c9311447e8"
OPPOSITE = {"left": "right", "right": "left", "up": "down", "down": "up", "above": "below", "below": "above"}


@pytest.fixture(scope="module")
def items():
    return prompt_set(PROMPT_SET_VERSION)


# -- the prompt set ---------------------------------------------------------------------------------------------


def test_the_set_is_pinned_and_rebuilds_identically(items):
    assert items.version == "shapes-v1" and items.digest() == SHAPES_V1_SHA256
    prompt_set.cache_clear()
    assert prompt_set("shapes-v1") == items  # deterministic: a fresh build is the same set
    assert items.counts() == {"generation": 144, "questions": 60, "videos": 24, "edits": 40}
    assert {i.category for i in items.generation} == set(CATEGORIES)
    assert {i.kind for i in items.questions} == set(QUESTION_KINDS) and {e.sample.op for e in items.edits} == set(
        EDIT_OPS
    )
    assert len({i.id for i in (*items.generation, *items.questions, *items.videos, *items.edits)}) == 268
    with pytest.raises(ValueError, match="unknown prompt-set version 'shapes-v0'"):
        prompt_set("shapes-v0")


def test_every_item_is_held_out_and_never_drawn_for_training(items):
    scenes = [i.scene for i in items.generation] + [i.scene for i in items.questions]
    scenes += [i.clip for i in items.videos] + [e.sample.source for e in items.edits]
    keys = [i.key for i in (*items.generation, *items.questions, *items.videos, *items.edits)]
    for scene, key in zip(scenes, keys):
        assert key == scene_keys(scene)[0] and is_heldout(key) and in_split(scene, "heldout"), (key, scene)
    world = SceneWorld(seed=3, split="train")  # training never shows a held-out key, whatever the seed
    trained = {k for j in range(400) for k in scene_keys(world.scene(j))}
    trained |= {k for j in range(200) for k in scene_keys(world.clip(j))}
    assert trained and not trained & set(keys)


def test_the_seen_control_set_mirrors_the_held_out_one_with_trained_combinations(items):
    seen = prompt_set(SEEN_VERSION)
    assert seen.version == "shapes-v1-seen" and seen.digest() == SHAPES_V1_SEEN_SHA256
    assert seen.counts() == items.counts()
    assert [i.id for i in seen.generation] == [i.id for i in items.generation]  # same categories, same ids
    assert [i.kind for i in seen.questions] == [i.kind for i in items.questions]
    assert [e.sample.op for e in seen.edits] == [e.sample.op for e in items.edits]
    scenes = [i.scene for i in seen.generation] + [i.scene for i in seen.questions] + [i.clip for i in seen.videos]
    scenes += [e.sample.source for e in seen.edits] + [e.sample.target for e in seen.edits]
    assert all(in_split(scene, "train") for scene in scenes)  # every combination is one training draws
    for item in seen.generation:
        assert item.prompt == caption(item.scene) and not is_heldout(item.key)
    attrs = [[g[:2] for g in i.groups] for i in seen.generation if i.category == "color_attr"]
    assert attrs and all(a[0] != b[0] and a[1] != b[1] for a, b in attrs)
    # No prompt of one set is a prompt of the other, and the scenes of the two differ.
    assert not {i.prompt for i in seen.generation} & {i.prompt for i in items.generation}
    assert not {i.key for i in seen.videos} & {i.key for i in items.videos}
    assert {q.scene for q in seen.questions}.isdisjoint({q.scene for q in items.questions})


def test_prompts_are_the_captions_of_their_truth_and_state_its_groups(items):
    for item in items.generation:
        assert item.prompt == caption(item.scene)
        kinds = [o.kind for o in item.scene.objects]
        assert [(c, s, kinds.count((c, s))) for c, s, _ in item.groups] == list(item.groups)
        assert len(kinds) == sum(n for *_, n in item.groups) and item.relation == item.scene.relation
    for item in items.videos:
        assert item.prompt == f"{caption(item.clip)}" and item.key == ("motion", *item.kind, item.direction)
    attrs = [i for i in items.generation if i.category == "color_attr"]
    for item in attrs:  # both kinds held out, so a swap of colours makes two kinds that are not
        (a, b) = [g[:2] for g in item.groups]
        assert a[0] != b[0] and a[1] != b[1] and is_heldout(("count", 1, *a)) and is_heldout(("count", 1, *b))
        assert not is_heldout(("count", 1, b[0], a[1])) and not is_heldout(("count", 1, a[0], b[1]))


def test_limit_takes_a_prefix_of_every_category_kind_and_op(items):
    small = items.limited(2)
    assert small.counts() == {"generation": 12, "questions": 6, "videos": 2, "edits": 10}
    assert small.generation == tuple(i for i in items.generation if int(i.id[-3:]) < 2)
    assert len({i.prompt for i in small.generation if i.category == "counting"}) == 2  # distinct prompts first
    assert items.limited(None) is items
    with pytest.raises(ValueError, match="at least 1"):
        items.limited(0)


# -- ground truth scores 1.0 ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("version", "size"), [(PROMPT_SET_VERSION, 64), (PROMPT_SET_VERSION, 128), (SEEN_VERSION, 64)])
def test_truth_renders_score_one(version, size):
    items = prompt_set(version)
    scores = [score_generation(i, render_image(i.scene, size, size)) for i in items.generation]
    assert [s for s in scores if not (s.correct and s.strict)] == []
    summary = generation_summary(scores)
    assert summary["overall"] == summary["strict_overall"] == 1.0 and len(summary["categories"]) == 6
    assert summary["objects_per_image"] == summary["asked_per_image"] > 1 and summary["asked_colour_share"] == 1.0
    videos = [score_video(i, render_clip(i.clip, 9, size, size)) for i in items.videos]
    assert all(s.correct and s.present and s.direction == i.direction for s, i in zip(videos, items.videos))
    assert all(s.frames_read == (True,) * 9 for s in videos) and video_summary(videos)["frame_presence"] == [1.0] * 9
    edits = [score_edit(e, render_image(e.sample.target, size, size)) for e in items.edits[:: 1 if size == 64 else 3]]
    assert [e for e in edits if not e.success] == []
    assert all(e.psnr == math.inf and e.ssim == 1.0 for e in edits)  # unchanged outside the edited boxes
    summary = edit_summary(edits)
    assert summary.pop("success_ci95") == wilson_interval(len(edits), len(edits))
    assert summary == {"success": 1.0, "by_op": dict.fromkeys(EDIT_OPS, 1.0), "psnr": 100.0, "ssim": 1.0}


def test_wrong_colour_answers_are_told_apart_by_whether_the_colour_is_in_the_picture():
    colours = {"red", "blue"}
    assert names_another_object("Red.", "red", colours) is None  # right
    assert names_another_object("blue", "red", colours) is True  # the other object's colour: a binding error
    assert names_another_object("green", "red", colours) is False  # misread
    records = [("colour", None), ("colour", True), ("colour", False), ("colour", True), ("count", None)]
    assert colour_errors(records) == {"wrong": 3, "another_object": 2}
    assert colour_errors([]) == {"wrong": 0, "another_object": 0}


def test_answers_match_after_normalisation(items):
    for q in items.questions:
        a = q.question.answer
        assert answer_correct(a, a) and answer_correct(f" {a.upper()}.", a) and not answer_correct("purple-ish", a)
    assert answer_correct("Three.", "three") and answer_correct("3", "three") and answer_correct("two!", "2")
    assert answer_correct("Left", "left") and not answer_correct("left of", "left")
    assert not answer_correct("two circles", "two") and not answer_correct("", "zero")


# -- errors are caught ------------------------------------------------------------------------------------------


def _recolour(scene, i: int, avoid: set[str]):
    colour = next(c for c in COLOURS if c not in avoid)
    objects = list(scene.objects)
    objects[i] = replace(objects[i], colour=colour)
    return replace(scene, objects=tuple(objects))


def test_a_wrong_colour_fails_where_colours_are_checked_and_always_strictly(items):
    for item in items.generation:
        scene = _recolour(item.scene, 0, {c for c, _, _ in item.groups})
        s = score_generation(item, render_image(scene, 64, 64))
        assert not s.strict, item
        assert s.correct == (item.category in ("single_object", "two_object", "counting")), (item, s)  # GenEval's


def test_a_missing_object_fails_every_category(items):
    for item in items.generation:
        scene = replace(item.scene, objects=item.scene.objects[:-1], kind="free", relation=None, count=None)
        s = score_generation(item, render_image(scene, 64, 64))
        assert not s.correct and not s.strict and "found" in s.reason, item


def test_a_wrong_count_fails(items):
    rng = np.random.default_rng(0)
    for item in (i for i in items.generation if i.category in ("counting", "single_object", "colors")):
        (colour, shape, n) = item.groups[0]
        other = next(c for c in COLOURS if c != colour)
        for groups in (((colour, shape, n + 1),), ((colour, shape, n), (other, shape, 1))):  # one more, any colour
            scene = truth_scene(rng, groups, None)
            s = score_generation(item, render_image(scene, 64, 64))
            assert not s.correct and f"{n + 1} {shape}(s) found, {n} asked" in s.reason, (item, groups)


def test_swapped_positions_fail(items):
    for item in (i for i in items.generation if i.category == "position"):
        a, b = item.scene.objects
        swapped = (replace(a, colour=b.colour, shape=b.shape), replace(b, colour=a.colour, shape=a.shape))
        s = score_generation(item, render_image(replace(item.scene, objects=swapped), 64, 64))
        assert not s.correct and not s.strict and s.reason.startswith(f"{item.relation} asked"), (item, s)


def test_the_diagnostics_count_extra_objects_and_those_in_colours_the_prompt_does_not_name(items):
    """An extra object (as a piece of a scattered one would) raises the objects read per picture above those asked;
    one in a colour no group asks for lowers the share in asked colours; a blank picture has no share."""
    item = next(i for i in items.generation if i.category == "single_object")
    (obj,) = item.scene.objects
    other = next(c for c in COLOURS if c != obj.colour)
    corner = dict(cx=0.15 if obj.cx > 0.5 else 0.85, cy=0.15 if obj.cy > 0.5 else 0.85, size=0.2)
    far = replace(obj, colour=other, **corner)  # another object, in the far corner, in another colour
    s = score_generation(item, render_image(replace(item.scene, objects=(obj, far)), 64, 64))
    assert (s.asked, len(s.found), s.in_asked_colour) == (1, 2, 1)
    summary = generation_summary([s, score_generation(item, render_image(item.scene, 64, 64))])
    assert summary["objects_per_image"] == 1.5 and summary["asked_per_image"] == 1.0
    assert summary["asked_colour_share"] == 2 / 3
    empty = generation_summary([score_generation(item, render_image(replace(item.scene, objects=()), 64, 64))])
    assert empty["objects_per_image"] == 0 and empty["asked_colour_share"] is None


def test_the_overall_score_is_the_mean_of_the_categories_not_of_the_items():
    scores = [GenerationScore("a", "counting", True, True, (), "")]
    scores += [GenerationScore(f"b{i}", "position", False, False, (), "x") for i in range(3)]
    summary = generation_summary(scores)
    assert summary["overall"] == 0.5 and summary["categories"]["position"] == {
        "accuracy": 0.0,
        "strict_accuracy": 0.0,
        "n": 3,
        "prompts": 3,
    }


def test_the_overall_score_carries_the_interval_of_its_prompts():
    # two categories of 4: 3 + 1 right -> overall 0.5, the pooled 4 of 8; its interval is that of a proportion of 8
    scores = [GenerationScore(f"a{i}", "counting", i < 3, i < 3, (), "") for i in range(4)]
    scores += [GenerationScore(f"b{i}", "position", i < 1, i < 1, (), "") for i in range(4)]
    summary = generation_summary(scores)
    assert summary["overall"] == 0.5 and summary["overall_ci95"] == wilson_interval(4, 8)
    low, high = summary["overall_ci95"]
    assert 0.2 < low < 0.5 < high < 0.8  # 8 prompts cannot tell 0.5 from 0.25 or 0.75
    # more prompts at the same score: a narrower interval
    wide = high - low
    more = [replace(s, id=f"{s.id}-{k}") for k in range(4) for s in scores]
    low, high = generation_summary(more)["overall_ci95"]
    assert low < 0.5 < high and high - low < wide / 1.5
    assert generation_summary([])["overall_ci95"] is None


def test_several_samples_a_prompt_count_every_image_and_keep_the_interval_of_the_prompts():
    # GenEval draws 4 images a prompt: each is scored, the accuracies are over the images, but 4 samples of the
    # same 8 prompts are not 32 independent prompts, so the interval stays that of 8
    one = [GenerationScore(f"a{i}", "counting", i < 3, i < 3, (), "") for i in range(4)]
    one += [GenerationScore(f"b{i}", "position", i < 1, i < 1, (), "") for i in range(4)]
    right_in_sample = {0: {"a0", "a1", "a2", "b0"}, 1: {"a0", "b0", "b1", "b2"}, 2: set(), 3: {"a0", "a1"}}
    four = [
        replace(s, sample=k, correct=s.id in ids, strict=s.id in ids) for k, ids in right_in_sample.items() for s in one
    ]
    summary = generation_summary(four)
    assert summary["categories"]["counting"] == {"accuracy": 6 / 16, "strict_accuracy": 6 / 16, "n": 16, "prompts": 4}
    assert summary["overall"] == (6 / 16 + 4 / 16) / 2
    assert summary["prompts"] == 8 and summary["samples_per_prompt"] == 4
    assert summary["overall_ci95"] == wilson_interval(round(summary["overall"] * 8), 8)
    # right in every sample: a0 (in 3 of 4, so no), none; in at least one: a0, a1, a2, b0, b1, b2 of 8
    assert summary["prompts_all_samples_correct"] == 0 and summary["prompts_any_sample_correct"] == 6 / 8
    always = generation_summary([replace(s, sample=k, correct=s.id == "a0") for k in range(3) for s in one])
    assert always["prompts_all_samples_correct"] == always["prompts_any_sample_correct"] == 1 / 8
    assert "prompts_all_samples_correct" not in generation_summary(one)  # one sample a prompt: nothing to agree


def test_a_clip_moving_the_wrong_way_or_losing_its_object_fails(items):
    for item in items.videos:
        m = item.clip.objects[0]
        backwards = ClipScene((MovingObject(m.at(1.0), OPPOSITE[m.direction], m.distance),))  # the same path, reversed
        s = score_video(item, render_clip(backwards, 9, 64, 64))
        assert s.present and s.direction == OPPOSITE[item.direction] and not s.correct
        still = ClipScene((MovingObject(m.start, m.direction, 0.0),))
        assert score_video(item, render_clip(still, 9, 64, 64)).direction is None
        clip = render_clip(item.clip, 9, 64, 64)
        clip[:, 4] = render_image(replace(item.clip.at(0.5), objects=()), 64, 64)  # one empty frame
        s = score_video(item, clip)
        assert not s.present and s.direction == item.direction and not s.correct
        assert s.frames_read == (True,) * 4 + (False,) + (True,) * 4  # the frame it was lost in
    # per frame index, the share of clips whose object is found there; clips of other lengths give no such list
    lost = score_video(item, clip)
    whole = score_video(item, render_clip(item.clip, 9, 64, 64))
    assert video_summary([lost, whole])["frame_presence"] == [1.0] * 4 + [0.5] + [1.0] * 4
    short = score_video(item, render_clip(item.clip, 5, 64, 64))
    assert video_summary([whole, short])["frame_presence"] is None and video_summary([])["frame_presence"] is None


def test_an_edit_not_applied_fails_and_a_changed_background_loses_consistency(items):
    for e in items.edits:
        source = render_image(e.sample.source, 64, 64)
        s = score_edit(e, source)  # nothing done: a failure, however consistent
        assert not s.success and s.psnr == math.inf and s.ssim == 1.0, e
        truth = render_image(e.sample.target, 64, 64)
        noisy = (truth + 0.05 * torch.randn(truth.shape, generator=torch.Generator().manual_seed(0))).clamp(-1, 1)
        s = score_edit(e, noisy)  # applied, but the whole picture changed
        assert s.success and 25 < s.psnr < 35 and s.ssim < 0.9, (e, s)


def test_a_soft_edge_around_the_edited_object_belongs_to_the_edit(items):
    for e in items.edits:
        truth = render_image(e.sample.target, 64, 64)
        blurred = torch.nn.functional.avg_pool2d(truth[None], 3, stride=1, padding=1, count_include_pad=False)[0]
        near = torch.nn.functional.max_pool2d(e.sample.changed_mask(64, 64)[None, None].float(), 3, 1, 1)[0, 0]
        s = score_edit(e, torch.where(near.bool(), blurred, truth))  # a pixel of blur past the edited boxes
        assert s.success and s.psnr == math.inf and s.ssim == 1.0, (e, s)


def test_an_edit_unlike_the_truth_that_follows_the_instruction_succeeds_and_is_consistent(items):
    """The model's edited object may land elsewhere than the truth's: moved less far, added at another place that
    keeps the relation. Its output box is part of the edit, so the consistency stays perfect."""
    rng = np.random.default_rng(1)
    for e in (e for e in items.edits if e.sample.op in ("move", "add")):
        a, b = e.sample.source.objects[e.sample.source_index or 0], e.sample.target.objects[e.sample.target_index]
        if e.sample.op == "move":  # two thirds of the way
            objects = list(e.sample.target.objects)
            objects[e.sample.target_index] = replace(
                b, cx=a.cx + (b.cx - a.cx) * 2 / 3, cy=a.cy + (b.cy - a.cy) * 2 / 3
            )
            other = replace(e.sample.target, objects=tuple(objects))
        else:
            while not scene_ok(
                other := replace(e.sample.target, objects=(random_object(rng, b.kind, SIZES["relation"]), a))
            ):
                pass
        s = score_edit(e, render_image(other, 64, 64))
        assert s.success and s.psnr == math.inf and s.ssim == 1.0, (e, s)


def _wrong_edit(sample, rng: np.random.Generator) -> Scene:
    """The source edited the wrong way: the other direction / size / colour, the other side, the other object."""
    if sample.op == "add":  # the anchor stays; the new object goes another way (the first with room)
        a, b = sample.target.objects
        for relation in (OPPOSITE[sample.target.relation], *(r for r in RELATIONS if r != sample.target.relation)):
            for _ in range(2000):
                wrong = Scene((random_object(rng, a.kind, SIZES["relation"]), b), "relation", relation)
                if scene_ok(wrong):
                    return wrong
        raise AssertionError(f"no room for a wrong add in {sample}")
    if sample.op == "remove":
        return Scene((sample.source.objects[sample.source_index],))
    i = sample.source_index
    old, target = sample.source.objects[i], sample.target.objects[i]
    if sample.op == "move":  # the other way, as far
        new = replace(old, cx=2 * old.cx - target.cx, cy=2 * old.cy - target.cy)
    elif sample.op == "resize":  # the other way, by as much
        new = replace(old, size=old.size**2 / target.size)
    else:  # another new colour
        taken = {o.colour for o in sample.target.objects} | {old.colour}
        new = replace(old, colour=next(c for c in COLOURS if c not in taken))
    return replace(sample.source, objects=sample.source.objects[:i] + (new,) + sample.source.objects[i + 1 :])


def test_wrong_edits_fail(items):
    rng = np.random.default_rng(0)
    why = {"recolour": "found [", "remove": "found [", "add": "added [", "move": "moved by", "resize": "scaled by"}
    for e in items.edits:
        s = score_edit(e, render_image(_wrong_edit(e.sample, rng), 64, 64))
        assert not s.success and s.reason.startswith(why[e.sample.op]), (e, s)


def _shifted(scene: Scene, i: int) -> Scene | None:
    """``scene`` with object ``i`` 0.1 of the image away (the first way that keeps the scene valid), or None."""
    for dx, dy in ((0.1, 0), (-0.1, 0), (0, 0.1), (0, -0.1)):
        o = scene.objects[i]
        moved = replace(
            scene, objects=scene.objects[:i] + (replace(o, cx=o.cx + dx, cy=o.cy + dy),) + scene.objects[i + 1 :]
        )
        if scene_ok(moved):
            return moved
    return None


def test_an_edit_that_moves_what_should_stay_fails(items):
    checked = 0
    for e in items.edits:
        target = e.sample.target
        for i in range(len(target.objects)):
            if i == e.sample.target_index and e.sample.op != "recolour":  # a recoloured object keeps its place too
                continue
            wrong = _shifted(target, i)
            if wrong is not None:
                s = score_edit(e, render_image(wrong, 64, 64))
                assert not s.success and "moved" in s.reason, (e, s)
                checked += 1
    assert checked >= 20


def test_consistency_is_measured_outside_the_mask_only():
    from skimage.metrics import structural_similarity

    g = torch.Generator().manual_seed(0)
    source = torch.rand(3, 48, 40, generator=g) * 2 - 1
    mask = torch.zeros(48, 40, dtype=torch.bool)
    mask[10:30, 5:25] = True
    inside = torch.where(mask, torch.rand(3, 48, 40, generator=g), source)  # changes inside the mask only
    assert masked_consistency(source, inside, mask) == (math.inf, 1.0)
    output = inside + 0.1 * torch.randn(3, 48, 40, generator=g) * (~mask)
    p, s = masked_consistency(source, output, mask)
    outside = ~mask.expand(3, -1, -1)
    assert p == pytest.approx(10 * math.log10(4 / (source - output)[outside].double().square().mean().item()))
    pasted = torch.where(mask, source, output)
    _, full = structural_similarity(
        source.double().numpy(), pasted.double().numpy(), channel_axis=0, gaussian_weights=True, sigma=1.5,
        use_sample_covariance=False, data_range=2.0, full=True,
    )  # fmt: skip
    windows = full.mean(0)[5:-5, 5:-5]  # (H - 10, W - 10): the windows that lie inside the image
    m = mask.numpy()
    entirely = np.array([[m[y : y + 11, x : x + 11].all() for x in range(30)] for y in range(38)])
    assert s == pytest.approx(windows[~entirely].mean(), abs=1e-9)
    assert masked_consistency(source, output, torch.ones(48, 40, dtype=torch.bool)) == (None, None)


def test_the_wilson_interval_has_its_textbook_values_and_narrows_with_more_items():
    from hydra_x.eval.shapes import wilson_interval

    assert wilson_interval(0, 5) is not None and wilson_interval(0, 0) is None
    lo, hi = wilson_interval(0, 40)
    assert lo == 0.0 and hi == pytest.approx(1.96**2 / (40 + 1.96**2))  # zero successes: z^2 / (n + z^2)
    assert wilson_interval(40, 40) == pytest.approx([1 - hi, 1.0])  # symmetric
    assert wilson_interval(17, 36) == pytest.approx([0.31986, 0.62994], abs=1e-5)  # statsmodels' "wilson"
    small, large = wilson_interval(18, 36), wilson_interval(180, 360)
    assert small[0] < large[0] < 0.5 < large[1] < small[1]  # ten times the items: a narrower interval about p


def test_count_answers_tell_a_model_that_counts_from_one_that_says_the_common_answer():
    asked = [("count", a, a) for a in ("zero", "one", "one", "two", "three")]  # every count right, in words
    counts = count_answers([*asked, ("colour", "red", "blue"), ("position", "left", "left")])
    assert counts["by_answer"] == {
        "0": {"n": 1, "correct": 1},
        "1": {"n": 2, "correct": 2},
        "2": {"n": 1, "correct": 1},
        "3": {"n": 1, "correct": 1},
    }
    assert counts["replies"] == {"1": 2, "0": 1, "2": 1, "3": 1}
    # "One." to everything: right where the answer is one, and the replies say so
    prior = count_answers([("count", a, "One.") for a in ("zero", "one", "one", "two", "three", "10")])
    assert list(prior["by_answer"]) == ["0", "1", "2", "3", "10"]  # by number, not as text
    assert [v["correct"] for v in prior["by_answer"].values()] == [0, 2, 0, 0, 0]
    assert prior["replies"] == {"1": 6}
    assert count_answers([("colour", "red", "red")]) == {"by_answer": {}, "replies": {}}
