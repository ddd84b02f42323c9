"""The training engine every model family shares: the run around the family's ``train_step``.

A family's loop reads as::

    engine = Engine(cfg)                       # process group, device, run folder, resume point, stop flag
    ...build the model, optimizer, data; load engine.resume_from...
    engine.start(config_record, model_config)  # run log, config.json, the MFU denominator
    while engine.step < engine.planned_steps:
        with engine.timed_step(compiled=cfg.compile):
            grad_norm = train_step(...)        # the family's: forward, losses, backward, update
        engine.end_step()                      # timing, progress bar, time budget
        if engine.log_due(): engine.log(lr=..., grad_norm=...)
        if engine.eval_due(): ...
        if engine.checkpoint_due(): engine.save(state, meta, rank_data)
        if engine.stopping: break
    engine.finish(summary)

Every rank takes the same branches: what decides them (stop signals, timings) is reduced across ranks first.
"""

from __future__ import annotations

import json
import logging
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import torch
import torch.nn as nn
from torch.distributed.tensor import DTensor
from torch.utils.flop_counter import FlopCounterMode

from hydra_x.distributed import (
    DistInfo,
    LaggedMax,
    all_reduce_max,
    all_reduce_mean,
    destroy_distributed,
    init_distributed,
)
from hydra_x.train.checkpoint import CheckpointManager
from hydra_x.train.config import EngineConfig, host_thread_count
from hydra_x.train.mfu import forget_compiled_code, measure_peak_tflops, useful_flops
from hydra_x.train.parallel import parallelize
from hydra_x.train.run_log import RunLogger

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass
class LossTerms:
    """One step's loss: the weighted total, and each term unweighted (detached, for the log) with its weight."""

    total: torch.Tensor
    values: dict[str, torch.Tensor] = field(default_factory=dict)
    weights: dict[str, float] = field(default_factory=dict)


class StopFlag:
    """SIGTERM / SIGINT ask the loop to checkpoint and stop at the end of the current step; in a run of several
    processes, which must all stop at the same step, at the end of the next one (``hydra_x.distributed.LaggedMax``:
    no process waits for its device to agree)."""

    def __init__(self, device: torch.device) -> None:
        self.signum = 0
        self._agreement = LaggedMax(device)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._handle)

    def _handle(self, signum, frame) -> None:
        self.signum = signum

    def agreed(self) -> bool:
        """Whether the processes have agreed to stop (called once a step by every process)."""
        return (self._agreement(float(self.signum)) or 0) > 0

    def settle(self) -> None:
        """Nothing left queued (before the process group goes)."""
        self._agreement.settle()


@contextmanager
def region(label: str) -> Iterator[None]:
    """Name a part of the step in profiler traces (``step/<label>``); next to nothing when no profiler runs."""
    with torch.profiler.record_function(f"step/{label}"):
        yield


def set_trainable(model: nn.Module, prefixes: tuple[str, ...]) -> list[str]:
    """Train the parameters whose names start with one of ``prefixes`` ("" is everything); freeze the rest."""
    trainable = []
    for name, param in model.named_parameters():
        param.requires_grad_(any(name.startswith(p) for p in prefixes))
        if param.requires_grad:
            trainable.append(name)
    return trainable


class NonFiniteGuard:
    """Clip the gradient and step the optimizer, skipping steps whose gradient norm is NaN / Inf.

    A non-finite gradient would poison every weight through the clipping scale. The norm is global, so every
    rank takes the same branch; ``limit`` consecutive skips mean the run diverged and stop it.

    With a fused AdamW (CUDA) over unsharded parameters the skip happens on the device, as AMP's gradient scaler
    does it (the optimizer's ``found_inf``: parameters, moments and step counts stay as they were), and the flags
    are read later, by :meth:`settle` (the engine calls it when it logs, saves or finishes): reading the norm at
    every step would make the host wait for the whole backward before it could queue the next step.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_a_row = 0
        self.total = 0
        self.pending: list[tuple[int, torch.Tensor]] = []  # (step, 1.0 if skipped) not yet read

    def step(
        self, optimizer: torch.optim.Optimizer, params: list[nn.Parameter], clip: float, step: int, log
    ) -> torch.Tensor:
        """Clip, then step unless the norm is not finite; returns the norm (before clipping)."""
        grad_norm = torch.nn.utils.clip_grad_norm_(params, clip or float("inf"))
        # Sharded (FSDP2) parameters keep the synchronous check: the fused kernel would meet DTensor parameters
        # with a plain found_inf, a mix that has not been run here.
        if optimizer.defaults.get("fused") and not any(isinstance(p, DTensor) for p in params):
            optimizer.found_inf = (~torch.isfinite(grad_norm)).float()
            try:
                optimizer.step()
            finally:
                self.pending.append((step, optimizer.found_inf))
                del optimizer.found_inf
            return grad_norm
        if torch.isfinite(grad_norm):
            optimizer.step()
            self._count(step, skipped=False, log=log)
        else:
            self._count(step, skipped=True, log=log)
        return grad_norm

    def settle(self, log) -> None:
        """Read the skips of the steps taken since the last call (one wait for the device) and count them."""
        if not self.pending:
            return
        steps, flags = zip(*self.pending)
        self.pending = []
        for step, skipped in zip(steps, torch.stack(flags).tolist()):
            self._count(step, skipped=bool(skipped), log=log)

    def _count(self, step: int, skipped: bool, log) -> None:
        if not skipped:
            self.in_a_row = 0
            return
        self.in_a_row += 1
        self.total += 1
        log(f"step {step + 1}: non-finite gradient norm, update skipped ({self.in_a_row} in a row)")
        if self.in_a_row >= self.limit:
            raise FloatingPointError(
                f"{self.in_a_row} consecutive steps had non-finite gradients (last at step {step + 1}); the run "
                "diverged: lower optim.lr or check the data; the last checkpoint holds finite weights"
            )


class LogWindow:
    """What the steps since the last log line did: loss sums (kept on the device: no host sync per step),
    samples, tokens, seconds, and the seconds spent waiting for data."""

    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        self.losses: dict[str, torch.Tensor | float] = {}
        self.weights: dict[str, float] = {}  # how much of the window each loss covers (a term may skip steps)
        self.seconds = self.data_seconds = 0.0
        self.samples = self.tokens = self.steps = 0

    def add_losses(self, values: dict[str, torch.Tensor], scale: float = 1.0) -> None:
        """Add one micro-step's values; ``scale`` is its share of an optimizer step (1 / grad_accum)."""
        for k, v in values.items():
            self.losses[k] = self.losses.get(k, 0.0) + v.detach().float() * scale
            self.weights[k] = self.weights.get(k, 0.0) + scale

    def means(self) -> dict[str, float]:
        """Each loss averaged over the steps that had it."""
        return {k: float(v) / self.weights[k] for k, v in self.losses.items()}


class _Unset:
    """A setting one of two configs does not have (a field added or removed since the checkpoint)."""

    def __repr__(self) -> str:
        return "(unset)"


_UNSET = _Unset()


def config_changes(saved: Any, current: Any, key: str = "") -> list[str]:
    """``"key: old -> new"`` for each setting (a dotted key) where ``current`` differs from ``saved``."""
    if isinstance(saved, dict) and isinstance(current, dict):
        return [
            change
            for k in sorted(saved.keys() | current.keys())
            for change in config_changes(saved.get(k, _UNSET), current.get(k, _UNSET), f"{key}.{k}" if key else k)
        ]
    if saved == current:
        return []
    return [f"{key}: {saved!r} -> {current!r}"]


class Engine:
    def __init__(self, cfg: EngineConfig) -> None:
        self.started = time.perf_counter()
        self.cfg = cfg
        self.info: DistInfo = init_distributed(cfg.device, single_process_group=bool(cfg.fsdp))
        self.device = self.info.device
        if cfg.device == "cpu" and torch.cuda.is_available() and self.info.rank == 0:
            # The toy recipes (tiny, demo) pin the CPU so that they run alike everywhere; an idle GPU should show.
            log.warning("this run trains on the CPU (device=cpu) though a GPU is available: device=cuda uses it")
        torch.manual_seed(cfg.seed * 1000 + self.info.rank)  # random draws differ per rank, reproducibly
        self.run_dir = Path(cfg.out_dir)
        self.ckpts = CheckpointManager(self.run_dir / "checkpoints", cfg.keep_last)
        self.fsdp = cfg.fsdp if cfg.fsdp is not None else self.info.world_size > 1
        if self.info.world_size > 1 and not self.fsdp:
            raise ValueError("more than one process needs fsdp (set fsdp=true or leave it unset)")
        self.bf16 = cfg.precision == "bf16" and self.device.type == "cuda"
        if self.device.type == "cuda":
            torch.backends.cuda.enable_cudnn_sdp(cfg.cudnn_attention)
        # Set before anything is compiled: compiled code guards on the thread count and recompiles when it changes.
        self.threads_before = torch.get_num_threads()
        self.host_threads = host_thread_count(cfg.host_threads, self.device.type, self.threads_before)
        torch.set_num_threads(self.host_threads)
        self.resume_from: Path | None = None
        if cfg.resume == "auto":
            self.resume_from = self.ckpts.latest()
        elif cfg.resume != "never":
            self.resume_from = Path(cfg.resume)
        self.step, self.data_state = self.ckpts.position(self.resume_from) if self.resume_from else (0, None)
        self.start_step = self.step
        self.planned_steps = cfg.steps  # a time budget's probe sets it and its re-plans move it
        self.stop = StopFlag(self.device)
        self.guard = NonFiniteGuard(cfg.max_nonfinite_steps)
        self.window = LogWindow()
        self.logger: RunLogger | None = None
        self.peak_tflops: float | None = None
        self.flops_per_step: float | None = None
        self.counting_flops = False  # during the step whose FLOPs are counted
        self._attention_pairs = [0, 0]  # (visible, all) attention pairs that step, where the model reports them
        self.stopping = False
        self._probe_start = time.perf_counter()
        # Steps since the probe's second half began that took over slow_step_log_s (a compilation: a new size, the
        # head's attention joining), and their seconds: the budget's speed leaves them out, its elapsed time not.
        self._stalls = (0, 0.0)
        self._step_start = 0.0
        self._step_data_seconds = 0.0  # of the step under way

    # ------------------------------------------------------------------ set-up

    def autocasts(self):
        """(model, losses) autocast contexts. Without FSDP2, autocast gives the model bf16 compute; with it,
        the mixed-precision policy does (weights cast once per step, activations bf16 end to end). Loss modules
        are plain fp32 modules and always run under autocast in bf16 runs."""
        losses = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if self.bf16 else nullcontext
        return (losses if not self.fsdp else nullcontext), losses

    @property
    def graph_step_marker(self) -> Callable[[], None]:
        """What starts each forward (training micro-step, evaluation) of the run: under compile_mode=reduce-overhead a
        new generation of CUDA graphs, which may overwrite the previous one's outputs (all consumed by then)."""
        if self.cfg.compile and self.cfg.compile_mode == "reduce-overhead":
            return torch.compiler.cudagraph_mark_step_begin
        return lambda: None

    def parallelize(self, model: nn.Module, block_lists: list[nn.ModuleList]) -> None:
        """Apply the run's FSDP2, mixed precision, activation checkpointing and compile choices to ``model``."""
        parallelize(
            model,
            block_lists,
            fsdp=self.fsdp,
            param_dtype=torch.bfloat16 if self.bf16 else None,
            activation_checkpointing=self.cfg.activation_checkpointing,
            compile_blocks=self.cfg.compile,
            compile_mode=self.cfg.compile_mode,
        )

    def start(self, config_record: dict[str, Any], describe: str) -> RunLogger:
        """Open the run log, write config.json and measure the MFU denominator; call once the model is built."""
        self.logger = RunLogger(self.run_dir, self.info.is_main, self.planned_steps, self.step)
        if self.info.is_main:
            (self.run_dir / "config.json").write_text(json.dumps(config_record, indent=2))
            resumed = f"resumed from {self.resume_from}" if self.resume_from else "fresh start"
            self.logger.info(
                f"{describe}, {self.info.world_size} process(es), device {self.device}, fsdp {self.fsdp}, {resumed}, "
                f"{self.host_threads} host thread(s)"
            )
            if self.resume_from is not None:
                self._log_config_changes()
        if self.cfg.mfu:
            self.peak_tflops = self.cfg.peak_tflops or measure_peak_tflops(self.device)
        if self.peak_tflops:
            origin = "configured" if self.cfg.peak_tflops else "measured"
            self.logger.info(f"MFU denominator: {self.peak_tflops:.0f} TFLOP/s ({origin} bf16 matmul)")
        self._probe_start = time.perf_counter()
        return self.logger

    def _log_config_changes(self) -> None:
        """Say what the resumed run changes of its checkpoint's config: a recipe or preset edited since the run began
        (a model's chat format, a loss weight) would otherwise change the rest of the run unseen."""
        saved = json.loads((self.resume_from / "meta.json").read_text()).get("config")
        if saved is None:
            return
        changes = config_changes(saved, self.cfg.to_dict())
        if changes:
            listed = "; ".join(changes)
            self.logger.info(f"this run changes {len(changes)} setting(s) of the config its checkpoint had: {listed}")

    # ------------------------------------------------------------------ one step

    def next_batch(self, batches: Iterator[T]) -> T:
        """The step's next batch; the seconds the training process waits for it are the log's data_wait_fraction."""
        start = time.perf_counter()
        with region("data"):
            batch = next(batches)
        waited = time.perf_counter() - start
        self.window.data_seconds += waited
        self._step_data_seconds += waited
        return batch

    @contextmanager
    def timed_step(self, compiled: bool = False) -> Iterator[None]:
        """Time the step; count the FLOPs of the first one (forward, backward, everything it runs) for MFU."""
        self._step_start = time.perf_counter()
        self._step_data_seconds = 0.0
        counting = self.cfg.mfu and self.flops_per_step is None and self.device.type == "cuda"
        counter = FlopCounterMode(display=False) if counting else nullcontext()
        self.counting_flops = counting
        try:
            with counter:
                yield
        finally:
            self.counting_flops = False
        if counting:
            visible, pairs = self._attention_pairs
            share = visible / pairs if pairs else None
            self.flops_per_step = useful_flops(counter.get_flop_counts().get("Global", {}), share)
            if share is not None:
                self.logger.info(
                    f"MFU counts {100 * share:.1f}% of the dense attention (the pairs its mask lets through)"
                )
            if compiled:
                forget_compiled_code()

    def count_attention_pairs(self, visible: int, pairs: int) -> None:
        """During the FLOP-counted step (``counting_flops``): (query, key) pairs the step's attention masks let
        through, of all it computes densely. MFU then counts that share of the attention (mfu.useful_flops)."""
        self._attention_pairs[0] += visible
        self._attention_pairs[1] += pairs

    def end_step(self) -> None:
        """Count the step; sync with the GPU only where a time is read; apply the time budget once measured."""
        cfg = self.cfg
        self.step += 1
        probe_half = cfg.time_budget_minutes and self.step == self.start_step + cfg.budget_probe_steps // 2
        probe_end = cfg.time_budget_minutes and self.step == self.start_step + cfg.budget_probe_steps
        # The host runs ahead of the GPU between logging steps (a fused optimizer skips non-finite steps on the GPU).
        if (self.log_due() or probe_half or probe_end) and self.device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - self._step_start
        self.window.seconds += seconds
        self.window.steps += 1
        stalled = seconds > cfg.slow_step_log_s
        if stalled:
            self.logger.info(
                f"step {self.step} took {seconds:.1f} s ({self._step_data_seconds:.1f} s waiting for data)"
            )
        self.logger.advance()
        if probe_half:
            self._probe_start = time.perf_counter()  # the speed is measured after warm-up and compilation
            self._stalls = (0, 0.0)
        elif stalled:
            self._stalls = (self._stalls[0] + 1, self._stalls[1] + seconds)
        if probe_end:
            now = time.perf_counter()
            done = cfg.budget_probe_steps - cfg.budget_probe_steps // 2
            steady, steady_seconds = self._steady(done, now)
            self.planned_steps = self._budget_steps(steady, steady_seconds, now - self.started)
            self.logger.set_total(self.planned_steps)
            message = f"time budget {cfg.time_budget_minutes} min: the run ends at step {self.planned_steps}"
            if steady < done:  # the stalls of the process that counted most; their seconds, this process's
                message += (
                    f" ({done - steady} step(s) over {cfg.slow_step_log_s:g} s, {self._stalls[1]:.0f} s, left out "
                    "of its speed)"
                )
            if self.planned_steps == self.step < cfg.steps:
                # Short budgets can be eaten by start-up alone (data workers, compilation, the LLM's load).
                message += (
                    f": setup and the first {cfg.budget_probe_steps} steps took {now - self.started:.0f} s, which "
                    f"with the {cfg.budget_reserve_s:g} s kept for the export spends the budget; give a longer one"
                )
            self.logger.info(message)
        elif cfg.time_budget_minutes and self.log_due() and self.start_step + cfg.budget_probe_steps < self.step:
            self._keep_to_budget()
        self.stopping = self.stop.agreed() or self.step == cfg.stop_at_step

    def _keep_to_budget(self) -> None:
        """Re-plan where the run's speed has moved from its plan's: checked at log steps, at the speed of every
        step since the probe's second half but the stalled ones (``_steady``). Slower (a compile when new layers
        join, a busier machine): the plan shortens once the shortfall is 1% of it (fewer log lines and learning-rate
        schedule changes; at most 1% over). Faster by more than 5% of it (a run beside it on the same GPU has
        ended): it lengthens, or the run would end minutes early; under 5% it keeps its plan, since the plan's 3%
        margin on the time left alone fits more steps as the time left shrinks (a 1% threshold re-planned a CPU run
        back and forth eleven times)."""
        if self.step >= self.planned_steps:
            return
        now = time.perf_counter()
        done = self.step - (self.start_step + self.cfg.budget_probe_steps // 2)
        fitted = self._budget_steps(*self._steady(done, now), now - self.started)
        planned = self.planned_steps
        if fitted < planned - planned // 100 or fitted == self.step or fitted > planned + planned // 20:
            self.planned_steps = fitted
            self.logger.set_total(fitted)
            change = "slowed since its probe" if fitted < planned else "ran ahead of its plan"
            self.logger.info(
                f"time budget {self.cfg.time_budget_minutes} min: the run {change} and now ends at step {fitted}"
            )

    def _steady(self, done: int, now: float) -> tuple[int, float]:
        """The ``done`` steps since the probe's second half began and their seconds, less the stalled steps among
        them (unless every step stalled): a 25-s compilation inside a GPU run's probe had its 14.6-minute budget
        planned to end after 6. Their seconds still count as spent, so stalls that recur still shorten the plan."""
        # The most any process counted, so that every process plans the same last step (_budget_steps takes the
        # slowest process's seconds); a process that counted fewer subtracts fewer seconds: the plan errs short.
        stalled, stalled_seconds = int(all_reduce_max(self._stalls[0], self.device)), self._stalls[1]
        seconds = now - self._probe_start
        if stalled < done:
            return done - stalled, seconds - stalled_seconds
        return done, seconds

    def _budget_steps(self, done: int, loop_seconds: float, elapsed: float) -> int:
        """The last step that fits the budget at the speed of ``done`` steps that took ``loop_seconds``;
        ``elapsed`` counts from the start of the run (setup included). Every rank gets the same answer."""
        cfg = self.cfg
        rate = done / max(all_reduce_max(loop_seconds, self.device), 1e-9)
        # Kept back for the export and the last evaluations (which may compile new shapes).
        remaining = cfg.time_budget_minutes * 60 - all_reduce_max(elapsed, self.device) - cfg.budget_reserve_s
        return max(self.step, min(cfg.steps, self.step + int(rate * remaining * 0.97)))

    @property
    def last(self) -> bool:
        return self.step == self.planned_steps

    def log_due(self) -> bool:
        return self.step % self.cfg.log_every == 0 or self.last

    def eval_due(self) -> bool:
        return bool(self.cfg.eval_every) and (self.step % self.cfg.eval_every == 0 or self.last)

    def checkpoint_due(self) -> bool:
        return self.step % self.cfg.ckpt_every == 0 or self.last or self.stopping

    # ------------------------------------------------------------------ records

    def log(self, skipped_total: int, **extra: float) -> dict[str, float]:
        """Reduce the window across ranks and write one metrics row: losses, speed, MFU and ``extra``."""
        self.guard.settle(self.logger.info)
        w, world = self.window, self.info.world_size
        means = all_reduce_mean(w.means(), self.device)
        rates = all_reduce_mean({"samples": w.samples, "tokens": w.tokens}, self.device)
        seconds = all_reduce_max(w.seconds, self.device)
        record = {f"loss/{k}": v for k, v in means.items()}
        record.update(
            extra,
            samples_per_s=rates["samples"] * world / seconds,
            tokens_per_s=rates["tokens"] * world / seconds,
            skipped_total=skipped_total,
            nonfinite_steps_total=self.guard.total,
            data_wait_fraction=all_reduce_max(w.data_seconds, self.device) / max(seconds, 1e-9),  # the slowest-fed rank
        )
        if self.peak_tflops and self.flops_per_step:
            record["mfu"] = self.flops_per_step * w.steps / seconds / (self.peak_tflops * 1e12)
            record["mfu_peak_tflops"] = self.peak_tflops
        if self.device.type == "cuda":  # the most any rank has held since the run started: what a larger step needs
            record["gpu_memory_peak_gib"] = all_reduce_max(
                torch.cuda.max_memory_allocated(self.device) / 2**30, self.device
            )
        postfix = {"loss": f"{means.get('total', float('nan')):.4f}", "samp/s": f"{record['samples_per_s']:.1f}"}
        if "mfu" in record:
            postfix["mfu"] = f"{100 * record['mfu']:.1f}%"
        self.logger.metrics(self.step, record, postfix)
        w.clear()
        return record

    def save(self, state: dict[str, Any], meta: dict[str, Any], rank_data: dict[str, Any]) -> None:
        self.guard.settle(self.logger.info)  # a run that diverged since the last log stops before it saves
        self.ckpts.save(self.step, state, meta, rank_data)
        self.logger.info(f"checkpoint: step {self.step} -> {self.ckpts.path(self.step)}")

    def exit_code(self) -> int:
        """128 + the signal that stopped the run (the shell's convention), else 0."""
        signum = int(all_reduce_max(float(self.stop.signum), self.device))
        return 128 + signum if signum else 0

    def finish(self, summary: dict[str, Any]) -> dict[str, Any]:
        """Write summary.json, close the log and the process group; the summary gains ``exit_code``."""
        self.guard.settle(self.logger.info)
        self.stop.settle()
        exit_code = self.exit_code() if self.stopping else 0
        if self.stopping:
            self.logger.info(f"stopped at step {self.step}; rerun the same command to resume")
        if self.info.is_main:
            (self.run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
        self.logger.close()
        destroy_distributed()
        torch.set_num_threads(self.threads_before)  # a process that trains several runs (the demo) gets its own back
        return {**summary, "exit_code": exit_code}


def gather_full_state(model: nn.Module, ema, is_main: bool) -> dict[str, torch.Tensor] | None:
    """The model's full (unsharded) weights on the CPU, EMA averages in place of the trained ones where there
    is an EMA; rank 0 gets them, other ranks None (every rank must call this: it gathers)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    state = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if ema is not None:
        for name, shadow in ema.shadow.items():
            full = shadow.full_tensor() if hasattr(shadow, "full_tensor") else shadow
            if is_main:
                state[name] = full.detach().cpu().to(state[name].dtype)
    return state if is_main else None
