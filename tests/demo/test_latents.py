"""The unified model's tokenizer: the run's export with shapes-world latent statistics, reconstructing as before."""

from __future__ import annotations

import torch

from hydra_x.data.shapes_tasks import ShapesTasks
from hydra_x.demo.data import write_shapes_images
from hydra_x.demo.latents import normalised_tokenizer
from hydra_x.tokenizer import HydraXTokenizer


def test_latent_statistics_normalise_shapes_latents_and_leave_reconstructions_alone(tmp_path):
    run = tmp_path / "tokenizer"
    HydraXTokenizer.from_preset("tiny", seed=0).save_pretrained(run / "export")
    folder = normalised_tokenizer(run, 64, samples=32)
    assert folder == run / "shapes-normalised" and normalised_tokenizer(run, 64, samples=32) == folder  # made once
    before = HydraXTokenizer.from_pretrained(run / "export").eval()
    after = HydraXTokenizer.from_pretrained(folder).eval()
    tasks = ShapesTasks(0, "train", 64, 5)
    x = torch.stack([tasks.example("image_gen", k).visuals[0].pixels for k in range(32)])
    with torch.no_grad():
        z = after.encode(x)
        torch.testing.assert_close(after.decode(z), before.decode(before.encode(x)), atol=1e-4, rtol=1e-4)
    assert abs(float(z.mean())) < 0.05 and abs(float(z.std()) - 1) < 0.05


def test_shapes_images_are_written_once(tmp_path):
    folder = write_shapes_images(tmp_path / "shapes", 64, 5)
    assert sorted(p.name for p in folder.iterdir()) == [f"{k:06d}.png" for k in range(5)]
    stamp = (folder / "000000.png").stat().st_mtime_ns
    assert write_shapes_images(folder, 64, 5) == folder and (folder / "000000.png").stat().st_mtime_ns == stamp
