"""How long does the training process spend receiving one unified step from a data worker? A step crosses
processes pickled; each tensor in it is mapped from shared memory on the receiving side one at a time, so a step
whose pictures travel one tensor each (as built) costs the trainer time per picture, where one stack per picture
shape (``StepExamples``' own pickling, what training does) costs a few mappings. Milliseconds of ``next()`` on the
trainer's side once the worker has the step ready (median of ``--repeats``), for the shapes world's mixture.

    python benchmarks/unified_step_transfer.py [--examples 512 2048] [--size 64 --frames 9 --edit-weight 4]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.utils.data import DataLoader, IterableDataset

from hydra_x.data.mixture import UnifiedDataLoader
from hydra_x.train.unified.recipes import small

WAYS = {"one tensor per picture (as built)": "examples", "one stack per picture shape (StepExamples)": "step"}


class Steps(IterableDataset):
    """The shapes world's steps, built in the worker; yields each step whole (``StepExamples``) or its list of
    examples, whose pictures then pickle one tensor each."""

    def __init__(self, data_config, way: str) -> None:
        self.data_config, self.way = data_config, way

    def __iter__(self):
        for step in UnifiedDataLoader(self.data_config):
            yield step if self.way == "step" else step.examples


def receive_ms(data_config, way: str, repeats: int, ready_s: float) -> tuple[float, int]:
    """Median ms of next() on the trainer's side, the worker having had ``ready_s`` to build the step; and the
    pictures a step holds."""
    loader = DataLoader(Steps(data_config, way), batch_size=None, num_workers=1, prefetch_factor=2)
    steps, times = iter(loader), []
    item = next(steps)
    for _ in range(repeats):
        time.sleep(ready_s)
        start = time.perf_counter()
        item = next(steps)
        times.append((time.perf_counter() - start) * 1e3)
    examples = item.examples if way == "step" else item
    del steps, loader
    return statistics.median(times), sum(len(ex.visuals) for ex in examples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--examples", type=int, nargs="+", default=[512, 2048])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--size", type=int, default=64, help="picture side")
    parser.add_argument("--frames", type=int, default=9, help="frames of a clip")
    parser.add_argument("--edit-weight", type=float, default=4.0, help="the edits' task weight")
    parser.add_argument("--ready", type=float, default=3.0, help="seconds the worker gets to build each step")
    args = parser.parse_args()
    print(f"Trainer-side ms to receive one step from a worker (CPU, {args.size} px, {args.frames}-frame clips, "
          f"edits weighted {args.edit_weight:g})")  # fmt: skip
    print("| examples | pictures | " + " | ".join(WAYS) + " |")
    print("|---:|---:|" + "---:|" * len(WAYS))
    for n in args.examples:
        cfg = small().data
        cfg.num_workers, cfg.examples_per_step = 0, n
        cfg.image_size, cfg.clip_frames, cfg.task_ratios["edit"] = args.size, args.frames, args.edit_weight
        figures = [receive_ms(cfg, way, args.repeats, args.ready) for way in WAYS.values()]
        print(f"| {n} | {figures[0][1]} | " + " | ".join(f"{ms:.1f}" for ms, _ in figures) + " |", flush=True)


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
