"""Running a unified model over the shapes prompt set: generate, answer, animate and edit, then score.

Images and clips are generated in batches of prompts (``hydra_x.unified.sampling.generate_latents`` + ``render``);
the noise of a batch is drawn from ``seed + 1000 * section + first item`` (rows in order), so the items of a
prefix of the set (``limit``) start from the same noise as in the whole set. With several samples a prompt (GenEval
draws 4), sample k is drawn as sample 0 with ``seed + k``: the samples of ``--seed 0`` are the single samples of
seeds 0, 1, ... Questions are asked one at a
time with ``model.chat`` (greedy). Videos only for a model with ``config.video``; editing only for a model with
an ``edit(image, instruction, *, steps, guidance, sampler, shift, seed) -> (3, H, W)`` method, otherwise the
report says why the section is not available.

The tokenizer's round trip: the same scorers read the model's own tokenizer's reconstructions (encode, decode) of
each item's truth picture, clip and edit target. That is the most generation, video and editing can score through
this tokenizer, so a low model score next to a low round trip is the tokenizer's failure, not the LLM's.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from hydra_x.data.shapes import render_clip, render_image
from hydra_x.eval.prompts import CATEGORIES, PromptSet
from hydra_x.eval.shapes import (
    EditScore,
    GenerationScore,
    VideoScore,
    answer_correct,
    colour_errors,
    count_answers,
    edit_summary,
    generation_summary,
    names_another_object,
    score_edit,
    score_generation,
    score_video,
    understanding_summary,
    video_summary,
)
from hydra_x.unified.sampling import generate_latents, render, visual_spec

PICTURES_PER_GROUP = 4  # items shown per category / op in the sample grids
MAX_NEW_TOKENS = 16  # answers are one or two words


@dataclass(frozen=True)
class Picture:
    """One cell of a sample grid: images side by side under a label."""

    label: str
    images: tuple[torch.Tensor, ...]  # (3, H, W) each


@dataclass(frozen=True)
class AnswerRecord:
    id: str
    kind: str
    question: str
    answer: str
    reply: str
    correct: bool
    # A wrong answer to a colour question: True if it names another object's colour in the picture, else False; None
    # for right answers and other kinds.
    names_another_object: bool | None = None


@dataclass
class ShapesReport:
    """Every score of one run; ``None`` sections are not available, with the reason in ``*_reason``."""

    prompt_set: PromptSet  # the items evaluated (after ``limit``)
    digest: str  # of the whole set (``PromptSet.digest``), which ``limit`` cut
    settings: dict[str, Any]
    generation: list[GenerationScore]
    understanding: list[AnswerRecord]
    video: list[VideoScore] | None
    video_reason: str | None
    editing: list[EditScore] | None
    editing_reason: str | None
    pictures: dict[str, list[list[Picture]]] = field(default_factory=dict)  # section -> rows of cells
    # The same scorers on the tokenizer's reconstructions of the truth (section -> scores); None: not measured.
    round_trip: dict[str, list] | None = None
    # The control set's questions (seen combinations), answered beside the set's own; None: not asked.
    control: PromptSet | None = None  # the items asked (after ``limit``)
    control_digest: str | None = None  # of the whole control set
    control_understanding: list[AnswerRecord] | None = None

    def summary(self) -> dict[str, Any]:
        out = {
            "generation": {**generation_summary(self.generation), "n": len(self.generation)},
            "understanding": _understanding_summary(self.understanding),
            "video": _section(self.video, self.video_reason, video_summary),
            "editing": _section(self.editing, self.editing_reason, edit_summary),
            "round_trip": None if self.round_trip is None else _round_trip_summary(self.round_trip),
        }
        if self.control is not None and self.control_understanding is not None:
            seen = _understanding_summary(self.control_understanding)
            out["understanding_control"] = {"prompt_set": self.control.version, "sha256": self.control_digest, **seen}
        return out


def _understanding_summary(records: list[AnswerRecord]) -> dict[str, Any]:
    summary = understanding_summary([(r.kind, r.correct) for r in records])
    return {
        **summary,
        "n": len(records),
        "colour_errors": colour_errors([(r.kind, r.names_another_object) for r in records]),
        "count_answers": count_answers([(r.kind, r.answer, r.reply) for r in records]),
    }


def _round_trip_summary(scores: dict[str, list]) -> dict[str, Any]:
    out: dict[str, Any] = {"generation": {**generation_summary(scores["generation"]), "n": len(scores["generation"])}}
    for name, summarise in (("video", video_summary), ("editing", edit_summary)):
        if name in scores:
            out[name] = {**summarise(scores[name]), "n": len(scores[name])}
    return out


def _section(scores: list | None, reason: str | None, summarise: Callable[[list], dict]) -> dict[str, Any]:
    if scores is None:
        return {"available": False, "reason": reason}
    return {"available": True, **summarise(scores), "n": len(scores)}


def evaluate_shapes(
    model,
    prompt_set: PromptSet,
    *,
    size: int = 64,
    frames: int = 17,
    steps: int = 20,
    guidance: float = 3.0,
    sampler: str = "euler",
    shift: float | None = None,
    edit_start: float = 1.0,
    edit_guidance: float | None = None,
    seed: int = 0,
    limit: int | None = None,
    batch_size: int = 16,
    progress: Callable[[str], None] | None = None,
    round_trip: bool = True,
    control: PromptSet | None = None,
    question_size: int | None = None,
    samples_per_prompt: int = 1,
) -> ShapesReport:
    """Score ``model`` (a HydraX) on ``prompt_set`` (the first ``limit`` items of each category, kind and op) at
    ``size`` x ``size`` pixels and ``frames`` frames, sampling with ``steps`` of ``sampler`` on a time grid
    shifted by ``shift`` (None: the model's resolution shift); edits begin at flow time ``edit_start`` (below 1:
    from the source noised to it, ``BlockSampling.start``) and take ``edit_guidance`` (None: ``guidance``), since a
    scale that draws prompts better can keep less of an edit's source. With ``round_trip``, also the scores of the
    model's tokenizer's reconstructions of the truth (see the module docstring); with ``control`` (e.g.
    shapes-v1-seen), also the answers to its first ``limit`` questions of each kind, so that held-out understanding
    reads beside understanding of seen combinations. Questions are asked about scenes rendered at ``question_size``
    (None: the model's understanding_image_size where it has one, else ``size``). Sizes the model cannot take are
    InputErrors, raised before any work. Each generation prompt is drawn ``samples_per_prompt`` times (GenEval's
    protocol draws 4; the category accuracies are over every image)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if samples_per_prompt < 1:
        raise ValueError(f"samples_per_prompt must be at least 1, got {samples_per_prompt}")
    visual_spec(model, "image", size, size, None)
    question_size = question_size or getattr(model.config, "understanding_image_size", None) or size
    visual_spec(model, "image", question_size, question_size, None)
    video = bool(model.config.video)
    if video:
        visual_spec(model, "video", size, size, frames)
    items = prompt_set.limited(limit)
    say = progress or (lambda message: None)
    gen = dict(steps=steps, guidance=guidance, sampler=sampler, shift=shift)
    edit_guidance = guidance if edit_guidance is None else edit_guidance
    settings = dict(size=size, frames=frames, **gen, edit_start=edit_start, edit_guidance=edit_guidance, seed=seed)
    settings["question_size"] = question_size
    settings["limit"] = limit
    settings["batch_size"] = batch_size
    settings["samples_per_prompt"] = samples_per_prompt
    settings["max_new_tokens"] = MAX_NEW_TOKENS
    report = ShapesReport(items, prompt_set.digest(), settings, [], [], None, None, None, None, {})
    say(f"generation: {len(items.generation)} prompts x {samples_per_prompt}")
    report.generation, report.pictures["generation"] = _generation(
        model, items, size, seed, batch_size, gen, samples_per_prompt
    )
    say(f"understanding: {len(items.questions)} questions")
    report.understanding = answer_questions(model, items, question_size)
    if control is not None:
        report.control, report.control_digest = control.limited(limit), control.digest()
        say(f"understanding, {control.version}: {len(report.control.questions)} questions")
        report.control_understanding = answer_questions(model, report.control, question_size)
    if not video:
        report.video_reason = "the model is image-only (config.video is False)"
    else:
        say(f"video: {len(items.videos)} prompts")
        report.video, report.pictures["video"] = _videos(model, items, size, frames, seed, batch_size, gen)
    edit = getattr(model, "edit", None)
    if not callable(edit):
        report.editing_reason = "not available: the model has no edit method"
    else:
        say(f"editing: {len(items.edits)} instructions")
        edit_options = gen | {"start": edit_start, "guidance": edit_guidance}
        report.editing, report.pictures["editing"] = _edits(edit, items, size, seed, edit_options)
    if round_trip:
        say("the tokenizer's round trip of the truth")
        report.round_trip = _round_trip(model, items, size, frames, seed, batch_size, video, report.editing is not None)
    return report


class _TokenizerAlone:
    """A bare tokenizer seen as the unified model the round trip reads: its ``tokenizer``, ``device``, ``encode``."""

    def __init__(self, tokenizer) -> None:
        self.tokenizer = tokenizer
        self.device = next(tokenizer.parameters()).device

    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.tokenizer.encode(pixels.to(device=self.device, dtype=self.tokenizer._dtype())).float()


def tokenizer_round_trip(
    tokenizer,
    prompt_set: PromptSet,
    *,
    size: int = 128,
    frames: int = 17,
    seed: int = 0,
    batch_size: int = 16,
    video: bool = True,
) -> tuple[dict[str, Any], dict[str, list]]:
    """The round trip of a tokenizer (a HydraXTokenizer) alone, before any unified model is trained on it: the
    scorers on its reconstructions of every generation item's truth picture, clip (with ``video``) and edit target.
    Returns (the summary, as ``ShapesReport.summary()["round_trip"]``; the scores by section)."""
    with torch.no_grad():
        scores = _round_trip(_TokenizerAlone(tokenizer), prompt_set, size, frames, seed, batch_size, video, True)
    return _round_trip_summary(scores), scores


def _round_trip(
    model, items: PromptSet, size: int, frames: int, seed: int, batch_size: int, video: bool, editing: bool
) -> dict[str, list]:
    """The scorers on ``render(model, model.encode(truth))`` of every generation item, clip and edit target."""

    def reconstruct(pixels: list[torch.Tensor], s: int) -> torch.Tensor:
        return render(model, model.encode(torch.stack(pixels)), seed=s)

    def each(things: list, truth: Callable, score: Callable, section: int) -> list:
        out = []
        for batch in _batches(len(things), batch_size):
            recon = reconstruct([truth(things[j]) for j in batch], seed + 1000 * section + batch.start)
            out += [score(things[j], x) for j, x in zip(batch, recon)]
        return out

    picture = lambda i: render_image(i.scene, size, size)  # noqa: E731
    scores = {"generation": each(list(items.generation), picture, score_generation, 0)}
    if video:
        clip = lambda i: render_clip(i.clip, frames, size, size)  # noqa: E731
        scores["video"] = each(list(items.videos), clip, score_video, 1)
    if editing:
        target = lambda i: render_image(i.sample.target, size, size)  # noqa: E731
        scores["editing"] = each(list(items.edits), target, score_edit, 2)
    return scores


def _batches(n: int, size: int) -> list[range]:
    return [range(i, min(i + size, n)) for i in range(0, n, size)]


def _generation(model, items: PromptSet, size: int, seed: int, batch_size: int, gen: dict, samples: int = 1):
    scores: list[GenerationScore] = []
    rows: list[list[Picture]] = []
    for section, category in enumerate(CATEGORIES):
        mine = [i for i in items.generation if i.category == category]
        row: list[Picture] = []
        for k, batch in itertools.product(range(samples), _batches(len(mine), batch_size)):
            s = seed + k + 1000 * section + batch.start
            prompts = [mine[j].prompt for j in batch]
            z = generate_latents(model, prompts, "image", height=size, width=size, seed=s, **gen)
            for j, image in zip(batch, render(model, z, seed=s)):
                score = replace(score_generation(mine[j], image), sample=k)
                scores.append(score)
                if k == 0 and len(row) < PICTURES_PER_GROUP:
                    truth = render_image(mine[j].scene, size, size)
                    row.append(Picture(f"{score.id} {_mark(score.correct)}", (truth, image)))
        if row:
            rows.append(row)
    return scores, rows


def answer_questions(model, items: PromptSet, size: int) -> list[AnswerRecord]:
    """The model's replies to every question of ``items`` about its scene rendered at ``size``, each scored."""
    records = []
    for item in items.questions:
        image = render_image(item.scene, size, size)
        reply = model.chat(item.question.text, image=image, max_new_tokens=MAX_NEW_TOKENS)
        q = item.question
        other = (
            names_another_object(reply, q.answer, {o.colour for o in item.scene.objects})
            if q.kind == "colour"
            else None
        )
        records.append(
            AnswerRecord(item.id, item.kind, q.text, q.answer, reply, answer_correct(reply, q.answer), other)
        )
    return records


def _videos(model, items: PromptSet, size: int, frames: int, seed: int, batch_size: int, gen: dict):
    scores: list[VideoScore] = []
    row: list[Picture] = []
    section = len(CATEGORIES)
    videos = items.videos
    for batch in _batches(len(videos), batch_size):
        s = seed + 1000 * section + batch.start
        prompts = [videos[j].prompt for j in batch]
        z = generate_latents(model, prompts, "video", height=size, width=size, frames=frames, seed=s, **gen)
        for j, clip in zip(batch, render(model, z, seed=s)):  # (3, F, H, W) each
            score = score_video(videos[j], clip)
            scores.append(score)
            if len(row) < PICTURES_PER_GROUP:
                truth = render_clip(videos[j].clip, frames, size, size)
                ends = (truth[:, 0], truth[:, -1], clip[:, 0], clip[:, -1])
                row.append(Picture(f"{score.id} {_mark(score.correct)}", ends))
    return scores, [row] if row else []


def _edits(edit: Callable, items: PromptSet, size: int, seed: int, gen: dict):
    scores: list[EditScore] = []
    rows: dict[str, list[Picture]] = {}
    for k, item in enumerate(items.edits):
        source = render_image(item.sample.source, size, size)
        out = edit(source, item.sample.instruction, seed=seed + k, **gen)
        if not isinstance(out, torch.Tensor) or tuple(out.shape) != tuple(source.shape):
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ValueError(f"model.edit returned {got}, expected a {tuple(source.shape)} image")
        out = out.detach().float().cpu().clamp(-1, 1)
        score = score_edit(item, out)
        scores.append(score)
        row = rows.setdefault(item.sample.op, [])
        if len(row) < PICTURES_PER_GROUP:
            truth = render_image(item.sample.target, size, size)
            row.append(Picture(f"{score.id} {_mark(score.success)}", (source, out, truth)))
    return scores, list(rows.values())


def _mark(ok: bool) -> str:
    return "ok" if ok else "x"


# ---------------------------------------------------------------------------- what the report says of the model


def model_info(model, *, checkpoint: str | None, preset: str | None, seed: int | None) -> dict[str, Any]:
    """The model in the report: checkpoint with the SHA-256 of its weight files, or preset + seed (random)."""
    from hydra_x.hub import file_sha256

    info: dict[str, Any] = {"dtype": str(model.dtype).removeprefix("torch."), "config": model.config.to_dict()}
    if checkpoint:
        folder = Path(checkpoint)
        info["checkpoint"] = str(folder.resolve()) if folder.is_dir() else checkpoint
        if folder.is_dir():
            files = sorted(folder.rglob("*.safetensors"))
            info["sha256"] = {str(f.relative_to(folder)): file_sha256(f) for f in files}
        info["name"] = f"HYDRA-X {folder.name or checkpoint}"
    else:
        info.update(preset=preset, seed=seed, random_weights=True)
        info["name"] = f"HYDRA-X {preset} (random, seed {seed})"
    return info
