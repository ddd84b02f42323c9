"""The demo end to end on a tiny config: the report folder, its pictures, its figures against the evaluations'
report.json files, the loss plots against the run logs, and reuse / retraining of the trained runs."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest
from PIL import Image

from hydra_x.cli.demo import summary_text
from hydra_x.demo.content import LOSS_KEYS
from hydra_x.demo.plots import read_series
from hydra_x.demo.report import fmt
from hydra_x.demo.run import prepare_runs, run_demo, train_models


def referenced(report_dir: Path) -> set[str]:
    """Every file the HTML (src / href) and the Markdown (![...](...)) point to."""
    html = (report_dir / "index.html").read_text()
    md = (report_dir / "report.md").read_text()
    return set(re.findall(r'(?:src|href)="([^"#]+)"', html)) | set(re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md))


def test_the_report_folder_holds_both_pages_and_every_picture_they_show(demo_run):
    cfg, result, _ = demo_run
    assert result.report == cfg.report_dir / "index.html" and result.report.is_file()
    assert result.markdown == cfg.report_dir / "report.md" and result.markdown.is_file()
    paths = referenced(cfg.report_dir)
    assert any(p.endswith(".gif") for p in paths) and any(p.endswith(".png") for p in paths)
    for path in paths:
        assert not path.startswith(("/", "http:", "https:", "file:")), path  # relative: works opened from disk
        with Image.open(cfg.report_dir / path) as im:
            im.load()
            assert im.width > 0 and im.height > 0


def test_the_reports_figures_are_those_of_the_evaluations_report_json(demo_run):
    cfg, result, _ = demo_run
    summary = json.loads((cfg.report_dir / "summary.json").read_text())
    recon = {k: json.loads((cfg.eval_dir / f"recon-{k}" / "report.json").read_text()) for k in ("images", "clips")}
    shapes = json.loads((cfg.eval_dir / "shapes" / "report.json").read_text())["summary"]
    expected = {
        "recon_image_psnr": recon["images"]["metrics"]["psnr"]["value"],
        "recon_image_ssim": recon["images"]["metrics"]["ssim"]["value"],
        "recon_clip_psnr": recon["clips"]["metrics"]["psnr"]["value"],
        "recon_clip_ssim": recon["clips"]["metrics"]["ssim"]["value"],
        "generation_overall": shapes["generation"]["overall"],
        "round_trip_generation": shapes["round_trip"]["generation"]["overall"],
        "understanding_accuracy": shapes["understanding"]["accuracy"],
        "understanding_seen_accuracy": shapes["understanding_control"]["accuracy"],
        "video_motion_accuracy": shapes["video"]["motion_accuracy"],
        "editing_success": shapes["editing"]["success"],
        "editing_psnr": shapes["editing"]["psnr"],
        "editing_ssim": shapes["editing"]["ssim"],
    }
    assert summary["figures"] == expected == result.figures
    intervals = summary["intervals"]  # each proportion's 95% interval, from the same report
    assert intervals["understanding_accuracy"] == shapes["understanding"]["ci95"]
    assert intervals["editing_success"] == shapes["editing"]["success_ci95"]
    lo, hi = intervals["understanding_accuracy"]
    assert lo <= expected["understanding_accuracy"] <= hi
    # the closing summary reads each figure from its own key (distinct values, so a swapped key shows)
    figures = {**result.figures, "generation_overall": 0.125, "round_trip_generation": 0.5}
    figures |= {"understanding_accuracy": 0.25, "understanding_seen_accuracy": 0.75}
    text = summary_text(dataclasses.replace(result, figures=figures))
    assert "generation 12.5% (GenEval overall; the tokenizer's round trip 50.0%)" in text
    assert "understanding 25.0% (seen combinations 75.0%)" in text
    html, md = result.report.read_text(), result.markdown.read_text()
    keys = ("recon_image_psnr", "db"), ("recon_clip_ssim", "ssim"), ("understanding_accuracy", "pct")
    for key, kind in (*keys, ("understanding_seen_accuracy", "pct")):
        assert f"| {fmt(expected[key], kind)} |" in md
        assert f">{fmt(expected[key], kind)}<" in html
    assert f"| {fmt(expected['understanding_accuracy'], 'pct')} | {fmt(lo, 'pct')} to {fmt(hi, 'pct')} |" in md
    for category, c in shapes["generation"]["categories"].items():
        assert f"| {category} | {c['n']} | {fmt(c['accuracy'], 'pct')} |" in md


def test_the_loss_plots_are_drawn_from_the_run_logs(demo_run):
    cfg, result, _ = demo_run
    html = result.report.read_text()
    for name in ("tokenizer", "unified"):
        keys = LOSS_KEYS[name]
        rows = [json.loads(line) for line in (cfg.out / name / "metrics.jsonl").read_text().splitlines()]
        logged = sorted({r["step"] for r in rows if keys[0] in r})
        assert [int(x) for x, _ in read_series(cfg.out / name / "metrics.jsonl", keys)[0].points] == logged
        svg = html[html.index(f'aria-label="{name}: training losses"') :]
        first_line = re.search(r'<polyline[^>]*points="([^"]+)"', svg).group(1)
        assert len(first_line.split()) == len(logged)
        assert (cfg.report_dir / "assets" / f"loss_{name}.png").is_file()


def test_a_second_run_reuses_the_trained_runs_and_retrain_trains_again(demo_run):
    cfg, _, first_log = demo_run
    assert any(m.startswith("tokenizer: training") for m in first_log)
    exports = {name: cfg.out / name / "export" / "config.json" for name in ("tokenizer-warmup", "tokenizer", "unified")}
    before = {name: p.stat().st_mtime_ns for name, p in exports.items()}
    log = []
    again = run_demo(cfg, log=log.append)  # the whole demo again: nothing is trained
    assert all(o.reused for o in again.trainings.values())
    assert sum("reusing the trained run" in m for m in log) == 3
    assert {name: p.stat().st_mtime_ns for name, p in exports.items()} == before
    assert [note for name, _, note in again.phases if name.startswith("train")] == [
        f"reused (trained in {s / 60:.1f} min)"
        for s in json.loads((cfg.out / "demo.json").read_text())["seconds"].values()
    ]
    log.clear()
    llm, marker = prepare_runs(cfg, "unified", log.append)  # --retrain unified, then the training phases
    outcomes = train_models(cfg, llm, marker, log.append, [])
    assert outcomes["tokenizer-warmup"].reused and outcomes["tokenizer"].reused and not outcomes["unified"].reused
    assert exports["tokenizer"].stat().st_mtime_ns == before["tokenizer"]
    assert exports["unified"].stat().st_mtime_ns != before["unified"]
    assert f"--retrain: deleted {cfg.unified_dir}" in log


@pytest.mark.parametrize("value", ["bogus"])
def test_retrain_takes_only_its_words(demo_run, value):
    from hydra_x.demo.config import DemoError

    with pytest.raises(DemoError, match="--retrain takes all or unified"):
        prepare_runs(demo_run[0], value, print)


def test_each_headline_interval_is_read_from_its_own_figure():
    # Distinct intervals per figure, so a key read from another figure's interval shows (a smoke run's can be equal).
    from hydra_x.demo.evaluate import headline_intervals

    summary = {
        "understanding": {"ci95": [0.1, 0.2]},
        "understanding_control": {"ci95": [0.3, 0.4]},
        "video": {"available": True, "motion_ci95": [0.5, 0.6]},
        "editing": {"available": True, "success_ci95": [0.7, 0.8]},
    }
    assert headline_intervals({"summary": summary}) == {
        "understanding_accuracy": [0.1, 0.2],
        "understanding_seen_accuracy": [0.3, 0.4],
        "video_motion_accuracy": [0.5, 0.6],
        "editing_success": [0.7, 0.8],
    }
    summary["video"], summary["editing"] = {"available": False}, {"available": False}
    del summary["understanding_control"]
    intervals = headline_intervals({"summary": summary})
    assert intervals["understanding_seen_accuracy"] is None and intervals["editing_success"] is None
