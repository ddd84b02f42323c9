"""The forward's host index runs built by torch's CPU repeat_interleave against NumPy's repeat, on an idle CPU and
beside busy processes.

    python benchmarks/host_index_contention.py                 # 600 runs of 64 tokens, 0 / 2 / 4 busy processes
    python benchmarks/host_index_contention.py --runs 600 --length 64 --busy 0 8 16 --calls 500

torch's CPU kernel splits repeat_interleave at a grain of one run (at::parallel_for in
aten/src/ATen/native/Repeat.cpp), so each call is a parallel region over every intra-op thread; where other
processes hold the cores (data workers, a second run, an evaluation) a call waits until all its threads have run.
``hydra_x.unified.packing.token_runs`` builds the same runs with NumPy, on one thread. Each row: the median and the
slowest of ``--calls`` calls, and their sum, with ``--busy`` processes spinning beside.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

import torch

from hydra_x.unified.packing import token_runs


def torch_token_runs(starts: list[int], lengths: list[int]) -> torch.Tensor:
    """The runs as the forward built them before (torch's CPU repeat_interleave): the reference."""
    length = torch.tensor(lengths, dtype=torch.long)
    first_in_output = (length.cumsum(0) - length).repeat_interleave(length)
    return (
        torch.tensor(starts, dtype=torch.long).repeat_interleave(length)
        + torch.arange(int(length.sum()))
        - first_in_output
    )


def timed_calls(fn, starts: list[int], lengths: list[int], calls: int) -> list[float]:
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        fn(starts, lengths)
        times.append((time.perf_counter() - start) * 1e3)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=600, help="runs a call (visual blocks of a 512-example step)")
    parser.add_argument("--length", type=int, default=64, help="tokens a run")
    parser.add_argument("--busy", type=int, nargs="+", default=[0, 2, 4], help="busy processes beside, one row each")
    parser.add_argument("--calls", type=int, default=300)
    args = parser.parse_args()
    starts, lengths = list(range(0, args.runs * 2 * args.length, 2 * args.length)), [args.length] * args.runs
    if not torch.equal(torch_token_runs(starts, lengths), token_runs(starts, lengths)):
        raise SystemExit("the two builds disagree")
    print(f"{args.runs} runs of {args.length} tokens, {args.calls} calls, {torch.get_num_threads()} intra-op threads")
    print("| busy processes | build | median ms | slowest ms | sum ms |\n|---:|---|---:|---:|---:|")
    for busy in args.busy:
        spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(busy)]
        try:
            time.sleep(0.5)  # let them take the cores
            for name, fn in (("torch repeat_interleave", torch_token_runs), ("NumPy repeat", token_runs)):
                t = timed_calls(fn, starts, lengths, args.calls)
                print(f"| {busy} | {name} | {statistics.median(t):.3f} | {max(t):.1f} | {sum(t):.0f} |", flush=True)
        finally:
            for p in spinners:
                p.kill()


if __name__ == "__main__":
    main()
