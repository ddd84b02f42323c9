"""Everything a unified training step touches, built once: the model (from a checkpoint, or a trained tokenizer
and a pretrained LLM), what the stage trains, parallelism, the optimizer with a learning rate per group, the
EMA and the data, placed and resumed. ``UnifiedRun`` holds them for the loop."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

from hydra_x.data.examples import GENERATION_TASKS
from hydra_x.data.mixture import StepExamples, UnifiedDataConfig, UnifiedDataLoader
from hydra_x.tokenizer.latent_stats import measure_latent_stats
from hydra_x.train.ema import EMA
from hydra_x.train.engine import Engine, set_trainable
from hydra_x.train.optim import build_optimizer, build_scheduler
from hydra_x.train.parallel import allow_block_recompiles
from hydra_x.train.unified.batch import StepPacker
from hydra_x.train.unified.config import UnifiedTrainConfig
from hydra_x.unified.model import HydraX

log = logging.getLogger(__name__)


@dataclass
class UnifiedRun:
    cfg: UnifiedTrainConfig
    engine: Engine
    model: HydraX  # possibly FSDP2-sharded
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    ema: EMA | None
    loader: UnifiedDataLoader
    batches: Iterator[StepExamples]  # the loader's stream, started before the model's setup (build_run says why)
    trainable: list[str]
    autocast: Callable
    mark_graph_step: Callable[[], None]  # compile_mode=reduce-overhead: a new generation of CUDA graphs
    # The step at which the flow head's attention layers joined (head_attention_from_share: they stay joined, and a
    # resumed run, whose time budget plans anew, keeps the step its checkpoint recorded); None: not yet.
    head_attention_joined_at: int | None = None

    def state(self) -> dict:
        model_sd, optim_sd = get_state_dict(self.model, self.optimizer)
        state = {"model": model_sd, "optim": optim_sd}
        if self.ema is not None:
            state["ema"] = self.ema.state_dict()
        return state

    def load(self, folder: Path) -> dict:
        state = self.state()
        meta = self.engine.ckpts.load(folder, state)
        set_state_dict(self.model, self.optimizer, model_state_dict=state["model"], optim_state_dict=state["optim"])
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"])
        self.scheduler.load_state_dict(meta["scheduler"])
        self.head_attention_joined_at = meta.get("head_attention_joined_at")
        return meta


def build_model(cfg: UnifiedTrainConfig) -> HydraX:
    """fp32 on the CPU: a HydraX checkpoint (``init``), or a (trained) tokenizer and the LLM with fresh heads."""
    if cfg.init is not None:
        folder = Path(cfg.init)
        if (folder / "export" / "config.json").is_file():
            folder = folder / "export"
        model = HydraX.from_pretrained(folder if folder.exists() else cfg.init).train()
        if cfg.init_head_attention_layers is not None:
            model.grow_head_attention(cfg.init_head_attention_layers)
        return model
    return HydraX.from_config(cfg.model, tokenizer=cfg.tokenizer_init, seed=cfg.seed).train()


def generation_ratios(data: UnifiedDataConfig) -> dict[str, float]:
    """The generation tasks of ``data``'s mixture (images, clips, edits) with their weights."""
    return {t: w for t, w in (data.task_ratios or {}).items() if t in GENERATION_TASKS and w > 0}


def generation_targets(data: UnifiedDataConfig, samples: int) -> Iterator[torch.Tensor]:
    """Pixels (B, 3, [F,] H, W) of the visuals the model learns to generate (role "generate": images, clips,
    edit targets), those of one shape together, in ``samples`` examples of the generation tasks of ``data``'s
    mixture, as one process would draw them (a loader of its own, in the main process: the training stream is
    untouched)."""
    per_step = min(samples, 64)
    config = replace(data, task_ratios=generation_ratios(data), num_workers=0, examples_per_step=per_step)
    for _, step in zip(range(-(-samples // per_step)), UnifiedDataLoader(config)):
        by_shape: dict[tuple[int, ...], list[torch.Tensor]] = {}
        for visual in (v for example in step.examples for v in example.visuals if v.role == "generate"):
            by_shape.setdefault(tuple(visual.pixels.shape), []).append(visual.pixels)
        yield from (torch.stack(group) for group in by_shape.values())


def set_generation_latent_stats(model: HydraX, cfg: UnifiedTrainConfig, data: UnifiedDataConfig, engine: Engine):
    """Measure and store the tokenizer's latent statistics on the run's generation targets (see
    ``latent_stats_samples``). Every process measures the same targets, whatever the number of processes, and
    takes rank 0's figures: 1 and N processes start from the same model."""
    if not generation_ratios(data):
        log.info("latent statistics: no generation task in the mixture, latents kept raw")
        return
    tokenizer = model.tokenizer.eval()
    targets = generation_targets(data, cfg.latent_stats_samples)
    mean, std = measure_latent_stats(tokenizer, targets, engine.device, shared_std=True, all_processes=False)
    if dist.is_initialized():
        dist.broadcast(mean, src=0)
        dist.broadcast(std, src=0)
    tokenizer.set_latent_stats(mean, std)
    tokenizer.train()
    log.info(
        "latent statistics of %d generation targets set in the tokenizer: std %.4g, |mean| up to %.4g",
        cfg.latent_stats_samples, float(std[0]), float(mean.abs().max()),
    )  # fmt: skip


def model_blocks(model: HydraX) -> list[nn.ModuleList]:
    """The ModuleLists of blocks that become FSDP2 units: the LLM's decoder layers.

    The tokenizer stays in the root unit, gathered once per step: its encoder and Sem-ViT run once per latent
    shape in the batch (images, clips, editing pairs, clean or noisy), which differs between processes, and
    as units of their own each call would be an all-gather that the other processes do not make."""
    layers = getattr(model.llm.get_decoder(), "layers", None)
    if not isinstance(layers, nn.ModuleList):
        raise ValueError(f"{type(model.llm).__name__}: no decoder .layers ModuleList to shard")
    return [layers]


def compile_tokenizer_blocks(model: HydraX, mode: str) -> None:
    """torch.compile the tokenizer's Gen-ViT and Sem-ViT blocks in place.

    In a unified step they run once per latent shape (images, clips, editing pairs, clean or noisy), in eager
    mode thousands of small operators a step, which bound the host of a small model. Unlike the LLM's rows, the
    number of images or clips of one shape changes every step, so these compile with automatic dynamic shapes
    (the first size seen is static; a second one makes the sizes that changed symbolic) instead of a static
    graph per size. They stay in FSDP's root unit (model_blocks says why)."""
    allow_block_recompiles()
    for block in (*model.tokenizer.gen_vit.blocks, *model.tokenizer.sem_vit.blocks):
        block.compile(mode=mode, dynamic=None)


def compile_head_blocks(model: HydraX, mode: str) -> None:
    """torch.compile the flow head's blocks in place: its per-token residual blocks and its attention layers, with
    automatic dynamic shapes, since a step's number of generated tokens (and of blocks of one grid) changes every
    step. Eager, they issued about a tenth of a compiled step's remaining host operators, forward and backward."""
    allow_block_recompiles()
    for block in (*model.flow_head.blocks, *model.flow_head.attention):
        block.compile(mode=mode, dynamic=None)


def build_run(cfg: UnifiedTrainConfig, engine: Engine) -> UnifiedRun:
    if cfg.model.attention == "flex" and engine.device.type != "cuda":
        # The same mask through SDPA: PyTorch has no CPU backward for FlexAttention (the GPU recipes choose it).
        log.warning("model.attention=flex trains on CUDA only; this run on %s uses sdpa", engine.device)
        cfg.model = cfg.model.replace(attention="sdpa")
    stage = cfg.stage_spec
    model = build_model(cfg)
    model.tokenizer.validate_inputs = False  # the data pipeline checks its samples
    data = cfg.data
    if data.task_ratios is None:  # the stage's mixture unless the config sets one
        data = replace(data, task_ratios=dict(stage.ratios))
    info = engine.info
    loader = UnifiedDataLoader(
        data,
        rank=info.rank,
        world_size=info.world_size,
        start_step=engine.step * cfg.grad_accum,
        state=engine.data_state,
        pin_memory=engine.device.type == "cuda",
        prepare=StepPacker(model.text_tokenizer, model.config, cfg, info.rank),
    )
    # The data workers start now: their processes' start and first steps (33 s of a 64-px GPU run's first step,
    # which waited for them) overlap the model's move, latent statistics, sharding and the engine's start.
    batches = iter(loader)
    model.to(engine.device)
    fresh = cfg.init is None and engine.resume_from is None  # a resumed run has them in its checkpoint
    if fresh and cfg.latent_stats_samples > 0 and not model.tokenizer.has_latent_stats:
        set_generation_latent_stats(model, cfg, data, engine)
    trainable = set_trainable(model, stage.trains)
    engine.parallelize(model, model_blocks(model))
    if cfg.compile and cfg.compile_tokenizer:
        compile_tokenizer_blocks(model, cfg.compile_mode)
    if cfg.compile and cfg.compile_head:
        compile_head_blocks(model, cfg.compile_mode)
    model.compile_block_mask = cfg.compile and cfg.compile_mask and cfg.model.attention == "flex"
    autocast, _ = engine.autocasts()
    optimizer = build_optimizer(model, cfg.optim, cfg.param_lrs())
    scheduler = build_scheduler(optimizer, cfg.optim, lambda: engine.planned_steps)
    run = UnifiedRun(
        cfg=cfg,
        engine=engine,
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
        ema=EMA(model, cfg.ema_decay) if cfg.ema_decay > 0 else None,
        loader=loader,
        batches=batches,
        trainable=trainable,
        autocast=autocast,
        mark_graph_step=engine.graph_step_marker,
    )
    if engine.resume_from is not None:
        run.load(engine.resume_from)
    return run
