"""``hydra-x eval edits``: a model's edits of your own (source, instruction, target) triples, scored against the
targets with MagicBrush's pixel metrics.

The file is an edits JSONL / JSON as training reads it (:mod:`hydra_x.data.edit_pairs`: our field names,
InstructPix2Pix's or MagicBrush's; images relative to the file or ``media_root``). Its records are taken in file
order (the first ``limit`` that the scan keeps), source and target fitted to ``size`` alike, the source edited
with the instruction (seed ``seed + k`` for record k) and the edit scored against the target: L1 and L2 (mean
absolute and mean squared difference of pixels in [0, 1], MagicBrush's), PSNR and SSIM. The same figures for the
source itself stand beside them (an edit that changes nothing scores those), and the PSNR of the edit against its
source says how much of it was kept. MagicBrush's embedding scores (CLIP-I, DINO, CLIP-T) need weights that no
wheel ships: not computed.

Nothing is dropped silently: records the scan leaves out and images that do not decode are listed in the report
with their reason.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from hydra_x.data.conversations import ConversationIndex, ConversationSource, scan_conversations
from hydra_x.data.edit_pairs import parse_edit_record
from hydra_x.data.examples import fit_image
from hydra_x.data.media import MediaError, read_image
from hydra_x.eval.metrics import psnr, ssim
from hydra_x.eval.report import file_eval_report, strict_json
from hydra_x.eval.shapes_report import picture_grid
from hydra_x.eval.shapes_run import Picture

REPORT_FORMAT = "hydra-x-edits-report"
PICTURES = 16  # records shown in editing.png
METRICS = ("l1", "l2", "psnr", "ssim")


@dataclass(frozen=True)
class PairScore:
    """L1, L2 (pixels in [0, 1]), PSNR (dB) and SSIM of one image against another."""

    l1: float
    l2: float
    psnr: float
    ssim: float


def pair_score(x: torch.Tensor, y: torch.Tensor) -> PairScore:
    """Two (3, H, W) images in [-1, 1]."""
    a, b = (x.float() + 1) / 2, (y.float() + 1) / 2
    return PairScore(
        float((a - b).abs().mean()),
        float(((a - b) ** 2).mean()),
        float(psnr(x[None].float(), y[None].float())),
        float(ssim(x[None].float(), y[None].float())),
    )


@dataclass(frozen=True)
class EditItem:
    key: str  # "file.jsonl:17 (id)"
    instruction: str
    edit: PairScore  # the edit against the target
    source: PairScore  # the unedited source against the target
    kept_psnr: float  # the edit against its source


def scan_edit_file(path: str | Path, media_root: str | Path | None = None) -> ConversationIndex:
    """The file's usable records and those left out, scanned once: a caller can check a file before it loads a
    model (DataSourceError for a file with no usable record)."""
    return scan_conversations(path, media_root, parse_edit_record, "edits")


def evaluate_edit_file(
    edit: Callable[..., torch.Tensor],
    path: str | Path | ConversationIndex,
    *,
    media_root: str | Path | None = None,
    size: int = 256,
    limit: int | None = None,
    seed: int = 0,
    progress: Callable[[str], None] = lambda _: None,
    **options: Any,
) -> tuple[dict[str, Any], list[Picture]]:
    """Edit and score the file's records: (the report's "summary", "items" and "skipped"; the grid's pictures).
    ``edit(image, instruction, seed=..., **options)`` is e.g. ``HydraX.edit``."""
    index = path if isinstance(path, ConversationIndex) else scan_edit_file(path, media_root)
    reader = ConversationSource(index, 0, seed, size, 1, 1)
    skipped = [{"record": key, "reason": reason} for key, reason in index.skipped]
    positions = index.positions["edit"][:limit]
    items: list[EditItem] = []
    pictures: list[Picture] = []
    for k, (pos, where) in enumerate(positions.tolist()):
        try:
            record = reader.record(pos, where)
        except MediaError as err:  # the file changed since the scan
            skipped.append({"record": str(err.path), "reason": err.problem})
            continue
        try:
            source, target = (fit_image(read_image(p), size) for _, p in record.media)
        except MediaError as err:
            skipped.append({"record": record.key, "reason": f"{err.path}: {err.problem}"})
            continue
        instruction = record.messages[0]["content"].removeprefix("<image>\n")  # edit_messages' user turn
        out = edit(source, instruction, seed=seed + k, **options).detach().float().cpu().clamp(-1, 1)
        kept = float(psnr(out[None], source[None]))
        items.append(EditItem(record.key, instruction, pair_score(out, target), pair_score(source, target), kept))
        if len(pictures) < PICTURES:
            pictures.append(Picture(f"{k}: {instruction}"[:48], (source, out, target)))
        progress(f"edited {len(items)} of {len(positions)}")
    if not items:
        raise ValueError(f"edits:{index.path}: no record could be edited ({len(skipped)} skipped)")
    summary = {
        "items": len(items),
        "skipped": len(skipped),
        "edit": {m: float(np.mean([getattr(i.edit, m) for i in items])) for m in METRICS},
        "source": {m: float(np.mean([getattr(i.source, m) for i in items])) for m in METRICS},
        "kept_psnr": float(np.mean([i.kept_psnr for i in items])),
    }
    return {"summary": summary, "items": [asdict(i) for i in items], "skipped": skipped}, pictures


def build_report(result: dict[str, Any], data: dict[str, Any], settings: dict, model: dict, device) -> dict[str, Any]:
    files = {"markdown": "report.md", "pictures": ["editing.png"]}
    return file_eval_report(REPORT_FORMAT, result, data, settings, model, device, files)


def markdown(report: dict[str, Any]) -> str:
    s, name = report["summary"], report["model"].get("name", "HYDRA-X")
    settings = ", ".join(f"{k} {v}" for k, v in report["settings"].items())
    lines = [
        f"# Edits of `{report['data']['path']}`: {name}\n",
        f"{s['items']} records edited, {s['skipped']} skipped; {settings}.\n",
        "| against the target | L1 | L2 | PSNR (dB) | SSIM |",
        "|---|---:|---:|---:|---:|",
    ]
    for row, label in (("edit", "the edit"), ("source", "the source, unedited")):
        v = s[row]
        lines.append(f"| {label} | {v['l1']:.4f} | {v['l2']:.4f} | {v['psnr']:.2f} | {v['ssim']:.4f} |")
    lines.append(f"\nThe edit against its source: PSNR {s['kept_psnr']:.2f} dB (how much of it was kept).\n")
    if report["skipped"]:
        lines.append("## Skipped records\n")
        lines += [f"- `{x['record']}`: {x['reason']}" for x in report["skipped"]]
    return "\n".join(lines) + "\n"


def summary_line(report: dict[str, Any]) -> str:
    e, s = report["summary"]["edit"], report["summary"]["source"]
    return (
        f"{report['summary']['items']} edits: L1 {e['l1']:.4f}, L2 {e['l2']:.4f}, PSNR {e['psnr']:.2f} dB, SSIM "
        f"{e['ssim']:.4f} against the targets (the unedited sources: L1 {s['l1']:.4f}, PSNR {s['psnr']:.2f} dB)"
    )


def write_outputs(out: Path, report: dict[str, Any], pictures: list[Picture]) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "report.json", out / "report.md", out / "editing.png"]
    paths[0].write_text(json.dumps(strict_json(report), indent=2, allow_nan=False) + "\n")
    paths[1].write_text(markdown(report))
    rows = [pictures[i : i + 4] for i in range(0, len(pictures), 4)]
    Image.fromarray(picture_grid(rows)).save(paths[2])
    return paths
