"""Every task of the unified model from the shapes world: the embedded default data, nothing to download.

``ShapesTasks(seed, split, image_size, clip_frames).example(task, k)`` is a pure function of (seed, split, task,
k) and the sizes: scenes come from :class:`hydra_x.data.shapes.ShapesWorld`, the words from
:mod:`hydra_x.data.shapes_text`, and the few choices made here (a prompt's phrasing, a question about a clip, a
text task) from a generator of their own seeded by the same numbers. What an example says is exact: captions,
answers and edits are computed from the scene that is rendered.

The "text" task is small on purpose: facts of this world (its colours, its shapes, opposite directions), small
sums, and word puzzles over its vocabulary (letters, spelling backwards, numbers in words), all with exact short
answers, so that a model trained on shapes alone still sees text without media.
"""

from __future__ import annotations

import zlib

import numpy as np

from hydra_x.data.examples import (
    IMAGE_CAPTION_PROMPTS,
    TASKS,
    VIDEO_CAPTION_PROMPTS,
    Example,
    Visual,
    edit_messages,
    task_image_size,
)
from hydra_x.data.shapes import COLOURS, DIRECTIONS, SHAPES, render_clip, render_image, sample_clip
from hydra_x.data.shapes_text import (
    EDIT_OPS,
    NUMBERS,
    Question,
    ShapesWorld,
    balanced_question,
    check_edit_ops,
    number_word,
    pick_question,
    questions,
)

# Questions asked about a clip: how things move, and what stays true in every frame (objects never change colour
# or shape and never leave the frame; where they are relative to each other changes, so "position" is not asked).
CLIP_QUESTION_KINDS = ("motion", "colour", "shape", "count", "exists")
OPPOSITES = {"left": "right", "right": "left", "up": "down", "down": "up", "above": "below", "below": "above"}
WORDS = (*COLOURS, *SHAPES, *DIRECTIONS, "above", "below")
TEXT_KINDS = ("colours", "shapes", "opposite", "plus", "minus", "number_word", "letters", "backwards", "total")
_TAGS = {task: 101 + i for i, task in enumerate(TASKS)}  # apart from ShapesWorld's own tags (1..6)


def _join(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def _pick(rng: np.random.Generator, items):
    return items[int(rng.integers(len(items)))]


def text_qa(rng: np.random.Generator) -> tuple[str, str]:
    """(question, exact answer): a text-only task, its kind uniform over TEXT_KINDS."""
    kind = _pick(rng, TEXT_KINDS)
    if kind == "colours":
        q = _pick(rng, ("What colours are there in the shapes world?", "Name the colours of the shapes world."))
        return q, _join(list(COLOURS))
    if kind == "shapes":
        q = _pick(rng, ("What shapes are there in the shapes world?", "Name the shapes of the shapes world."))
        return q, _join([f"{s}s" for s in SHAPES])
    if kind == "opposite":
        word = _pick(rng, tuple(OPPOSITES))
        return f"What is the opposite of {word}?", OPPOSITES[word]
    if kind == "plus":
        a, b = (int(v) for v in rng.integers(0, 21, 2))
        return f"What is {a} plus {b}?", str(a + b)
    if kind == "minus":
        a, b = sorted((int(v) for v in rng.integers(0, 21, 2)), reverse=True)
        return f"What is {a} minus {b}?", str(a - b)
    if kind == "number_word":
        n = int(rng.integers(len(NUMBERS)))
        return f"Write the number {n} in words.", NUMBERS[n]
    if kind == "letters":
        word = _pick(rng, WORDS)
        return f'How many letters are in the word "{word}"?', str(len(word))
    if kind == "backwards":
        word = _pick(rng, WORDS)
        return f'Spell "{word}" backwards.', word[::-1]
    # "total": counting in words, as the image questions do
    (c1, c2), (s1, s2) = (map(str, rng.choice(list(names), 2, replace=False)) for names in (COLOURS, SHAPES))
    a, b = (int(v) for v in rng.integers(1, 5, 2))
    first = f"{number_word(a)} {c1} {s1}{'s' * (a > 1)}"
    second = f"{number_word(b)} {c2} {s2}{'s' * (b > 1)}"
    return f"There are {first} and {second}. How many shapes are there?", number_word(a + b)


def clip_questions(clip) -> list[Question]:
    """Every question asked about a clip: how its objects move, and the CLIP_QUESTION_KINDS of its first frame."""
    return questions(clip) + [q for q in questions(clip.at(0.0)) if q.kind in CLIP_QUESTION_KINDS]


def clip_question(rng: np.random.Generator, clip) -> Question:
    """A question about a clip, its kind uniform over the CLIP_QUESTION_KINDS that apply (then uniform within)."""
    return pick_question(rng, clip_questions(clip))


def _user(content: str) -> dict[str, str]:
    return {"role": "user", "content": content}


def _assistant(content: str) -> dict[str, str]:
    return {"role": "assistant", "content": content}


class ShapesTasks:
    """The k-th example of each task of one shapes world, rendered at ``image_size`` (square) and ``clip_frames``;
    the images of the tasks that only read them at ``understanding_image_size`` where it is given. With
    ``balanced_answers`` the questions' answers are balanced within each kind (:func:`balanced_question`)."""

    name = "shapes"
    tasks = frozenset(TASKS)

    def __init__(
        self,
        seed: int = 0,
        split: str = "train",
        image_size: int = 256,
        clip_frames: int = 17,
        edit_ops: tuple[str, ...] | None = None,  # the edit kinds drawn (None: all)
        understanding_image_size: int | None = None,
        balanced_answers: bool = False,
    ):
        self.edit_ops = EDIT_OPS if edit_ops is None else edit_ops
        check_edit_ops(self.edit_ops)
        self.world = ShapesWorld(seed, split)
        self.seed, self.split, self.size, self.frames = int(seed), split, int(image_size), int(clip_frames)
        self.understanding_size = None if understanding_image_size is None else int(understanding_image_size)
        self.balanced_answers = bool(balanced_answers)

    def rng(self, task: str, k: int) -> np.random.Generator:
        """This module's own choices for example k of ``task`` (independent of the world's)."""
        return np.random.default_rng([self.seed, zlib.crc32(self.split.encode()), _TAGS[task], int(k)])

    def draw(self, task: str, counter: int, attempt: int) -> Example:
        """The mixture's interface: draw ``counter`` is example ``counter`` (shapes never fail: no other attempt)."""
        return self.example(task, counter)

    def example(self, task: str, k: int) -> Example:
        if task not in TASKS:
            raise ValueError(f"unknown task {task!r}; expected one of {TASKS}")
        rng, key = self.rng(task, k), f"shapes:{self.split}:{task}:{k}"
        size = task_image_size(task, self.size, self.understanding_size)
        if task == "text":
            question, answer = text_qa(rng)
            return Example(task, [_user(question), _assistant(answer)], [], key)
        if task in ("image_caption", "image_gen"):
            sample = self.world.caption_sample(k)
            image = render_image(sample.scene, size, size)
            if task == "image_gen":
                return Example(task, [_user(sample.caption), _assistant("<image>")], [Visual(image, "generate")], key)
            prompt = _pick(rng, IMAGE_CAPTION_PROMPTS)
            return Example(task, [_user(f"<image>\n{prompt}"), _assistant(sample.caption)], [Visual(image)], key)
        if task == "image_sft":
            qs = self.world.question_sample(k, self.balanced_answers)
            image = render_image(qs.scene, size, size)
            messages = [_user(f"<image>\n{qs.question.text}"), _assistant(qs.question.answer)]
            return Example(task, messages, [Visual(image)], key)
        if task == "edit":
            edit = self.world.edit_sample(k, self.edit_ops)
            source, target = (render_image(s, self.size, self.size) for s in (edit.source, edit.target))
            instruction = edit.instruction[0].upper() + edit.instruction[1:] + "."
            return Example(task, edit_messages(instruction), [Visual(source), Visual(target, "generate")], key)
        return self._clip_example(task, k, rng, key, size)

    def _clip_example(self, task: str, k: int, rng: np.random.Generator, key: str, size: int) -> Example:
        if task == "video_sft" and self.balanced_answers:  # clips drawn from this example's own generator
            scene, q = balanced_question(rng, lambda: sample_clip(rng, self.split), clip_questions, CLIP_QUESTION_KINDS)
            clip = render_clip(scene, self.frames, size, size)
            return Example(task, [_user(f"<video>\n{q.text}"), _assistant(q.answer)], [Visual(clip)], key)
        sample = self.world.clip_sample(k)
        clip = render_clip(sample.clip, self.frames, size, size)
        if task == "video_gen":
            return Example(task, [_user(sample.caption), _assistant("<video>")], [Visual(clip, "generate")], key)
        if task == "video_caption":
            prompt = _pick(rng, VIDEO_CAPTION_PROMPTS)
            return Example(task, [_user(f"<video>\n{prompt}"), _assistant(sample.caption)], [Visual(clip)], key)
        q = clip_question(rng, sample.clip)
        return Example(task, [_user(f"<video>\n{q.text}"), _assistant(q.answer)], [Visual(clip)], key)
