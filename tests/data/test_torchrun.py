"""Two processes under torchrun, each with a DataLoader worker: the ranks split the global batch."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from hydra_x.data import DataConfig, SourceConfig, TokenizerDataLoader


@pytest.mark.slow
def test_two_ranks_under_torchrun(tmp_path, image_dir, image_shards):
    script = Path(__file__).with_name("torchrun_data.py")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2]), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           str(script), str(image_dir), str(image_shards), str(tmp_path)]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-4000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in (0, 1)]
    assert ranks[0]["state"]["world_size"] == 2 and ranks[1]["state"]["rank"] == 1
    # Map-style steps: the two ranks' slices are one rank's batch at twice the per-rank size.
    cfg = DataConfig(
        sources=(
            SourceConfig("embedded_images"),
            SourceConfig("embedded_videos"),
            SourceConfig("image_folder", str(image_dir)),
            SourceConfig("image_shards", str(image_shards)),
        ),
        image_size=32,
        clip_frames=5,
        image_batch_size=4,
        video_batch_size=2,
        num_workers=0,
    )
    it = iter(TokenizerDataLoader(cfg))
    checked = 0
    for step in range(6):
        whole = next(it)
        if whole.source.startswith("image_shards"):
            keys = ranks[0]["keys"][step] + ranks[1]["keys"][step]
            assert len(set(keys)) == len(keys)  # the ranks read different shards
            continue
        assert ranks[0]["keys"][step] + ranks[1]["keys"][step] == whole.keys
        assert torch.equal(torch.cat([ranks[0]["pixels"][step], ranks[1]["pixels"][step]]), whole.pixels)
        checked += 1
    assert checked >= 3
