"""The unified model's configuration and its presets.

A HYDRA-X model is a tokenizer (its ``TokenizerConfig``), an LLM (a preset name, Hub id or folder: see
hydra_x.unified.llm) and the small parts that join them: a projector from the Sem-ViT's width to the LLM's, a
time embedding added to noisy visual tokens, and an adaLN flow head that predicts each latent token's velocity.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hydra_x.config import config_from_dict, config_to_dict
from hydra_x.nn.flow import PREDICTIONS
from hydra_x.tokenizer.config import TokenizerConfig, tokenizer_config
from hydra_x.unified.heads import ATTENTION_INPUTS
from hydra_x.unified.text_tokenizer import CHAT_TEMPLATES

VIDEO_ATTENTION = ("bidirectional", "causal")
EDIT_LAYOUTS = ("sti", "independent")


@dataclass
class UnifiedConfig:
    tokenizer: TokenizerConfig = field(default_factory=lambda: tokenizer_config("tiny"))
    llm: str = "tiny"  # an LLM preset (tiny, smollm2-135m, qwen2.5-1.5b, qwen2.5-7b), a Hub id or a folder
    video: bool = True  # HYDRA (the image-only predecessor) sets False
    # How conversations are written for the LLM, in training and inference alike: "llm", its tokenizer's own chat
    # template; "chatml", plain ChatML, which adds no default system prompt where a conversation has none (SmolLM2's
    # and Qwen2.5's templates do; hydra_x.unified.text_tokenizer.CHAT_TEMPLATES).
    chat_template: str = "llm"
    projector_depth: int = 2  # Linear layers (GELU between) from the Sem-ViT width to the LLM width
    head_width: int | None = None  # the flow head's width; None: the LLM's hidden size
    head_depth: int = 3  # adaLN residual MLP blocks of the flow head
    time_dim: int = 256  # sinusoidal features of the flow time
    # What the flow head's last layer predicts: "velocity" (eps - z) or "x" (the clean latent, turned into the
    # velocity; hydra_x.unified.heads). The loss is on the velocity either way.
    flow_prediction: str = "velocity"
    # Self-attention layers at the start of the flow head, among the tokens of each generated block (3D RoPE; across
    # latent steps as video_attention says); 0: each token's velocity from its own hidden state alone (MAR's head).
    head_attention_layers: int = 0
    # What those layers read: "latent" (the noisy latent tokens) or "condition" (the LLM's hidden states, whose gated
    # residuals join each noisy latent token's stream), hydra_x.unified.heads.
    head_attention_input: str = "latent"
    # Add each visual token's position in its block (latent step, row, column) to its LLM embedding, as fixed
    # sinusoidal features through a learnt linear layer that starts at zero (hydra_x.unified.heads).
    visual_positions: bool = False
    # Start that linear layer at zero (the model's first outputs are those without positions), or at the heads'
    # random init, so that the tokens differ by position from the first step, as a DiT's fixed 2D sin-cos positions
    # make them (with those a plain DiT drew compact blobs instead of scattered pieces: docs/benchmarks.md).
    visual_positions_zero_init: bool = True
    # The projector also reads each visual token's (normalised, possibly noisy) latent beside the Sem-ViT's feature
    # of it. Off: the paper's, where the LLM sees the Sem-ViT's features alone. For Sem-ViTs with no semantic start
    # (offline, no teacher distils it), whose random layers mix each token's latent with its neighbours'.
    visual_latent_skip: bool = False
    # Attention inside a video block: bidirectional (the default: every latent step is denoised jointly at one
    # flow time, so each step may use every other, which is what keeps motion coherent across the clip) or
    # causal (step t sees steps <= t, for streaming or frame-by-frame extension). Images are always full.
    video_attention: str = "bidirectional"
    # Editing (Source-Target Interaction): "sti" runs source and target through the Sem-ViT as one 2-step clip
    # (the target's tokens see the source's); "independent" encodes each alone (the paper's ablation). In the
    # LLM the source sits in the user's turn and the target in the assistant's, so the target sees it either way.
    edit_layout: str = "sti"
    # The flow head also reads the edit source's clean latent at each target token (InstructPix2Pix's channel
    # concatenation, through a zero-initialised linear layer), so keeping what the instruction leaves alone is a
    # per-token map. Off: the paper's editing, where the source reaches the target through attention alone.
    edit_source_input: bool = False
    # An edit target's velocity is the flow head's output plus the velocity that ends at the source (heads
    # .copy_velocity): a head still at its zero start copies the source exactly, and training learns only what the
    # instruction changes (with flow_prediction "x" the head's clean latent is added to the source, so it learns the
    # change itself, not the change over t). Off: the paper's editing.
    edit_copy_prior: bool = False
    # The LLM's attention in training: "sdpa" with the dense additive 4D mask (any device), or "flex":
    # FlexAttention with a BlockMask of the same rule, which skips fully masked blocks and keeps fused kernels
    # (GPU only: FlexAttention has no CPU backward). Inference always runs SDPA (its KV-cached query masks).
    attention: str = "sdpa"
    # Resolution-dependent time shift, training and sampling alike: sqrt(tokens / base), clamped to
    # [1, max_time_shift] (SD3's rule). 0 disables it.
    time_shift_base_tokens: int = 256
    max_time_shift: float = 4.0
    # The flow's noise, training and sampling alike (hydra_x.nn.flow.prior_noise): this share of its variance is one
    # draw per channel and cell of a noise_cells x noise_cells grid over each block (shared by the cell's tokens and
    # latent steps), the rest white. 0: white noise, the paper's. On a plain DiT over the CPU demo tokenizer's latents
    # 0.5 scored 14.6% against white noise's 9.0%; the demo's unified recipe with 0.5 scored 7.6% against 9.0%, with
    # more pieces (docs/benchmarks.md): a switch to measure, not a recipe's.
    noise_block_share: float = 0.0
    noise_cells: int = 4
    # The size it was trained at: the default of generation (and of editing), and the size chat resizes inputs to
    # unless understanding_image_size is given.
    image_size: int = 256
    # The size its image understanding was trained at, where it differs from generation's (the training data's
    # understanding_image_size): the size chat and the evaluations' questions resize images to. None: image_size.
    understanding_image_size: int | None = None
    clip_frames: int = 17

    @property
    def read_size(self) -> int:
        """The side images are resized to for chat: understanding_image_size, else image_size (clips: image_size)."""
        return self.understanding_image_size or self.image_size

    def chat_side(self, kind: str) -> int:
        """The side chat reads an upload of ``kind`` at: an image at read_size, a video (a clip) at image_size."""
        return self.image_size if kind == "video" else self.read_size

    @property
    def edit_reads_source(self) -> bool:
        """Whether editing hands the source's latent to the flow step (the head's input or the copy velocity)."""
        return self.edit_source_input or self.edit_copy_prior

    def __post_init__(self) -> None:
        if isinstance(self.tokenizer, dict):
            self.tokenizer = TokenizerConfig.from_dict(self.tokenizer)
        if self.video_attention not in VIDEO_ATTENTION:
            raise ValueError(f"video_attention must be one of {VIDEO_ATTENTION}, got {self.video_attention!r}")
        if self.chat_template not in CHAT_TEMPLATES:
            raise ValueError(f"chat_template must be one of {CHAT_TEMPLATES}, got {self.chat_template!r}")
        if self.attention not in ("sdpa", "flex"):
            raise ValueError(f"attention must be 'sdpa' or 'flex', got {self.attention!r}")
        if self.flow_prediction not in PREDICTIONS:
            raise ValueError(f"flow_prediction must be one of {PREDICTIONS}, got {self.flow_prediction!r}")
        if self.edit_layout not in EDIT_LAYOUTS:
            raise ValueError(f"edit_layout must be one of {EDIT_LAYOUTS}, got {self.edit_layout!r}")
        if self.head_attention_input not in ATTENTION_INPUTS:
            choice = self.head_attention_input
            raise ValueError(f"head_attention_input must be one of {ATTENTION_INPUTS}, got {choice!r}")
        if self.head_attention_layers < 0:
            raise ValueError(f"head_attention_layers must be >= 0, got {self.head_attention_layers}")
        if self.projector_depth < 1 or self.head_depth < 1:
            raise ValueError("projector_depth and head_depth must be at least 1")
        if self.time_dim < 2 or self.time_dim % 2:
            raise ValueError(f"time_dim must be even and at least 2, got {self.time_dim}")
        p, factor = self.tokenizer.patch_size, self.tokenizer.temporal_factor
        if self.image_size < p or self.image_size % p:
            raise ValueError(f"image_size must be a multiple of the patch size {p}, got {self.image_size}")
        read = self.understanding_image_size
        if read is not None and (read < p or read % p):
            raise ValueError(f"understanding_image_size must be None or a multiple of the patch size {p}, got {read}")
        if self.clip_frames < 1 or (self.clip_frames - 1) % factor:
            raise ValueError(f"clip_frames must be 1 + k * {factor}, got {self.clip_frames}")
        if not 0.0 <= self.noise_block_share <= 1.0 or self.noise_cells < 1:
            raise ValueError(
                f"noise_block_share must be in [0, 1] and noise_cells >= 1, got {self.noise_block_share}, "
                f"{self.noise_cells}"
            )
        if self.time_shift_base_tokens < 0 or self.max_time_shift < 1:
            raise ValueError("time_shift_base_tokens must be >= 0 and max_time_shift >= 1")

    @property
    def latent_channels(self) -> int:
        return self.tokenizer.latent_channels

    def replace(self, **changes: Any) -> UnifiedConfig:
        """A copy with ``changes``; ``tokenizer.X`` keys reach the tokenizer config (its derived sizes follow)."""
        tok = {k.split(".", 1)[1]: v for k, v in changes.items() if k.startswith("tokenizer.")}
        mine = {k: v for k, v in changes.items() if not k.startswith("tokenizer.")}
        unknown = sorted(set(mine) - set(self.__dataclass_fields__))
        if unknown:
            raise ValueError(f"unknown unified config field(s) {unknown}")
        data = {**self.__dict__, **mine}
        if tok:
            data["tokenizer"] = data["tokenizer"].replace(**tok)
        return UnifiedConfig(**data)

    def to_dict(self) -> dict[str, Any]:
        return config_to_dict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> UnifiedConfig:
        return config_from_dict(cls, data, where="unified config")


# ---------------------------------------------------------------------------------------------- presets

UNIFIED_PRESETS: dict[str, dict[str, Any]] = {
    # CPU tests: random tiny tokenizer and a random 2-layer LLM.
    "tiny": dict(tokenizer="tiny", llm="tiny", head_depth=2, image_size=64, clip_frames=5),
    # One GPU, offline: the `small` tokenizer and the real pretrained SmolLM2-135M-Instruct, without its default
    # system prompt (its 21 tokens were 30% of the shapes world mixture's at 64 px: docs/benchmarks.md).
    "small": dict(tokenizer="small", llm="smollm2-135m", image_size=128, chat_template="chatml"),
    # The paper's: the So400m tokenizer with Qwen2.5-Instruct (the 1.5B of its ablations, the 7B of its results).
    "hydra-x-1.5b": dict(tokenizer="so400m", llm="qwen2.5-1.5b"),
    "hydra-x-7b": dict(tokenizer="so400m", llm="qwen2.5-7b"),
    # HYDRA, the image-only predecessor: HYDRA-TOK (InternViT, flow decoder) with the same dual head, text causal,
    # bidirectional attention inside each visual block, adaLN flow head.
    "hydra-1.5b": dict(tokenizer="hydra-tok", llm="qwen2.5-1.5b", video=False),
    "hydra-7b": dict(tokenizer="hydra-tok", llm="qwen2.5-7b", video=False),
}


def unified_config(name: str, **overrides: Any) -> UnifiedConfig:
    """The preset ``name`` with ``overrides`` (UnifiedConfig fields; ``tokenizer`` may be a preset name)."""
    if name not in UNIFIED_PRESETS:
        raise ValueError(f"unknown unified preset {name!r}; choose one of {sorted(UNIFIED_PRESETS)}")
    fields = {**UNIFIED_PRESETS[name], **overrides}
    if isinstance(fields.get("tokenizer"), str):
        fields["tokenizer"] = tokenizer_config(fields["tokenizer"])
    return UnifiedConfig(**fields)
