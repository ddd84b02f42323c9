"""Configuration of tokenizer training: the three stages of HYDRA-X, losses, teachers, engine options."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hydra_x.config import config_from_dict, config_to_dict
from hydra_x.data.config import DataConfig
from hydra_x.losses.gan import DiscriminatorConfig
from hydra_x.train.optim import OptimConfig

COMPILE_MODES = ("default", "reduce-overhead", "max-autotune-no-cudagraphs")

# What each stage trains (module-name prefixes of HydraXTokenizer); everything else is frozen.
STAGE_TRAINABLE: dict[int, tuple[str, ...]] = {
    # Stage 1, foundation: the whole tokenizer, jointly with image and video distillation.
    1: ("",),
    # Stage 2, decoder refinement: the encoder is frozen and the decoder is tuned with the GAN added.
    2: ("decoder.",),
    # Stage 3, representation harmonisation: latent statistics are stored, then only the Sem-ViT side
    # learns on normalised latents (its input un-projection, the Decompressor and the heads with it).
    3: ("sem_vit.", "bottleneck.from_latent.", "decompressor.", "image_head.", "video_head."),
}


@dataclass
class LossConfig:
    l1: float = 1.0
    lpips: float = 1.0
    lpips_weights: str | None = None  # a safetensors file, or "hf://<repo>/<file>"; None: the default lookup
    lpips_required: bool = False  # False: without weights the run says so at start and goes on without LPIPS
    lpips_frames: int = 4  # frames per clip that LPIPS sees (evenly spaced), to bound its cost on video
    gan: float = 0.0  # generator weight (after the adaptive factor); 0 disables the GAN
    gan_start: int = 0  # step at which the GAN loss and the discriminator's training start
    gan_adaptive: bool = True  # VQGAN's adaptive weight: |grad rec| / |grad gan| at the decoder output
    disc_lr: float = 1e-4
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)
    kl: float = 1e-4  # HYDRA's weight; per element of the latent
    distill_image: float = 1.0  # cosine to the image teacher on images and on the anchor step of clips
    distill_video: float = 1.0  # cosine to the video teacher through the Decompressor (video batches only)
    consistency: float = 0.0  # HYDRA's cosine consistency between restored and pre-bottleneck features
    # HYDRA's multi-layer distillation: mean over teachers.distill_layers of 1 - cos(student's hidden state k,
    # the image teacher's hidden state k) on the anchor step (HYDRA: 1.0; off while distill_layers is empty).
    distill_layers: float = 1.0
    # Flow decoder (model.decoder="flow"): flow-matching MSE on the velocity replaces `l1`; LPIPS and GAN act
    # on the decoder's clean estimate x_t - t v, and `flow_l1` optionally adds an L1 on it. HYDRA: FM 1.0,
    # LPIPS 0.1, GAN 0.075. The training time t per sample: logit-normal (sigmoid of N(mean, std)) or uniform.
    flow: float = 1.0
    flow_l1: float = 0.0
    flow_time: str = "logit_normal"  # logit_normal | uniform
    flow_time_mean: float = 0.0
    flow_time_std: float = 1.0

    def __post_init__(self) -> None:
        from hydra_x.tokenizer.flow import check_time_distribution

        check_time_distribution(self.flow_time, self.flow_time_std)


@dataclass
class TeacherConfig:
    image: str | None = None  # Hub id or folder: SigLIP 2 / SigLIP / DINOv2
    video: str | None = None  # Hub id or folder: V-JEPA 2 / VideoMAE
    dtype: str = "bfloat16"
    image_size: int | None = None  # teacher input resolution for images; None: the teacher's default
    # Multi-layer distillation (HYDRA-TOK): hidden-state indices k (0 the embeddings, k after layer k) of the
    # student's whole ViT (Gen-ViT layers 1..gen_depth, then the Sem-ViT's), each matched to the image
    # teacher's hidden state k; the same width is required (HYDRA distils from the ViT it starts from).
    distill_layers: tuple[int, ...] = ()


@dataclass
class TokenizerTrainConfig:
    model_preset: str = "tiny"
    model: dict[str, Any] = field(default_factory=dict)  # TokenizerConfig overrides on top of the preset
    # Where the weights start: None (random), "siglip2:<hub id or folder>", "internvit:<hub id or folder>"
    # (an InternVL vision tower or a full InternVL -hf checkpoint: HYDRA-TOK), or a save_pretrained folder
    # (e.g. the previous stage's <run>/export); a run folder means its export/.
    init: str | None = None
    stage: int = 1
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    teachers: TeacherConfig = field(default_factory=TeacherConfig)
    steps: int = 1000
    grad_accum: int = 1
    seed: int = 0
    device: str = "auto"  # auto | cuda | cpu
    precision: str = "bf16"  # bf16 (on CUDA; CPU runs stay fp32) | fp32
    fsdp: bool | None = None  # None: FSDP2 when more than one process
    activation_checkpointing: bool = False
    compile: bool = False  # torch.compile every transformer block, LPIPS and the teachers
    # torch.compile mode of the blocks: default | reduce-overhead (CUDA graphs: no per-kernel launch cost,
    # for host-bound steps) | max-autotune-no-cudagraphs
    compile_mode: str = "default"
    # cuDNN's SDPA backward returns NaN gradients on H100/H200 for some shapes in torch 2.11-2.13
    # (pytorch/pytorch#196678, NVIDIA/cudnn-frontend#1072); training uses flash / memory-efficient SDPA.
    cudnn_attention: bool = False
    max_nonfinite_steps: int = 20  # consecutive steps with a NaN / Inf gradient (skipped) before the run stops
    ema_decay: float = 0.999  # 0 disables the EMA
    stage3_stat_batches: int = 32  # batches used to measure the latent statistics at the start of stage 3
    log_every: int = 10
    eval_every: int = 500  # held-out PSNR / SSIM, a PNG grid and a GIF strip
    heldout_images: int = 8
    heldout_clips: int = 2
    ckpt_every: int = 1000
    keep_last: int = 2
    out_dir: str = "runs/tokenizer"
    resume: str = "auto"  # auto (latest checkpoint in out_dir, if any) | never | a checkpoint folder
    stop_at_step: int | None = None  # checkpoint and stop at this step (a time-limited job); rerun to go on
    # A wall-clock budget for the whole run: after `budget_probe_steps` steps the run measures its speed and
    # shortens `steps` (and the LR schedule with it) to end within the budget. Not exactly resumable.
    time_budget_minutes: float | None = None
    budget_probe_steps: int = 100  # the speed is measured over the second half of these steps
    budget_reserve_s: float = 60.0
    peak_tflops: float | None = None  # for MFU; None: measured on the GPU at start (bf16 matmul)

    def __post_init__(self) -> None:
        if self.stage not in STAGE_TRAINABLE:
            raise ValueError(f"stage must be 1, 2 or 3, got {self.stage}")
        if self.steps < 1 or self.grad_accum < 1:
            raise ValueError("steps and grad_accum must be at least 1")
        if self.precision not in ("bf16", "fp32"):
            raise ValueError(f"precision must be 'bf16' or 'fp32', got {self.precision!r}")
        if self.compile_mode not in COMPILE_MODES:
            raise ValueError(f"compile_mode must be one of {COMPILE_MODES}, got {self.compile_mode!r}")
        if self.stage == 3 and self.init is None:
            raise ValueError("stage 3 starts from a trained tokenizer: set init to the stage-2 export")
        layers = self.teachers.distill_layers
        if any(k < 0 for k in layers) or len(set(layers)) != len(layers):
            raise ValueError(f"teachers.distill_layers must be distinct hidden-state indices >= 0, got {layers}")
        if layers and self.loss.distill_layers > 0 and not self.teachers.image and self.stage != 2:
            raise ValueError(
                f"teachers.distill_layers={layers} needs an image teacher: set teachers.image (HYDRA-TOK: the "
                "InternViT checkpoint the run starts from) or loss.distill_layers=0"
            )

    def to_dict(self) -> dict[str, Any]:
        return config_to_dict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TokenizerTrainConfig:
        return config_from_dict(cls, data, where="train config")
