"""The evaluation's outputs: report.json (every figure and what produced it), report.md, per_sample.csv,
samples.png (and samples.gif for clips), and the table that merges several reports.

report.json is the source of truth; the Markdown is rendered from it, so ``hydra-x eval table a/report.json
b/report.json`` puts HYDRA-X and the peers in one table, with each column's protocol checked to be equal.
"""

from __future__ import annotations

import csv
import datetime
import json
import math
import platform
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw

from hydra_x._version import __version__
from hydra_x.data.media import to_uint8
from hydra_x.data.video import write_video
from hydra_x.eval.models import ReconModel
from hydra_x.eval.protocols import Protocol
from hydra_x.eval.recon import Picked, ReconOptions, ReconResult
from hydra_x.eval.samples import EvalData

REPORT_FORMAT = "hydra-x-recon-report"
LABEL_PX = 14  # height of the text band above each picture cell
GAP_PX = 4
METRIC_COLUMNS = (
    ("psnr", "PSNR (dB)", 2),
    ("ssim", "SSIM", 4),
    ("lpips", "LPIPS", 4),
    ("rfid", "rFID", 3),
    ("rfvd", "rFVD", 2),
)


def versions() -> dict[str, str | None]:
    try:
        import diffusers

        diffusers_version = diffusers.__version__
    except ImportError:
        diffusers_version = None
    return {
        "hydra_x": __version__,
        "torch": torch.__version__,
        "diffusers": diffusers_version,
        "python": platform.python_version(),
    }


def device_info(device: torch.device, world: int) -> dict[str, Any]:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine()
    return {"type": device.type, "name": name, "world_size": world}


def file_eval_report(
    fmt: str, result: dict[str, Any], data: dict, settings: dict, model: dict, device, files: dict
) -> dict[str, Any]:
    """The report of a unified model evaluated on a file of the user's (``hydra-x eval edits``, ``questions``):
    its format, date, data, model and settings, the evaluation's sections (``result``), library versions, the
    device and the files written beside it."""
    return {
        "format": fmt,
        "version": 1,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "data": data,
        "model": model,
        "settings": settings,
        **result,
        "versions": versions(),
        "device": device_info(device, 1),
        "files": files,
    }


def build_report(
    result: ReconResult, protocol: Protocol, model: ReconModel, data: EvalData, options: ReconOptions
) -> dict[str, Any]:
    skipped = [{"index": s.index, "file": s.name, "reason": s.reason} for s in result.skipped]
    return {
        "format": REPORT_FORMAT,
        "version": 1,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "model": {"name": model.name, "dtype": str(model.dtype).removeprefix("torch."), **model.spec},
        "protocol": protocol.to_dict(),
        "data": {
            **data.describe(),
            "items": result.items,
            "evaluated": len(result.records),
            "skipped": len(skipped),
            "skipped_by_category": dict(Counter(s["reason"].split(":", 1)[0] for s in skipped)),
            "skipped_files": skipped,
        },
        "metrics": result.metrics,
        "throughput": result.throughput,
        "options": {
            "batch_size": options.batch_size,
            "require_all": options.require_all,
            "lpips_weights": options.lpips_weights,
            "feature_net": options.feature_net,
            "feature_weights": options.feature_weights,
        },
        "versions": versions(),
        "device": device_info(model.device, result.world_size),
        "pictures": {
            row: [{"index": p.index, "file": p.name, "psnr": p.psnr} for p in ps] for row, ps in result.pictures.items()
        },
        "files": {
            "per_sample": "per_sample.csv",
            "markdown": "report.md",
            "pictures": ["samples.png"] + (["samples.gif"] if protocol.media == "video" else []),
        },
    }


def strict_json(value: Any) -> Any:
    """Non-finite floats as the strings "inf", "-inf", "nan": json.dumps would write Infinity / NaN, which
    strict JSON readers reject (an exact reconstruction has an infinite PSNR)."""
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(v) for v in value]
    return value


def write_outputs(out: Path, report: dict[str, Any], result: ReconResult) -> list[Path]:
    """Write report.json, report.md, per_sample.csv and the pictures into ``out``; returns the paths."""
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "report.json", out / "report.md", out / "per_sample.csv"]
    paths[0].write_text(json.dumps(strict_json(report), indent=2, allow_nan=False) + "\n")
    paths[1].write_text(markdown(report))
    with open(paths[2], "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["index", "file", "psnr", "ssim", "lpips"])
        for r in result.records:
            w.writerow(
                [
                    r.index,
                    r.name,
                    repr(r.psnr),
                    "" if r.ssim is None else repr(r.ssim),
                    "" if r.lpips is None else repr(r.lpips),
                ]
            )
    paths += write_pictures(out, result.pictures, report["protocol"]["media"])
    return paths


# ---------------------------------------------------------------------------- Markdown


def _cell(metric: dict[str, Any] | None, digits: int) -> str:
    if metric is None:
        return "-"
    if not metric.get("available"):
        return "n/a"
    value = metric["value"]
    return value if isinstance(value, str) else f"{value:.{digits}f}"  # "inf" from a report.json (strict_json)


def _rate(stage: dict[str, Any]) -> str:
    rate, peak = stage.get("samples_per_s"), stage.get("peak_memory_gib")
    text = f"{rate:.1f}/s" if rate else "-"
    return text + (f", {peak:.1f} GiB" if peak is not None else "")


def table(reports: list[dict[str, Any]]) -> str:
    """One Markdown table of several reports (rows), with the metrics any of them has (columns)."""
    used = [c for c in METRIC_COLUMNS if any(c[0] in r["metrics"] for r in reports)]
    head = ["model", "protocol", "data", "samples", *(c[1] for c in used), "encode", "decode"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    notes: list[str] = []
    for r in reports:
        d = r["data"]
        row = [
            r["model"]["name"],
            r["protocol"]["name"],
            f"{d['kind']}:{Path(str(d['path'])).name}",
            str(d["evaluated"]),
        ]
        for key, _, digits in used:
            m = r["metrics"].get(key)
            row.append(_cell(m, digits))
            if m is not None and not m.get("available"):
                notes.append(f"{r['model']['name']}: {key} unavailable: {m.get('reason')}")
        row += [_rate(r["throughput"]["encode"]), _rate(r["throughput"]["decode"])]
        lines.append("| " + " | ".join(row) + " |")
    protocols = {json.dumps(r["protocol"], sort_keys=True) for r in reports}
    if len(protocols) > 1:
        notes.insert(0, "the rows use different protocols: their figures are not comparable")
    data = {(r["data"]["path"], r["data"]["evaluated"]) for r in reports}
    if len(data) > 1:
        notes.insert(0, "the rows use different data (path or sample count)")
    return "\n".join(lines) + "\n" + "".join(f"\n- {n}" for n in notes) + ("\n" if notes else "")


def markdown(report: dict[str, Any]) -> str:
    p, d, t = report["protocol"], report["data"], report["throughput"]
    parts = [
        f"# Reconstruction: {report['model']['name']}\n",
        table([report]),
        f"\nProtocol `{p['name']}`: {p['media']}s at {p['size']}x{p['size']}"
        + (f", {p['frames']} frames (stride {p['frame_stride']})" if p["media"] == "video" else "")
        + f". {p['preprocessing']}.\n",
        f"\nData: {d['kind']} `{d['path']}`: {d['items']} items, {d['evaluated']} evaluated, {d['skipped']} skipped.\n",
        f"\nThroughput on {report['device']['world_size']} x {report['device']['type']} ({report['device']['name']}), "
        f"batch {report['options']['batch_size']}, {report['model']['dtype']}"
        + (" (one batch only: includes the warm-up)" if t.get("includes_warmup") else ", after one warm-up batch")
        + "; samples/s of all processes together, peak memory per process.\n",
    ]
    if d["skipped_files"]:
        parts.append(
            "\n## Skipped files\n\n" + "".join(f"- `{s['file']}`: {s['reason']}\n" for s in d["skipped_files"])
        )
    v = report["versions"]
    parts.append(f"\nhydra-x {v['hydra_x']}, torch {v['torch']}, diffusers {v['diffusers']}; {report['date']}\n")
    return "".join(parts)


# ---------------------------------------------------------------------------- pictures


def _label(canvas: np.ndarray, xy: tuple[int, int], text: str) -> None:
    im = Image.fromarray(canvas)
    ImageDraw.Draw(im).text(xy, text, fill=(255, 255, 255))
    canvas[:] = np.asarray(im)


def _grid(pictures: dict[str, list[Picked]], frame: int | None) -> np.ndarray:
    """(H, W, 3) uint8: one row per picture group; each cell original | reconstruction with its PSNR."""
    rows = [(name, ps) for name, ps in pictures.items() if ps]
    first = rows[0][1][0].x
    s_h, s_w = first.shape[-2:]
    cols = max(len(ps) for _, ps in rows)
    cell_w, cell_h = 2 * s_w + GAP_PX, s_h + LABEL_PX
    canvas = np.zeros((len(rows) * (cell_h + GAP_PX), cols * (cell_w + GAP_PX), 3), dtype=np.uint8)
    for r, (name, ps) in enumerate(rows):
        for c, p in enumerate(ps):
            x, y = (p.x, p.y) if frame is None else (p.x[:, frame], p.y[:, frame])
            top, left = r * (cell_h + GAP_PX), c * (cell_w + GAP_PX)
            canvas[top + LABEL_PX : top + cell_h, left : left + s_w] = to_uint8(x)
            canvas[top + LABEL_PX : top + cell_h, left + s_w + GAP_PX : left + cell_w] = to_uint8(y)
            _label(canvas, (left + 1, top + 1), f"{name} #{p.index}: PSNR {p.psnr:.2f} dB")
    return canvas


def write_pictures(out: Path, pictures: dict[str, list[Picked]], media: str) -> list[Path]:
    """samples.png (rows worst / median / best; clips: their middle frame) and, for clips, samples.gif."""
    if not any(pictures.values()):
        return []
    if media == "image":
        Image.fromarray(_grid(pictures, None)).save(out / "samples.png")
        return [out / "samples.png"]
    frames = next(ps for ps in pictures.values() if ps)[0].x.shape[1]
    Image.fromarray(_grid(pictures, frames // 2)).save(out / "samples.png")
    clip = np.stack([_grid(pictures, f) for f in range(frames)])  # (F, H, W, 3)
    x = torch.from_numpy(clip).permute(3, 0, 1, 2).float() / 127.5 - 1  # exact 8-bit round trip
    write_video(out / "samples.gif", x, fps=8)
    return [out / "samples.png", out / "samples.gif"]


def load_reports(paths: list[str]) -> list[dict[str, Any]]:
    out = []
    for path in paths:
        try:
            report = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise ValueError(f"cannot read the report {path}: {err}") from err
        if not isinstance(report, dict) or report.get("format") != REPORT_FORMAT:
            raise ValueError(f"{path} is not a report.json written by 'hydra-x eval recon'")
        out.append(report)
    return out
