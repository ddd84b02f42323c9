"""Run by test_torchrun.py under `torchrun --nproc-per-node 2`: each rank saves its batches."""

from __future__ import annotations

import os
import sys

import torch
import torch.distributed as dist

from hydra_x.data import DataConfig, SourceConfig, TokenizerDataLoader


def main(image_dir: str, shard_dir: str, out: str) -> None:
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    cfg = DataConfig(
        sources=(
            SourceConfig("embedded_images"),
            SourceConfig("embedded_videos"),
            SourceConfig("image_folder", image_dir),
            SourceConfig("image_shards", shard_dir),
        ),
        image_size=32,
        clip_frames=5,
        image_batch_size=2,
        video_batch_size=1,
        num_workers=1,
    )
    loader = TokenizerDataLoader(cfg, rank=rank, world_size=world)
    it = iter(loader)
    batches = [next(it) for _ in range(6)]
    kinds = [b.kind for b in batches]
    every = [None] * world
    dist.all_gather_object(every, kinds)
    assert all(k == kinds for k in every), every  # all ranks run the same model parts
    torch.save(
        {"keys": [b.keys for b in batches], "pixels": [b.pixels for b in batches], "state": loader.state_dict()},
        os.path.join(out, f"rank{rank}.pt"),
    )
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(*sys.argv[1:4])
