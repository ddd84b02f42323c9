"""The demo's evaluations: the same library calls as ``hydra-x eval recon`` and ``hydra-x eval shapes``, with their
report files written to ``<out>/eval/`` exactly as those commands write them.

Nothing is downloaded: LPIPS runs only where its weights are already on the machine, and rFID / rFVD are given
the torch.hub cache path of their network's weights, so a missing file makes the metric "unavailable" (with the
reason in the report) instead of starting a download.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from hydra_x.demo.config import DemoConfig
from hydra_x.eval.features import cached_weights_path
from hydra_x.eval.models import load_hydra_x
from hydra_x.eval.protocols import Protocol, resolve_protocol
from hydra_x.eval.recon import ReconOptions, evaluate
from hydra_x.eval.report import build_report as build_recon_report
from hydra_x.eval.report import write_outputs as write_recon_outputs
from hydra_x.eval.samples import EMBEDDED, EvalData
from hydra_x.eval.shapes_report import build_report as build_shapes_report
from hydra_x.eval.shapes_report import write_outputs as write_shapes_outputs
from hydra_x.eval.shapes_run import ShapesReport, evaluate_shapes, model_info
from hydra_x.tokenizer.io import resolve_source

RECON_FOLDERS = {"images": "recon-images", "clips": "recon-clips"}
SHAPES_FOLDER = "shapes"
SHAPES_SECTIONS = 4  # generation, understanding, video, editing: the steps of its progress bar (+1: seen questions)


def recon_protocols(cfg: DemoConfig) -> dict[str, Protocol]:
    e = cfg.eval
    return {
        "images": resolve_protocol("image256", size=e.recon_size, max_samples=e.recon_images),
        "clips": resolve_protocol("video17x256", size=e.recon_size, frames=e.recon_frames, max_samples=e.recon_clips),
    }


def local_lpips_weights() -> str | None:
    """The LPIPS weights file if it is on this machine already (never downloaded here), else None."""
    from hydra_x.losses.lpips import find_lpips_weights

    try:
        return str(find_lpips_weights(allow_download=False))
    except (FileNotFoundError, OSError, ValueError):
        return None


def evaluate_recon(
    cfg: DemoConfig, device: torch.device, dtype: torch.dtype, bar: Callable[[str], None]
) -> tuple[dict[str, dict[str, Any]], dict[str, Path]]:
    """PSNR / SSIM (and what else is available offline) of the tokenizer's export on held-out photos and clips."""
    source = resolve_source(str(cfg.tokenizer_dir / "export"), None, 0, "tiny")
    model = load_hydra_x(source, device, dtype)
    model.name = f"HYDRA-X demo tokenizer ({cfg.preset})"
    lpips = local_lpips_weights()
    reports, folders = {}, {}
    for key, protocol in recon_protocols(cfg).items():
        bar(f"recon {key}")
        options = ReconOptions(
            batch_size=8,
            lpips_weights=lpips,
            feature_weights=str(cached_weights_path("inception" if protocol.media == "image" else "i3d")),
            picture_columns=3 if protocol.media == "image" else 2,
        )
        data = EvalData(EMBEDDED, protocol)
        result = evaluate(model, data, protocol, options)
        reports[key] = build_recon_report(result, protocol, model, data, options)
        folders[key] = cfg.eval_dir / RECON_FOLDERS[key]
        write_recon_outputs(folders[key], reports[key], result)
    return reports, folders


def evaluate_unified(cfg: DemoConfig, model, bar: Callable[[str], None]) -> tuple[dict[str, Any], ShapesReport, Path]:
    """``hydra-x eval shapes`` on the unified export: held-out generation, questions, clips and edits (and the
    questions of the seen-combinations control set, ``--seen-questions``)."""
    from hydra_x.eval.prompts import SEEN_VERSION, prompt_set

    e = cfg.eval
    result = evaluate_shapes(
        model,
        prompt_set(),
        size=e.shapes_size,
        frames=e.shapes_frames,
        steps=e.steps,
        guidance=e.guidance,
        seed=e.seed,
        limit=e.limit,
        batch_size=e.batch_size,
        progress=bar,
        control=prompt_set(SEEN_VERSION) if e.seen_questions else None,
    )
    export = cfg.unified_dir / "export"
    info = model_info(model, checkpoint=str(export), preset=None, seed=e.seed)
    info["name"] = f"HYDRA-X demo ({cfg.preset})"
    report = build_shapes_report(result, info, model.device)
    folder = cfg.eval_dir / SHAPES_FOLDER
    write_shapes_outputs(folder, report, result)
    return report, result, folder


def headline_intervals(shapes: dict[str, Any]) -> dict[str, list[float] | None]:
    """The 95% intervals of the headline figures that are proportions of a few dozen items (``eval shapes``)."""
    s = shapes["summary"]
    video, editing, seen = s["video"], s["editing"], s.get("understanding_control") or {}
    return {
        "understanding_accuracy": s["understanding"].get("ci95"),
        "understanding_seen_accuracy": seen.get("ci95"),
        "video_motion_accuracy": video.get("motion_ci95") if video["available"] else None,
        "editing_success": editing.get("success_ci95") if editing["available"] else None,
    }


def headline(recon: dict[str, dict[str, Any]], shapes: dict[str, Any]) -> dict[str, float | None]:
    """The figures the summary and the report lead with, read from the evaluations' reports."""

    def metric(report: dict[str, Any], name: str) -> float | None:
        m = report["metrics"].get(name, {})
        return m.get("value") if m.get("available") else None

    s = shapes["summary"]
    video, editing = s["video"], s["editing"]
    return {
        "recon_image_psnr": metric(recon["images"], "psnr"),
        "recon_image_ssim": metric(recon["images"], "ssim"),
        "recon_clip_psnr": metric(recon["clips"], "psnr"),
        "recon_clip_ssim": metric(recon["clips"], "ssim"),
        "generation_overall": s["generation"]["overall"],
        "round_trip_generation": s["round_trip"]["generation"]["overall"] if s.get("round_trip") else None,
        "understanding_accuracy": s["understanding"]["accuracy"],
        "understanding_seen_accuracy": s["understanding_control"]["accuracy"] if "understanding_control" in s else None,
        "video_motion_accuracy": video.get("motion_accuracy") if video["available"] else None,
        "editing_success": editing.get("success") if editing["available"] else None,
        "editing_psnr": editing.get("psnr") if editing["available"] else None,
        "editing_ssim": editing.get("ssim") if editing["available"] else None,
    }
