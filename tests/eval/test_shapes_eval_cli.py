"""`hydra-x eval shapes` and evaluate_shapes end to end on the tiny preset (random weights: the scores are near 0,
so only files, keys and ranges are checked), the editing path with editors that are perfect or do nothing, and
the one-line errors (exit 2)."""

from __future__ import annotations

import json
import math

import pytest
import torch

from hydra_x.cli import main as hydra_main
from hydra_x.cli.eval import main
from hydra_x.data.shapes import BACKGROUND, render_image
from hydra_x.errors import InputError
from hydra_x.eval.prompts import prompt_set
from hydra_x.eval.shapes import wilson_interval
from hydra_x.eval.shapes_report import build_report, markdown, summary_line
from hydra_x.eval.shapes_run import evaluate_shapes, tokenizer_round_trip
from hydra_x.unified.model import HydraX

FAST = dict(size=64, frames=5, steps=2, guidance=3.0, seed=0, limit=1)


@pytest.fixture(scope="module")
def model() -> HydraX:
    return HydraX.from_preset("tiny", seed=0).eval()


class View:
    """The tiny model with its ``edit`` replaced (or hidden: None) and its config overridden; the rest forwarded."""

    def __init__(self, model: HydraX, edit=None, **config) -> None:
        self._model, self._edit, self.config = model, edit, model.config.replace(**config)

    def __getattr__(self, name: str):
        if name == "edit":
            if self._edit is None:
                raise AttributeError(name)
            return self._edit
        return getattr(self._model, name)


class Editor:
    """An editor that returns the truth (``perfect``) or its input unchanged, and records how it was called."""

    def __init__(self, size: int, perfect: bool) -> None:
        self.perfect, self.calls = perfect, []
        self.targets = {
            (e.sample.instruction, render_image(e.sample.source, size, size).numpy().tobytes()): e.sample.target
            for e in prompt_set().edits
        }

    def __call__(self, image, instruction: str, *, steps, guidance, sampler, shift, seed, start):
        self.calls.append((instruction, steps, guidance, sampler, shift, seed, start))
        target = self.targets[(instruction, image.numpy().tobytes())]  # the source it was given, exactly
        return render_image(target, *image.shape[-2:]) if self.perfect else image.clone()


def _in_unit(value) -> bool:
    return value is None or 0.0 <= value <= 1.0


def test_evaluate_scores_perfect_and_idle_editors_and_says_what_is_missing(model):
    perfect = Editor(64, perfect=True)
    result = evaluate_shapes(View(model, perfect), prompt_set(), **FAST)
    s = result.summary()
    assert s["editing"] == {
        "available": True,
        "success": 1.0,
        "by_op": dict.fromkeys(("recolour", "remove", "add", "move", "resize"), 1.0),
        "success_ci95": wilson_interval(5, 5),
        "psnr": 100.0,
        "ssim": 1.0,
        "n": 5,
    }
    # steps, guidance, sampler, shift, a seed per item
    assert [c[1:] for c in perfect.calls] == [(2, 3.0, "euler", None, k, 1.0) for k in range(5)]
    assert all(e.psnr == math.inf for e in result.editing)
    assert len(result.generation) == 6 and len(result.understanding) == 3 and len(result.video) == 1
    assert [len(row) for row in result.pictures["editing"]] == [1] * 5
    assert all(len(p.images) == 3 for row in result.pictures["editing"] for p in row)  # source | output | truth
    idle = evaluate_shapes(View(model, Editor(64, perfect=False), video=False), prompt_set(), **FAST).summary()
    assert idle["editing"]["success"] == 0.0 and idle["editing"]["psnr"] == 100.0  # consistent, but not edited
    assert idle["video"] == {"available": False, "reason": "the model is image-only (config.video is False)"}
    none = evaluate_shapes(View(model, None), prompt_set(), **FAST)
    assert none.summary()["editing"] == {"available": False, "reason": "not available: the model has no edit method"}
    report = build_report(none, {"name": "tiny"}, torch.device("cpu"))
    assert "editing n/a" in summary_line(report) and "not available: the model has no edit method" in markdown(report)


class WrongColours(View):
    """The tiny model, but its chat answers every colour question with another object's colour in the picture when
    there is one (else "grey"), and every other question right: a model that reads colours and cannot bind them."""

    def __init__(self, model: HydraX, size: int) -> None:
        super().__init__(model)
        self.scenes = {render_image(q.scene, size, size).numpy().tobytes(): q for q in prompt_set().questions}

    def chat(self, text: str, *, image, max_new_tokens: int) -> str:
        item = self.scenes[image.numpy().tobytes()]  # the picture of the question it was asked, exactly
        assert text == item.question.text
        if item.kind != "colour":
            return item.question.answer
        others = sorted({o.colour for o in item.scene.objects} - {item.question.answer})
        return others[0] if others else "grey"


def test_wrong_colour_answers_are_read_against_the_asked_picture(model):
    result = evaluate_shapes(WrongColours(model, 64), prompt_set(), **{**FAST, "limit": 20})
    colour = [(r, q) for r, q in zip(result.understanding, prompt_set().limited(20).questions) if r.kind == "colour"]
    binding = sum(len({o.colour for o in q.scene.objects}) > 1 for _, q in colour)
    assert 0 < binding < len(colour) == 20  # both kinds of wrong answer occur in the first 20 colour questions
    assert [r.names_another_object for r, _ in colour] == [
        len({o.colour for o in q.scene.objects}) > 1 for _, q in colour
    ]
    u = result.summary()["understanding"]
    assert u["by_kind"] == {"colour": 0.0, "count": 1.0, "position": 1.0}
    assert u["colour_errors"] == {"wrong": 20, "another_object": binding}
    counts = u["count_answers"]  # every count right: each answer as often replied as asked
    assert sum(v["n"] for v in counts["by_answer"].values()) == 20
    assert all(v["correct"] == v["n"] for v in counts["by_answer"].values())
    assert counts["replies"] == {a: v["n"] for a, v in counts["by_answer"].items()}
    line = next(
        x for x in markdown(build_report(result, {"name": "t"}, torch.device("cpu"))).splitlines() if "Count" in x
    )
    assert line.startswith("Count questions by their answer (right / asked): 0: ") and '; the replies: "1" ' in line


def test_questions_are_asked_at_the_models_reading_size_or_the_one_given(model):
    # WrongColours finds each question by its picture's bytes: asked at another size than it expects, it fails.
    reads_96 = WrongColours(model, 96)
    reads_96.config = model.config.replace(understanding_image_size=96)
    result = evaluate_shapes(reads_96, prompt_set(), **FAST)
    assert result.settings["question_size"] == 96 and result.settings["size"] == 64
    assert result.summary()["understanding"]["by_kind"]["count"] == 1.0
    report = build_report(result, {"name": "tiny"}, torch.device("cpu"))
    assert "64 px (questions 96 px), 2 euler steps" in markdown(report)
    given = evaluate_shapes(WrongColours(model, 128), prompt_set(), **FAST, question_size=128)  # the model's: 64
    assert given.settings["question_size"] == 128
    plain = evaluate_shapes(WrongColours(model, 64), prompt_set(), **FAST)
    plain_report = build_report(plain, {"name": "tiny"}, torch.device("cpu"))
    assert plain.settings["question_size"] == 64 and "(questions" not in markdown(plain_report)
    with pytest.raises(InputError, match="multiples of the patch size 16"):
        evaluate_shapes(model, prompt_set(), **FAST, question_size=40)


def test_the_sampler_and_its_time_shift_reach_every_task():
    model = HydraX.from_preset("tiny", seed=0).eval()
    with torch.no_grad():  # a velocity that is not zero (adaLN-Zero starts the head at zero), so times matter
        torch.nn.init.normal_(model.flow_head.out.weight, std=0.5)
    editor = Editor(64, perfect=False)
    shifted = evaluate_shapes(View(model, editor), prompt_set(), **FAST, sampler="heun", shift=3.0, edit_start=0.6)
    assert {c[3:5] + c[6:] for c in editor.calls} == {("heun", 3.0, 0.6)}  # the edit start reaches edits alone
    assert shifted.settings["sampler"] == "heun" and shifted.settings["shift"] == 3.0
    assert shifted.settings["edit_start"] == 0.6
    assert "edits from the source noised to t = 0.6" in markdown(build_report(shifted, {"name": "m"}, model.device))
    plain = evaluate_shapes(model, prompt_set(), **FAST, sampler="heun")
    # two Heun steps on the grid 1 > 0.75 > 0 instead of 1 > 0.5 > 0: other images and clips, same questions
    for task in ("generation", "video"):
        assert not torch.equal(shifted.pictures[task][0][0].images[-1], plain.pictures[task][0][0].images[-1])
    assert [a.reply for a in shifted.understanding] == [a.reply for a in plain.understanding]


def test_edits_take_their_own_guidance_and_the_rest_the_guidance(model, monkeypatch):
    editor = Editor(64, perfect=False)
    import hydra_x.eval.shapes_run as shapes_run

    seen = []
    generate = shapes_run.generate_latents

    def recording(*args, **kwargs):
        seen.append((args[2], kwargs["guidance"]))
        return generate(*args, **kwargs)

    monkeypatch.setattr(shapes_run, "generate_latents", recording)
    own = evaluate_shapes(View(model, editor), prompt_set(), **{**FAST, "guidance": 6.0}, edit_guidance=3.0)
    assert set(seen) == {("image", 6.0), ("video", 6.0)}
    assert {c[2] for c in editor.calls} == {3.0}  # edits
    assert own.settings["guidance"] == 6.0 and own.settings["edit_guidance"] == 3.0
    assert ", guidance 6.0 (edits 3.0), seed 0" in markdown(build_report(own, {"name": "m"}, model.device))
    editor.calls.clear()
    same = evaluate_shapes(View(model, editor), prompt_set(), **{**FAST, "guidance": 6.0})  # default: one scale
    assert {c[2] for c in editor.calls} == {6.0} and same.settings["edit_guidance"] == 6.0
    assert ", guidance 6.0, seed 0" in markdown(build_report(same, {"name": "m"}, model.device))


class PixelTokenizer:
    """The tiny model's tokenizer, except that the pixel "latents" RoundTripView.encode makes (3 channels) decode to
    themselves (``blank``: to the background), so that the round trip's scores are known: those of the truth, or of
    an empty picture. The model's own samples (64 channels) decode as ever."""

    def __init__(self, real, blank: bool) -> None:
        self.real, self.blank, self.config = real, blank, real.config

    def _dtype(self) -> torch.dtype:
        return self.real._dtype()

    def decode(self, z: torch.Tensor, *, video: bool) -> torch.Tensor:
        if z.shape[1] != 3:
            return self.real.decode(z, video=video)
        x = torch.full_like(z, -1.0) + torch.tensor(BACKGROUND).view(1, 3, 1, 1, 1) / 127.5 if self.blank else z
        return x if video else x[:, :, 0]


class RoundTripView(View):
    def __init__(self, model: HydraX, blank: bool) -> None:
        super().__init__(model, Editor(64, perfect=False))
        self.tokenizer = PixelTokenizer(model.tokenizer, blank)

    def encode(self, pixels: torch.Tensor) -> torch.Tensor:  # (B, 3, H, W) -> (B, 3, 1, H, W); clips as they are
        return pixels[:, :, None] if pixels.dim() == 4 else pixels


def test_several_samples_a_prompt_are_the_single_samples_of_the_following_seeds(model, monkeypatch):
    import hydra_x.eval.shapes_run as shapes_run

    seeds: list[int] = []
    generate = shapes_run.generate_latents

    def recorded(*args, seed, **kwargs):
        seeds.append(seed)
        return generate(*args, seed=seed, **kwargs)

    monkeypatch.setattr(shapes_run, "generate_latents", recorded)
    image_only = View(model, None, video=False)
    options = {**FAST, "round_trip": False}
    two = evaluate_shapes(image_only, prompt_set(), **options, samples_per_prompt=2)
    two_seeds, seeds[:] = list(seeds), []
    singles = [evaluate_shapes(image_only, prompt_set(), **{**options, "seed": s}) for s in (0, 1)]
    assert sorted(two_seeds) == sorted(seeds) and len(set(seeds)) == 12  # 6 categories x 2 samples
    read = lambda scores: [(g.id, g.found, g.reason) for g in scores]  # noqa: E731
    for k, single in enumerate(singles):
        assert read(g for g in two.generation if g.sample == k) == read(single.generation)
    summary = two.summary()["generation"]
    assert summary["n"] == 12 and summary["prompts"] == 6 and summary["samples_per_prompt"] == 2
    assert [len(row) for row in two.pictures["generation"]] == [1] * 6  # the grids show the first sample
    assert two.settings["samples_per_prompt"] == 2
    text = markdown(build_report(two, {"name": "tiny"}, torch.device("cpu")))
    assert ", seed 0, 2 samples a prompt," in text and "12 images: 2 samples of each of 6 prompts" in text
    every, some = summary["prompts_all_samples_correct"], summary["prompts_any_sample_correct"]
    assert f"in every sample: {100 * every:.1f}%; in at least one: {100 * some:.1f}%." in text
    with pytest.raises(ValueError, match="samples_per_prompt must be at least 1"):
        evaluate_shapes(image_only, prompt_set(), **options, samples_per_prompt=0)


def test_the_tokenizer_round_trip_scores_reconstructions_of_the_truth(model):
    exact = evaluate_shapes(RoundTripView(model, blank=False), prompt_set(), **FAST)
    rt = exact.summary()["round_trip"]
    assert rt["generation"]["overall"] == 1.0 and rt["generation"]["n"] == 6
    assert rt["video"]["motion_accuracy"] == 1.0 and rt["video"]["presence"] == 1.0
    assert rt["editing"]["success"] == 1.0 and rt["editing"]["psnr"] == 100.0
    assert exact.summary()["editing"]["success"] == 0.0  # the model's own edits (unchanged sources) are scored apart
    blanked = evaluate_shapes(RoundTripView(model, blank=True), prompt_set(), **FAST)
    blank = blanked.summary()["round_trip"]
    assert blank["generation"]["overall"] == 0.0 and blank["video"]["presence"] == 0.0
    assert blank["editing"]["success"] < 1.0
    report = build_report(exact, {"name": "pixels"}, torch.device("cpu"))
    text = markdown(report)
    assert "| **overall** (mean of categories) | 6 | 0.0 (95% interval 0.0-39.0) | 0.0 | 100.0 |" in text
    items = report["items"]["round_trip"]  # each reconstruction's reading, by the generation items' ids
    ids = [i["id"] for i in report["items"]["generation"]]
    assert [i["id"] for i in items["generation"]] == ids and all(i["correct"] for i in items["generation"])
    assert len(items["video"]) == len(report["items"]["video"]) and len(items["editing"]) == 5
    assert "Failed round trips" not in text
    empty = build_report(blanked, {"name": "b"}, torch.device("cpu"))
    lost = empty["items"]["round_trip"]["generation"]
    assert [i["id"] for i in lost] == ids and not any(i["correct"] for i in lost) and all(i["reason"] for i in lost)
    assert f'- `{ids[0]}` "{lost[0]["prompt"]}": {lost[0]["reason"]}' in markdown(empty).split("Failed round trips")[1]
    assert "tokenizer round trip 1.000" in summary_line(report)
    assert "Object found, frame by frame (the tokenizer's round trip): 100.0 / 100.0 / 100.0 / 100.0 / 100.0." in text
    assert "Object found, frame by frame (generated): " in text
    off = evaluate_shapes(RoundTripView(model, blank=False), prompt_set(), **FAST, round_trip=False)
    assert off.round_trip is None
    assert "tokenizer round trip" not in markdown(build_report(off, {"name": "x"}, torch.device("cpu")))


class PixelCodec(torch.nn.Module):
    """A "tokenizer" whose latents are the pixels (``blank``: that decodes everything to the background)."""

    def __init__(self, real, blank: bool) -> None:
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(1))  # where the round trip finds the device
        self.pixels = PixelTokenizer(real, blank)
        self.config = real.config

    def _dtype(self) -> torch.dtype:
        return torch.float32

    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        return pixels[:, :, None] if pixels.dim() == 4 else pixels

    def decode(self, z: torch.Tensor, *, video: bool) -> torch.Tensor:
        return self.pixels.decode(z, video=video)


def test_a_tokenizer_alone_is_scored_by_its_round_trip(model):
    """``tokenizer_round_trip``: a tokenizer before any unified model, scored on its reconstructions of the truth."""
    items = prompt_set().limited(1)
    exact, scores = tokenizer_round_trip(PixelCodec(model.tokenizer, blank=False), items, size=64, frames=5)
    assert exact["generation"]["overall"] == 1.0 and exact["generation"]["n"] == 6
    assert exact["video"]["motion_accuracy"] == 1.0 and exact["editing"]["success"] == 1.0
    assert len(scores["editing"]) == len(items.edits)
    blank, _ = tokenizer_round_trip(PixelCodec(model.tokenizer, blank=True), items, size=64, frames=5, video=False)
    assert blank["generation"]["overall"] == 0.0 and "video" not in blank
    assert blank["editing"]["success"] < 1.0
    untrained, _ = tokenizer_round_trip(model.tokenizer, items, size=64, frames=5)  # the real encode and decode
    assert untrained["generation"]["overall"] == 0.0 and untrained["video"]["n"] == len(items.videos)


def test_sizes_the_model_cannot_take_are_refused_before_any_work(model):
    with pytest.raises(InputError, match="multiples of the patch size 16"):
        evaluate_shapes(model, prompt_set(), **{**FAST, "size": 40})
    with pytest.raises(InputError, match="1 \\+ k \\* 4 frames"):
        evaluate_shapes(model, prompt_set(), **{**FAST, "frames": 6})
    bad = View(model, lambda image, instruction, **kw: image[:, :32])
    with pytest.raises(ValueError, match=r"model.edit returned \(3, 32, 64\), expected a \(3, 64, 64\) image"):
        evaluate_shapes(bad, prompt_set(), **FAST)


def _check_outputs(
    out, report: dict, guidance: float = 3.0, edit_guidance: float = 3.0, question_size: int = 64
) -> None:
    names = ["report.json", "report.md", "generation.png", "video.png"]
    names += ["editing.png"] if report["summary"]["editing"]["available"] else []
    assert all((out / name).is_file() for name in names)
    items = prompt_set()
    assert report["format"] == "hydra-x-shapes-report" and report["prompt_set"]["version"] == "shapes-v1"
    assert report["prompt_set"]["sha256"] == items.digest() and report["prompt_set"]["generation"] == 6
    assert report["settings"] == {
        "size": 64,
        "frames": 5,
        "steps": 2,
        "guidance": guidance,
        "seed": 0,
        "limit": 1,
        "batch_size": 16,
        "samples_per_prompt": 1,
        "sampler": "euler",
        "shift": None,
        "edit_start": 1.0,
        "edit_guidance": edit_guidance,
        "question_size": question_size,
        "max_new_tokens": 16,
    }
    s = report["summary"]
    g = s["generation"]
    assert set(g["categories"]) == {"single_object", "two_object", "counting", "colors", "position", "color_attr"}
    assert all(_in_unit(c["accuracy"]) and _in_unit(c["strict_accuracy"]) for c in g["categories"].values())
    assert _in_unit(g["overall"]) and _in_unit(s["understanding"]["accuracy"]) and s["video"]["available"]
    assert _in_unit(s["video"]["motion_accuracy"]) and _in_unit(s["video"]["presence"])
    assert [i["id"] for i in report["items"]["generation"]] == [f"{c}-000" for c in g["categories"]]
    assert all(isinstance(i["reply"], str) for i in report["items"]["understanding"])
    e = s["editing"]
    assert e["available"] == hasattr(HydraX, "edit")  # the model's own edit, once it has one
    if e["available"]:
        assert _in_unit(e["success"]) and (e["psnr"] is None or e["psnr"] <= 100) and _in_unit(e["ssim"])
    text = (out / "report.md").read_text()
    assert "| **overall** (mean of categories) | 6 |" in text
    u = s["understanding"]  # a proportion with its 95% interval, in the summary and in the table
    assert u["ci95"] == wilson_interval(round(u["accuracy"] * u["n"]), u["n"]) and u["ci95"][0] <= u["accuracy"]
    assert f"| **all** ({u['n']}) | {100 * u['accuracy']:.1f} (95% interval {100 * u['ci95'][0]:.1f}-" in text


def test_the_command_on_a_random_preset_writes_the_report_and_the_grids(tmp_path, capsys):
    out = tmp_path / "eval"
    args = ["eval", "shapes", "--preset", "tiny", "--out", str(out), "--limit", "1", "--steps", "2", "--frames", "5"]
    assert hydra_main([*args, "--guidance", "6", "--edit-guidance", "3"]) == 0
    stdout, stderr = capsys.readouterr()
    line, wrote = stdout.splitlines()
    assert line.startswith("HYDRA-X tiny (random, seed 0) on shapes-v1: generation ")
    assert "(GenEval overall; tokenizer round trip 0.000), understanding " in line
    assert ", video motion " in line and ", editing " in line
    assert wrote.startswith(f"wrote {out / 'report.json'}, {out / 'report.md'}, {out / 'generation.png'}")
    assert "warning: no trained weights given" in stderr
    report = json.loads((out / "report.json").read_text())
    _check_outputs(out, report, guidance=6.0, edit_guidance=3.0)
    assert report["model"]["preset"] == "tiny" and report["model"]["random_weights"]


def test_the_command_on_a_checkpoint(tmp_path, model, capsys):
    ckpt = model.save_pretrained(tmp_path / "ckpt")
    out = tmp_path / "eval"
    args = ["shapes", "--ckpt", str(ckpt), "--out", str(out), "--limit", "1", "--steps", "2", "--frames", "5"]
    assert main([*args, "--question-size", "96"]) == 0
    assert capsys.readouterr().out.startswith("HYDRA-X ckpt on shapes-v1: generation ")
    report = json.loads((out / "report.json").read_text())
    _check_outputs(out, report, question_size=96)
    m = report["model"]
    assert m["checkpoint"] == str(ckpt.resolve()) and "preset" not in m
    assert "heads.safetensors" in m["sha256"] and all(len(h) == 64 for h in m["sha256"].values())
    assert "held-out combinations" in (out / "report.md").read_text()
    # The control set of seen combinations: its own version and digest in the report, said in the Markdown.
    seen = tmp_path / "eval-seen"
    assert main([*args[:4], str(seen), *args[5:], "--prompt-set", "shapes-v1-seen"]) == 0
    assert capsys.readouterr().out.startswith("HYDRA-X ckpt on shapes-v1-seen: generation ")
    seen_report = json.loads((seen / "report.json").read_text())
    p = seen_report["prompt_set"]
    assert p["version"] == "shapes-v1-seen" and p["sha256"] != report["prompt_set"]["sha256"]
    assert "seen combinations (the training split's, new scenes)" in (seen / "report.md").read_text()
    assert "understanding_control" not in report["summary"] and report["items"]["understanding_control"] == []
    # --seen-questions: the control set's questions answered beside the held-out ones, the same replies as above.
    both = tmp_path / "eval-both"
    assert main([*args[:4], str(both), *args[5:], "--seen-questions"]) == 0
    line = capsys.readouterr().out.splitlines()[0]
    r = json.loads((both / "report.json").read_text())
    c = r["summary"]["understanding_control"]
    assert c["prompt_set"] == "shapes-v1-seen" and c["sha256"] == p["sha256"] and c["n"] == 3
    assert r["items"]["understanding_control"] == seen_report["items"]["understanding"]
    assert c["accuracy"] == seen_report["summary"]["understanding"]["accuracy"]
    assert f"understanding {r['summary']['understanding']['accuracy']:.3f} (shapes-v1-seen {c['accuracy']:.3f})" in line
    assert "On seen combinations (`shapes-v1-seen`, 3 questions)" in (both / "report.md").read_text()
    for key in ("understanding", "understanding_control"):  # the colour errors counted from the items themselves
        items = r["items"][key]
        wrong = [i for i in items if i["kind"] == "colour" and not i["correct"]]
        errors = r["summary"][key]["colour_errors"]
        assert errors == {"wrong": len(wrong), "another_object": sum(i["names_another_object"] for i in wrong)}
        assert all(i["names_another_object"] is None for i in items if i["correct"] or i["kind"] != "colour")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--limit", "0"], "--limit must be at least 1, got 0"),
        (["--steps", "0"], "--steps must be at least 1, got 0"),
        (["--samples-per-prompt", "0"], "--samples-per-prompt must be at least 1, got 0"),
        (["--preset", "tiny", "--shift", "0"], "--shift must be positive, got 0.0"),
        (["--preset", "tiny", "--edit-start", "0"], "--edit-start must be in (0, 1], got 0.0"),
        (["--prompt-set", "shapes-v0"], "unknown prompt-set version 'shapes-v0'"),
        (["--ckpt", "missing_ckpt", "--preset", "tiny"], "give either --ckpt or --preset, not both"),
        (["--prompt-set", "shapes-v1-seen", "--seen-questions"], "not with --prompt-set shapes-v1-seen"),
        (["--ckpt", "missing_ckpt"], "cannot load the HydraX checkpoint missing_ckpt"),
        # A run folder whose export was never written: named as missing, not handed to the Hub as a repo id.
        (["--ckpt", "/no/such/run/export"], "/no/such/run/export: no such HydraX checkpoint folder"),
        (["--ckpt", "./run/export"], "./run/export: no such HydraX checkpoint folder"),
        (["--preset", "tiny", "--size", "40"], "multiples of the patch size 16"),
        (["--preset", "tiny", "--frames", "6"], "a video has 1 + k * 4 frames"),
        (["--preset", "tiny", "--question-size", "40"], "multiples of the patch size 16"),
        (["--preset", "tiny", "--question-size", "0"], "--question-size must be at least 1, got 0"),
        (["--preset", "huge"], "unknown"),
    ],
)
def test_user_errors_are_one_line_and_exit_2(args, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["shapes", "--out", "o", *args]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("hydra-x eval:")]
    assert len(err) == 1 and err[0].startswith("hydra-x eval: error: ") and message in err[0], err
    assert not (tmp_path / "o").exists()  # nothing written
