"""Samples laid in rows: first-fit packing for training, one padded sample per row for inference.

Positions restart at 0 for each sample, so a packed sample sees the same positions as alone; targets are the
samples' own (shifted per sample), so packing never makes one sample predict another's tokens.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
import torch

from hydra_x.unified.sequence import IGNORE, SampleSequence, VisualKind, VisualRole


@dataclass(frozen=True)
class Placement:
    """Where one visual block landed in a batch: ``row``, positions ``start .. start + steps * tokens_per_step``."""

    row: int
    start: int
    steps: int
    tokens_per_step: int
    kind: VisualKind
    role: VisualRole
    sample: int  # index into the list given to pack / pad_to_batch
    block: int  # index of the block inside its sample

    @property
    def length(self) -> int:
        return self.steps * self.tokens_per_step


@dataclass
class PackedBatch:
    """Samples laid in rows. Placements are sorted by (row, start), which is also sample order within a row."""

    input_ids: torch.Tensor  # (B, L)
    targets: torch.Tensor  # (B, L), IGNORE on pads
    position_ids: torch.Tensor  # (B, L), from 0 in each sample; 0 on pads
    sample: torch.Tensor  # (B, L), index of the sample, -1 on pads
    block: torch.Tensor  # (B, L), block index inside the sample, -1 for text and pads
    step: torch.Tensor  # (B, L), latent step, -1 for text and pads
    placements: list[Placement]
    rows: list[list[int]]  # sample indices in each row, in position order
    offsets: list[tuple[int, int, int]]  # per sample: (row, start, length)

    @property
    def valid(self) -> torch.Tensor:
        return self.sample >= 0  # (B, L)

    def visual_index(self, placements: list[Placement] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(rows, columns) of the visual positions of ``placements`` (default: all), concatenated in their order,
        so ``embeds[rows, cols] = torch.cat(block_embeds)`` scatters blocks in and ``hidden[rows, cols]`` gathers."""
        rows, cols = visual_runs(self.placements if placements is None else placements)
        device = self.input_ids.device
        return torch.from_numpy(rows).to(device), torch.from_numpy(cols).to(device)

    def to(self, device: torch.device | str) -> PackedBatch:
        # Asynchronous from page-locked rows (pin_memory); from pageable memory the copy is synchronous anyway.
        return replace(self, **{n: getattr(self, n).to(device, non_blocking=True) for n in TENSORS})

    def pin_memory(self) -> PackedBatch:
        return replace(self, **{n: getattr(self, n).pin_memory() for n in TENSORS})

    def index(self, generated: list[Placement], device: torch.device | str) -> BatchIndex:
        """The forward's gather and scatter indices, built on the host (as the rows are) and moved in one copy.
        Built on the device instead, a boolean mask or a later copy would make the host wait for all the work
        queued before it: a training step would then never run ahead of the GPU."""
        # In NumPy, on one thread (see token_runs): these arrays outgrow torch's grain of parallel work.
        targets = self.targets.cpu().flatten().numpy()
        predicted = np.flatnonzero(targets != IGNORE)
        parts = [predicted, targets[predicted], *visual_runs(self.placements), *visual_runs(generated)]
        whole = torch.from_numpy(np.concatenate(parts).astype(np.int64, copy=False))
        moved = to_device_async(whole, device).split([len(p) for p in parts])
        return BatchIndex(*moved, text_tokens=len(predicted))


TENSORS = ("input_ids", "targets", "position_ids", "sample", "block", "step")


def to_device_async(host: torch.Tensor, device: torch.device | str) -> torch.Tensor:
    """A host tensor on ``device``, copied from page-locked memory on CUDA: a copy from pageable memory would make
    the host wait for all the work queued before it. Copied into the page-locked buffer by NumPy, on one thread,
    where NumPy has the dtype (torch's copy splits large ones over every intra-op thread: see token_runs)."""
    if torch.device(device).type == "cuda":
        if host.device.type != "cpu":  # a copy back to the host first would wait for the device
            raise ValueError(f"to_device_async copies host tensors, got one on {host.device}")
        pinned = torch.empty(host.shape, dtype=host.dtype, pin_memory=True)
        try:
            np.copyto(pinned.numpy(), host.numpy())
        except (TypeError, RuntimeError):  # a dtype NumPy lacks (bfloat16), or a tensor that needs grad
            pinned.copy_(host)
        host = pinned
    return host.to(device, non_blocking=True)


def visual_runs(placements: list[Placement]) -> tuple[np.ndarray, np.ndarray]:
    """(rows, columns) of the placements' positions, concatenated in their order, as int64 host arrays: built in
    one piece, as a tensor per placement would cost two kernel launches per visual block."""
    lengths = [p.length for p in placements]
    rows = np.repeat(np.array([p.row for p in placements], dtype=np.int64), lengths)
    return rows, token_runs([p.start for p in placements], lengths).numpy()


def token_runs(starts: list[int], lengths: list[int]) -> torch.Tensor:
    """start_0 .. start_0 + length_0 - 1, start_1 .., concatenated (a host tensor), without a tensor per run. In
    NumPy, whose repeat runs on one thread: torch's CPU repeat_interleave splits even a few runs over every intra-op
    thread, and a training process beside data workers and other runs then waits for all of them to be scheduled
    (benchmarks/host_index_contention.py)."""
    length = np.asarray(lengths, dtype=np.int64)
    first_in_output = np.repeat(np.cumsum(length) - length, length)  # where each run begins in the output
    runs = np.repeat(np.asarray(starts, dtype=np.int64), length) + np.arange(length.sum(), dtype=np.int64)
    return torch.from_numpy(runs - first_in_output)


@dataclass(frozen=True)
class BatchIndex:
    """Flat positions (row * L + column) of predicted tokens and their targets, and the (rows, columns) of every
    visual position and of the generated ones, in placement order; on the model's device."""

    predicted: torch.Tensor
    predicted_targets: torch.Tensor
    visual_rows: torch.Tensor
    visual_cols: torch.Tensor
    generated_rows: torch.Tensor
    generated_cols: torch.Tensor
    text_tokens: int


def _lay_out(
    samples: list[SampleSequence], rows: list[list[int]], length: int, pad_id: int, left: bool = False
) -> PackedBatch:
    b = len(rows)
    input_ids = torch.full((b, length), pad_id, dtype=torch.long)
    targets = torch.full((b, length), IGNORE, dtype=torch.long)
    position_ids = torch.zeros(b, length, dtype=torch.long)
    sample, block, step = (torch.full((b, length), -1, dtype=torch.long) for _ in range(3))
    placements: list[Placement] = []
    offsets: list[tuple[int, int, int]] = [(-1, -1, 0)] * len(samples)
    for r, members in enumerate(rows):
        used = sum(len(samples[k]) for k in members)
        at = length - used if left else 0
        for k in members:
            s = samples[k]
            n = len(s)
            input_ids[r, at : at + n] = s.input_ids
            targets[r, at : at + n] = s.targets
            position_ids[r, at : at + n] = torch.arange(n)
            sample[r, at : at + n] = k
            block[r, at : at + n] = s.block
            step[r, at : at + n] = s.step
            placements += [
                Placement(
                    r, at + blk.start, blk.spec.steps, blk.spec.tokens_per_step, blk.spec.kind, blk.spec.role, k, j
                )
                for j, blk in enumerate(s.blocks)
            ]
            offsets[k] = (r, at, n)
            at += n
    return PackedBatch(input_ids, targets, position_ids, sample, block, step, placements, rows, offsets)


def pack(samples: list[SampleSequence], max_length: int, pad_id: int, row_multiple: int = 1) -> PackedBatch:
    """First-fit packing, in the given order, into rows of ``max_length`` (every row padded to it: static shapes),
    then rows of padding up to a multiple of ``row_multiple`` rows: a compiled LLM layer is one graph per row count,
    and a step's count varies with its examples (a 256-example `small` step needs 20 to 25 rows)."""
    if not samples:
        raise ValueError("pack needs at least one sample")
    if row_multiple < 1:
        raise ValueError(f"row_multiple must be >= 1, got {row_multiple}")
    rows: list[list[int]] = []
    room: list[int] = []
    for k, s in enumerate(samples):
        n = len(s)
        if n > max_length:
            raise ValueError(f"sample {k} has {n} tokens, longer than the context of {max_length}")
        r = next((i for i, free in enumerate(room) if free >= n), None)
        if r is None:
            rows.append([])
            room.append(max_length)
            r = len(rows) - 1
        rows[r].append(k)
        room[r] -= n
    rows += [[] for _ in range(-len(rows) % row_multiple)]
    return _lay_out(samples, rows, max_length, pad_id)


def pad_to_batch(
    samples: list[SampleSequence], pad_id: int, *, side: Literal["left", "right"] = "left", length: int | None = None
) -> PackedBatch:
    """One sample per row, padded to the longest (or ``length``). Left padding (the default, for inference) ends
    every prompt in the last column, so tokens generated next are appended to all rows at once."""
    if not samples:
        raise ValueError("pad_to_batch needs at least one sample")
    longest = max(len(s) for s in samples)
    length = longest if length is None else length
    if longest > length:
        k = max(range(len(samples)), key=lambda i: len(samples[i]))
        raise ValueError(f"sample {k} has {longest} tokens, longer than the context of {length}")
    if side not in ("left", "right"):
        raise ValueError(f"side must be 'left' or 'right', not {side!r}")
    return _lay_out(samples, [[k] for k in range(len(samples))], length, pad_id, left=side == "left")
