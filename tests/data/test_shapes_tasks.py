"""Shapes-world examples: deterministic, well formed, and their words true of their pictures."""

from __future__ import annotations

import itertools
import re
from collections import Counter

import numpy as np
import pytest
import torch

from hydra_x.data.examples import TASKS, Example, ExampleError, Visual
from hydra_x.data.shapes import COLOURS
from hydra_x.data.shapes_tasks import OPPOSITES, ShapesTasks
from hydra_x.data.shapes_text import BALANCE_TRIES, NUMBERS, Question, ShapesWorld, answer_question, balanced_question
from hydra_x.eval.shapes_read import read_motion, read_objects, read_scene
from hydra_x.unified.sequence import IGNORE, PLACEHOLDERS, VisualSpec, build_sequence
from tests.data.unified_data import caption_kinds
from tests.unified.fixtures import tiny_tokenizer

SIZE, FRAMES = 64, 5


@pytest.fixture(scope="module")
def world() -> ShapesTasks:
    return ShapesTasks(seed=3, split="train", image_size=SIZE, clip_frames=FRAMES)


def same(a: Example, b: Example) -> bool:
    return (a.task, a.messages, a.key) == (b.task, b.messages, b.key) and all(
        torch.equal(x.pixels, y.pixels) and x.role == y.role for x, y in zip(a.visuals, b.visuals)
    )


@pytest.mark.parametrize("task", TASKS)
def test_every_task_is_a_pure_function_of_seed_split_task_and_k(world, task):
    later = [world.example(task, k) for k in (5, 1)]  # any order, a fresh instance
    again = ShapesTasks(seed=3, split="train", image_size=SIZE, clip_frames=FRAMES)
    assert same(later[1], again.example(task, 1)) and same(later[0], again.example(task, 5))
    assert not same(later[0], later[1]) or task == "text"  # text tasks may repeat (a small world)
    assert not same(later[0], ShapesTasks(4, "train", SIZE, FRAMES).example(task, 5))
    for v in later[0].visuals:
        assert v.pixels.shape[-2:] == (SIZE, SIZE) and (v.pixels.ndim == 3 or v.pixels.shape[1] == FRAMES)


def test_generated_pictures_hold_what_their_captions_say(world):
    for k in range(30):
        ex = world.example("image_gen", k)
        found = Counter(o.kind for o in read_objects(ex.visuals[0].pixels))
        assert found == caption_kinds(ex.messages[0]["content"]), ex.key


def test_caption_and_question_answers_are_true_of_the_picture(world):
    questions = ShapesWorld(3, "train")
    for k in range(30):
        cap = world.example("image_caption", k)
        assert Counter(o.kind for o in read_objects(cap.visuals[0].pixels)) == caption_kinds(cap.messages[1]["content"])
        sft = world.example("image_sft", k)
        q = questions.question_sample(k).question
        assert sft.messages[0]["content"] == f"<image>\n{q.text}"
        assert answer_question(q, read_scene(sft.visuals[0].pixels)) == sft.messages[1]["content"]


def test_clips_move_the_way_their_captions_say(world):
    for k in range(8):
        ex = world.example("video_gen", k)
        moving = re.findall(r"(a|an) (\w+) (\w+) moving (\w+)", ex.messages[0]["content"])
        said = {(c, s): d for _, c, s, d in moving}
        assert read_motion(ex.visuals[0].pixels) == said, ex.key


def test_clip_questions_cover_motion_and_what_every_frame_shows(world):
    kinds = Counter()
    for k in range(60):
        ex = world.example("video_sft", k)
        question, answer = ex.messages[0]["content"].removeprefix("<video>\n"), ex.messages[1]["content"]
        kinds[question.split()[0] + " " + question.split()[1]] += 1
        if question.startswith("How many"):
            colour, shape = re.fullmatch(r"How many (\w+ )?(\w+)s are there\?", question).groups()
            kinds_wanted = {(c, shape) for c in COLOURS if colour in (None, c + " ")}
            frames = [read_scene(ex.visuals[0].pixels[:, f]) for f in (0, -1)]
            n = {len([o for o in sc.objects if o.kind in kinds_wanted]) for sc in frames}
            assert n == {NUMBERS.index(answer)}, question  # true on every frame
    assert {"Which way", "How many", "Is there"} <= set(kinds)


def test_text_tasks_are_small_and_right(world):
    seen = set()
    for k in range(300):
        ex = world.example("text", k)
        q, a = ex.messages[0]["content"], ex.messages[1]["content"]
        assert ex.visuals == [] and "<" not in q
        if m := re.fullmatch(r"What is (\d+) (plus|minus) (\d+)\?", q):
            x, y = int(m[1]), int(m[3])
            assert int(a) == (x + y if m[2] == "plus" else x - y) >= 0
            seen.add(m[2])
        elif m := re.fullmatch(r'Spell "(\w+)" backwards\.', q):
            assert a == m[1][::-1]
            seen.add("backwards")
        elif m := re.fullmatch(r'How many letters are in the word "(\w+)"\?', q):
            assert int(a) == len(m[1])
            seen.add("letters")
        elif m := re.fullmatch(r"What is the opposite of (\w+)\?", q):
            assert OPPOSITES[a] == m[1]
            seen.add("opposite")
        elif q.endswith("How many shapes are there?"):
            assert NUMBERS.index(a) == sum(caption_kinds(q).values())
            seen.add("total")
    assert seen == {"plus", "minus", "backwards", "letters", "opposite", "total"}


def test_edits_read_and_generate_one_image_each(world):
    ex = world.example("edit", 2)
    assert [v.role for v in ex.visuals] == ["understand", "generate"]
    assert ex.messages[1]["content"] == "<image>" and not torch.equal(ex.visuals[0].pixels, ex.visuals[1].pixels)


def test_every_task_becomes_a_sequence_that_learns_only_the_reply(world):
    tok = tiny_tokenizer()
    for task in TASKS:
        ex = world.example(task, 0)
        specs = [VisualSpec("video" if v.kind == "video" else "image", 2 if v.kind == "video" else 1, 4, v.role)
                 for v in ex.visuals]  # fmt: skip
        seq = build_sequence(tok, ex.messages, specs)
        learnt = tok.decode(seq.targets[seq.targets != IGNORE])
        assert ex.messages[-1]["content"] in learnt or ex.messages[-1]["content"] in ("<image>", "<video>"), task


def test_placeholders_are_the_sequence_modules():
    from hydra_x.data.examples import PLACEHOLDERS as OURS

    assert OURS == PLACEHOLDERS


IMAGE = torch.zeros(3, 16, 16)


@pytest.mark.parametrize(
    ("task", "messages", "visuals", "match"),
    [
        ("nope", [{"role": "assistant", "content": "x"}], [], "unknown task"),
        ("text", [{"role": "user", "content": "x"}], [], "no assistant"),
        ("image_caption", [{"role": "user", "content": "<image>"}, {"role": "assistant", "content": "x"}], [],
         "1 placeholder"),
        ("image_gen", [{"role": "user", "content": "x"}, {"role": "assistant", "content": "<image>"}],
         [Visual(IMAGE, "understand")], "placeholder is in a assistant"),
        ("image_gen", [{"role": "user", "content": "x"}, {"role": "assistant", "content": "see <image>"}],
         [Visual(IMAGE, "generate")], "writes just"),
        ("image_caption", [{"role": "user", "content": "<video>"}, {"role": "assistant", "content": "x"}],
         [Visual(IMAGE)], "is a <video>|is <video>"),
        ("image_caption", [{"role": "user", "content": "<image>"}, {"role": "assistant", "content": "x"}],
         [Visual(IMAGE + 2)], r"\[-1, 1\]"),
        ("image_caption", [{"role": "user", "content": "<image>"}, {"role": "assistant", "content": "x"}],
         [Visual(IMAGE.double())], "float32"),
        ("video_sft", [{"role": "user", "content": "<image>"}, {"role": "assistant", "content": "x"}],
         [Visual(IMAGE)], "at least one video"),
        ("text", [{"role": "robot", "content": "x"}, {"role": "assistant", "content": "x"}], [], "message 0"),
    ],
)  # fmt: skip
def test_malformed_examples_are_refused_with_their_key(task, messages, visuals, match):
    with pytest.raises(ExampleError, match=match) as info:
        Example(task, messages, visuals, key="k1")
    assert str(info.value).startswith("example k1: ")


def answers_of(tasks: ShapesTasks, task: str, kind_words: tuple[str, ...], n: int = 1500) -> Counter:
    """The answers of the first ``n`` ``task`` examples whose question starts with one of ``kind_words``."""
    out = Counter()
    for k in range(n):
        question, answer = (m["content"] for m in tasks.example(task, k).messages)
        if question.split("\n", 1)[1].startswith(kind_words):
            out[answer] += 1
    return out


def test_balanced_answers_even_out_what_the_world_makes_common_and_stay_true():
    plain, balanced = (ShapesTasks(3, "train", 32, 5, balanced_answers=b) for b in (False, True))
    counts = [answers_of(t, "image_sft", ("How many",)) for t in (plain, balanced)]
    many = [sum(v for a, v in c.items() if a not in ("zero", "one")) / sum(c.values()) for c in counts]
    assert many[0] < 0.25 and many[1] > 0.55, counts  # two to five: about one count answer in five, then four in six
    yes = [c["yes"] / sum(c.values()) for c in (answers_of(t, "image_sft", ("Is there",)) for t in (plain, balanced))]
    assert yes[0] < 0.3 and 0.4 < yes[1] < 0.6, yes
    clip_counts = [answers_of(t, "video_sft", ("How many",), 600) for t in (plain, balanced)]
    assert clip_counts[0] != clip_counts[1]  # clips' questions are balanced too
    for k in range(40):  # every balanced answer is still true of its picture
        ex = balanced.example("image_sft", k)
        q = ShapesWorld(3, "train").question_sample(k, balanced_answers=True).question
        assert ex.messages[0]["content"] == f"<image>\n{q.text}"
        assert answer_question(q, read_scene(ex.visuals[0].pixels)) == ex.messages[1]["content"]
    for task in ("image_caption", "image_gen", "edit", "video_gen", "text"):  # only the questions move
        assert same(plain.example(task, 7), balanced.example(task, 7))


def test_balanced_answers_are_a_shapes_source_option():
    from hydra_x.data.mixture import UnifiedDataConfig, UnifiedDataLoader, UnifiedSource

    with pytest.raises(ValueError, match="balanced_answers is for shapes sources, not conversations"):
        UnifiedSource("conversations", "x.jsonl", balanced_answers=True)
    cfg = UnifiedDataConfig(
        sources=(UnifiedSource("shapes", balanced_answers=True),),
        task_ratios={"image_sft": 1.0},
        image_size=32,
        clip_frames=5,
        examples_per_step=8,
        num_workers=0,
    )
    step = next(iter(UnifiedDataLoader(cfg)))
    balanced = ShapesTasks(0, "train", 32, 5, balanced_answers=True)
    assert all(same(ex, balanced.example("image_sft", int(ex.key.rsplit(":", 1)[1]))) for ex in step.examples)


def test_a_balanced_answer_no_scene_gives_ends_with_the_last_scenes_question():
    scenes = itertools.count()
    drawn = []

    def draw() -> int:
        drawn.append(next(scenes))
        return drawn[-1]

    def ask(scene: int) -> list[Question]:
        return [Question("count", f"How many circles? ({scene})", "one", shape="circle")]

    rng = np.random.default_rng(0)
    scene, q = balanced_question(rng, draw, ask, ("count",))
    # "one" is one of six count answers: either found at once, or never (and then after BALANCE_TRIES scenes)
    assert scene == drawn[-1] and len(drawn) in (1, BALANCE_TRIES)
    assert q.text == f"How many circles? ({scene})"
    tries = []
    for seed in range(30):  # both ways occur
        drawn.clear()
        balanced_question(np.random.default_rng(seed), draw, ask, ("count",))
        tries.append(len(drawn))
    assert set(tries) == {1, BALANCE_TRIES}
