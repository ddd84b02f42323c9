"""``hydra-x eval questions``: a unified model's answers to your own questions about images or videos, scored by
matching them with the expected answers: yes/no sets (POPE, MME's kind), multiple choice (MMBench's prompt) and
short-answer questions.

A file is JSONL, or a ``.json`` array, of records such as::

    {"id": "1", "image": "coco/1.jpg", "question": "Is there a dog?", "answer": "yes", "category": "random"}
    {"question_id": 7, "image": "COCO_val2014_000000310196.jpg", "text": "Is there a snowboard in the image?",
     "label": "yes", "category": "adversarial"}                                  # POPE's own fields
    {"image": "a.png", "question": "Which colour is the cup?", "choices": ["red", "blue"], "answer": "B"}
    {"image": "a.png", "conversations": [{"from": "human", "value": "<image>\\nWhat is it?"},
                                         {"from": "gpt", "value": "A cup."}]}  # LLaVA (or OpenAI "messages")

``video`` instead of ``image`` asks about a video (its first ``frames`` frames). Media paths are relative to the
file's folder or ``media_root``. A conversation is asked its first user turn (system turns kept) and expects its
first assistant reply. A multiple-choice record lists its options in the question as LLaVA's MMBench evaluation does
("A. red" ... "Answer with the option's letter from the given choices directly."); its answer is a letter or an
option's text.

Scoring: reply and answer are normalised (lowercase, punctuation and the articles a / an / the removed, number
words as digits); a reply is right when it equals the answer or begins with it as whole words ("Yes, there is a
dog." for "yes"); for multiple choice when it is the right letter, begins with it, or is the right option's text.
Greedy decoding. Accuracy overall and per ``category`` (where records have one); POPE's precision, recall and F1
of "yes" where every answer is yes or no.

The file is scanned as training scans conversations (:mod:`hydra_x.data.conversations`): a record that can never
be asked (no question or answer, media that do not exist, placeholders that do not match) is left out at the scan,
and media that do not decode are skipped when read; each is listed in the report with its reason.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from hydra_x.data.conversations import (
    ConversationIndex,
    ConversationSource,
    Record,
    RecordError,
    parse_record,
    scan_conversations,
)
from hydra_x.data.examples import PLACEHOLDER_RE
from hydra_x.data.inputs import fit_to_patches, read_clip
from hydra_x.data.media import MediaError, read_image
from hydra_x.errors import InputError
from hydra_x.eval.report import file_eval_report, strict_json
from hydra_x.eval.shapes import normalise_answer, wilson_interval

REPORT_FORMAT = "hydra-x-questions-report"
QUESTION_FIELDS, ANSWER_FIELDS = ("question", "text"), ("answer", "label")  # ours, POPE's
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
CHOICE_PROMPT = "Answer with the option's letter from the given choices directly."
_ARTICLES = re.compile(r"\b(a|an|the)\b")


@dataclass(frozen=True)
class QuestionRecord(Record):
    """A record to ask: the conversation up to its first user turn, the expected answer, and its options and
    category (if any)."""

    answer: str = ""
    choices: tuple[str, ...] = ()
    category: str | None = None


def _first_of(obj: dict, names: tuple[str, ...]) -> Any:
    return next((obj[n] for n in names if n in obj), None)


def parse_question_record(obj: object, key: str, root: Path) -> QuestionRecord:
    """A record as a :class:`QuestionRecord`, or RecordError saying why it can never be asked."""
    if not isinstance(obj, dict):
        raise RecordError("bad_record", f"not a JSON object but {type(obj).__name__}")
    choices: tuple[str, ...] = ()
    if "conversations" in obj or "messages" in obj:
        base = parse_record(obj, key, root)
        first_user = next(i for i, m in enumerate(base.messages) if m["role"] == "user")
        answer = next(m["content"] for m in base.messages[first_user:] if m["role"] == "assistant")
        messages = base.messages[: first_user + 1]
        if len(base.media) != sum(len(PLACEHOLDER_RE.findall(m["content"])) for m in messages):
            raise RecordError("placeholder_mismatch", "media placed after the first user turn: nothing asks about them")
    else:
        question, answer = _first_of(obj, QUESTION_FIELDS), _first_of(obj, ANSWER_FIELDS)
        if isinstance(answer, int | float) and not isinstance(answer, bool):
            answer = f"{answer:g}"  # a count given as a number
        if not isinstance(question, str) or not question.strip():
            raise RecordError("bad_record", 'no question ("question" or POPE\'s "text")')
        if not isinstance(answer, str) or not answer.strip():
            raise RecordError("bad_record", 'no answer ("answer" or POPE\'s "label")')
        raw_choices = obj.get("choices", [])
        if not isinstance(raw_choices, list) or not all(isinstance(c, str) and c for c in raw_choices):
            raise RecordError("bad_record", f'"choices" must be a list of texts, got {raw_choices!r}')
        choices = tuple(raw_choices)
        if choices and _choice_index(answer, choices) is None:
            raise RecordError("bad_record", f"the answer {answer!r} is neither an option's letter nor its text")
        if len(choices) > len(LETTERS):
            raise RecordError("bad_record", f"{len(choices)} options: at most {len(LETTERS)}")
        kind = "video" if "video" in obj else "image"
        placeholder = f"<{kind}>"
        if choices:
            options = "\n".join(f"{LETTERS[i]}. {c}" for i, c in enumerate(choices))
            question = f"{question}\n{options}\n{CHOICE_PROMPT}"
        text = question if placeholder in question else f"{placeholder}\n{question}"
        turns = [{"from": "human", "value": text}, {"from": "gpt", "value": answer}]
        base = parse_record({kind: obj.get(kind), "conversations": turns}, key, root)
        messages = base.messages[:1]
    if len(base.media) != 1:
        raise RecordError("bad_record", f"{len(base.media)} images or videos: a question here asks about one")
    category = obj.get("category")
    return QuestionRecord(
        key, base.task, messages, base.media, answer=answer, choices=choices,
        category=None if category is None else str(category),
    )  # fmt: skip


def normalise_reply(text: str) -> str:
    """Lowercase, punctuation and articles removed, whitespace collapsed, number words as digits."""
    return " ".join(_ARTICLES.sub(" ", normalise_answer(text)).split())


def _choice_index(answer: str, choices: tuple[str, ...]) -> int | None:
    """The option an answer names: its letter ("B", "b.") or its text."""
    letter = normalise_answer(answer)  # articles kept: "A" is a letter here
    letters = [L.lower() for L in LETTERS[: len(choices)]]
    if letter in letters:
        return letters.index(letter)
    texts = [normalise_reply(c) for c in choices]
    text = normalise_reply(answer)
    return texts.index(text) if text in texts else None


def reply_correct(reply: str, answer: str, choices: tuple[str, ...] = ()) -> bool:
    """Whether ``reply`` gives ``answer`` (see the module docstring)."""
    if choices:
        right = _choice_index(answer, choices)
        letter, said = LETTERS[right].lower(), normalise_answer(reply)
        return (
            said == letter or said.startswith(letter + " ") or normalise_reply(reply) == normalise_reply(choices[right])
        )
    said, expected = normalise_reply(reply), normalise_reply(answer)
    return bool(expected) and (said == expected or said.startswith(expected + " "))


@dataclass(frozen=True)
class AnswerItem:
    key: str  # "file.jsonl:17 (id)"
    question: str
    answer: str
    reply: str
    correct: bool
    category: str | None


def yes_no_scores(items: list[AnswerItem]) -> dict[str, float] | None:
    """POPE's figures of "yes" where every expected answer is yes or no: precision, recall, F1 and the share of
    replies that say yes; None otherwise."""
    truth = [normalise_reply(i.answer) for i in items]
    if not items or not set(truth) <= {"yes", "no"}:
        return None
    said_yes = [normalise_reply(i.reply).split()[:1] == ["yes"] for i in items]
    tp = sum(s and t == "yes" for s, t in zip(said_yes, truth))
    precision = tp / sum(said_yes) if any(said_yes) else 0.0
    recall = tp / truth.count("yes") if "yes" in truth else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "yes_ratio": sum(said_yes) / len(items)}


def scan_question_file(path: str | Path, media_root: str | Path | None = None) -> ConversationIndex:
    """The file's usable records and those left out, scanned once: a caller can check a file before it loads a
    model (DataSourceError for a file with no usable record)."""
    return scan_conversations(path, media_root, parse_question_record, "questions")


def evaluate_question_file(
    chat: Callable[..., str],
    path: str | Path | ConversationIndex,
    *,
    patch: int,
    media_root: str | Path | None = None,
    size: int = 256,
    frames: int = 17,
    limit: int | None = None,
    max_new_tokens: int = 16,
    progress: Callable[[str], None] = lambda _: None,
) -> dict[str, Any]:
    """Ask and score the file's records in file order: the report's "summary", "items" and "skipped".
    ``chat(messages, image=..., video=..., max_new_tokens=...)`` is e.g. ``HydraX.chat``; images and videos are
    resized to a short side of ``size`` and centre-cropped to the ``patch`` grid, as ``hydra-x chat`` reads them."""
    index = path if isinstance(path, ConversationIndex) else scan_question_file(path, media_root)
    reader = ConversationSource(index, 0, 0, size, frames, 1)
    skipped = [{"record": key, "reason": reason} for key, reason in index.skipped]
    positions = sorted((tuple(p) for ps in index.positions.values() for p in ps.tolist()), key=lambda p: p[1])
    positions = positions[:limit]
    items: list[AnswerItem] = []
    for pos, where in positions:
        try:
            record = reader.record(pos, where)
        except MediaError as err:  # the file changed since the scan
            skipped.append({"record": str(err.path), "reason": err.problem})
            continue
        ((kind, media_path),) = record.media
        try:
            pixels = read_image(media_path) if kind == "image" else read_clip(media_path, frames)
        except MediaError as err:  # does not decode
            skipped.append({"record": record.key, "reason": f"{err.path}: {err.problem}"})
            continue
        except InputError as err:  # a video shorter than the frames asked
            skipped.append({"record": record.key, "reason": str(err)})
            continue
        pixels = fit_to_patches(pixels, size, patch)
        reply = chat(record.messages, **{kind: pixels}, max_new_tokens=max_new_tokens)
        question = next(m["content"] for m in record.messages if m["role"] == "user")
        correct = reply_correct(reply, record.answer, record.choices)
        items.append(AnswerItem(record.key, question, record.answer, reply, correct, record.category))
        progress(f"answered {len(items)} of {len(positions)}")
    if not items:
        raise ValueError(f"questions:{index.path}: no record could be asked ({len(skipped)} skipped)")
    return {"summary": summarise(items, len(skipped)), "items": [asdict(i) for i in items], "skipped": skipped}


def summarise(items: list[AnswerItem], skipped: int) -> dict[str, Any]:
    categories = sorted({i.category for i in items if i.category is not None})
    by_category = {
        c: {"items": len(ok := [i.correct for i in items if i.category == c]), "accuracy": sum(ok) / len(ok)}
        for c in categories
    }
    return {
        "items": len(items),
        "skipped": skipped,
        "accuracy": sum(i.correct for i in items) / len(items),
        "ci95": wilson_interval(sum(i.correct for i in items), len(items)),
        "by_category": by_category,
        "yes_no": yes_no_scores(items),
    }


def build_report(result: dict[str, Any], data: dict[str, Any], settings: dict, model: dict, device) -> dict[str, Any]:
    return file_eval_report(REPORT_FORMAT, result, data, settings, model, device, {"markdown": "report.md"})


def markdown(report: dict[str, Any]) -> str:
    s, name = report["summary"], report["model"].get("name", "HYDRA-X")
    settings = ", ".join(f"{k} {v}" for k, v in report["settings"].items())
    lo, hi = s["ci95"]
    lines = [
        f"# Questions of `{report['data']['path']}`: {name}\n",
        f"{s['items']} records asked, {s['skipped']} skipped; {settings}.\n",
        "| category | questions | accuracy |",
        "|---|---:|---:|",
        f"| all | {s['items']} | {100 * s['accuracy']:.1f}% (95% interval {100 * lo:.1f}-{100 * hi:.1f}%) |",
    ]
    lines += [f"| {c} | {v['items']} | {100 * v['accuracy']:.1f}% |" for c, v in s["by_category"].items()]
    if s["yes_no"]:
        y = s["yes_no"]
        lines.append(
            f'\nYes / no (POPE\'s figures of "yes"): precision {100 * y["precision"]:.1f}%, recall '
            f"{100 * y['recall']:.1f}%, F1 {100 * y['f1']:.1f}%, replies saying yes {100 * y['yes_ratio']:.1f}%."
        )
    wrong = [i for i in report["items"] if not i["correct"]][:10]
    if wrong:
        lines += ["\n## First wrong answers\n", "| record | expected | reply |", "|---|---|---|"]
        lines += [f"| `{i['key']}` | {_cell(i['answer'])} | {_cell(i['reply'])} |" for i in wrong]
    if report["skipped"]:
        lines.append("\n## Skipped records\n")
        lines += [f"- `{x['record']}`: {x['reason']}" for x in report["skipped"]]
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")[:80]


def summary_line(report: dict[str, Any]) -> str:
    s = report["summary"]
    line = f"{s['items']} questions: accuracy {100 * s['accuracy']:.1f}%"
    if s["yes_no"]:
        line += f" (yes / no F1 {100 * s['yes_no']['f1']:.1f}%)"
    return line + (f", {s['skipped']} skipped" if s["skipped"] else "")


def write_outputs(out: Path, report: dict[str, Any]) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "report.json", out / "report.md"]
    paths[0].write_text(json.dumps(strict_json(report), indent=2, allow_nan=False) + "\n")
    paths[1].write_text(markdown(report))
    return paths
