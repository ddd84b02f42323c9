"""Tokenizer training recipes as Python functions (each returns a fresh TokenizerTrainConfig).

- tiny: the CPU demo on the embedded data set; a few minutes on a laptop, no download, no teacher, and no
  LPIPS (lpips=0: its VGG weights are a download).
- demo-warmup, demo (2 CPU cores), demo-small-warmup, demo-small (one GPU): `hydra-x demo`'s tokenizer
  (hydra_x.demo), trained in two runs within time budgets: the shapes world's images first, then the photographs,
  clips and shapes together. They read the shapes-world renders the demo writes (DEMO_SHAPES).
- small: one GPU, the `small` tokenizer from scratch at 128 px on the embedded data (about 10 minutes).
- so400m-stage1/2/3: the paper's three stages at So400m size, from SigLIP 2, with SigLIP 2 (image) and
  V-JEPA 2 (video) teachers. Point `data.sources` at your data; the global batch is per-rank batch x ranks.
- hydra-tok-stage1/2: HYDRA's image-only tokenizer: InternViT start and the same InternViT as the
  teacher at layers of both halves, consistency loss, flow-matching decoder. The checkpoint is a field
  (`init`, `teachers.image`); offline, point both at a local folder or the run fails naming the checkpoint.
- hydra-tok-small: HYDRA-TOK's architecture at `small` size on the embedded images, from scratch, no teacher.

Every recipe but `tiny` trains with LPIPS and requires its weights (LossConfig.lpips_required): found by the
default lookup of hydra_x.losses.lpips, or the run stops at start saying how to supply them. Training without
it is a choice made on the command line: `loss.lpips=0`, or `loss.lpips_required=false` (LPIPS then runs
only where its weights are found).
"""

from __future__ import annotations

from collections.abc import Callable

from hydra_x.data.config import DataConfig, SourceConfig
from hydra_x.tokenizer.config import tokenizer_config
from hydra_x.train.optim import OptimConfig
from hydra_x.train.tokenizer.config import LossConfig, TeacherConfig, TokenizerTrainConfig

EMBEDDED = (SourceConfig("embedded_images", weight=1.0), SourceConfig("embedded_videos", weight=1.0))


def tiny() -> TokenizerTrainConfig:
    """The README's offline main job. LPIPS is off (lpips=0), so nothing is downloaded: its VGG16 weights are
    a 528 MiB download, and the demo trains with L1 and KL alone."""
    return TokenizerTrainConfig(
        model=tokenizer_config("tiny"),
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
        loss=LossConfig(lpips=0.0, kl=1e-6),  # no LPIPS: see the docstring
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


# Shapes-world renders that `hydra-x demo` writes before training its tokenizer (hydra_x.demo.data), as PNG files.
DEMO_SHAPES = "runs/demo/shapes-images"


def shapes_world_loss() -> LossConfig:
    """The loss of the recipes that learn the shapes world without LPIPS: MSE, not L1. With L1 alone a tokenizer
    this briefly trained draws the world's small flat objects as shrunken blocks of tokens (where an edge is
    uncertain, L1's best guess is the background): after 1200 steps of `demo-warmup` it gives back 35% of the
    held-out truth pictures (`hydra-x eval shapes`' round trip), with MSE 92% (docs/benchmarks.md)."""
    return LossConfig(l1=0.0, mse=1.0, lpips=0.0, kl=1e-6)


def demo_warmup() -> TokenizerTrainConfig:
    """The first of `hydra-x demo`'s two tokenizer runs (2 CPU cores, about 80 s): the shapes world's images
    alone, at patch 8. 2400 steps rather than 800 double what the demo's tokenizer gives back of the shapes world
    (its round trip in `hydra-x eval shapes`: 58% against 30%) and lift its photographs by 1 dB. Trained on the
    photographs and the shapes together from the start, a tokenizer this small and this briefly trained keeps only
    the photographs' dominant colours (green comes back teal, yellow orange, purple grey), which no generation can
    undo; learnt first on the shapes, the colours survive the mixed run (`demo`).
    LPIPS is off (lpips=0, as in `tiny`): the demo downloads nothing; the loss is MSE (`shapes_world_loss`)."""
    cfg = tiny()
    cfg.model = tokenizer_config("tiny", patch_size=8)  # 8 x 8 px tokens: 64 per 64 px image
    cfg.data.sources = (SourceConfig("image_folder", path=DEMO_SHAPES),)
    cfg.optim = OptimConfig(lr=3e-4, warmup_steps=50, weight_decay=0.0)
    cfg.loss = shapes_world_loss()
    cfg.steps, cfg.eval_every, cfg.ckpt_every, cfg.heldout_clips = 2400, 0, 1200, 0
    cfg.time_budget_minutes, cfg.budget_probe_steps, cfg.budget_reserve_s = 1.6, 60, 5.0
    cfg.out_dir = "runs/demo/tokenizer-warmup"
    return cfg


def demo() -> TokenizerTrainConfig:
    """`hydra-x demo`'s tokenizer (2 CPU cores, about 2 minutes): from `demo-warmup`, on the photographs, the clips
    and the shapes world together. The time budget shortens the run on a slower or busier machine. LPIPS is off."""
    cfg = demo_warmup()
    cfg.init = "runs/demo/tokenizer-warmup"
    cfg.data.sources = (
        SourceConfig("embedded_images", weight=1.0),
        SourceConfig("embedded_videos", weight=0.5),
        SourceConfig("image_folder", path=DEMO_SHAPES, weight=2.0),
    )
    cfg.steps, cfg.ckpt_every, cfg.heldout_clips = 2000, 500, 2  # held-out figures: the export's, at the end
    cfg.time_budget_minutes = 2.0
    cfg.out_dir = "runs/demo/tokenizer"
    return cfg


def demo_small_warmup() -> TokenizerTrainConfig:
    """`demo-warmup` for one GPU: the `small` tokenizer (patch 16) on 64 px shapes-world images, as the tokenizer
    beneath the best shapes-world run (6000 steps at 64 px: its round trip of the truth pictures 95.8%, against
    79.2% after 3000; docs/benchmarks.md); here within 4 minutes. LPIPS is off."""
    cfg = small()
    cfg.loss = shapes_world_loss()  # LPIPS needs a download; the demo switches it on where it is local
    cfg.data.sources = (SourceConfig("image_folder", path=DEMO_SHAPES),)
    cfg.data.image_size, cfg.data.clip_frames = 64, 9  # the unified model's `small-64` pictures and clips
    cfg.data.num_workers, cfg.compile, cfg.heldout_clips = 8, False, 0
    cfg.steps, cfg.eval_every, cfg.ckpt_every = 6000, 0, 1000
    # An EMA over the last 200 steps, as the benchmark's tokenizer: `small`'s 0.999 spans a thousand, a large share
    # of a demo run, and its export then lags the weights (on an H200 with `--minutes 10`, 1136 steps: held-out
    # photographs 14.9 dB from the EMA against 16.6 dB from the weights; docs/benchmarks.md).
    cfg.ema_decay = 0.995
    # `small`'s 1e-3 loses the shapes world in a short run even with MSE (on an H200 at ~1700 steps: 2.8% of the
    # truth pictures read back against 24% at 3e-4 with the photographs mixed in; docs/benchmarks.md), and in the
    # first GPU demo the loss rose at the peak rate. 3e-4, as the CPU demo and benchmarks/shapes_world_run.py.
    cfg.optim.lr = 3e-4
    cfg.time_budget_minutes, cfg.budget_reserve_s = 4.0, 20.0
    cfg.out_dir = "runs/demo/tokenizer-warmup"
    return cfg


def demo_small() -> TokenizerTrainConfig:
    """`demo` for one GPU: the `small` recipe from `demo-small-warmup`, on the photographs, the clips and the shapes
    world together at 64 px, within a time budget. LPIPS is off."""
    cfg = demo_small_warmup()
    cfg.init = "runs/demo/tokenizer-warmup"
    cfg.data.sources = EMBEDDED + (SourceConfig("image_folder", path=DEMO_SHAPES, weight=2.0),)
    cfg.steps, cfg.eval_every, cfg.ckpt_every, cfg.heldout_clips = 4000, 1000, 1000, 4
    cfg.time_budget_minutes = 2.0
    cfg.out_dir = "runs/demo/tokenizer"
    return cfg


def small() -> TokenizerTrainConfig:
    return TokenizerTrainConfig(
        model=tokenizer_config("small"),
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
        compile_mode="reduce-overhead",  # and still host-bound when compiled: CUDA graphs of the blocks
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
        model=tokenizer_config("so400m"),
        init="siglip2:google/siglip2-so400m-patch16-naflex",
        stage=1,
        data=DataConfig(
            sources=EMBEDDED, image_size=256, clip_frames=17, image_batch_size=32, video_batch_size=4, num_workers=8
        ),
        optim=OptimConfig(lr=2e-4, warmup_steps=2000, weight_decay=0.05),
        # The paper's perceptual loss: required (a run without it is another recipe; see the module docstring).
        loss=LossConfig(l1=1.0, lpips=1.0, lpips_required=True, kl=1e-4, gan=0.0, distill_image=1.0, distill_video=1.0),
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
    cfg.loss = LossConfig(
        l1=1.0, lpips=1.0, lpips_required=True, kl=0.0, gan=0.1, gan_start=0, distill_image=0.0, distill_video=0.0
    )
    cfg.teachers = TeacherConfig()
    return cfg


def so400m_stage3() -> TokenizerTrainConfig:
    cfg = so400m_stage1()
    cfg.stage, cfg.init, cfg.steps, cfg.out_dir = 3, "runs/so400m-stage2", 50_000, "runs/so400m-stage3"
    cfg.optim = OptimConfig(lr=5e-5, warmup_steps=1000, weight_decay=0.05)
    cfg.loss = LossConfig(lpips=0.0, kl=0.0, gan=0.0, distill_image=1.0, distill_video=1.0)
    return cfg


# HYDRA-TOK starts from InternViT-300M (InternVL 2.5 / 3's tower) through a transformers-native checkpoint;
# only the vision tower's shards of the full InternVL checkpoint are downloaded.
INTERNVIT = "OpenGVLab/InternVL3-1B-hf"
EMBEDDED_IMAGES = (SourceConfig("embedded_images", weight=1.0),)


def hydra_tok_stage1() -> TokenizerTrainConfig:
    """HYDRA stage 1: 300k iterations, global batch 256 (32 x 8 GPUs), LR 2e-5; point data.sources at
    ImageNet + CC12M + SAM. 252 px: the multiple of the patch (14) closest to HYDRA's 256."""
    return TokenizerTrainConfig(
        model=tokenizer_config("hydra-tok"),
        init=f"internvit:{INTERNVIT}",
        stage=1,
        data=DataConfig(
            sources=EMBEDDED_IMAGES,
            image_size=252,
            size_multiple=14,
            aspect_buckets=False,
            image_batch_size=32,
            num_workers=8,
        ),
        optim=OptimConfig(lr=2e-5, warmup_steps=2000, weight_decay=0.05),
        # Flow matching 1.0 on the velocity; LPIPS 0.1 and GAN 0.075 on the clean estimate; KL 1e-4;
        # consistency 1.0; multi-layer distillation 1.0 (no head, no Decompressor: image only).
        loss=LossConfig(
            flow=1.0,
            lpips=0.1,
            lpips_required=True,
            gan=0.075,
            gan_start=50_000,  # the project's choice: the discriminator joins once reconstructions are sharp
            kl=1e-4,
            consistency=1.0,
            distill_layers=1.0,
            distill_image=0.0,
            distill_video=0.0,
        ),
        # Two layers of each half (the project's choice; HYDRA names no indices): the Gen-ViT's middle and last,
        # the Sem-ViT's middle and last (hidden state 24 = the tower's output; it has no final norm).
        teachers=TeacherConfig(image=INTERNVIT, distill_layers=(6, 12, 18, 24)),
        steps=300_000,
        activation_checkpointing=True,
        ema_decay=0.9999,
        log_every=50,
        eval_every=5000,
        heldout_clips=0,
        ckpt_every=2500,
        out_dir="runs/hydra-tok-stage1",
    )


def hydra_tok_stage2() -> TokenizerTrainConfig:
    """Decoder refinement as HYDRA-X's stage 2: encoder frozen, the flow decoder tuned with the GAN from the start."""
    cfg = hydra_tok_stage1()
    cfg.stage, cfg.init, cfg.steps, cfg.out_dir = 2, "runs/hydra-tok-stage1", 50_000, "runs/hydra-tok-stage2"
    cfg.optim = OptimConfig(lr=1e-5, warmup_steps=1000, weight_decay=0.05)
    cfg.loss = LossConfig(
        flow=1.0, lpips=0.1, lpips_required=True, gan=0.075, gan_start=0, kl=0.0, distill_image=0.0, distill_video=0.0
    )
    cfg.teachers = TeacherConfig()
    return cfg


def hydra_tok_small() -> TokenizerTrainConfig:
    """One GPU, embedded images, 128 px, random init and no teacher (nothing pretrained offline; a random
    teacher would distil noise): reconstruction (flow), KL and the consistency term only."""
    cfg = small()
    cfg.model, cfg.out_dir = tokenizer_config("hydra-tok-small"), "runs/hydra-tok-small"
    cfg.data.sources = EMBEDDED_IMAGES
    cfg.heldout_clips = 0
    cfg.loss = LossConfig(flow=1.0, lpips=0.1, kl=1e-6, consistency=1.0, distill_image=0.0, distill_video=0.0)
    return cfg


RECIPES: dict[str, Callable[[], TokenizerTrainConfig]] = {
    "tiny": tiny,
    "small": small,
    "demo-warmup": demo_warmup,
    "demo": demo,
    "demo-small-warmup": demo_small_warmup,
    "demo-small": demo_small,
    "so400m-stage1": so400m_stage1,
    "so400m-stage2": so400m_stage2,
    "so400m-stage3": so400m_stage3,
    "hydra-tok-stage1": hydra_tok_stage1,
    "hydra-tok-stage2": hydra_tok_stage2,
    "hydra-tok-small": hydra_tok_small,
}
