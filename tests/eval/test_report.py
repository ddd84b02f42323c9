"""report.json / report.md / pictures, and the table that merges several reports."""

import json

import pytest
from PIL import Image

from hydra_x.eval.recon import ReconOptions
from hydra_x.eval.report import build_report, load_reports, table, write_outputs
from tests.eval.recon_fixtures import image_folder, run, tiny_nets, video_folder


@pytest.fixture(scope="module")
def nets(tmp_path_factory):
    return tiny_nets(tmp_path_factory.mktemp("nets"))


def _write(tmp_path, data, protocol, nets, **kw):
    result, model, d = run(data, protocol, nets, **kw)
    opts = ReconOptions(batch_size=2, lpips_weights=nets["lpips"], feature_net=nets[d.media])
    report = build_report(result, d.protocol, model, d, opts)
    paths = write_outputs(tmp_path / "out", report, result)
    return report, paths, result


def test_image_report_has_every_figure_the_protocol_and_the_skipped_files(tmp_path, nets):
    root = image_folder(tmp_path / "images")
    report, paths, result = _write(tmp_path, str(root), "image256", nets, size=32)
    on_disk = json.loads((tmp_path / "out" / "report.json").read_text())
    assert on_disk == json.loads(json.dumps(report))
    assert on_disk["protocol"]["name"] == "image256+size=32" and on_disk["protocol"]["size"] == 32
    for k in ("psnr", "ssim", "lpips", "rfid"):
        assert on_disk["metrics"][k]["available"] and isinstance(on_disk["metrics"][k]["value"], float)
    assert on_disk["metrics"]["psnr"]["value"] == result.metrics["psnr"]["value"]
    d = on_disk["data"]
    assert (d["items"], d["evaluated"], d["skipped"]) == (8, 5, 3)
    assert {s["file"].rsplit("/", 1)[-1] for s in d["skipped_files"]} == {"empty.png", "corrupt.png", "truncated.png"}
    assert d["skipped_by_category"] == {"corrupt": 2, "empty": 1}
    assert on_disk["model"]["preset"] == "tiny" and on_disk["model"]["seed"] == 0
    assert on_disk["versions"]["torch"] and on_disk["device"]["type"] == "cpu"
    t = on_disk["throughput"]
    assert t["encode"]["samples_per_s"] > 0 and t["decode"]["peak_memory_gib"] is None  # CPU: no memory figure
    md = (tmp_path / "out" / "report.md").read_text()
    assert "| PSNR (dB) |" in md and "empty.png" in md and "image256+size=32" in md
    rows = (tmp_path / "out" / "per_sample.csv").read_text().splitlines()
    assert len(rows) == 6 and rows[0] == "index,file,psnr,ssim,lpips"
    with Image.open(tmp_path / "out" / "samples.png") as im:
        assert im.size[1] > 3 * 32  # three rows: worst, median, best


def test_video_report_writes_a_gif_strip(tmp_path, nets):
    root = video_folder(tmp_path / "videos")
    report, paths, _ = _write(tmp_path, str(root), "video17x256", nets, size=16, frames=5)
    assert (tmp_path / "out" / "samples.gif").is_file() and (tmp_path / "out" / "samples.png").is_file()
    assert report["data"]["skipped_by_category"] == {"corrupt": 1, "too_short": 1}
    with Image.open(tmp_path / "out" / "samples.gif") as im:
        assert im.n_frames == 5


def test_table_merges_reports_and_flags_unavailable_metrics_and_protocol_mismatch(tmp_path, nets):
    a, _, _ = _write(tmp_path / "a", "embedded", "image256", nets, size=32, max_samples=3)
    b = json.loads(json.dumps(a))
    b["model"]["name"] = "peer VAE"
    b["metrics"]["lpips"] = {"available": False, "reason": "no weights"}
    text = table([a, b])
    lines = text.splitlines()
    assert lines[0].startswith("| model | protocol |") and len([x for x in lines if x.startswith("| ")]) == 3
    assert "| peer VAE |" in text and "n/a" in text and "peer VAE: lpips unavailable: no weights" in text
    assert "not comparable" not in text
    b["protocol"]["size"] = 64
    assert "different protocols" in table([a, b])
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(ValueError, match="is not a report.json"):
        load_reports([str(tmp_path / "x.json")])


def test_report_json_is_strict_json_with_an_infinite_psnr() -> None:
    from hydra_x.eval.report import _cell, strict_json

    data = {"psnr": {"available": True, "value": float("inf")}, "per": [1.0, float("-inf"), float("nan")]}
    text = json.dumps(strict_json(data), allow_nan=False)
    back = json.loads(text)
    assert back == {"psnr": {"available": True, "value": "inf"}, "per": [1.0, "-inf", "nan"]}
    assert _cell(back["psnr"], 2) == "inf"
    assert _cell({"available": True, "value": 31.234}, 2) == "31.23"
