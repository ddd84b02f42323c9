"""Run by test_torchrun_stop.py under `torchrun --nproc-per-node 2`: each rank gives LaggedMax its values and
writes the answers."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from hydra_x.distributed import LaggedMax

VALUES = {0: [0.0, 0.0, 5.0, 0.0], 1: [0.0, 3.0, 0.0, 0.0]}


def main(out: str) -> None:
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    agreement = LaggedMax(torch.device("cpu"))
    answers = [agreement(v) for v in VALUES[rank]] + [agreement.settle()]
    (Path(out) / f"rank{rank}.json").write_text(json.dumps(answers))
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
