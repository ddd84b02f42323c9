"""Run by test_torchrun_stop.py under `torchrun --nproc-per-node 2`: the `tiny` unified training in which rank 1
alone is sent SIGTERM during step ``SIGNAL_STEP`` (as a scheduler may reach one process first); each rank writes
the summary its train() returned, and exits with its exit code."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

from hydra_x.train.unified import loop
from hydra_x.train.unified.__main__ import parse_config

SIGNAL_STEP = 2


def main(argv: list[str]) -> None:
    cfg = parse_config(argv)
    rank, step_of = int(os.environ["RANK"]), loop.train_step

    def train_step(run, batches, step):
        if step == SIGNAL_STEP and rank == 1:
            os.kill(os.getpid(), signal.SIGTERM)
        return step_of(run, batches, step)

    loop.train_step = train_step
    summary = loop.train(cfg)
    (Path(cfg.out_dir) / f"rank{rank}.json").write_text(json.dumps(summary))
    sys.exit(summary["exit_code"])  # as `hydra-x train unified` does


if __name__ == "__main__":
    main(sys.argv[1:])
