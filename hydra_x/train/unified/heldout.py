"""Held-out checks during unified training, on the shapes world's held-out split (combinations never trained on):
images (and a clip) generated for held-out captions, saved as a grid, and the accuracy of answers to held-out
questions. The full scorers (GenEval-style counts, positions, motion, editing) are ``hydra-x eval shapes``."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import torch

from hydra_x.data.media import write_image
from hydra_x.data.shapes import render_image
from hydra_x.data.shapes_text import ShapesWorld
from hydra_x.unified.chat import chat
from hydra_x.unified.sampling import generate_latents, render

HELDOUT_SEED = 20261202  # held-out prompts and questions do not depend on the training seed


@contextlib.contextmanager
def unsharded(model) -> Iterator[None]:
    """Inference calls methods other than forward: gather an FSDP2 root's own parameters for their duration
    (its blocks gather theirs in their own forward hooks)."""
    unshard = getattr(model, "unshard", None)
    if unshard is None:
        yield
        return
    unshard()
    try:
        yield
    finally:
        model.reshard()


@torch.no_grad()
def heldout_checks(run, step: int) -> dict[str, float]:
    """Generate for held-out captions and answer held-out questions; rank 0 writes the grid. Every rank runs the
    same computation (a sharded model needs every rank)."""
    cfg, model, engine = run.cfg, run.model, run.engine
    size, side = cfg.data.image_size, cfg.data.task_size("image_sft")  # generation's, and the questions' pictures'
    world = ShapesWorld(HELDOUT_SEED, "heldout")
    was_training = model.training
    model.eval()
    run.mark_graph_step()
    scores: dict[str, float] = {}
    with unsharded(model), run.autocast():
        pictures = []
        if cfg.heldout_prompts:
            captions = [world.caption_sample(k).caption for k in range(cfg.heldout_prompts)]
            z = generate_latents(
                model,
                captions,
                height=size,
                width=size,
                steps=cfg.sample_steps,
                guidance=cfg.sample_guidance,
                seed=step,
            )
            generated = render(model, z)  # (B, 3, H, W)
            truth = torch.stack([render_image(world.caption_sample(k).scene, size, size) for k in range(len(captions))])
            pictures.append(torch.cat([torch.cat(list(truth), -1), torch.cat(list(generated), -1)], -2))
        if cfg.heldout_questions:
            right = 0
            for k in range(cfg.heldout_questions):
                sample = world.question_sample(k)
                image = render_image(sample.scene, side, side)
                reply = chat(model, sample.question.text, image=image, max_new_tokens=8)
                right += reply.strip().lower().rstrip(".") == sample.question.answer.lower()
            scores["heldout_answer_accuracy"] = right / cfg.heldout_questions
    model.train(was_training)
    if engine.info.is_main and pictures:
        folder = engine.run_dir / "samples"
        folder.mkdir(parents=True, exist_ok=True)
        path = write_image(folder / f"generated_{step:08d}.png", pictures[0])
        engine.logger.image("generated", Path(path), step)
    if scores:
        engine.logger.metrics(step, scores)
        engine.logger.info(f"step {step}: " + ", ".join(f"{k} {v:.3f}" for k, v in scores.items()))
    return scores
