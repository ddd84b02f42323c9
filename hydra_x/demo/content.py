"""What the demo's report says: its tables, plots and galleries, built from the runs and the evaluations' reports.

Every figure is read from the ``report.json`` content of ``hydra-x eval recon`` / ``hydra-x eval shapes`` (held in
memory here, the same dicts those files hold) and formatted by ``hydra_x.demo.report.fmt``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hydra_x.demo.plots import png_plot, read_series, svg_plot
from hydra_x.demo.report import Plot, Table, fmt

RECON_METRICS = (("psnr", "PSNR", "db"), ("ssim", "SSIM", "ssim"), ("lpips", "LPIPS", "num"))
FRECHET = {"images": ("rfid", "rFID"), "clips": ("rfvd", "rFVD")}
LOSS_KEYS = {
    # Its total is the weighted reconstruction terms plus a negligible KL term (weight 1e-6); the demo's is MSE.
    "tokenizer": ("loss/mse", "loss/l1", "loss/lpips"),
    "unified": ("loss/total", "loss/text", "loss/flow"),
}
HEADLINE = (
    ("recon_image_psnr", "db", "tokenizer: held-out photographs, PSNR"),
    ("recon_image_ssim", "ssim", "tokenizer: held-out photographs, SSIM"),
    ("recon_clip_psnr", "db", "tokenizer: held-out clips, PSNR (per frame)"),
    ("recon_clip_ssim", "ssim", "tokenizer: held-out clips, SSIM (per frame)"),
    ("generation_overall", "pct", "generation: GenEval-style overall (mean of 6 categories)"),
    ("round_trip_generation", "pct", "the same, on the tokenizer's reconstructions of the truth (its most)"),
    ("understanding_accuracy", "pct", "understanding: exact-match accuracy"),
    ("understanding_seen_accuracy", "pct", "the same, on seen combinations (shapes-v1-seen's questions)"),
    ("video_motion_accuracy", "pct", "video: motion accuracy"),
    ("editing_success", "pct", "editing: success"),
    ("editing_psnr", "db", "editing: PSNR outside the edited regions"),
    ("editing_ssim", "ssim", "editing: SSIM outside the edited regions"),
)


def headline_table(figures: dict[str, Any], intervals: dict[str, list[float] | None] | None = None) -> Table:
    """The figures, each proportion of a few dozen items beside its 95% interval (one item moves it by points)."""
    intervals = intervals or {}

    def interval(key: str) -> str:
        ci = intervals.get(key)
        return f"{fmt(ci[0], 'pct')} to {fmt(ci[1], 'pct')}" if ci else ""

    rows = [[what, fmt(figures.get(key), kind), interval(key)] for key, kind, what in HEADLINE]
    return Table("Headline figures", ["what", "value", "95% interval"], rows)


def phase_table(phases: list[tuple[str, float, str]]) -> Table:
    """(phase, seconds in this run, note) rows; a total row at the end."""
    rows = [[name, fmt(sec, "s"), note] for name, sec, note in phases]
    rows.append(["total", fmt(sum(sec for _, sec, _ in phases), "s"), ""])
    return Table("Phases (wall time of this run, m:ss)", ["phase", "time", "note"], rows)


def recon_table(recon: dict[str, dict[str, Any]]) -> Table:
    head = ["data", "protocol", "samples", *(label for _, label, _ in RECON_METRICS), "rFID / rFVD"]
    rows, notes = [], []
    for key, report in recon.items():
        m = report["metrics"]
        cells = [key, report["protocol"]["name"], str(report["data"]["evaluated"])]
        for name, _, kind in RECON_METRICS:
            entry = m.get(name, {})
            cells.append(fmt(entry.get("value"), kind) if entry.get("available") else "n/a")
            if entry and not entry.get("available"):
                notes.append(name.upper() if name != "lpips" else "LPIPS")
        f_name, label = FRECHET[key]
        f = m.get(f_name, {})
        cells.append(fmt(f.get("value"), "num") if f.get("available") else "n/a")
        if f and not f.get("available"):
            notes.append(label)
        rows.append(cells)
    note = (
        f"n/a: {', '.join(dict.fromkeys(notes))} need weights that are not on this machine, and the demo downloads "
        "nothing (the reasons are in eval/recon-*/report.json; docs/evaluation.md says where the files come from)."
        if notes
        else ""
    )
    return Table("Reconstruction (hydra-x eval recon, embedded held-out set)", head, rows, note)


def shapes_tables(shapes: dict[str, Any]) -> list[Table]:
    s, cfg = shapes["summary"], shapes["settings"]
    g = s["generation"]
    gen = [
        [name, str(c["n"]), fmt(c["accuracy"], "pct"), fmt(c["strict_accuracy"], "pct")]
        for name, c in g["categories"].items()
    ]
    gen.append(["overall (mean of categories)", str(g["n"]), fmt(g["overall"], "pct"), fmt(g["strict_overall"], "pct")])
    where = f"{cfg['size']} px, {cfg['steps']} steps, guidance {cfg['guidance']:g}, seed {cfg['seed']}"
    limit = f", at most {cfg['limit']} items per category" if cfg.get("limit") else ""
    tables = [
        Table(
            "Generation (GenEval categories)",
            ["category", "n", "accuracy", "strict"],
            gen,
            f"Held-out prompt set {shapes['prompt_set']['version']}; {where}{limit}.",
        )
    ]
    u = s["understanding"]
    und = [[k, fmt(v, "pct")] for k, v in u["by_kind"].items()] + [[f"all ({u['n']})", fmt(u["accuracy"], "pct")]]
    chance = (
        "For scale: guessing gives 1 in 6 on colours and 1 in 2 on positions, and a model that gives one answer to "
        "every question of a kind scores the share of that answer among the truths."
    )
    if c := s.get("understanding_control"):
        seen = " / ".join(f"{k} {fmt(v, 'pct')}" for k, v in c["by_kind"].items())
        chance += (
            f" On seen combinations ({c['prompt_set']}, {c['n']} questions, the same kinds about combinations "
            f"training draws): {fmt(c['accuracy'], 'pct')} ({seen})."
        )
    tables.append(Table("Understanding (exact match)", ["question kind", "accuracy"], und, chance))
    v, e = s["video"], s["editing"]
    if v["available"]:
        rows = [
            ["motion accuracy", fmt(v["motion_accuracy"], "pct")],
            ["object in every frame", fmt(v["presence"], "pct")],
        ]
        tables.append(Table(f"Video ({v['n']} clips of {cfg['frames']} frames)", ["check", "value"], rows))
    if e["available"]:
        rows = [[op, fmt(x, "pct")] for op, x in e["by_op"].items()] + [[f"all ({e['n']})", fmt(e["success"], "pct")]]
        note = f"Consistency outside the edited regions: PSNR {fmt(e['psnr'], 'db')}, SSIM {fmt(e['ssim'], 'ssim')}."
        tables.append(Table("Editing (success)", ["operation", "success"], rows, note))
    return tables


def loss_plots(runs: dict[str, Path], report_dir: Path) -> list[Plot]:
    """One plot per training run, from its metrics.jsonl."""
    plots = []
    for name, run_dir in runs.items():
        series = read_series(run_dir / "metrics.jsonl", LOSS_KEYS["unified" if name == "unified" else "tokenizer"])
        if not series:
            continue
        title = f"{name}: training losses"
        png = png_plot(series, title, report_dir / "assets" / f"loss_{name}.png")
        plots.append(Plot(title, svg_plot(series, title), f"assets/{png.name}"))
    return plots
