"""Held-out evaluation during tokenizer training, and the export of its weights at the end of a run."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn

from hydra_x.data import heldout_clips, heldout_images, heldout_photo
from hydra_x.eval.metrics import psnr, ssim, video_psnr, video_ssim
from hydra_x.tokenizer.model import HydraXTokenizer
from hydra_x.train.ema import EMA
from hydra_x.train.engine import gather_full_state
from hydra_x.train.tokenizer.draws import heldout_flow_noise
from hydra_x.train.visualize import save_heldout_pictures


def heldout_set(cfg, device: torch.device) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """The fixed held-out images and clips of the embedded photographs the config asks for."""
    images = heldout_images(cfg.heldout_images, cfg.data.image_size).to(device) if cfg.heldout_images else None
    clips = None
    if cfg.heldout_clips:
        clips = heldout_clips(cfg.heldout_clips, cfg.data.clip_frames, cfg.data.image_size).to(device)
    return images, clips


def per_photo_means(name: str, values: torch.Tensor) -> dict[str, float]:
    """``name`` -> the mean of ``values`` (one per held-out sample, in order), and ``name/<photo>`` -> the mean
    over the samples of each held-out photograph: the photographs differ far more in difficulty (a cat's face,
    a cup, a gravel texture) than training runs differ from each other."""
    photos = [heldout_photo(k) for k in range(len(values))]
    values = values.tolist()
    result = {name: sum(values) / len(values)}
    for photo in dict.fromkeys(photos):
        mine = [v for v, p in zip(values, photos, strict=True) if p == photo]
        result[f"{name}/{photo}"] = sum(mine) / len(mine)
    return result


@torch.no_grad()
def evaluate(model: nn.Module, images: torch.Tensor | None, clips: torch.Tensor | None, autocast) -> dict:
    """Held-out reconstructions (posterior mean) with PSNR / SSIM, overall and per photograph; every rank runs
    it (FSDP needs that). A flow decoder samples in its config's ``flow_steps`` from fixed noise.
    """
    was_training = model.training
    model.eval()
    result: dict = {}
    with autocast():
        if images is not None:
            rec = model(images, semantic=False, flow_noise=heldout_flow_noise(model, images)).x_rec
            rec = rec.float().clamp(-1, 1)
            result.update(images=(images, rec), **per_photo_means("heldout_image_psnr", psnr(rec, images)))
            result["heldout_image_ssim"] = ssim(rec, images).mean().item()
        if clips is not None:
            rec = model(clips, semantic=False, flow_noise=heldout_flow_noise(model, clips)).x_rec
            rec = rec.float().clamp(-1, 1)
            result.update(clips=(clips, rec), **per_photo_means("heldout_clip_psnr", video_psnr(rec, clips)))
            result["heldout_clip_ssim"] = video_ssim(rec, clips).mean().item()
    model.train(was_training)
    return result


def evaluate_and_record(run, heldout, step: int) -> dict[str, float]:
    """Evaluate, log the scores and (rank 0) write the pictures; returns the scores."""
    run.mark_graph_step()
    result = evaluate(run.model, *heldout, run.autocast)
    scores = {k: v for k, v in result.items() if k.startswith("heldout_")}
    logger = run.engine.logger
    logger.metrics(step, scores)
    if run.engine.info.is_main:
        for path in save_heldout_pictures(
            run.engine.run_dir / "samples", step, result.get("images"), result.get("clips")
        ):
            logger.image(path.stem.split("_")[0], path, step)
        logger.info(f"step {step}: " + ", ".join(f"{k} {v:.4f}" for k, v in scores.items()))
    return scores


def export(model: nn.Module, ema: EMA | None, folder: Path, is_main: bool) -> Path | None:
    """Gather the full weights (EMA where there is one) and write them as save_pretrained on rank 0."""
    state = gather_full_state(model, ema, is_main)
    if state is None:
        return None
    clean = HydraXTokenizer.from_config(model.config, device="meta").to_empty(device="cpu")
    clean.load_state_dict(state)
    return clean.save_pretrained(folder)


def export_and_score(run, heldout, step: int) -> dict[str, float]:
    """Export the EMA (or final) weights to <run>/export and, on rank 0 with evaluation on, score the export."""
    engine = run.engine
    exported = export(run.model, run.ema, engine.run_dir / "export", engine.info.is_main)
    if exported is None:
        return {}
    engine.logger.info(f"exported {'EMA' if run.ema else 'final'} weights to {exported}")
    if not run.cfg.eval_every:
        return {}
    ema_model = HydraXTokenizer.from_pretrained(exported, device=engine.device)
    ema_model.validate_inputs = False
    scores = {f"ema_{k}": v for k, v in evaluate(ema_model, *heldout, run.autocast).items() if k.startswith("heldout_")}
    engine.logger.metrics(step, scores)
    engine.logger.info("EMA export: " + ", ".join(f"{k} {v:.4f}" for k, v in scores.items()))
    return scores
