"""Training checkpoints: numbered folders, sharded with torch.distributed.checkpoint, written atomically.

    <run>/checkpoints/step_00001000/
        dcp/                   model, optimizer, EMA, discriminator (sharded; reshards from N to M ranks)
        meta.json              step, scheduler and data position, the resolved config, world size
        rank_00000.safetensors RNG states of rank 0 (torch CPU and CUDA generators), as uint8 tensors
        rank_00000.json        data position of rank 0 (streaming sources)

A checkpoint is first written to ``step_XXXXXXXX.tmp`` and renamed once every rank has finished, so a crash
or kill while saving leaves the previous checkpoint as the latest loadable one. Nothing is pickled.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import time
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from safetensors.torch import load_file, save_file

log = logging.getLogger(__name__)


@contextmanager
def _single_process_dcp():
    """DCP warns that it "assumes the intent is to save in a single process" whenever it runs without a process
    group, even when told so with ``no_dist``: every one-process run printed it at each checkpoint."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.distributed is disabled, unavailable or uninitialized")
        yield


STEP_DIR = re.compile(r"^step_(\d{8})$")


def _rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def _barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def rng_state() -> dict[str, torch.Tensor]:
    state = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict[str, torch.Tensor]) -> None:
    torch.set_rng_state(state["cpu"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


class CheckpointManager:
    def __init__(self, root: str | Path, keep_last: int = 2) -> None:
        self.root = Path(root)
        self.keep_last = keep_last

    def path(self, step: int) -> Path:
        return self.root / f"step_{step:08d}"

    def complete(self) -> list[Path]:
        """Finished checkpoints, oldest first (folders being written end in .tmp and are ignored)."""
        if not self.root.is_dir():
            return []
        found = [
            p for p in self.root.iterdir() if p.is_dir() and STEP_DIR.match(p.name) and (p / "meta.json").is_file()
        ]
        return sorted(found, key=lambda p: int(STEP_DIR.match(p.name).group(1)))

    def latest(self) -> Path | None:
        done = self.complete()
        return done[-1] if done else None

    def save(
        self,
        step: int,
        sharded: dict[str, Any],
        meta: dict[str, Any],
        rank_data: dict[str, Any],
    ) -> Path:
        """Write checkpoint ``step``. ``sharded`` goes through DCP (every rank calls this)."""
        final = self.path(step)
        tmp = final.with_name(final.name + ".tmp")
        rank = _rank()
        if rank == 0:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        _barrier()
        with _single_process_dcp():
            dcp.save(sharded, checkpoint_id=str(tmp / "dcp"), no_dist=not dist.is_initialized())
        save_file(rng_state(), str(tmp / f"rank_{rank:05d}.safetensors"))
        (tmp / f"rank_{rank:05d}.json").write_text(json.dumps(rank_data))
        _barrier()
        if rank == 0:
            world = dist.get_world_size() if dist.is_initialized() else 1
            payload = {"step": step, "world_size": world, "saved_at": time.time(), **meta}
            (tmp / "meta.json").write_text(json.dumps(payload, indent=2))
            _pause_for_tests(step)
            if final.exists():  # a checkpoint of the same step (e.g. re-saved on exit): replace it
                shutil.rmtree(final)
            os.replace(tmp, final)
            self._prune()
        _barrier()
        return final

    def _prune(self) -> None:
        done = self.complete()
        for old in done[: max(len(done) - self.keep_last, 0)]:
            shutil.rmtree(old, ignore_errors=True)
        for stale in self.root.glob("step_*.tmp"):
            shutil.rmtree(stale, ignore_errors=True)

    @staticmethod
    def position(folder: Path) -> tuple[int, dict[str, Any] | None]:
        """The checkpoint's step and this rank's data position (None when the world size changed)."""
        folder = Path(folder)
        meta = json.loads((folder / "meta.json").read_text())
        world = dist.get_world_size() if dist.is_initialized() else 1
        if meta["world_size"] != world:
            return int(meta["step"]), None
        rank_data = json.loads((folder / f"rank_{_rank():05d}.json").read_text())
        return int(meta["step"]), rank_data.get("data")

    @staticmethod
    def load(folder: Path, sharded: dict[str, Any]) -> dict[str, Any]:
        """Load ``sharded`` in place and restore this rank's RNG if the world size matches; return the meta."""
        folder = Path(folder)
        meta = json.loads((folder / "meta.json").read_text())
        with _single_process_dcp():
            dcp.load(sharded, checkpoint_id=str(folder / "dcp"), no_dist=not dist.is_initialized())
        world = dist.get_world_size() if dist.is_initialized() else 1
        if meta["world_size"] == world:
            set_rng_state(load_file(str(folder / f"rank_{_rank():05d}.safetensors")))
        else:
            log.warning(
                "resuming a checkpoint of %d ranks on %d: weights, optimizer and EMA are resharded; RNG and "
                "streaming data positions restart from the step's seed",
                meta["world_size"],
                world,
            )
        return meta


def _pause_for_tests(step: int) -> None:
    """Tests kill a run while a checkpoint is half-written: HYDRA_X_SLOW_CHECKPOINT=<seconds> pauses the save
    of step HYDRA_X_SLOW_CHECKPOINT_STEP after everything but the final rename, and writes a marker file."""
    delay = float(os.environ.get("HYDRA_X_SLOW_CHECKPOINT", "0") or 0)
    if delay > 0 and int(os.environ.get("HYDRA_X_SLOW_CHECKPOINT_STEP", step)) == step:
        marker = os.environ.get("HYDRA_X_SLOW_CHECKPOINT_MARKER")
        if marker:
            Path(marker).write_text("saving")
        time.sleep(delay)
