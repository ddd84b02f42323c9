"""``hydra-x eval questions``: replies are matched as the module says (yes/no, short answers, multiple choice), an
oracle scores 1 and a model that always says no scores the share of no's with POPE's figures, every format is read
and asked in file order with its own picture, and bad records are listed rather than dropped."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from hydra_x.cli import main as hydra_main
from hydra_x.data.media import write_image
from hydra_x.data.video import write_video
from hydra_x.eval.questions import evaluate_question_file, reply_correct
from tests.data.unified_data import corrupt_png

PATCH = 8


@pytest.mark.parametrize(
    "reply, answer, right",
    [
        ("Yes, there is a dog.", "yes", True),
        ("yes", "Yes", True),
        ("No.", "yes", False),
        ("yesterday", "yes", False),  # whole words only
        ("The cup.", "cup", True),  # articles do not count
        ("Three", "3", True),
        ("3 cups", "three", True),
        ("", "yes", False),
        ("blue", "red", False),
    ],
)
def test_a_reply_is_right_when_it_is_or_begins_with_the_answer(reply, answer, right):
    assert reply_correct(reply, answer) is right


@pytest.mark.parametrize(
    "reply, answer, right",
    [
        ("A", "A", True),  # "A" is a letter here, not an article
        ("A.", "red", True),
        ("B. blue", "B", True),
        ("blue", "b", True),
        ("The answer is B", "B", False),  # the letter must come first
        ("A", "B", False),
        ("red", "B", False),
    ],
)
def test_a_multiple_choice_reply_is_right_when_it_gives_the_right_letter_or_option(reply, answer, right):
    assert reply_correct(reply, answer, ("red", "blue", "green")) is right


def _picture(colour: tuple[float, float, float], height: int = 40, width: int = 56) -> torch.Tensor:
    return torch.tensor(colour).view(3, 1, 1).expand(3, height, width).clone()


COLOURS = {"red": (1.0, -1.0, -1.0), "green": (-1.0, 1.0, -1.0), "blue": (-1.0, -1.0, 1.0)}


@pytest.fixture(scope="module")
def questions(tmp_path_factory) -> Path:
    """A file of every format, with a corrupt image, a truncated video and records that can never be asked."""
    folder = tmp_path_factory.mktemp("questions")
    for name, colour in COLOURS.items():
        write_image(folder / f"{name}.png", _picture(colour))
    clip = torch.tensor(COLOURS["green"]).view(3, 1, 1, 1).expand(3, 9, 40, 56).clone()
    write_video(folder / "green.mp4", clip, fps=8)
    (folder / "cut.mp4").write_bytes((folder / "green.mp4").read_bytes()[:300])
    write_video(folder / "three.mp4", clip[:, :3], fps=8)
    (folder / "bad.png").write_bytes(corrupt_png())
    records = [
        {"id": "ours", "image": "red.png", "question": "Is it red?", "answer": "yes", "category": "colour"},
        {"question_id": 2, "image": "blue.png", "text": "Is it red?", "label": "no", "category": "colour"},
        {"id": "corrupt", "image": "bad.png", "question": "Is it red?", "answer": "no"},
        {"id": "video", "video": "green.mp4", "question": "Is it green?", "answer": "yes", "category": "video"},
        {"id": "truncated", "video": "cut.mp4", "question": "Is it green?", "answer": "yes"},
        {"id": "short", "video": "three.mp4", "question": "Is it green?", "answer": "yes"},
        {"id": "no_answer", "image": "red.png", "question": "Is it red?"},
        {"id": "missing", "image": "nowhere.png", "question": "Is it red?", "answer": "yes"},
        {"id": "two", "image": ["red.png", "blue.png"], "question": "<image><image> Same?", "answer": "no"},
        {"id": "bad_choice", "image": "red.png", "question": "Colour?", "choices": ["red", "blue"], "answer": "C"},
        {"id": "llava", "image": "green.png", "conversations": [
            {"from": "system", "value": "Answer in one word."},
            {"from": "human", "value": "<image>\nIs it green?"}, {"from": "gpt", "value": "Yes."},
            {"from": "human", "value": "And red?"}, {"from": "gpt", "value": "No."}]},
        {"id": "late", "image": "red.png", "conversations": [
            {"from": "human", "value": "Hello?"}, {"from": "gpt", "value": "Hi."},
            {"from": "human", "value": "<image>\nIs it red?"}, {"from": "gpt", "value": "Yes."}]},
    ]  # fmt: skip
    path = folder / "questions.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    return path


def _truth(messages, image=None, video=None) -> str:
    """What the record's picture shows: its colour name (a clip: its first frame's)."""
    pixels = image if image is not None else video[:, 0]
    mean = pixels.float().mean(dim=(1, 2))
    return min(COLOURS, key=lambda c: float((mean - torch.tensor(COLOURS[c])).abs().sum()))


def oracle(messages, *, max_new_tokens, image=None, video=None) -> str:
    question = messages[-1]["content"]
    asked = next(c for c in COLOURS if c in question)
    return "Yes." if _truth(messages, image, video) == asked else "No."


def test_an_oracle_scores_1_and_every_format_is_asked_in_file_order(questions):
    seen = []

    def chat(messages, *, max_new_tokens, image=None, video=None):
        pixels = image if image is not None else video
        seen.append((messages, None if image is None else tuple(image.shape), None if video is None else video.shape))
        assert pixels.shape[-2] == 32 and pixels.shape[-1] % PATCH == 0  # short side 32, cropped to the patch grid
        return oracle(messages, max_new_tokens=max_new_tokens, image=image, video=video)

    result = evaluate_question_file(chat, questions, patch=PATCH, size=32, frames=5)
    s = result["summary"]
    assert s["items"] == 4 and s["accuracy"] == 1.0 and s["ci95"][1] == 1.0 and 0.4 < s["ci95"][0] < 0.6
    keys = [i["key"].rsplit(":", 1)[-1] for i in result["items"]]  # line (id)
    assert keys == ["1 (ours)", "2", "4 (video)", "11 (llava)"]
    assert s["by_category"] == {"colour": {"items": 2, "accuracy": 1.0}, "video": {"items": 1, "accuracy": 1.0}}
    assert seen[2][2][:2] == (3, 5)  # the clip's first 5 frames
    assert [m["role"] for m in seen[3][0]] == ["system", "user"]  # the first user turn, its system turn kept
    assert seen[0][0] == [{"role": "user", "content": "<image>\nIs it red?"}]
    reasons = {x["record"].split(" (")[-1].rstrip(")"): x["reason"] for x in result["skipped"]}
    assert set(reasons) == {"corrupt", "truncated", "short", "no_answer", "missing", "two", "bad_choice", "late"}
    assert "no answer" in reasons["no_answer"] and "no such file" in reasons["missing"]
    assert "2 images or videos" in reasons["two"] and "neither an option" in reasons["bad_choice"]
    assert "after the first user turn" in reasons["late"] and "cut.mp4" in reasons["truncated"]
    assert "3 frames, fewer than the 5" in reasons["short"] and "bad.png" in reasons["corrupt"]


def test_a_model_that_always_says_no_scores_the_share_of_nos_with_popes_figures(questions):
    result = evaluate_question_file(lambda *a, **k: "No", questions, patch=PATCH, size=32, frames=5)
    s = result["summary"]
    assert s["accuracy"] == pytest.approx(1 / 4)  # one of the four answers is no
    assert s["yes_no"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "yes_ratio": 0.0}
    said_yes = evaluate_question_file(lambda *a, **k: "yes it is", questions, patch=PATCH, size=32, frames=5)
    y = said_yes["summary"]["yes_no"]
    assert y["precision"] == pytest.approx(3 / 4) and y["recall"] == 1.0 and y["yes_ratio"] == 1.0
    assert y["f1"] == pytest.approx(2 * 0.75 / 1.75)


def test_multiple_choice_options_are_listed_in_the_prompt(tmp_path):
    write_image(tmp_path / "red.png", _picture(COLOURS["red"]))
    record = {"image": "red.png", "question": "Which colour?", "choices": ["blue", "red"], "answer": "red"}
    (tmp_path / "q.jsonl").write_text(json.dumps(record) + "\n")
    prompts = []

    def chat(messages, **kwargs):
        prompts.append(messages[-1]["content"])
        return "B"

    result = evaluate_question_file(chat, tmp_path / "q.jsonl", patch=PATCH, size=32)
    assert result["summary"]["accuracy"] == 1.0 and result["summary"]["yes_no"] is None
    assert prompts == ["<image>\nWhich colour?\nA. blue\nB. red\nAnswer with the option's letter from the given "
                       "choices directly."]  # fmt: skip


def test_the_cli_asks_a_model_and_writes_its_reports(questions, tmp_path, capsys):
    out = tmp_path / "out"
    args = ["eval", "questions", "--preset", "tiny", "--data", str(questions), "--out", str(out), "--size", "32"]
    assert hydra_main([*args, "--frames", "5", "--limit", "2", "--max-new-tokens", "4"]) == 0
    printed = capsys.readouterr().out
    assert "2 questions: accuracy" in printed and "report.md" in printed
    report = json.loads((out / "report.json").read_text())
    assert report["format"] == "hydra-x-questions-report" and report["summary"]["items"] == 2
    assert report["settings"] == {"size": 32, "frames": 5, "max_new_tokens": 4, "decoding": "greedy"}
    assert all(isinstance(i["reply"], str) for i in report["items"])
    assert "| all | 2 |" in (out / "report.md").read_text() and "(95% interval " in (out / "report.md").read_text()
    assert hydra_main([*args, "--max-new-tokens", "0"]) == 2
    assert "--max-new-tokens must be at least 1" in capsys.readouterr().err
    (tmp_path / "none.jsonl").write_text(json.dumps({"id": "x", "image": "nowhere.png", "question": "?"}) + "\n")
    assert hydra_main(["eval", "questions", "--preset", "tiny", "--data", str(tmp_path / "none.jsonl"), "--out",
                       str(out)]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert "hydra-x eval: error: " in err and "no usable record" in err and "no answer" in err, err
    assert "no trained weights" not in err  # refused before any model was loaded


def test_a_file_of_the_shapes_worlds_questions_gets_the_replies_eval_shapes_gets(tmp_path):
    # The same model, pictures and questions through the file (PNG, read and fitted as `hydra-x chat` reads) and
    # through the shapes scorer's own path (rendered in memory): the same replies, hence the same verdicts.
    from hydra_x.data.shapes import render_image
    from hydra_x.eval.prompts import prompt_set
    from hydra_x.eval.shapes_run import MAX_NEW_TOKENS, answer_questions
    from hydra_x.unified.model import HydraX

    model = HydraX.from_preset("tiny", seed=0).eval()
    items = prompt_set().limited(3)
    records = []
    for k, item in enumerate(items.questions):
        write_image(tmp_path / f"{k}.png", render_image(item.scene, 32, 32))
        q = item.question
        records.append({"id": item.id, "image": f"{k}.png", "question": q.text, "answer": q.answer})
    (tmp_path / "q.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n")
    reference = answer_questions(model, items, 32)
    patch = model.config.tokenizer.patch_size
    result = evaluate_question_file(
        model.chat, tmp_path / "q.jsonl", patch=patch, size=32, max_new_tokens=MAX_NEW_TOKENS
    )
    assert len(result["items"]) == len(reference) == 9
    assert len({r.reply for r in reference}) > 1  # replies that depend on the picture
    for ours, theirs in zip(result["items"], reference, strict=True):
        assert (ours["reply"], ours["correct"]) == (theirs.reply, theirs.correct)


def test_a_numeric_answer_is_read_as_its_number(tmp_path):
    write_image(tmp_path / "red.png", _picture(COLOURS["red"]))
    records = [{"image": "red.png", "question": "How many?", "answer": 3}, {"image": "red.png", "question": "?",
               "answer": True}]  # fmt: skip
    (tmp_path / "q.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n")
    result = evaluate_question_file(lambda *a, **k: "Three.", tmp_path / "q.jsonl", patch=PATCH, size=32)
    assert result["summary"]["accuracy"] == 1.0 and result["items"][0]["answer"] == "3"
    assert len(result["skipped"]) == 1 and "no answer" in result["skipped"][0]["reason"]  # a boolean is no answer
