"""The demo's report folder: ``index.html`` (self-contained apart from its pictures, which sit in ``assets/`` and are
referenced relatively, so the page works opened from disk), its Markdown twin ``report.md`` and ``summary.json``.

Both pages are rendered from the same tables (``Table``) and galleries, so they always say the same thing; the HTML
draws the loss curves as inline SVG, the Markdown links their PNG twins. Every figure comes from the evaluations'
own ``report.json`` content, formatted here and nowhere else.
"""

from __future__ import annotations

import datetime
import json
import math
import shutil
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import Any

from hydra_x._version import __version__
from hydra_x.demo.showcase import ASSETS, Gallery, Tile
from hydra_x.eval.report import strict_json

STYLE = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left}
td.n{text-align:right;font-variant-numeric:tabular-nums}.gallery{display:flex;flex-wrap:wrap;gap:14px}
figure{margin:0;max-width:100%}figure img{max-width:100%;image-rendering:pixelated;border:1px solid #ddd}
figcaption{font-size:.85em;margin-top:.2em}.ok{color:#1a7f37}.x{color:#c62828}.muted{color:#666;font-size:.9em}"""


@dataclass
class Table:
    title: str
    head: list[str]
    rows: list[list[str]]
    note: str = ""


@dataclass
class Plot:
    title: str
    svg: str  # inline SVG markup
    png: str  # its PNG twin, relative to the report folder


@dataclass
class Section:
    title: str
    text: str = ""
    tables: list[Table] = field(default_factory=list)
    galleries: list[Gallery] = field(default_factory=list)
    plots: list[Plot] = field(default_factory=list)


@dataclass
class Report:
    title: str
    lines: list[str]  # what was run: preset, device, LLM, date
    sections: list[Section]
    summary: dict[str, Any]  # summary.json


# ---------------------------------------------------------------------------------------------- formatting


def fmt(value: Any, kind: str) -> str:
    """A figure as the report prints it: "db" (2 decimals + dB), "ssim" (4), "pct" (percent, 1), "s" (m:ss)."""
    if value is None:
        return "n/a"
    if isinstance(value, str):  # "inf" from strict JSON
        return value
    if kind == "db":
        return "inf" if math.isinf(value) else f"{value:.2f} dB"
    if kind == "ssim":
        return f"{value:.4f}"
    if kind == "pct":
        return f"{100 * value:.1f}%"
    if kind == "s":
        return f"{int(value // 60)}:{int(round(value % 60)):02d}"
    return f"{value:.4g}"


def today() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def copy_asset(src: Path, report_dir: Path, name: str) -> str | None:
    """Copy an evaluation's picture into the report's assets (so the folder stands alone); None if absent."""
    if not src.is_file():
        return None
    dst = report_dir / ASSETS / f"{name}{src.suffix}"
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)
    return f"{ASSETS}/{dst.name}"


# ---------------------------------------------------------------------------------------------- HTML


def _html_table(t: Table) -> str:
    def cell(v: str) -> str:
        numeric = v[:1].isdigit() or v[:1] == "-" or v == "n/a"
        return f'<td class="n">{escape(v)}</td>' if numeric else f"<td>{escape(v)}</td>"

    head = "".join(f"<th>{escape(h)}</th>" for h in t.head)
    rows = "".join("<tr>" + "".join(cell(v) for v in r) + "</tr>" for r in t.rows)
    note = f'<p class="muted">{escape(t.note)}</p>' if t.note else ""
    return f"<h3>{escape(t.title)}</h3><table><tr>{head}</tr>{rows}</table>{note}"


def _html_tile(tile: Tile) -> str:
    mark = "" if tile.ok is None else (' <span class="ok">ok</span>' if tile.ok else ' <span class="x">x</span>')
    note = f'<br><span class="muted">{escape(tile.note)}</span>' if tile.note else ""
    alt = escape(tile.caption, quote=True)
    return (
        f'<figure><img src="{escape(tile.path, quote=True)}" alt="{alt}"><figcaption>{escape(tile.caption)}'
        f"{mark}{note}</figcaption></figure>"
    )


def _html_gallery(g: Gallery) -> str:
    tiles = "".join(_html_tile(t) for t in g.tiles)
    return f'<h3>{escape(g.title)}</h3><p class="muted">{escape(g.text)}</p><div class="gallery">{tiles}</div>'


def html(report: Report) -> str:
    parts = [
        f'<!doctype html><html><head><meta charset="utf-8"><title>{escape(report.title)}</title>',
        f"<style>{STYLE}</style></head><body><h1>{escape(report.title)}</h1>",
    ]
    parts += [f'<p class="muted">{escape(line)}</p>' for line in report.lines]
    for s in report.sections:
        parts.append(f"<h2>{escape(s.title)}</h2>" + (f"<p>{escape(s.text)}</p>" if s.text else ""))
        parts += [_html_table(t) for t in s.tables]
        parts += [f"<h3>{escape(p.title)}</h3>{p.svg}" for p in s.plots]
        parts += [_html_gallery(g) for g in s.galleries if g.tiles]
    parts.append(f'<p class="muted">hydra-x {__version__}</p></body></html>')
    return "\n".join(parts) + "\n"


# ---------------------------------------------------------------------------------------------- Markdown


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _md_table(t: Table) -> str:
    lines = [f"### {t.title}", "", "| " + " | ".join(t.head) + " |", "|" + "---|" * len(t.head)]
    lines += ["| " + " | ".join(_md_escape(v) for v in r) + " |" for r in t.rows]
    return "\n".join(lines) + ("\n\n" + t.note if t.note else "") + "\n"


def _md_gallery(g: Gallery) -> str:
    lines = [f"### {g.title}", "", g.text, ""]
    for tile in g.tiles:
        mark = "" if tile.ok is None else (" (ok)" if tile.ok else " (x)")
        note = f" — {tile.note}" if tile.note else ""
        lines.append(f"![{_md_escape(tile.caption)}]({tile.path})  \n*{_md_escape(tile.caption)}*{mark}{note}\n")
    return "\n".join(lines) + "\n"


def markdown(report: Report) -> str:
    parts = [f"# {report.title}\n", *(f"{line}  " for line in report.lines), ""]
    for s in report.sections:
        parts.append(f"## {s.title}\n" + (f"\n{s.text}\n" if s.text else ""))
        parts += [_md_table(t) for t in s.tables]
        parts += [f"### {p.title}\n\n![{p.title}]({p.png})\n" for p in s.plots]
        parts += [_md_gallery(g) for g in s.galleries if g.tiles]
    parts.append(f"hydra-x {__version__}\n")
    return "\n".join(parts)


def write_report(report: Report, folder: Path) -> tuple[Path, Path]:
    """index.html, report.md and summary.json into ``folder`` (the assets are already there)."""
    folder.mkdir(parents=True, exist_ok=True)
    index, md = folder / "index.html", folder / "report.md"
    index.write_text(html(report))
    md.write_text(markdown(report))
    (folder / "summary.json").write_text(json.dumps(strict_json(report.summary), indent=2, allow_nan=False) + "\n")
    return index, md
