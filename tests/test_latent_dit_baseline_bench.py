"""benchmarks/latent_dit_baseline.py: its batches are the same stream whether rendered in workers or not, and a run
scores the prompts at every step asked and at its end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from hydra_x.data.shapes_tasks import ShapesTasks
from tests.helpers import tiny
from tests.unified.fixtures import tiny_tokenizer

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))
from latent_dit_baseline import (  # noqa: E402
    Batches,
    LatentDiT,
    PixelPatches,
    block_noise,
    captions_to_ids,
    sincos_2d,
)


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


@pytest.mark.parametrize("space", ["tokenizer", "pixels"])
def test_a_run_scores_at_each_step_asked_and_at_its_end(tmp_path, space):
    tiny().save_pretrained(tmp_path / "tok")
    tiny_tokenizer().save_pretrained(tmp_path / "text")
    out = tmp_path / "dit.json"
    cli = [sys.executable, str(BENCH / "latent_dit_baseline.py")]
    cli += ["--tokenizer", str(tmp_path / "tok")] if space == "tokenizer" else ["--pixels", "8", "--predict", "x"]
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


def test_pixel_patches_are_the_pictures_patches_and_decode_back():
    x = torch.rand(2, 3, 16, 24) * 2 - 1
    space = PixelPatches(8)
    space.measure(x)
    z = space.encode(x)
    assert z.shape == (2, 192, 1, 2, 3) and space.config.latent_channels == 192
    assert abs(z.mean().item()) < 1e-5 and abs(z.std().item() - 1) < 1e-3  # the measured scale
    # token (row 1, column 2) is the patch x[:, :, 8:16, 16:24], channel-major, then rows, then columns
    patch = (x[0, :, 8:16, 16:24] - space.stats[0]) / space.stats[1]
    assert torch.allclose(z[0, :, 0, 1, 2], patch.reshape(-1), atol=1e-6)
    assert torch.allclose(space.decode(z), x, atol=1e-5)


def test_an_x_predicting_dit_returns_the_velocity_toward_its_clean_estimate():
    torch.manual_seed(0)
    model = LatentDiT(50, 4, 9, 32, 1, 2, predict="x")
    nn.init.normal_(model.out.weight)  # a non-zero clean estimate
    ids, keep = torch.randint(0, 50, (2, 5)), torch.ones(2, 5, dtype=torch.bool)
    z_t, t = torch.randn(2, 9, 4), torch.tensor([0.5, 0.02])
    v = model(ids, keep, z_t, t)
    model.predict = "velocity"
    x_hat = model(ids, keep, z_t, t)  # the same out layer, read as it is
    assert torch.allclose(z_t[0] - 0.5 * v[0], x_hat[0], atol=1e-5)  # x = z_t - t v
    assert torch.allclose(v[1], (z_t[1] - x_hat[1]) / 0.05, atol=1e-4)  # t clamped at 0.05, as JiT


def test_sincos_positions_tell_rows_and_columns_apart_and_reach_only_the_latent_tokens():
    pos = sincos_2d(16, 3, 4)  # row-major: token 5 is row 1, column 1
    assert pos.shape == (12, 16)
    assert torch.equal(pos[5, :8], pos[6, :8]) and not torch.equal(pos[5, 8:], pos[6, 8:])  # same row
    assert torch.equal(pos[5, 8:], pos[9, 8:]) and not torch.equal(pos[5, :8], pos[9, :8])  # same column
    assert torch.allclose(pos[5, 0], torch.tensor(1.0).sin()) and torch.allclose(pos[9, 8], torch.tensor(1.0).sin())
    assert len({tuple(row.tolist()) for row in pos}) == 12
    with pytest.raises(ValueError, match="divisible by 4"):
        sincos_2d(6, 2, 2)
    torch.manual_seed(0)
    plain = LatentDiT(50, 4, 12, 16, 1, 2)
    placed = LatentDiT(50, 4, 12, 16, 1, 2, grid=(1, 3, 4))
    placed.load_state_dict(plain.state_dict())  # the same weights; the fixed positions are no parameter
    seen = {}
    hook = lambda name: lambda module, args: seen.__setitem__(name, args[0])  # noqa: E731
    plain.blocks[0].register_forward_pre_hook(hook("plain"))
    placed.blocks[0].register_forward_pre_hook(hook("placed"))
    ids, keep, z_t, t = (
        torch.randint(0, 50, (2, 5)),
        torch.ones(2, 5, dtype=torch.bool),
        torch.randn(2, 12, 4),
        torch.rand(2),
    )
    plain(ids, keep, z_t, t), placed(ids, keep, z_t, t)
    assert torch.equal(seen["placed"][:, :5], seen["plain"][:, :5])  # captions untouched
    assert torch.allclose(seen["placed"][:, 5:] - seen["plain"][:, 5:], pos.expand(2, -1, -1), atol=1e-6)


@pytest.mark.parametrize("patch", ["0", "7"])
def test_a_pixel_patch_that_does_not_tile_the_picture_is_refused(patch):
    cli = [sys.executable, str(BENCH / "latent_dit_baseline.py"), "--pixels", patch, "--text-tokenizer", "unused"]
    done = subprocess.run(cli, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and f"--pixels must be a patch size that divides --size 64, got {patch}" in done.stderr
