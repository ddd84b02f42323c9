"""``hydra-x demo`` end to end: train (or reuse) the tokenizer and the unified model, evaluate both, write a report.

    [1/6] tokenizer     hydra_x.train.tokenizer.loop.train: on rendered shapes-world images (tokenizer-warmup), then
                        from it on the embedded photographs, clips and the shapes together (tokenizer)
    [2/6] unified       hydra_x.train.unified.loop.train on the shapes world, from the demo's tokenizer (whose
                        latent statistics the run measures on its generation targets first)
    [3/6] eval recon    hydra_x.eval.recon.evaluate: held-out photographs and clips (as ``hydra-x eval recon``)
    [4/6] eval shapes   hydra_x.eval.shapes_run.evaluate_shapes (as ``hydra-x eval shapes``)
    [5/6] showcase      reconstructions, generations for fixed prompts, answers, edits (pictures)
    [6/6] report        <out>/report/index.html, report.md, summary.json

``<out>/demo.json`` records the preset and LLM the runs were trained with, so a second demo reuses them (or says
why it cannot) and the report can state how long their training took.
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra_x.demo.config import DemoConfig, DemoError
from hydra_x.demo.data import write_shapes_images
from hydra_x.demo.llm import LLMChoice, choose_llm, prepare_llm
from hydra_x.demo.names import RETRAIN
from hydra_x.demo.phases import PHASE_COUNT, evaluate_models, report_phase
from hydra_x.demo.training import TrainingOutcome, is_finished, remove_run, train_or_reuse
from hydra_x.device import resolve_device

MARKER = "demo.json"


@dataclass
class DemoResult:
    report: Path  # index.html
    markdown: Path
    figures: dict[str, float | None]
    phases: list[tuple[str, float, str]]  # (phase, seconds, note)
    trainings: dict[str, TrainingOutcome]
    llm: LLMChoice


def _stderr(message: str) -> None:
    print(f"hydra-x demo: {message}", file=sys.stderr, flush=True)


def read_marker(cfg: DemoConfig) -> dict[str, Any]:
    path = cfg.out / MARKER
    try:
        return json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, json.JSONDecodeError):
        return {}


def write_marker(cfg: DemoConfig, marker: dict[str, Any]) -> None:
    cfg.out.mkdir(parents=True, exist_ok=True)
    (cfg.out / MARKER).write_text(json.dumps(marker, indent=2) + "\n")


def prepare_runs(cfg: DemoConfig, retrain: str | None, log: Callable[[str], None]) -> tuple[LLMChoice, dict]:
    """Check the options against the folder, apply --retrain, pick the LLM; nothing is deleted or written before
    every check has passed."""
    if retrain is not None and retrain not in RETRAIN:
        raise DemoError(f"--retrain takes {' or '.join(RETRAIN)}, got {retrain!r}")
    marker = read_marker(cfg)
    choice = choose_llm(cfg)
    tokenizer_runs = [cfg.warmup_dir, cfg.tokenizer_dir]
    kept = {None: [*tokenizer_runs, cfg.unified_dir], "unified": tokenizer_runs}.get(retrain, [])  # what is reused
    if any(d.exists() for d in kept) and marker.get("preset") not in (None, cfg.preset):
        raise DemoError(
            f"{cfg.out} holds runs of the '{marker['preset']}' preset, not '{cfg.preset}': add --retrain to replace "
            "them, or choose another folder with --out"
        )
    trained_with = marker.get("llm")
    if retrain is None and cfg.unified_dir.exists() and trained_with and trained_with != choice.name:
        if cfg.llm != "auto":
            raise DemoError(
                f"{cfg.unified_dir} was trained with the LLM '{trained_with}', not '{choice.name}': add "
                "--retrain unified to train it again, or choose another folder with --out"
            )
        choice = LLMChoice(trained_with, f"'{trained_with}', which {cfg.unified_dir} was trained with")
    seconds = dict(marker.get("seconds", {}))
    if retrain:
        for run_dir in [cfg.warmup_dir, cfg.tokenizer_dir, cfg.unified_dir] if retrain == "all" else [cfg.unified_dir]:
            if remove_run(run_dir):
                log(f"--retrain: deleted {run_dir}")
            seconds.pop(run_dir.name, None)
        _remove_llm(cfg.llm_dir)
    marker = {"preset": cfg.preset, "llm": choice.name, "seconds": seconds}
    write_marker(cfg, marker)
    return choice, marker


def _remove_llm(folder: Path) -> bool:
    """The config-built LLM's start goes with the unified run (a new one is built from the same seed)."""
    if not (folder / "config.json").is_file():
        return False
    shutil.rmtree(folder)
    return True


def _train_tokenizer(cfg):
    from hydra_x.train.tokenizer.loop import train

    return train(cfg)


def _train_unified(cfg):
    from hydra_x.train.unified.loop import train

    return train(cfg)


def train_models(
    cfg: DemoConfig, llm: LLMChoice, marker: dict, log: Callable[[str], None], phases: list
) -> dict[str, TrainingOutcome]:
    """Phases 1 and 2: the tokenizer (two runs, on rendered shapes-world images and the embedded photographs), then
    the unified model from it. A run trained again makes the runs that started from it train again too."""
    log(f"[1/{PHASE_COUNT}] tokenizer")
    if cfg.lpips_if_local and not is_finished(cfg.tokenizer_dir):
        _lpips_if_local(cfg, log)
    size = cfg.tokenizer_warmup.data.image_size
    write_shapes_images(cfg.shapes_dir, size, cfg.shapes_images)
    outcomes: dict[str, TrainingOutcome] = {}
    chain = [("tokenizer-warmup", cfg.tokenizer_warmup), ("tokenizer", cfg.tokenizer), ("unified", cfg.unified)]
    for k, (name, run_cfg) in enumerate(chain):
        if name == "unified":
            log(f"[2/{PHASE_COUNT}] unified model: LLM {llm.why}")
            if not is_finished(cfg.unified_dir):
                cfg.unified.model = cfg.unified.model.replace(llm=prepare_llm(cfg, llm))
        train = _train_unified if name == "unified" else _train_tokenizer
        outcomes[name] = train_or_reuse(name, run_cfg, train, log)
        _record(cfg, marker, phases, outcomes[name])
        if not outcomes[name].reused:
            for later in (Path(c.out_dir) for _, c in chain[k + 1 :]):
                if later.exists():
                    remove_run(later)
                    log(f"{name} was trained again: deleted {later}, which started from the previous one")
    return outcomes


def _lpips_if_local(cfg: DemoConfig, log: Callable[[str], None]) -> None:
    from hydra_x.demo.evaluate import local_lpips_weights

    weights = local_lpips_weights()
    if weights:
        cfg.tokenizer.loss.lpips, cfg.tokenizer.loss.lpips_weights = 1.0, weights
        log(f"tokenizer: LPIPS on, with the weights found at {weights}")


def _record(cfg: DemoConfig, marker: dict, phases: list, outcome: TrainingOutcome) -> None:
    seconds = marker.setdefault("seconds", {})
    if outcome.reused:
        earlier = seconds.get(outcome.name)
        note = "reused" + (f" (trained in {earlier / 60:.1f} min)" if earlier else "")
    else:
        seconds[outcome.name] = outcome.seconds
        note = f"trained, {outcome.summary.get('step', '?')} steps"
    phases.append((f"train {outcome.name}", outcome.seconds, note))
    write_marker(cfg, marker)


def run_demo(cfg: DemoConfig, *, retrain: str | None = None, log: Callable[[str], None] | None = None) -> DemoResult:
    """Run every phase (see the module docstring) with ``cfg`` (already ``resolve``d); returns where the report
    is and its headline figures. Trained runs are reused unless ``retrain`` is "all" or "unified"."""
    log = _stderr if log is None else log
    check_config(cfg)
    llm, marker = prepare_runs(cfg, retrain, log)
    phases: list[tuple[str, float, str]] = []
    trainings = train_models(cfg, llm, marker, log, phases)
    evaluated = evaluate_models(cfg, log, phases)
    log(f"[6/{PHASE_COUNT}] report")
    index, md, summary = report_phase(cfg, llm, trainings, evaluated, phases)
    return DemoResult(index, md, summary["figures"], phases, trainings, llm)


def check_config(cfg: DemoConfig) -> None:
    """Sizes the models cannot take are refused before anything is trained."""
    resolve_device(cfg.device, "auto")  # --device cuda without CUDA: refused before anything is written
    e, patch = cfg.eval, cfg.tokenizer.model.patch_size
    for name, size in (("recon_size", e.recon_size), ("shapes_size", e.shapes_size)):
        if size < patch or size % patch:
            raise DemoError(f"eval.{name} must be a multiple of the patch size {patch}, got {size}")
    for name, frames in (("recon_frames", e.recon_frames), ("shapes_frames", e.shapes_frames)):
        if frames < 1 or (frames - 1) % 4:
            raise DemoError(f"eval.{name} must be 1 + 4k frames, got {frames}")
