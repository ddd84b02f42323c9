"""Train the HYDRA-X tokenizer: one process or many, one visible loop.

    python -m hydra_x.train.tokenizer --config tiny                                  # CPU, embedded data
    torchrun --nproc_per_node 8 -m hydra_x.train.tokenizer --config so400m-stage1 data.image_batch_size=32
    python -m hydra_x.train.tokenizer --config so400m-stage2 init=runs/stage1        # starts from stage 1

Each run folder holds checkpoints/, export/ (EMA weights as save_pretrained), metrics.jsonl, tensorboard/,
samples/ (held-out grids and GIFs), skipped.log and config.json. A run restarted on the same folder
resumes from its latest checkpoint.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.distributed as dist
import torch.nn as nn

from hydra_x.data import Batch
from hydra_x.train.engine import Engine, region
from hydra_x.train.tokenizer.build import TokenizerRun, build_run
from hydra_x.train.tokenizer.config import TokenizerTrainConfig
from hydra_x.train.tokenizer.draws import flow_draws, posterior_noise
from hydra_x.train.tokenizer.heldout import evaluate_and_record, export_and_score, heldout_set


def tokens_in(x: torch.Tensor, patch: int) -> int:
    """Frame-patch tokens of a batch: B x frames x (H / p) x (W / p)."""
    frames = x.shape[2] if x.ndim == 5 else 1
    return x.shape[0] * frames * (x.shape[-2] // patch) * (x.shape[-1] // patch)


def train_step(run: TokenizerRun, batches: Iterator[Batch], step: int) -> torch.Tensor:
    """One optimizer step: ``grad_accum`` micro-batches of forward, losses and backward; the clipped update
    (skipped if the gradient is not finite); the discriminator's step; the EMA. Returns the gradient norm.

    Each micro-batch's random draws depend on the global sample index alone, so the step is the same on any
    number of processes.
    """
    cfg, model, objective, engine = run.cfg, run.model, run.objective, run.engine
    window, rank = engine.window, engine.info.rank
    fakes = []  # (real, reconstruction) pairs for the discriminator
    for micro in range(cfg.grad_accum):
        batch: Batch = engine.next_batch(batches)
        engine.logger.skipped(step, batch.skipped)
        x = batch.pixels.to(engine.device, non_blocking=True)
        micro_step, first = step * cfg.grad_accum + micro, rank * x.shape[0]
        run.mark_graph_step()
        with region("noise"):
            noise = posterior_noise(x, model.config, cfg.seed, micro_step, first)
            flow = {}
            if model.config.decoder == "flow" and objective.reconstruct:
                flow = dict(zip(("flow_noise", "flow_t"), flow_draws(x, cfg.loss, cfg.seed, micro_step, first)))
        if engine.fsdp:
            model.set_requires_gradient_sync(micro == cfg.grad_accum - 1)
        with region("forward"), run.autocast():
            out = model(
                x,
                noise=noise,
                reconstruct=objective.reconstruct,
                semantic=objective.semantic,
                feature_layers=objective.feature_layers,
                **flow,
            )
        with region("losses"), run.loss_autocast():
            terms = objective.generator(out, x, step)
        with region("backward"):
            (terms.total / cfg.grad_accum).backward()
        if objective.gan_active(step):
            fakes.append((x, out.x_rec.detach()))
        window.add_losses({**terms.values, "total": terms.total}, 1 / cfg.grad_accum)
        window.samples += x.shape[0]
        window.tokens += tokens_in(x, model.config.patch_size)
    with region("optimizer"):
        params = [p for p in model.parameters() if p.requires_grad]
        grad_norm = engine.guard.step(run.optimizer, params, cfg.optim.grad_clip, step, engine.logger.info)
        run.scheduler.step()
        run.optimizer.zero_grad(set_to_none=True)
    if fakes:
        with region("discriminator"):
            discriminator_step(run, fakes)
    if run.ema is not None:
        with region("ema"):
            run.ema.update(model)
    return grad_norm


def discriminator_step(run: TokenizerRun, fakes: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
    """The discriminator's hinge loss on this step's real / reconstructed pairs, averaged across ranks."""
    run.disc_optimizer.zero_grad(set_to_none=True)  # drop what the generator's backward left in D
    total = 0.0
    for x_real, x_fake in fakes:
        with run.loss_autocast():
            d_loss = run.objective.discriminator_loss(x_real, x_fake)
        (d_loss / len(fakes)).backward()
        total = total + d_loss.detach().float() / len(fakes)
    run.engine.window.add_losses({"disc": total})
    average_gradients(run.discriminator)
    run.disc_optimizer.step()


def average_gradients(module: nn.Module) -> None:
    """The discriminator is small and replicated on every rank: average its gradients by all-reduce."""
    if not dist.is_initialized():
        return
    world = dist.get_world_size()
    for p in module.parameters():
        if p.grad is not None:
            dist.all_reduce(p.grad)
            p.grad /= world


def train(cfg: TokenizerTrainConfig) -> dict:
    """Run (or resume) the training ``cfg`` describes; returns the summary (also written to summary.json)."""
    engine = Engine(cfg)
    run = build_run(cfg, engine)
    objective = run.objective
    teachers = f"image teacher {objective.image_teacher or 'none'}, video teacher {objective.video_teacher or 'none'}"
    gan = f"from step {cfg.loss.gan_start}" if run.discriminator is not None else "off"
    local = sum(p.numel() for p in run.model.parameters() if p.requires_grad) / 1e6
    logger = engine.start(
        {**cfg.to_dict(), "resolved_model": run.model.config.to_dict()},
        f"stage {cfg.stage} ({cfg.stage_spec.name}): {len(run.trainable)} trainable tensors ({local:.1f}M on this "
        f"rank); {teachers}, LPIPS {'on' if objective.lpips else 'off'}, GAN {gan}",
    )
    heldout = heldout_set(cfg, engine.device)
    batches = iter(run.loader)
    scores: dict = {}
    while engine.step < engine.planned_steps:
        with engine.timed_step(compiled=cfg.compile):
            grad_norm = train_step(run, batches, engine.step)
        engine.end_step()
        if engine.log_due():
            skipped = sum(logger.skip_counts.values())
            engine.log(skipped, lr=run.scheduler.get_last_lr()[0], grad_norm=float(grad_norm))
        if engine.eval_due():
            scores = evaluate_and_record(run, heldout, engine.step)
        if engine.checkpoint_due():
            meta = {
                "scheduler": run.scheduler.state_dict(),
                "config": cfg.to_dict(),
                "model_config": run.model.config.to_dict(),
            }
            engine.save(run.state(), meta, {"data": run.loader.state_dict()})
        if engine.stopping:
            break
    summary = {"step": engine.step, "skipped": dict(logger.skip_counts), **scores}
    if engine.last:
        summary.update(export_and_score(run, heldout, engine.step))
    return engine.finish(summary)
