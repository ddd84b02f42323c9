"""Unified-model training recipes as Python functions (each returns a fresh UnifiedTrainConfig).

- tiny: the CPU demo on the shapes world: the random tiny tokenizer and LLM, every task, about a minute.
- demo, demo-small: the unified models of `hydra-x demo` (hydra_x.demo), each within a time budget, starting
  from the demo's tokenizer run: on 2 CPU cores with a config-built LLM (the demo swaps its own, larger one in for
  the `tiny` LLM named here), and on one GPU `small-64` with SmolLM2-135M-Instruct.
- small: one GPU, offline: the `small` tokenizer (a trained one: `tokenizer_init`, e.g. the run folder of
  `python -m hydra_x.train.tokenizer --config small`) and the real SmolLM2-135M-Instruct, all parts trained, on
  the shapes world at 128^2 with 17-frame clips.
- small-64: `small` at 64 px with 512-example steps, STI and the measured task weights: the best shapes-world run
  on one GPU (14 minutes' budget).
- hydra-x-1.5b-stage1/2/3, hydra-x-7b-stage1/2/3: the paper's stages (hydra_x.train.unified.stages: what trains,
  learning rates, resolution, data ratios) with the So400m tokenizer of the tokenizer's stage 3 and
  Qwen2.5-Instruct. Point `data.sources` at your data; the paper's global batch is 1024 examples
  (examples_per_step x processes x grad_accum). Each stage starts from the previous stage's export.
- hydra-1.5b-stage1/2: HYDRA, the image-only predecessor: HYDRA-TOK and Qwen2.5-1.5B, image tasks only.
"""

from __future__ import annotations

from collections.abc import Callable

from hydra_x.data.mixture import UnifiedDataConfig, UnifiedSource
from hydra_x.train.optim import OptimConfig
from hydra_x.train.unified.config import UnifiedLossConfig, UnifiedTrainConfig
from hydra_x.train.unified.stages import STAGES
from hydra_x.unified.config import unified_config

SHAPES = (UnifiedSource("shapes"),)
# Every task of the shapes world, for the small recipes.
ALL_TASKS = {
    "edit": 1.0,
    "image_caption": 1.0,
    "image_gen": 2.0,
    "image_sft": 1.0,
    "video_caption": 0.5,
    "video_gen": 0.5,
    "video_sft": 0.5,
    "text": 0.25,
}


# Flow times for the shapes world: logit-normal with mean 1 (the same as a time shift of e toward the noise) instead
# of the paper's 0. Its scenes are mostly flat background, so noise hides them late, and at 64 tokens the
# resolution shift is 1: with mean 0 the model learns to denoise but seldom sees the high-noise end, where only the
# caption says what to draw. Trained on four caption -> image pairs it then generates none of them from their
# captions; with mean 1 it does (benchmarks/memorise_pairs.py, docs/benchmarks.md).
SHAPES_TIME_MEAN = 1.0

# The shapes-world recipes' model switches. Their tokenizers are trained offline, where no teacher distils the
# Sem-ViT, so its layers start random and mix each token's latent with its neighbours'; the projector then reads
# each token's latent beside its Sem-ViT feature (HydraX's visual_latent_skip). On the CPU demo's recipe, three seeds
# of 1000 steps each: held-out understanding 53.3% against 47.8%, generation 10.4% against 6.5%, better in every
# pair (docs/benchmarks.md). The paper's presets, whose Sem-ViTs start from SigLIP, keep it off.
SHAPES_MODEL = dict(visual_latent_skip=True)


def tiny() -> UnifiedTrainConfig:
    return UnifiedTrainConfig(
        model=unified_config("tiny", **SHAPES_MODEL),
        stage=2,  # everything learns
        data=UnifiedDataConfig(
            sources=SHAPES,
            task_ratios=dict(ALL_TASKS),
            image_size=64,
            clip_frames=5,
            examples_per_step=8,
            num_workers=0,
        ),
        optim=OptimConfig(weight_decay=0.0, warmup_steps=5),
        lr_scale=20.0,  # the stage's rates (2e-5 .. 5e-5) are for billions of parameters; a toy model needs more
        loss=UnifiedLossConfig(time_mean=SHAPES_TIME_MEAN),
        max_length=512,
        steps=60,
        device="cpu",
        precision="fp32",
        log_every=5,
        eval_every=30,
        heldout_prompts=2,
        heldout_questions=4,
        sample_steps=4,
        ckpt_every=30,
        out_dir="runs/unified-tiny",
    )


# Examples per step of the `small` recipe. Its steps are bound by the host, not the GPU: on an H200, with the LLM and
# tokenizer blocks compiled and FlexAttention, a 96-example step took 0.62 s and a 256-example step 0.65 s, of which
# the GPU worked 0.08 and 0.18 s (benchmarks/unified_step_ops.py --device cuda --compile --attention flex), so the
# larger step sees 2.5 times the examples in the same time, though fewer optimizer steps: hence a short warm-up.
SMALL_EXAMPLES_PER_STEP = 256


def small() -> UnifiedTrainConfig:
    return UnifiedTrainConfig(
        # FlexAttention: half the GPU time of the dense mask (a CPU run uses sdpa)
        model=unified_config("small", attention="flex", **SHAPES_MODEL),
        tokenizer_init="runs/small",
        stage=2,
        data=UnifiedDataConfig(
            sources=SHAPES,
            task_ratios=dict(ALL_TASKS),
            image_size=128,
            clip_frames=17,
            examples_per_step=SMALL_EXAMPLES_PER_STEP,
            num_workers=8,
        ),
        optim=OptimConfig(weight_decay=0.0, warmup_steps=30),  # 100 was over half of a 10-minute run's 178 steps
        lr_scale=10.0,
        loss=UnifiedLossConfig(time_mean=SHAPES_TIME_MEAN),
        max_length=2048,
        # 18 to 21 rows a step (SmolLM2's tokens in plain ChatML) -> 20, 1 step in 40 24: two row counts, not four;
        # 8 (right for the 21 to 23 rows with SmolLM2's system prompt) would pad every step to 24, a fifth padding
        row_multiple=4,
        steps=4000,
        log_every=20,
        eval_every=500,
        heldout_prompts=8,
        heldout_questions=32,
        ckpt_every=1000,
        out_dir="runs/unified-small",
    )


def small_64() -> UnifiedTrainConfig:
    """`small` at 64 px: the best measured shapes-world recipe on one GPU (docs/benchmarks.md; README's best run).
    16 visual tokens a picture and 512 examples a step (on an H100 about 1800 examples a second beside a second
    run), 9-frame clips, STI editing, edits and text-to-image weighted 4, two attention layers in the flow head
    that join after 84% of the planned steps, grid positions from a random start, rows padded to no multiple. The
    time budget ends the run (14 minutes on an H100: 1978-2107 steps, generation 73.6-78.5%, held-out understanding
    98.3-100%, editing 80.0% over a 6000-step `small` tokenizer at 64 px)."""
    cfg = small()
    cfg.model = cfg.model.replace(
        image_size=64,
        clip_frames=9,
        edit_layout="sti",
        head_attention_layers=2,
        visual_positions=True,
        visual_positions_zero_init=False,
    )
    cfg.data.image_size, cfg.data.clip_frames, cfg.data.examples_per_step = 64, 9, 512
    cfg.data.task_ratios = {**ALL_TASKS, "edit": 4.0, "image_gen": 4.0}
    cfg.head_attention_from_share = 0.84
    cfg.row_multiple = 1
    cfg.compile = True
    cfg.steps, cfg.time_budget_minutes, cfg.eval_every = 100_000, 14.0, 0
    cfg.budget_reserve_s = 20.0  # no evaluation at the end, only the export (seconds); 60 left 88 s of 14 minutes
    cfg.out_dir = "runs/unified-small-64"
    return cfg


# The demo's task mix: what `hydra-x eval shapes` scores (generation, questions about images, clips, edits), with
# captions weighted up: on 2 CPU cores the LLM starts from random weights and has a few hundred steps, and a caption
# names every object of its picture, which ties words to pictures faster than one-word answers do (with half the
# caption weight the model answered every colour question alike; with this mix it reads the colours). Tasks nothing
# scores (text, video captions and questions) are left out.
DEMO_TASKS = {"image_caption": 3.0, "image_gen": 3.0, "image_sft": 2.0, "edit": 1.0, "video_gen": 1.0}


def demo() -> UnifiedTrainConfig:
    """`hydra-x demo` on 2 CPU cores: 64 px, 5-frame clips, a time budget that keeps the demo within 10 minutes. The
    demo swaps in its config-built LLM (4 layers, width 256); run on its own, this recipe takes the `tiny` LLM.
    Both start from the tokenizer run's export, whose latent statistics the run measures first."""
    cfg = tiny()
    cfg.model = unified_config("tiny", **SHAPES_MODEL)
    cfg.tokenizer_init = "runs/demo/tokenizer"
    cfg.data.task_ratios = dict(DEMO_TASKS)
    cfg.optim = OptimConfig(weight_decay=0.0, warmup_steps=30)
    cfg.lr_scale = 20.0
    cfg.steps, cfg.log_every, cfg.eval_every, cfg.ckpt_every = 1000, 10, 0, 250
    cfg.time_budget_minutes, cfg.budget_probe_steps, cfg.budget_reserve_s = 5.0, 40, 15.0
    cfg.out_dir = "runs/demo/unified"
    return cfg


def demo_small() -> UnifiedTrainConfig:
    """`hydra-x demo --preset small` on one GPU: `small-64` (SmolLM2-135M, 64 px) from the demo's tokenizer, within
    a time budget that leaves room in the demo's 25 minutes for the tokenizer runs and the evaluation."""
    cfg = small_64()
    cfg.tokenizer_init = "runs/demo/tokenizer"
    cfg.budget_reserve_s = 60.0  # small-64's 14 minutes, less a minute kept for the export and the demo's evaluation
    cfg.out_dir = "runs/demo/unified"
    return cfg


def paper(size: str, number: int) -> Callable[[], UnifiedTrainConfig]:
    """Stage ``number`` of the paper's recipe with Qwen2.5-``size``."""
    steps = {1: 50_000, 2: 200_000, 3: 20_000}[number]

    def recipe() -> UnifiedTrainConfig:
        name = f"hydra-x-{size}"
        stage = STAGES[number]
        return UnifiedTrainConfig(
            model=unified_config(name, image_size=stage.resolution),
            tokenizer_init="runs/so400m-stage3" if number == 1 else None,
            init=None if number == 1 else f"runs/{name}-stage{number - 1}",
            stage=number,
            data=UnifiedDataConfig(sources=SHAPES, image_size=stage.resolution, examples_per_step=16, num_workers=8),
            optim=OptimConfig(weight_decay=0.0, warmup_steps=2000 if number < 3 else 500),
            max_length=4096 if number == 1 else 8192,
            steps=steps,
            activation_checkpointing=True,
            log_every=50,
            eval_every=5000,
            ckpt_every=2500,
            out_dir=f"runs/{name}-stage{number}",
        )

    recipe.__doc__ = f"HYDRA-X stage {number} ({STAGES[number].name}) with Qwen2.5-{size}-Instruct"
    return recipe


def hydra(number: int) -> Callable[[], UnifiedTrainConfig]:
    """HYDRA (image only): HYDRA-TOK and Qwen2.5-1.5B; stage 1 aligns, stage 2 trains everything."""

    def recipe() -> UnifiedTrainConfig:
        cfg = paper("1.5b", number)()
        cfg.model = unified_config("hydra-1.5b", image_size=252 if number == 1 else 504)  # HYDRA-TOK's patch is 14
        cfg.tokenizer_init = "runs/hydra-tok-stage2" if number == 1 else None
        cfg.init = None if number == 1 else "runs/hydra-1.5b-stage1"
        ratios = {k: v for k, v in STAGES[number].ratios.items() if not k.startswith("video")}
        cfg.data = UnifiedDataConfig(sources=SHAPES, task_ratios=ratios, image_size=cfg.model.image_size)
        cfg.out_dir = f"runs/hydra-1.5b-stage{number}"
        return cfg

    return recipe


RECIPES: dict[str, Callable[[], UnifiedTrainConfig]] = {
    "tiny": tiny,
    "small": small,
    "small-64": small_64,
    "demo": demo,
    "demo-small": demo_small,
    **{f"hydra-x-{size}-stage{n}": paper(size, n) for size in ("1.5b", "7b") for n in (1, 2, 3)},
    "hydra-1.5b-stage1": hydra(1),
    "hydra-1.5b-stage2": hydra(2),
}
