"""What every training run configures, whatever it trains: length, engine, precision, logging, checkpoints, budget.

Each model family's training config inherits these fields (one level) and adds its own (model, data, losses);
dotted command-line overrides reach both alike (``steps=2000 compile=true data.image_size=128``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hydra_x.config import config_to_dict
from hydra_x.train.parallel import COMPILE_MODES

GPU_HOST_THREADS = 4  # a GPU run's intra-op threads unless host_threads says otherwise


def host_thread_count(configured: int | None, device_type: str, default: int) -> int:
    """The intra-op threads a run on ``device_type`` uses: ``configured`` if set, else at most
    GPU_HOST_THREADS on CUDA and ``default`` (torch's, or OMP_NUM_THREADS) on the CPU."""
    if configured is not None:
        return configured
    return min(GPU_HOST_THREADS, default) if device_type == "cuda" else default


@dataclass
class EngineConfig:
    steps: int = 1000
    grad_accum: int = 1
    seed: int = 0
    device: str = "auto"  # auto | cuda | cpu
    precision: str = "bf16"  # bf16 (on CUDA; CPU runs stay fp32) | fp32
    fsdp: bool | None = None  # None: FSDP2 when more than one process
    activation_checkpointing: bool = False
    compile: bool = False  # torch.compile every transformer block (and the family's frozen modules)
    # torch.compile mode of the blocks: default | reduce-overhead (CUDA graphs: no per-kernel launch cost,
    # for host-bound steps) | max-autotune-no-cudagraphs
    compile_mode: str = "default"
    # cuDNN's SDPA backward returns NaN gradients on H100/H200 for some shapes in torch 2.11-2.13
    # (pytorch/pytorch#196678, NVIDIA/cudnn-frontend#1072); training uses flash / memory-efficient SDPA.
    cudnn_attention: bool = False
    # The training process's intra-op CPU threads. On a GPU the host only queues kernels and builds small tensors,
    # and torch splits even small CPU operators over every thread, each split waiting for the slowest: a
    # 512-example unified step took 309 ms with 16 threads and 194 ms with 4 on an H200 (docs/benchmarks.md).
    # None: at most GPU_HOST_THREADS on CUDA, torch's default on the CPU (where the threads do the training).
    host_threads: int | None = None
    max_nonfinite_steps: int = 20  # consecutive steps with a NaN / Inf gradient (skipped) before the run stops
    ema_decay: float = 0.999  # 0 disables the EMA
    log_every: int = 10
    eval_every: int = 500  # held-out evaluation (0: never)
    ckpt_every: int = 1000
    keep_last: int = 2
    out_dir: str = "runs/run"
    resume: str = "auto"  # auto (latest checkpoint in out_dir, if any) | never | a checkpoint folder
    stop_at_step: int | None = None  # checkpoint and stop at this step (a time-limited job); rerun to go on
    # A wall-clock budget for the whole run: after `budget_probe_steps` steps the run measures its speed and
    # shortens `steps` (and the LR schedule with it) to end within the budget, and re-plans at log steps if its
    # speed has moved since (slower or faster). Not exactly resumable.
    time_budget_minutes: float | None = None
    budget_probe_steps: int = 100  # the speed is measured over the second half of these steps
    budget_reserve_s: float = 60.0
    # A step that takes longer is logged with its number and time (a compilation, the FLOP-counted first step, a
    # stalled data worker), so that a budgeted run's lost minutes have names; the budget's plan counts its time as
    # spent but leaves it out of the run's speed.
    slow_step_log_s: float = 10.0
    peak_tflops: float | None = None  # for MFU; None: measured on the GPU at start (bf16 matmul)
    # MFU in the log: the first CUDA step runs eagerly under FlopCounterMode to count its FLOPs (an eager step of a
    # compiled run). false: no MFU and no counted step (a run that only compiles, to fill the compile caches).
    mfu: bool = True

    def __post_init__(self) -> None:
        if self.steps < 1 or self.grad_accum < 1:
            raise ValueError("steps and grad_accum must be at least 1")
        if self.precision not in ("bf16", "fp32"):
            raise ValueError(f"precision must be 'bf16' or 'fp32', got {self.precision!r}")
        if self.compile_mode not in COMPILE_MODES:
            raise ValueError(f"compile_mode must be one of {COMPILE_MODES}, got {self.compile_mode!r}")
        if self.device not in ("auto", "cuda", "cpu"):
            raise ValueError(f"device must be 'auto', 'cuda' or 'cpu', got {self.device!r}")
        if self.host_threads is not None and self.host_threads < 1:
            raise ValueError(f"host_threads must be at least 1 (or None), got {self.host_threads}")
        if self.log_every < 1 or self.ckpt_every < 1 or self.eval_every < 0:
            raise ValueError("log_every and ckpt_every must be at least 1, eval_every at least 0")

    def to_dict(self) -> dict[str, Any]:
        return config_to_dict(self)
