"""Tokenizer training presets as Python functions (each returns a fresh TokenizerTrainConfig).

- tiny: the CPU demo on the embedded data set; a few minutes on a laptop, no download, no teacher.
- small: one GPU, the `small` tokenizer from scratch at 128 px on the embedded data (about 10 minutes).
- so400m-stage1/2/3: the paper's three stages at So400m size, from SigLIP 2, with SigLIP 2 (image) and
  V-JEPA 2 (video) teachers. Point `data.sources` at your data; the global batch is per-rank batch x ranks.
"""

from __future__ import annotations

from collections.abc import Callable

from hydra_x.data.config import DataConfig, SourceConfig
from hydra_x.train.optim import OptimConfig
from hydra_x.train.tokenizer_config import LossConfig, TeacherConfig, TokenizerTrainConfig

EMBEDDED = (SourceConfig("embedded_images", weight=1.0), SourceConfig("embedded_videos", weight=1.0))


def tiny() -> TokenizerTrainConfig:
    return TokenizerTrainConfig(
        model_preset="tiny",
        data=DataConfig(
            sources=EMBEDDED,
            image_size=64,
            aspect_buckets=False,
            clip_frames=9,
            image_batch_size=8,
            video_batch_size=2,
            num_workers=0,
        ),
        optim=OptimConfig(lr=1e-3, warmup_steps=20, weight_decay=0.0),
        loss=LossConfig(lpips=0.0, kl=1e-6),
        steps=300,
        device="cpu",
        precision="fp32",
        ema_decay=0.99,
        log_every=10,
        eval_every=100,
        heldout_images=8,
        heldout_clips=2,
        ckpt_every=100,
        out_dir="runs/tiny",
    )


def small() -> TokenizerTrainConfig:
    return TokenizerTrainConfig(
        model_preset="small",
        data=DataConfig(
            sources=EMBEDDED,
            image_size=128,
            aspect_buckets=False,
            clip_frames=17,
            image_batch_size=128,
            video_batch_size=16,
            num_workers=14,
        ),
        optim=OptimConfig(lr=1e-3, warmup_steps=300, weight_decay=0.05),
        compile=True,  # a model this small is bound by kernel launches in eager mode
        loss=LossConfig(lpips=1.0, kl=1e-6),
        steps=4000,
        ema_decay=0.999,
        log_every=50,
        eval_every=1000,
        heldout_images=16,
        heldout_clips=4,
        ckpt_every=1000,
        out_dir="runs/small",
    )


def so400m_stage1() -> TokenizerTrainConfig:
    return TokenizerTrainConfig(
        model_preset="so400m",
        init="siglip2:google/siglip2-so400m-patch16-naflex",
        stage=1,
        data=DataConfig(
            sources=EMBEDDED, image_size=256, clip_frames=17, image_batch_size=32, video_batch_size=4, num_workers=8
        ),
        optim=OptimConfig(lr=2e-4, warmup_steps=2000, weight_decay=0.05),
        loss=LossConfig(l1=1.0, lpips=1.0, kl=1e-4, gan=0.0, distill_image=1.0, distill_video=1.0),
        teachers=TeacherConfig(image="google/siglip2-so400m-patch16-naflex", video="facebook/vjepa2-vitl-fpc64-256"),
        steps=300_000,
        activation_checkpointing=True,
        ema_decay=0.9999,
        log_every=50,
        eval_every=5000,
        ckpt_every=2500,
        out_dir="runs/so400m-stage1",
    )


def so400m_stage2() -> TokenizerTrainConfig:
    cfg = so400m_stage1()
    cfg.stage, cfg.init, cfg.steps, cfg.out_dir = 2, "runs/so400m-stage1", 50_000, "runs/so400m-stage2"
    cfg.optim = OptimConfig(lr=1e-4, warmup_steps=1000, weight_decay=0.05)
    cfg.loss = LossConfig(l1=1.0, lpips=1.0, kl=0.0, gan=0.1, gan_start=0, distill_image=0.0, distill_video=0.0)
    cfg.teachers = TeacherConfig()
    return cfg


def so400m_stage3() -> TokenizerTrainConfig:
    cfg = so400m_stage1()
    cfg.stage, cfg.init, cfg.steps, cfg.out_dir = 3, "runs/so400m-stage2", 50_000, "runs/so400m-stage3"
    cfg.optim = OptimConfig(lr=5e-5, warmup_steps=1000, weight_decay=0.05)
    cfg.loss = LossConfig(lpips=0.0, kl=0.0, gan=0.0, distill_image=1.0, distill_video=1.0)
    return cfg


TRAIN_PRESETS: dict[str, Callable[[], TokenizerTrainConfig]] = {
    "tiny": tiny,
    "small": small,
    "so400m-stage1": so400m_stage1,
    "so400m-stage2": so400m_stage2,
    "so400m-stage3": so400m_stage3,
}
