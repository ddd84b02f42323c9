"""Run by test_torchrun_stop.py under `torchrun --nproc-per-node 2`: the `tiny` unified training with a time budget,
in which rank 1 alone pauses after its log line of step ``STALL_STEP`` (inside the budget probe's second half), so
that rank 0 alone counts a stalled step: its next step waits for rank 1. Each rank writes the summary its train()
returned."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from hydra_x.train.engine import Engine
from hydra_x.train.unified import loop
from hydra_x.train.unified.__main__ import parse_config

STALL_STEP = 6
STALL_S = 3.0


def main(argv: list[str]) -> None:
    cfg = parse_config(argv)
    rank, log = int(os.environ["RANK"]), Engine.log

    def pausing_log(engine, *args, **kwargs):
        record = log(engine, *args, **kwargs)  # its collectives done: rank 0 goes on and waits in its next step
        if rank == 1 and engine.step == STALL_STEP:
            time.sleep(STALL_S)
        return record

    Engine.log = pausing_log
    summary = loop.train(cfg)
    (Path(cfg.out_dir) / f"rank{rank}.json").write_text(json.dumps(summary))


if __name__ == "__main__":
    main(sys.argv[1:])
