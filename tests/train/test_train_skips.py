"""A training run counts bad files, not skip events: skipped.log, summary.json and the metrics' skipped_total
name each bad file once, however often it is drawn, and a resumed run does not count it again."""

from __future__ import annotations

import json
import shutil

from hydra_x.data.config import SourceConfig
from hydra_x.data.media import IMAGE_EXTENSIONS
from hydra_x.train.tokenizer import train
from hydra_x.train.tokenizer.recipes import tiny
from tests.media_fixtures import bad_image_bytes


def config(out, folder, **changes):
    cfg = tiny()
    cfg.out_dir, cfg.eval_every, cfg.ckpt_every, cfg.log_every = str(out), 0, 100, 1
    cfg.heldout_images = cfg.heldout_clips = 0
    cfg.data.sources = (SourceConfig("image_folder", str(folder)),)
    cfg.data.image_size, cfg.data.image_batch_size = 32, 4
    for key, value in changes.items():
        setattr(cfg, key, value)
    return cfg


def test_each_bad_file_is_logged_and_counted_once(tmp_path, image_dir):
    folder = tmp_path / "data"
    folder.mkdir()
    for path in sorted(p for p in image_dir.iterdir() if p.suffix in IMAGE_EXTENSIONS)[:3]:
        shutil.copy(path, folder / path.name)
    for name in ("bad_a.jpg", "bad_b.jpg"):  # pass the scan, fail when decoded: drawn about 8 times each
        (folder / name).write_bytes(bad_image_bytes()["bad_truncated.jpg"])
    (folder / "bad_c.png").write_bytes(b"")  # left out by the scan
    run = tmp_path / "run"
    before = train(config(run, folder, steps=10, stop_at_step=5))
    after = train(config(run, folder, steps=10))  # resumed at step 5: files reported before are not counted again
    assert (before["step"], after["step"]) == (5, 10)
    logged = [line.split("\t")[1].rsplit("/", 1)[-1] for line in (run / "skipped.log").read_text().splitlines()]
    assert sorted(logged) == ["bad_a.jpg", "bad_b.jpg", "bad_c.png"]  # 40 draws, each bad file logged once
    assert before["skipped"].get("empty") == 1
    assert sum(before["skipped"].values()) + sum(after["skipped"].values()) == 3
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert rows[4]["step"] == 5 and rows[4]["skipped_total"] == sum(before["skipped"].values())
