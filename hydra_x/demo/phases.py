"""Phases 3 to 6 of the demo: evaluate the two trained models, make the showcase pictures, write the report."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from hydra_x.demo.config import DemoConfig
from hydra_x.demo.content import headline_table, loss_plots, phase_table, recon_table, shapes_tables
from hydra_x.demo.evaluate import (
    SHAPES_SECTIONS,
    evaluate_recon,
    evaluate_unified,
    headline,
    headline_intervals,
    recon_protocols,
)
from hydra_x.demo.llm import LLMChoice
from hydra_x.demo.report import Report, Section, copy_asset, today, write_report
from hydra_x.demo.showcase import Gallery, Tile, Writer, answers_and_edits, generations, reconstructions
from hydra_x.demo.training import TrainingOutcome
from hydra_x.device import resolve_device

PHASE_COUNT = 6


class Timer:
    """Appends (name, seconds, note) to ``phases`` when its block finishes without an error."""

    def __init__(self, phases: list, name: str, note: str = "") -> None:
        self.phases, self.name, self.note = phases, name, note

    def __enter__(self) -> Timer:
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        if exc[0] is None:
            self.phases.append((self.name, time.perf_counter() - self.start, self.note))


def bar(total: int, desc: str) -> tqdm:
    return tqdm(total=total, desc=desc, unit="part", file=sys.stderr, dynamic_ncols=True, leave=False)


@dataclass
class Evaluated:
    recon: dict[str, dict[str, Any]]
    shapes: dict[str, Any]
    folders: dict[str, Path]
    galleries: list[Gallery]


def evaluate_models(cfg: DemoConfig, log: Callable[[str], None], phases: list) -> Evaluated:
    """Phases 3 to 5: reconstruction figures, shapes figures, showcase pictures (the models loaded once each)."""
    from hydra_x.unified.model import HydraX

    device, dtype = resolve_device(cfg.device, "auto")
    writer = Writer(cfg.report_dir, cfg.showcase.display_px)
    log(f"[3/{PHASE_COUNT}] eval recon: " + ", ".join(p.describe() for p in recon_protocols(cfg).values()))
    with Timer(phases, "eval recon"), bar(2, "eval recon") as b:
        recon, folders = evaluate_recon(cfg, device, dtype, lambda what: (b.set_postfix_str(what), b.update(1)))
    log(f"[4/{PHASE_COUNT}] eval shapes: held-out prompt set, at most {cfg.eval.limit or 'all'} items per group")
    model = HydraX.from_pretrained(cfg.unified_dir / "export", device=device, dtype=dtype).eval()
    with Timer(phases, "eval shapes"), bar(SHAPES_SECTIONS + cfg.eval.seen_questions, "eval shapes") as b:
        shapes, result, folders["shapes"] = evaluate_unified(cfg, model, lambda what: _section(b, what))
        b.update(b.total - b.n)
    log(f"[5/{PHASE_COUNT}] showcase pictures")
    s = cfg.showcase
    with Timer(phases, "showcase"), bar(s.photos + s.clips + 2, "showcase") as b:
        # The unified model's tokenizer reconstructs as the tokenizer run's export does: the unified training leaves
        # its encoder, bottleneck and decoder as they were (only the Sem-ViT side learns).
        galleries = reconstructions(cfg, model.tokenizer, writer, lambda: b.update(1))
        galleries += generations(cfg, model, writer, lambda: b.update(1))
        galleries += answers_and_edits(cfg, result, writer)
    return Evaluated(recon, shapes, folders, galleries)


def _section(b: tqdm, what: str) -> None:
    """evaluate_shapes announces each section as it starts: the previous one is done."""
    if getattr(b, "_started", False):
        b.update(1)
    b._started = True
    b.set_postfix_str(what)


def eval_grids(ev: Evaluated, report_dir: Path) -> tuple[Gallery, Gallery]:
    """The evaluations' own sample grids, copied into the report's assets."""
    tok = Gallery("Evaluation samples", "From hydra-x eval recon: worst, median and best samples by PSNR.")
    uni = Gallery("Evaluation grids", "From hydra-x eval shapes: truth | output per item, ok or x.")
    picks = [
        (tok, ev.folders["images"] / "samples.png", "eval_recon_images", "photographs"),
        (tok, ev.folders["clips"] / "samples.gif", "eval_recon_clips", "clips (animated)"),
        (uni, ev.folders["shapes"] / "generation.png", "eval_generation", "generation: truth | generated"),
        (uni, ev.folders["shapes"] / "video.png", "eval_video", "video: truth first | last, generated first | last"),
        (uni, ev.folders["shapes"] / "editing.png", "eval_editing", "editing: source | output | truth"),
    ]
    for gallery, src, name, caption in picks:
        path = copy_asset(src, report_dir, name)
        if path:
            gallery.tiles.append(Tile(path, caption))
    return tok, uni


def build_report(
    cfg: DemoConfig, llm: LLMChoice, trainings: dict[str, TrainingOutcome], ev: Evaluated, phases: list
) -> Report:
    figures, intervals = headline(ev.recon, ev.shapes), headline_intervals(ev.shapes)
    device, _ = resolve_device(cfg.device, "auto")
    lines = [
        f"Preset {cfg.preset} on {device.type}; unified LLM: {llm.why}.",
        f"Runs: {cfg.tokenizer_dir}, {cfg.unified_dir} (its export/ is what hydra-x serve loads); {today()}.",
    ]
    by_name = {g.title: g for g in ev.galleries}
    tok_grid, uni_grid = eval_grids(ev, cfg.report_dir)
    runs = {name: t.run_dir for name, t in trainings.items()}
    sections = [
        Section("Summary", tables=[headline_table(figures, intervals), phase_table(phases)]),
        Section(
            "Tokenizer",
            f"Trained in two runs: {_steps(trainings, 'tokenizer-warmup')} steps on shapes-world images, then "
            f"{_steps(trainings, 'tokenizer')} on the embedded photographs and clips and the shapes together.",
            [recon_table(ev.recon)],
            [by_name.get("Photographs"), by_name.get("Clips"), tok_grid],
        ),
        Section(
            "Unified model",
            f"Trained on the shapes world; {_steps(trainings, 'unified')} steps.",
            shapes_tables(ev.shapes),
            [by_name.get(t) for t in ("Generated images", "Generated clips", "Questions", "Edits")] + [uni_grid],
        ),
        Section("Training", "Losses as the runs logged them (metrics.jsonl).", plots=loss_plots(runs, cfg.report_dir)),
    ]
    for s in sections:
        s.galleries = [g for g in s.galleries if g is not None]
    summary = {
        "preset": cfg.preset,
        "device": device.type,
        "llm": llm.name,
        "figures": figures,
        "intervals": intervals,  # 95% (Wilson) of the figures that are proportions
        "phases": [{"phase": n, "seconds": s, "note": note} for n, s, note in phases],
        "trained": {name: not t.reused for name, t in trainings.items()},
        "steps": {name: t.summary.get("step") for name, t in trainings.items()},
        "evaluations": {k: str(v / "report.json") for k, v in ev.folders.items()},
    }
    return Report("HYDRA-X demo", lines, sections, summary)


def _steps(trainings: dict[str, TrainingOutcome], name: str) -> str:
    return str(trainings[name].summary.get("step", "?")) if name in trainings else "?"


def report_phase(
    cfg: DemoConfig, llm: LLMChoice, trainings: dict[str, TrainingOutcome], ev: Evaluated, phases: list
) -> tuple[Path, Path, dict[str, Any]]:
    """Phase 6: the report folder; its own time is measured but, written last, not in its table."""
    start = time.perf_counter()
    report = build_report(cfg, llm, trainings, ev, phases)
    index, md = write_report(report, cfg.report_dir)
    phases.append(("report", time.perf_counter() - start, ""))
    return index, md, report.summary
