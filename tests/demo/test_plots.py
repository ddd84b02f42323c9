"""Loss curves drawn as SVG text and as PNG from the same layout."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

from PIL import Image

from hydra_x.demo.plots import HEIGHT, WIDTH, Layout, Series, png_plot, read_series, svg_plot


def test_series_come_from_the_run_log_with_the_last_value_of_a_repeated_step(tmp_path):
    log = tmp_path / "metrics.jsonl"
    rows = [
        {"step": 10, "loss/total": 2.0},
        {"step": 20, "loss/total": 1.0, "loss/l1": 0.5},
        {"step": 20, "loss/total": 0.9},
    ]
    log.write_text("\n".join(json.dumps(r) for r in rows) + "\n{broken")
    total, l1 = read_series(log, ("loss/total", "loss/l1", "loss/absent"))
    assert total.points == [(10.0, 2.0), (20.0, 0.9)] and l1.points == [(20.0, 0.5)]


def test_svg_and_png_plots(tmp_path):
    series = [Series("loss/total", [(float(s), 10.0 / (1 + s)) for s in range(0, 500, 10)]), Series("b", [(0.0, 1.0)])]
    assert Layout.fit(series).log  # values spanning more than 20x: a log axis
    svg = ET.fromstring(svg_plot(series, "run: losses"))
    lines = svg.findall("{http://www.w3.org/2000/svg}polyline")
    assert len(lines) == 2 and len(lines[0].get("points").split()) == 50
    for point in lines[0].get("points").split():
        x, y = map(float, point.split(","))
        assert 0 <= x <= WIDTH and 0 <= y <= HEIGHT
    with Image.open(png_plot(series, "run: losses", tmp_path / "a" / "loss.png")) as im:
        assert im.size == (WIDTH, HEIGHT)
    assert not Layout.fit([Series("flat", [(0.0, 1.0), (5.0, 1.0)])]).log
