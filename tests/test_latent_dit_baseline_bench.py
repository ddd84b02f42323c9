"""benchmarks/latent_dit_baseline.py: its batches are the same stream whether rendered in workers or not, and a run
scores the prompts at every step asked and at its end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import torch

from hydra_x.data.shapes_tasks import ShapesTasks
from tests.helpers import tiny
from tests.unified.fixtures import tiny_tokenizer

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))
from latent_dit_baseline import Batches, block_noise, captions_to_ids  # noqa: E402


def test_a_batch_is_its_scenes_and_captions_with_seeded_drops():
    text = tiny_tokenizer()
    batches = Batches(32, 64, text, 32)
    x, ids, keep = batches[3]
    tasks = ShapesTasks(0, "train", 32, 5)
    examples = [tasks.example("image_gen", 3 * 64 + j) for j in range(64)]
    assert torch.equal(x, torch.stack([e.visuals[0].pixels for e in examples]))
    dropped = ~keep[:, 1:].any(1)
    assert 0 < int(dropped.sum()) < 20  # about one caption in ten
    kept_ids, kept_keep = captions_to_ids(text, [e.messages[0]["content"] for e in examples], 32)
    assert torch.equal(ids[~dropped], kept_ids[~dropped]) and torch.equal(keep[~dropped], kept_keep[~dropped])
    again = batches[3]
    assert all(torch.equal(a, b) for a, b in zip(again, (x, ids, keep)))  # the same in any worker
    assert not torch.equal(batches[4][0], x)


def test_workers_render_the_same_stream(tmp_path):
    text = tiny_tokenizer()
    loader = lambda workers: torch.utils.data.DataLoader(  # noqa: E731
        Batches(32, 4, text, 16), batch_size=None, num_workers=workers
    )
    plain, workers = iter(loader(0)), iter(loader(2))
    for _ in range(3):
        assert all(torch.equal(a, b) for a, b in zip(next(plain), next(workers)))


def test_a_run_scores_at_each_step_asked_and_at_its_end(tmp_path):
    tiny().save_pretrained(tmp_path / "tok")
    tiny_tokenizer().save_pretrained(tmp_path / "text")
    out = tmp_path / "dit.json"
    cli = [sys.executable, str(BENCH / "latent_dit_baseline.py"), "--tokenizer", str(tmp_path / "tok")]
    cli += ["--text-tokenizer", str(tmp_path / "text"), "--size", "32", "--steps", "4", "--batch", "4"]
    cli += ["--width", "32", "--depth", "1", "--heads", "2", "--eval-at", "2", "--limit", "1", "--sample-steps", "2"]
    cli += ["--json", str(out), "--grid", str(tmp_path / "dit.png"), "--workers", "1"]
    done = subprocess.run(cli, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads(out.read_text())["results"]
    assert [r["step"] for r in results] == [2, 4] and [r["examples"] for r in results] == [8, 16]
    assert all(
        set(r["categories"]) == {"single_object", "two_object", "counting", "colors", "position", "color_attr"}
        for r in results
    )
    assert (tmp_path / "dit.png").stat().st_size > 0


def test_block_noise_is_unit_noise_shared_within_cells_only():
    white = torch.randn(20000, 64, 2, generator=torch.Generator().manual_seed(0))
    assert block_noise(white, (1, 8, 8), 0.0, 4) is white
    noise = block_noise(white, (1, 8, 8), 0.5, 4, torch.Generator().manual_seed(1))
    assert abs(noise.var().item() - 1) < 0.02 and abs(noise.mean().item()) < 0.02
    corr = lambda i, j: torch.corrcoef(torch.stack([noise[:, i, 0], noise[:, j, 0]]))[0, 1].item()  # noqa: E731
    # tokens 0, 1, 8, 9 make the first 2 x 2 cell of a 4 x 4 grid over 8 x 8 tokens; token 2 is the next cell
    assert all(abs(corr(0, j) - 0.5) < 0.03 for j in (1, 8, 9))
    assert abs(corr(0, 2)) < 0.03 and abs(corr(0, 16)) < 0.03
    assert abs(torch.corrcoef(torch.stack([noise[:, 0, 0], noise[:, 0, 1]]))[0, 1].item()) < 0.03  # channels apart
