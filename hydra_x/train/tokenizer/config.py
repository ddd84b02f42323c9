"""Configuration of tokenizer training: the model, its start, the stage, data, losses and teachers.

The engine's fields (steps, precision, compile, checkpoints, time budget, ...) come from ``EngineConfig``; the
recipes are in ``hydra_x.train.tokenizer.recipes``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hydra_x.config import config_from_dict
from hydra_x.data.config import DataConfig
from hydra_x.losses.gan import DiscriminatorConfig
from hydra_x.nn.flow import check_time_distribution
from hydra_x.tokenizer.config import TokenizerConfig, tokenizer_config
from hydra_x.train.config import EngineConfig
from hydra_x.train.optim import OptimConfig
from hydra_x.train.tokenizer.stages import stage


@dataclass
class LossConfig:
    l1: float = 1.0
    # Mean squared error on the pixels. Without LPIPS, L1 alone loses small flat objects early in training: its
    # gradient has the same size for every pixel however small its error, and where an object's edge is uncertain
    # its best guess is the background (the median); the shapes-world recipes train on MSE instead (l1=0, mse=1).
    mse: float = 0.0
    lpips: float = 1.0
    # A safetensors file (or a folder holding lpips_vgg.safetensors), or "hf://<repo>/<file>". None: the default
    # lookup of hydra_x.losses.lpips ($HYDRA_X_LPIPS_WEIGHTS, torch.hub's cache, the official VGG16 and lpips
    # files converted from that cache or downloaded and hash-checked).
    lpips_weights: str | None = None
    # With lpips > 0 and no weights found the run stops at start with a message saying how to supply them.
    # False: it warns once and trains without LPIPS instead (a run that may go without it has to say so).
    lpips_required: bool = True
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
class TokenizerTrainConfig(EngineConfig):
    # The architecture being trained (a preset with changes: ``model=small model.depth=8`` on the command line).
    model: TokenizerConfig = field(default_factory=lambda: tokenizer_config("tiny"))
    # Where the weights start: None (random), "siglip2:<hub id or folder>", "internvit:<hub id or folder>"
    # (an InternVL vision tower or a full InternVL -hf checkpoint: HYDRA-TOK), or a save_pretrained folder
    # (e.g. the previous stage's <run>/export; a run folder means its export/). A tower must fit `model`
    # (width, heads, MLP, patch, ...; depth up to the tower's); a folder brings its own config.
    init: str | None = None
    stage: int = 1  # see hydra_x.train.tokenizer.stages
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    teachers: TeacherConfig = field(default_factory=TeacherConfig)
    stage3_stat_batches: int = 32  # batches used to measure the latent statistics at the start of stage 3
    heldout_images: int = 8  # held-out PSNR / SSIM, a PNG grid and a GIF strip every eval_every steps
    heldout_clips: int = 2
    out_dir: str = "runs/tokenizer"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.stage_spec.needs_init and self.init is None:
            raise ValueError(
                f"stage {self.stage} starts from a trained tokenizer: set init to the previous stage's export"
            )
        layers = self.teachers.distill_layers
        if any(k < 0 for k in layers) or len(set(layers)) != len(layers):
            raise ValueError(f"teachers.distill_layers must be distinct hidden-state indices >= 0, got {layers}")
        if layers and self.loss.distill_layers > 0 and not self.teachers.image and self.stage_spec.semantic:
            raise ValueError(
                f"teachers.distill_layers={layers} needs an image teacher: set teachers.image (HYDRA-TOK: the "
                "InternViT checkpoint the run starts from) or loss.distill_layers=0"
            )

    @property
    def stage_spec(self):
        return stage(self.stage)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TokenizerTrainConfig:
        return config_from_dict(cls, data, where="train config")
