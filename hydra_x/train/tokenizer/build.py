"""Everything a tokenizer training step touches, built once: the model (and its start), teachers, losses,
optimizers, EMA and data, placed, parallelised and resumed. ``TokenizerRun`` holds them for the loop."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

from hydra_x.data import TokenizerDataLoader
from hydra_x.losses import LPIPS
from hydra_x.teachers import FrozenTeacher, load_teacher
from hydra_x.tokenizer.latent_stats import measure_latent_stats
from hydra_x.tokenizer.model import HydraXTokenizer
from hydra_x.train.ema import EMA
from hydra_x.train.engine import Engine, set_trainable
from hydra_x.train.optim import build_optimizer, build_scheduler, init_optimizer_state
from hydra_x.train.tokenizer.config import TokenizerTrainConfig
from hydra_x.train.tokenizer.objective import TokenizerObjective, build_discriminator, load_lpips_for

DTYPES = {"bfloat16": torch.bfloat16, "float32": torch.float32, "float16": torch.float16}


@dataclass
class TokenizerRun:
    cfg: TokenizerTrainConfig
    engine: Engine
    model: HydraXTokenizer  # possibly FSDP2-sharded
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    ema: EMA | None
    objective: TokenizerObjective
    discriminator: nn.Module | None
    disc_optimizer: torch.optim.Optimizer | None
    loader: TokenizerDataLoader
    trainable: list[str]
    autocast: Callable  # the model's autocast context (nullcontext under FSDP2's mixed precision)
    loss_autocast: Callable
    mark_graph_step: Callable[[], None]  # compile_mode=reduce-overhead: a new generation of CUDA graphs

    def state(self) -> dict:
        """The sharded state a checkpoint holds (DCP reshards it from N to M ranks)."""
        model_sd, optim_sd = get_state_dict(self.model, self.optimizer)
        state = {"model": model_sd, "optim": optim_sd}
        if self.ema is not None:
            state["ema"] = self.ema.state_dict()
        if self.discriminator is not None:
            state["disc"], state["disc_optim"] = get_state_dict(self.discriminator, self.disc_optimizer)
        return state

    def load(self, folder: Path) -> dict:
        """Restore every state from checkpoint ``folder``; returns its meta."""
        state = self.state()
        meta = self.engine.ckpts.load(folder, state)
        set_state_dict(self.model, self.optimizer, model_state_dict=state["model"], optim_state_dict=state["optim"])
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"])
        if self.discriminator is not None:
            set_state_dict(
                self.discriminator,
                self.disc_optimizer,
                model_state_dict=state["disc"],
                optim_state_dict=state["disc_optim"],
            )
        self.scheduler.load_state_dict(meta["scheduler"])
        return meta


def load_teachers(cfg: TokenizerTrainConfig, device: torch.device):
    """Frozen teachers (never nn.Modules of the trained model, never in an optimizer), for stages that run the
    semantic side."""
    dtype = DTYPES[cfg.teachers.dtype] if device.type == "cuda" else torch.float32
    image = video = None
    if cfg.teachers.image and cfg.stage_spec.semantic:
        options = {"image_size": cfg.teachers.image_size} if cfg.teachers.image_size else {}
        image = load_teacher(cfg.teachers.image, dtype=dtype, device=device, **options)
    if cfg.teachers.video and cfg.stage_spec.semantic:
        video = load_teacher(cfg.teachers.video, dtype=dtype, device=device)
    return image, video


def build_tokenizer(cfg: TokenizerTrainConfig, image_dim: int | None, video_dim: int | None) -> HydraXTokenizer:
    """The starting weights on the CPU, fp32: random, SigLIP 2, InternViT, or a previous stage's export."""
    config = cfg.model.replace(image_teacher_dim=image_dim, video_teacher_dim=video_dim)
    if cfg.init is None:
        return HydraXTokenizer.from_config(config, seed=cfg.seed)
    if cfg.init.startswith("siglip2:"):
        return HydraXTokenizer.from_siglip2(cfg.init[len("siglip2:") :], config=config, seed=cfg.seed)
    if cfg.init.startswith("internvit:"):  # HYDRA-TOK: an InternVL vision tower or a full InternVL -hf checkpoint
        return HydraXTokenizer.from_internvit(cfg.init[len("internvit:") :], config=config, seed=cfg.seed)
    folder = Path(cfg.init)
    if (folder / "export" / "config.json").is_file():
        folder = folder / "export"
    model = HydraXTokenizer.from_pretrained(folder if folder.exists() else cfg.init)
    for name, dim in (("image_teacher_dim", image_dim), ("video_teacher_dim", video_dim)):
        have = getattr(model.config, name)
        if dim is not None and have != dim:
            raise ValueError(f"{cfg.init} has {name}={have}, but the configured teacher has width {dim}")
    return model


def tokenizer_blocks(model: HydraXTokenizer) -> list[nn.ModuleList]:
    """The ModuleLists that hold the tokenizer's transformer blocks (what parallelize wraps and shards)."""
    lists = [model.gen_vit.blocks, model.sem_vit.blocks, model.decoder.blocks]
    if model.decompressor is not None:
        lists.append(model.decompressor.blocks)
    return lists


def compile_frozen(lpips: nn.Module | None, *teachers: FrozenTeacher | None) -> None:
    """With compile=true, also compile the frozen modules of the step.

    Their elementwise work is large and unfused in eager mode: LPIPS normalises full-resolution VGG feature
    maps, the teachers run their own norms, activations and (V-JEPA 2) RoPE. Compiled in place, so the
    objective keeps calling the same objects.
    """
    if lpips is not None:
        lpips.compile()
    for teacher in teachers:
        if teacher is not None:
            teacher.model.compile()


def build_run(cfg: TokenizerTrainConfig, engine: Engine) -> TokenizerRun:
    device, stage = engine.device, cfg.stage_spec
    # First: a missing LPIPS file stops the run before any teacher or model is downloaded or built.
    lpips: LPIPS | None = load_lpips_for(cfg.loss, stage)
    image_teacher, video_teacher = load_teachers(cfg, device)
    # No image head when only multi-layer distillation uses the image teacher (HYDRA-TOK compares directly).
    image_dim = image_teacher.dim if image_teacher is not None and cfg.loss.distill_image > 0 else None
    model = build_tokenizer(cfg, image_dim, video_teacher and video_teacher.dim)
    model.validate_inputs = False  # one device sync per step saved; the data pipeline checks its samples
    model.to(device)
    info = engine.info
    loader = TokenizerDataLoader(
        cfg.data,
        rank=info.rank,
        world_size=info.world_size,
        start_step=engine.step * cfg.grad_accum,
        state=engine.data_state,
        pin_memory=device.type == "cuda",
    )
    if stage.measures_latent_stats and engine.resume_from is None:
        # Measured once; they then live in the model (and its checkpoints).
        stats_loader = TokenizerDataLoader(cfg.data, rank=info.rank, world_size=info.world_size)
        pixels = (batch.pixels for _, batch in zip(range(cfg.stage3_stat_batches), stats_loader))
        model.set_latent_stats(*measure_latent_stats(model, pixels, device))
        del stats_loader
    trainable = set_trainable(model, stage.trains)
    engine.parallelize(model, tokenizer_blocks(model))
    autocast, loss_autocast = engine.autocasts()
    optimizer = build_optimizer(model, cfg.optim)
    scheduler = build_scheduler(optimizer, cfg.optim, lambda: engine.planned_steps)
    discriminator = build_discriminator(cfg.loss, stage, device, cfg.seed)
    disc_optimizer = None
    if discriminator is not None:
        disc_optimizer = torch.optim.AdamW(discriminator.parameters(), lr=cfg.loss.disc_lr, betas=(0.5, 0.9))
        init_optimizer_state(disc_optimizer)
    if lpips is not None:
        lpips.to(device)
    objective = TokenizerObjective(
        cfg.loss,
        stage,
        image_teacher=image_teacher,
        video_teacher=video_teacher,
        lpips=lpips,
        discriminator=discriminator,
        distill_layers=cfg.teachers.distill_layers,
    )
    if cfg.compile:
        compile_frozen(lpips, image_teacher, video_teacher)
    run = TokenizerRun(
        cfg=cfg,
        engine=engine,
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
        ema=EMA(model, cfg.ema_decay) if cfg.ema_decay > 0 else None,
        objective=objective,
        discriminator=discriminator,
        disc_optimizer=disc_optimizer,
        loader=loader,
        trainable=trainable,
        autocast=autocast,
        loss_autocast=loss_autocast,
        mark_graph_step=engine.graph_step_marker,
    )
    if engine.resume_from is not None:
        run.load(engine.resume_from)
    return run
