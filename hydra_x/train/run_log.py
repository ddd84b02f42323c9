"""What a person watching a run sees and keeps: a progress bar, JSONL metrics, TensorBoard, a skip log."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from tqdm import tqdm

log = logging.getLogger(__name__)


class RunLogger:
    """Rank 0 writes; other ranks hold a silent instance so the loop needs no branches."""

    def __init__(self, run_dir: Path, enabled: bool, total_steps: int, start_step: int) -> None:
        self.enabled = enabled
        self.run_dir = run_dir
        self.tb = None
        self.bar = None
        self.skip_counts: dict[str, int] = {}
        if not enabled:
            return
        run_dir.mkdir(parents=True, exist_ok=True)
        self.metrics_file = open(run_dir / "metrics.jsonl", "a", buffering=1)  # noqa: SIM115 - lives with the run
        self.skip_file = open(run_dir / "skipped.log", "a", buffering=1)  # noqa: SIM115
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(run_dir / "tensorboard"))
        except ImportError:
            log.warning("tensorboard is not installed: metrics go to metrics.jsonl only")
        self.bar = tqdm(total=total_steps, initial=start_step, desc="train", dynamic_ncols=True, smoothing=0.1)

    def skipped(self, step: int, items: list[tuple[str, str]]) -> None:
        for key, reason in items:
            kind = reason.split(":", 1)[0]
            self.skip_counts[kind] = self.skip_counts.get(kind, 0) + 1
            if self.enabled:
                self.skip_file.write(f"{step}\t{key}\t{reason}\n")

    def metrics(self, step: int, values: dict[str, Any], postfix: dict[str, str] | None = None) -> None:
        if not self.enabled:
            return
        record = {"step": step, "time": time.time(), **values}
        self.metrics_file.write(json.dumps(record) + "\n")
        if self.tb is not None:
            for key, value in values.items():
                if isinstance(value, (int, float)):
                    self.tb.add_scalar(key, value, step)
        if postfix is not None and self.bar is not None:
            self.bar.set_postfix(postfix, refresh=False)

    def image(self, tag: str, path: Path, step: int) -> None:
        if self.enabled and self.tb is not None:
            import numpy as np
            from PIL import Image

            self.tb.add_image(tag, np.asarray(Image.open(path).convert("RGB")), step, dataformats="HWC")

    def set_total(self, total: int) -> None:
        if self.bar is not None:
            self.bar.total = total
            self.bar.refresh()

    def advance(self, n: int = 1) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def info(self, message: str) -> None:
        if self.enabled:
            (self.bar.write if self.bar is not None else print)(message)

    def close(self) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.close()
        if self.tb is not None:
            self.tb.close()
        self.metrics_file.close()
        self.skip_file.close()
