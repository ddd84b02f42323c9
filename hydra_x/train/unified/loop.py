"""Train the unified model: one process or many, one visible loop.

    python -m hydra_x.train.unified --config tiny                                   # CPU, the shapes world
    python -m hydra_x.train.unified --config small tokenizer_init=runs/small        # one GPU, SmolLM2-135M
    torchrun --nproc_per_node 8 -m hydra_x.train.unified --config hydra-x-1.5b-stage1 data.sources=...

Each run folder holds checkpoints/, export/ (HydraX.save_pretrained: tokenizer, LLM and heads in one folder),
metrics.jsonl, tensorboard/, samples/ (images generated for held-out prompts), skipped.log and config.json.
A run restarted on the same folder resumes from its latest checkpoint.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from pathlib import Path

import torch

from hydra_x.train.engine import Engine, gather_full_state, region
from hydra_x.train.unified.batch import build_batch
from hydra_x.train.unified.build import UnifiedRun, build_run
from hydra_x.train.unified.config import UnifiedTrainConfig
from hydra_x.train.unified.heldout import heldout_checks
from hydra_x.train.unified.objective import unified_loss
from hydra_x.unified.masks import visible_pairs
from hydra_x.unified.model import HydraX


def head_attention_from(cfg: UnifiedTrainConfig, planned_steps: int, joined_at: int | None = None) -> int:
    """The first step whose flow head may run its attention layers: head_attention_from_step, or the share
    head_attention_from_share of the planned steps (the engine's plan, which a time budget sets after its probe,
    and sets anew in a resumed run), unless the layers already joined, at ``joined_at``: then they stay joined."""
    if cfg.head_attention_from_share is None:
        return cfg.head_attention_from_step
    if joined_at is not None:
        return joined_at
    return math.ceil(cfg.head_attention_from_share * planned_steps)


def head_attention_on(cfg: UnifiedTrainConfig, step: int, planned_steps: int, joined_at: int | None = None) -> bool:
    """Whether step ``step``'s flow head runs its attention layers: from head_attention_from (of a run planned for
    ``planned_steps``, joined at ``joined_at`` if they did) on, less a share head_attention_drop of the steps, drawn
    from (seed, step) alone so that every process, and a resumed run, draws alike."""
    if step < head_attention_from(cfg, planned_steps, joined_at):
        return False
    return not cfg.head_attention_drop or random.Random(f"{cfg.seed}:{step}").random() >= cfg.head_attention_drop


def train_step(run: UnifiedRun, batches: Iterator, step: int) -> torch.Tensor:
    """One optimizer step: ``grad_accum`` micro-batches of examples, each packed into rows, encoded, noised where
    generated, and run forward and backward; then the clipped update (skipped if the gradient is not finite)
    and the EMA. Returns the gradient norm. Draws depend on the global example index alone."""
    cfg, model, engine = run.cfg, run.model, run.engine
    window, rank = engine.window, engine.info.rank
    if run.head_attention_joined_at is None and step >= head_attention_from(cfg, engine.planned_steps):
        run.head_attention_joined_at = step
        if model.config.head_attention_layers:
            engine.logger.info(f"step {step} of {engine.planned_steps}: the flow head's attention layers join")
    model.flow_head.use_attention = head_attention_on(cfg, step, engine.planned_steps, run.head_attention_joined_at)
    for micro in range(cfg.grad_accum):
        item = engine.next_batch(batches)
        engine.logger.skipped(step, item.skipped)
        micro_step, first = step * cfg.grad_accum + micro, rank * len(item.examples)
        with region("batch"):
            packed, visuals, _ = build_batch(model, item.examples, cfg, micro_step, first, item.prepared)
        if engine.counting_flops:  # the LLM attends within each packed example only: MFU counts that share
            engine.count_attention_pairs(*visible_pairs(packed, model.config.video_attention))
        if engine.fsdp:
            model.set_requires_gradient_sync(micro == cfg.grad_accum - 1)
        run.mark_graph_step()
        with region("forward"), run.autocast():
            out = model(packed, visuals)
        with region("losses"):
            terms = unified_loss(out, cfg.loss, engine.device)
        with region("backward"):
            (terms.total / cfg.grad_accum).backward()
        window.add_losses({**terms.values, "total": terms.total}, 1 / cfg.grad_accum)
        window.samples += len(item.examples)
        window.tokens += int(packed.valid.sum())
    with region("optimizer"):
        params = [p for p in model.parameters() if p.requires_grad]
        grad_norm = engine.guard.step(run.optimizer, params, cfg.optim.grad_clip, step, engine.logger.info)
        run.scheduler.step()
        run.optimizer.zero_grad(set_to_none=True)
    if run.ema is not None:
        with region("ema"):
            run.ema.update(model)
    model.flow_head.use_attention = True  # held-out samples and the export run the whole head
    return grad_norm


def export(run: UnifiedRun, folder: Path) -> Path | None:
    """Gather the full weights (EMA where there is one) and write them as HydraX.save_pretrained on rank 0."""
    state = gather_full_state(run.model, run.ema, run.engine.info.is_main)
    if state is None:
        return None
    clean = HydraX.on_meta(run.model.config, run.model.llm.config, run.model.text_tokenizer).to_empty(device="cpu")
    clean.load_state_dict(state)
    return clean.save_pretrained(folder)


def train(cfg: UnifiedTrainConfig) -> dict:
    """Run (or resume) the training ``cfg`` describes; returns the summary (also written to summary.json)."""
    engine = Engine(cfg)
    run = build_run(cfg, engine)
    local = sum(p.numel() for p in run.model.parameters() if p.requires_grad) / 1e6
    stage = cfg.stage_spec
    logger = engine.start(
        {**cfg.to_dict(), "resolved_model": run.model.config.to_dict()},
        f"stage {cfg.stage} ({stage.name}): {len(run.trainable)} trainable tensors ({local:.1f}M on this rank), "
        f"learning rates {cfg.param_lrs()}, LLM {cfg.model.llm}",
    )
    batches = run.batches
    scores: dict = {}
    while engine.step < engine.planned_steps:
        with engine.timed_step(compiled=cfg.compile):
            grad_norm = train_step(run, batches, engine.step)
        engine.end_step()
        if engine.log_due():
            skipped = sum(logger.skip_counts.values())
            engine.log(skipped, lr=run.scheduler.get_last_lr()[0], grad_norm=float(grad_norm))
        if engine.eval_due():
            scores = heldout_checks(run, engine.step)
        if engine.checkpoint_due():
            meta = {
                "scheduler": run.scheduler.state_dict(),
                "config": cfg.to_dict(),
                "head_attention_joined_at": run.head_attention_joined_at,
            }
            engine.save(run.state(), meta, {"data": run.loader.state_dict()})
        if engine.stopping:
            break
    summary = {"step": engine.step, "skipped": dict(logger.skip_counts), **scores}
    if run.model.config.head_attention_layers:
        summary["head_attention_joined_at"] = run.head_attention_joined_at
    if engine.last:
        exported = export(run, engine.run_dir / "export")
        if exported is not None:
            logger.info(f"exported {'EMA' if run.ema else 'final'} weights to {exported}")
    return engine.finish(summary)
