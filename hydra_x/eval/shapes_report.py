"""The outputs of ``hydra-x eval shapes``: report.json (every figure, per item, with the prompt-set version and
digest, the model and the settings), report.md (tables rendered from it) and sample grids (PNG).

Grids: ``generation.png`` one row per category, each cell the prompt's truth | the generated image;
``video.png`` truth first | truth last | generated first | generated last frame; ``editing.png`` one row per
op, source | output | truth. Every cell is labelled with its item id and "ok" / "x".
"""

from __future__ import annotations

import datetime
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw

from hydra_x.data.media import to_uint8
from hydra_x.eval.prompts import SPLIT_OF
from hydra_x.eval.report import device_info, strict_json, versions
from hydra_x.eval.shapes_run import Picture, ShapesReport

REPORT_FORMAT = "hydra-x-shapes-report"
LABEL_PX = 14  # height of the text band above each cell
GAP_PX = 4
GRIDS = {"generation": "generation.png", "video": "video.png", "editing": "editing.png"}
SPLIT_WORDS = {"heldout": "held-out combinations", "train": "seen combinations (the training split's, new scenes)"}


def build_report(result: ShapesReport, model: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """report.json's content: summaries first, then every item's score (what produced each figure)."""
    summary = result.summary()
    items = result.prompt_set
    prompts = {i.id: i.prompt for i in items.generation}
    generation = _generation_items(result.generation, prompts)
    instructions = {i.id: i.sample.instruction for i in items.edits}
    videos = {i.id: (i.prompt, i.direction) for i in items.videos}
    return {
        "format": REPORT_FORMAT,
        "version": 1,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        # the whole set's digest (what the version names); the counts are the items evaluated, after --limit
        "prompt_set": {"version": items.version, "sha256": result.digest, "seed": items.seed, **items.counts()},
        "model": model,
        "settings": result.settings,
        "summary": summary,
        "items": {
            "generation": generation,
            "understanding": [asdict(r) for r in result.understanding],
            "understanding_control": [asdict(r) for r in result.control_understanding or []],
            "video": [{**asdict(s), "prompt": videos[s.id][0], "asked": videos[s.id][1]} for s in (result.video or [])],
            "editing": [{**asdict(s), "instruction": instructions[s.id]} for s in (result.editing or [])],
            # the same scorers on the tokenizer's reconstructions of the truth: what each of its failures was
            "round_trip": None if result.round_trip is None else _round_trip_items(result.round_trip, prompts),
        },
        "versions": versions(),
        "device": device_info(device, 1),
        "files": {"markdown": "report.md", "pictures": [GRIDS[k] for k, rows in result.pictures.items() if rows]},
    }


def _generation_items(scores: list, prompts: dict[str, str]) -> list[dict[str, Any]]:
    return [{**asdict(s), "prompt": prompts[s.id]} for s in scores]


def _round_trip_items(scores: dict[str, list], prompts: dict[str, str]) -> dict[str, list[dict[str, Any]]]:
    out = {"generation": _generation_items(scores["generation"], prompts)}
    for section in ("video", "editing"):
        if section in scores:
            out[section] = [asdict(s) for s in scores[section]]
    return out


def summary_line(report: dict[str, Any]) -> str:
    """One line: GenEval overall, understanding accuracy, video motion accuracy, editing success / consistency."""
    s = report["summary"]
    fmt = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
    video = fmt(s["video"]["motion_accuracy"]) if s["video"]["available"] else "n/a"
    e = s["editing"]
    editing = "n/a"
    if e["available"]:
        psnr = "n/a" if e["psnr"] is None else f"{e['psnr']:.2f} dB"
        editing = f"success {fmt(e['success'])}, PSNR {psnr}, SSIM {fmt(e['ssim'])} outside the edits"
    rt = s.get("round_trip")
    ceiling = f"; tokenizer round trip {fmt(rt['generation']['overall'])}" if rt else ""
    c = s.get("understanding_control")
    seen = f" ({c['prompt_set']} {fmt(c['accuracy'])})" if c else ""
    return (
        f"{report['model']['name']} on {report['prompt_set']['version']}: generation {fmt(s['generation']['overall'])} "
        f"(GenEval overall{ceiling}), understanding {fmt(s['understanding']['accuracy'])}{seen}, video motion "
        f"{video}, editing {editing}"
    )


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f}"


def _interval(ci: list[float] | None) -> str:
    """A 95% interval in percent, as the reports print it beside an accuracy."""
    return "" if not ci else f" (95% interval {100 * ci[0]:.1f}-{100 * ci[1]:.1f})"


def markdown(report: dict[str, Any]) -> str:
    s, p, cfg = report["summary"], report["prompt_set"], report["settings"]
    g = s["generation"]
    lines = [
        f"# Shapes evaluation: {report['model']['name']}\n",
        f"Prompt set `{p['version']}` (sha256 `{p['sha256'][:16]}`), {SPLIT_WORDS[SPLIT_OF[p['version']]]}. "
        f"{cfg['size']} px"
        + (f" (questions {cfg['question_size']} px)" if cfg.get("question_size", cfg["size"]) != cfg["size"] else "")
        + ", "
        f"{cfg['steps']} {cfg.get('sampler', 'euler')} steps"
        + (f" (time shift {cfg['shift']:g})" if cfg.get("shift") else "")
        + f", guidance {cfg['guidance']}"
        + (f" (edits {cfg['edit_guidance']})" if cfg.get("edit_guidance", cfg["guidance"]) != cfg["guidance"] else "")
        + f", seed {cfg['seed']}"
        + (f", {cfg['samples_per_prompt']} samples a prompt" if cfg.get("samples_per_prompt", 1) > 1 else "")
        + (f", edits from the source noised to t = {cfg['edit_start']:g}" if cfg.get("edit_start", 1) < 1 else "")
        + (f", at most {cfg['limit']} items per category" if cfg["limit"] else "")
        + ". Figures in percent.\n",
        "\n## Generation (GenEval categories)\n",
    ]
    rt = s.get("round_trip") or {}
    rt_gen = rt.get("generation", {}).get("categories", {})
    header, rule = "| category | n | accuracy | strict (all colours) |", "|---|---:|---:|---:|"
    if rt:
        header, rule = header + " tokenizer round trip |", rule + "---:|"
    lines.append(f"\n{header}\n{rule}")
    for name, c in g["categories"].items():
        cell = f" {_pct(rt_gen[name]['accuracy'])} |" if name in rt_gen else (" - |" if rt else "")
        lines.append(f"| {name} | {c['n']} | {_pct(c['accuracy'])} | {_pct(c['strict_accuracy'])} |{cell}")
    overall = f"{_pct(g['overall'])}{_interval(g.get('overall_ci95'))} | {_pct(g['strict_overall'])} |"
    overall += f" {_pct(rt['generation']['overall'])} |" if rt else ""
    lines.append(f"| **overall** (mean of categories) | {g['n']} | {overall}")
    if g.get("samples_per_prompt", 1) > 1:
        lines.append(
            f"\n{g['n']} images: {g['samples_per_prompt']} samples of each of {g['prompts']} prompts; the interval is "
            "the prompts' (a prompt's samples are not independent draws of the set). Prompts drawn right in every "
            f"sample: {_pct(g['prompts_all_samples_correct'])}%; in at least one: "
            f"{_pct(g['prompts_any_sample_correct'])}%."
        )
    if g.get("objects_per_image") is not None:
        share = g.get("asked_colour_share")
        lines.append(
            f"\nObjects read per picture: {g['objects_per_image']:.2f} (asked: {g['asked_per_image']:.2f}); in a "
            f"colour the prompt names: {'none read' if share is None else _pct(share) + '%'} of them."
        )
    if rt:
        lines.append(
            "\nThe tokenizer round trip scores the model's tokenizer's reconstructions (encode, decode) of the truth "
            "pictures: the most its generations can score through this tokenizer.\n"
        )
    u = s["understanding"]
    lines += ["\n## Understanding (exact match)\n", "\n| kind | accuracy |\n|---|---:|"]
    lines += [f"| {k} | {_pct(v)} |" for k, v in u["by_kind"].items()]
    lines.append(f"| **all** ({u['n']}) | {_pct(u['accuracy'])}{_interval(u.get('ci95'))} |")
    if (ce := u.get("colour_errors")) and ce["wrong"]:
        lines.append(
            f"\nWrong colour answers: {ce['wrong']}, of which {ce['another_object']} name the colour of another object "
            "in the picture (colours seen, tied to the wrong shape) and the rest a colour that is not in it."
        )
    if (ca := u.get("count_answers")) and ca["by_answer"]:
        right = ", ".join(f"{a}: {v['correct']}/{v['n']}" for a, v in ca["by_answer"].items())
        said = ", ".join(f'"{r}" {n}' for r, n in ca["replies"].items())
        lines.append(f"\nCount questions by their answer (right / asked): {right}; the replies: {said}.")
    if c := s.get("understanding_control"):
        kinds = " / ".join(f"{k} {_pct(v)}" for k, v in c["by_kind"].items())
        lines.append(
            f"\nOn seen combinations (`{c['prompt_set']}`, {c['n']} questions): **{_pct(c['accuracy'])}**"
            f"{_interval(c.get('ci95'))} ({kinds})."
        )
    v = s["video"]
    lines.append("\n## Video\n")
    if v["available"]:
        lines.append(
            f"\n{v['n']} clips of {cfg['frames']} frames: motion accuracy {_pct(v['motion_accuracy'])}"
            f"{_interval(v.get('motion_ci95'))}, object in "
            f"every frame {_pct(v['presence'])}"
            + (
                f" (the tokenizer's round trip of the truth clips: {_pct(rt['video']['motion_accuracy'])} / "
                f"{_pct(rt['video']['presence'])})"
                if "video" in rt
                else ""
            )
            + ".\n"
        )
        per_frame = [("generated", v.get("frame_presence"))]
        if "video" in rt:
            per_frame.append(("the tokenizer's round trip", rt["video"].get("frame_presence")))
        for name, shares in per_frame:
            if shares:
                lines.append(f"\nObject found, frame by frame ({name}): {' / '.join(_pct(x) for x in shares)}.\n")
    else:
        lines.append(f"\nNot available: {v['reason']}.\n")
    e = s["editing"]
    lines.append("\n## Editing\n")
    if e["available"]:
        lines += ["\n| op | success |\n|---|---:|"] + [f"| {k} | {_pct(x)} |" for k, x in e["by_op"].items()]
        psnr = "-" if e["psnr"] is None else f"{e['psnr']:.2f} dB"
        ssim = "-" if e["ssim"] is None else f"{e['ssim']:.4f}"
        lines.append(f"| **all** ({e['n']}) | {_pct(e['success'])}{_interval(e.get('success_ci95'))} |")
        lines.append(f"\nConsistency outside the edited regions: PSNR {psnr}, SSIM {ssim}.\n")
        if "editing" in rt:
            r = rt["editing"]
            r_psnr = "-" if r["psnr"] is None else f"{r['psnr']:.2f} dB"
            lines.append(
                f"\nThe tokenizer's round trip of the edit targets: success {_pct(r['success'])}, PSNR {r_psnr} "
                "outside the edited regions.\n"
            )
    else:
        lines.append(f"\n{e['reason']}.\n")
    failed = [i for i in report["items"]["generation"] if not i["correct"]][:20]
    if failed:
        lines.append("\n## Failed generations (first 20)\n\n" + "".join(_failure(i) for i in failed))
    round_trip = (report["items"].get("round_trip") or {}).get("generation", [])
    failed = [i for i in round_trip if not i["correct"]][:20]
    if failed:
        lines.append(
            "\n## Failed round trips of the truth pictures (first 20): the tokenizer's, not the model's\n\n"
            + "".join(_failure(i) for i in failed)
        )
    v = report["versions"]
    lines.append(f"\nhydra-x {v['hydra_x']}, torch {v['torch']}; {report['date']}\n")
    return "\n".join(lines)


def _failure(item: dict[str, Any]) -> str:
    sample = f" (sample {item['sample']})" if item.get("sample") else ""
    return f'- `{item["id"]}`{sample} "{item["prompt"]}": {item["reason"]}\n'


def picture_grid(rows: list[list[Picture]]) -> np.ndarray:
    """(H, W, 3) uint8: one row of cells per group, each cell its images side by side under its label."""
    first = rows[0][0]
    s_h, s_w = first.images[0].shape[-2:]
    k = len(first.images)
    cell_w, cell_h = k * s_w + (k - 1) * GAP_PX, s_h + LABEL_PX
    cols = max(len(r) for r in rows)
    canvas = np.zeros((len(rows) * (cell_h + GAP_PX), cols * (cell_w + GAP_PX), 3), dtype=np.uint8)
    for r, row in enumerate(rows):
        for c, picture in enumerate(row):
            top, left = r * (cell_h + GAP_PX), c * (cell_w + GAP_PX)
            for j, image in enumerate(picture.images):
                x0 = left + j * (s_w + GAP_PX)
                canvas[top + LABEL_PX : top + cell_h, x0 : x0 + s_w] = to_uint8(image)
    im = Image.fromarray(canvas)
    draw = ImageDraw.Draw(im)
    for r, row in enumerate(rows):
        for c, picture in enumerate(row):
            draw.text((c * (cell_w + GAP_PX) + 1, r * (cell_h + GAP_PX) + 1), picture.label, fill=(255, 255, 255))
    return np.asarray(im)


def write_outputs(out: Path, report: dict[str, Any], result: ShapesReport) -> list[Path]:
    """report.json, report.md and the grids into ``out``; returns the paths written."""
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "report.json", out / "report.md"]
    paths[0].write_text(json.dumps(strict_json(report), indent=2, allow_nan=False) + "\n")
    paths[1].write_text(markdown(report))
    for section, rows in result.pictures.items():
        if rows:
            Image.fromarray(picture_grid(rows)).save(out / GRIDS[section])
            paths.append(out / GRIDS[section])
    return paths
