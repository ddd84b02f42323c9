"""The tokenizer's configuration (every variant of the paper's reconstruction ablation is a field) and its presets.

Fields left as ``None`` are derived in ``__post_init__`` and stored resolved, so a saved ``config.json``
states every size explicitly and later changes to the defaults cannot change an old checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hydra_x.config import config_from_dict, config_to_dict
from hydra_x.nn.attention import MODES as ATTENTION_MODES

ATTENTION_IMPLS = ("auto", "masked", "flex")
DECODER_KINDS = ("regression", "flow")
TEMPORAL_UNFOLDS = ("separate", "shared")
# Left as None, these are derived in __post_init__ from the fields above them (see TokenizerConfig.replace).
DERIVED_FIELDS = (
    "gen_depth",
    "fold_at",
    "decoder_width",
    "decoder_depth",
    "decoder_heads",
    "decoder_mlp_dim",
    "decoder_unfold_at",
)


@dataclass
class TokenizerConfig:
    # One ViT, split into Gen-ViT (first gen_depth layers) and Sem-ViT (the rest).
    width: int = 1152
    depth: int = 27
    heads: int = 16
    mlp_dim: int = 4304
    patch_size: int = 16
    in_channels: int = 3
    gen_depth: int | None = None  # None: depth // 2 (13 / 14 for So400m)
    fold_at: int | None = None  # Gen-ViT layers before the second temporal fold; None: gen_depth // 2
    # (factor of the fold at the input, factor of the fold after `fold_at` layers):
    # (2, 2) the paper's hierarchical folds, (4, 1) a single 4x fold at the input, (1, 1) no folds.
    temporal_folds: tuple[int, int] = (2, 2)
    # The decoder's inverse folds: "separate", a linear map per frame of a group; "shared", every frame the last
    # frame's map plus a learnt difference starting at zero. Pictures (each the last frame of its group) train
    # only the last frame's map, so with separate maps the frames between latent steps learn from clips alone,
    # while shared ones decode each group as copies of its last frame until clips teach it motion.
    temporal_unfold: str = "separate"
    latent_channels: int = 64

    # Attention across time steps; inside a step attention is always full.
    attention: str = "tubelet"  # Gen-ViT: full | causal | tubelet | none
    sem_attention: str | None = None  # None: same as `attention` (the paper: bidirectional Sem-ViT hurts)
    decoder_attention: str | None = None  # None: same as `attention`
    # auto: mask-free kernels where the mask allows (step pairs for tubelet, per-step for none);
    # masked: boolean-mask SDPA everywhere (the reference); flex: FlexAttention block masks.
    attention_impl: str = "auto"

    # Positions: 3D RoPE over (t, h, w) in every attention, with a learnable per-layer, per-head,
    # per-axis angle scale (1 from scratch; 0 on the spatial axes when starting from a ViT trained
    # without RoPE, so that the start is exactly that ViT). Optionally a learned absolute embedding
    # on a square grid (SigLIP 2's), resized to the patch grid of the input.
    rope: bool = True
    rope_theta: float = 10000.0
    rope_learnable_scale: bool = True
    abs_pos_grid: int | None = None
    # How the absolute embedding is resized to another grid: SigLIP 2's bilinear (antialiased) or SigLIP (v1)'s and
    # InternViT's bicubic (as transformers' InternVLVisionEmbeddings, no antialiasing).
    pos_interpolation: str = "bilinear"
    # InternViT's architecture (HYDRA-TOK): a CLS token prepended to every time step of the Gen-ViT (it
    # attends like a token of its own step and is dropped before the bottleneck; its learned position is
    # folded into it), per-channel layer scale on both residual branches (its initial value; None: off),
    # and no final norm on the Sem-ViT (InternViT with mean pooling ends without one).
    cls_token: bool = False
    layer_scale_init: float | None = None
    final_norm: bool = True

    norm_eps: float = 1e-6
    mlp_act: str = "gelu_tanh"  # gelu_tanh (SigLIP) | gelu
    qkv_bias: bool = True
    init_std: float = 0.02
    # The posterior's log-variance starts here (bias of the bottleneck's log-variance outputs): a nearly
    # deterministic start (std 0.05) lets the decoder use the latent from the first steps; the KL term
    # then sets the variance. 0 would start with unit-variance noise that drowns the signal.
    init_logvar: float = -6.0

    # Pixel decoder: a mirror of the encoder; None means the encoder's value.
    decoder_width: int | None = None
    decoder_depth: int | None = None
    decoder_heads: int | None = None
    decoder_mlp_dim: int | None = None
    decoder_unfold_at: int | None = None  # decoder layers before the inverse of fold 2
    # regression: x_rec = D(z) (HYDRA-X). flow: HYDRA-TOK's flow-matching decoder, a velocity v(x_t, t | z)
    # sampled with Euler (t = 1 noise, t = 0 image; see tokenizer/flow_decoder.py). Its noisy pixels join
    # after decoder_unfold_at layers on z alone (default for flow: half the decoder), which run once per
    # decode; the rest, time-modulated (adaLN-Zero), run once per sampling step.
    decoder: str = "regression"  # regression | flow
    # Euler steps of decode() and held-out evaluation (decode(steps=N) overrides it). 4: on H100 runs of
    # benchmarks/decoder_compare.py, 4 steps reached 16 steps' PSNR within 0.1 dB at a quarter of the cost.
    flow_steps: int = 4
    flow_time_dim: int = 256  # sinusoidal features of the flow decoder's time embedding
    # What the flow decoder's last layer predicts; it outputs the velocity either way. x: the clean image,
    # v = (x_t - x_hat) / max(t, 0.05) (JiT; works when f1 * 3 * p * p exceeds the width); velocity: v itself.
    flow_prediction: str = "x"  # x | velocity

    # Training-only parts: the Decompressor and the linear heads to the teachers' widths.
    decompressor: bool = True
    image_teacher_dim: int | None = None
    video_teacher_dim: int | None = None

    def __post_init__(self) -> None:
        self.temporal_folds = tuple(int(f) for f in self.temporal_folds)  # type: ignore[assignment]
        if len(self.temporal_folds) != 2 or min(self.temporal_folds) < 1:
            raise ValueError(
                f"temporal_folds must be two positive factors (input fold, inner fold), e.g. (2, 2), (4, 1) "
                f"or (1, 1); got {self.temporal_folds}"
            )
        if self.gen_depth is None:
            self.gen_depth = self.depth // 2
        if self.fold_at is None:
            self.fold_at = self.gen_depth // 2
        self.decoder_width = self.decoder_width or self.width
        self.decoder_depth = self.decoder_depth or self.depth
        self.decoder_heads = self.decoder_heads or self.heads
        self.decoder_mlp_dim = self.decoder_mlp_dim or self.mlp_dim
        if self.decoder_unfold_at is None and self.decoder == "flow":
            self.decoder_unfold_at = self.decoder_depth // 2
        if self.decoder_unfold_at is None:
            # Mirror the encoder: as many coarse-time layers before the unfold as the encoder has after fold 2.
            coarse = (self.depth - self.fold_at) / self.depth
            self.decoder_unfold_at = round(self.decoder_depth * coarse)
        self._validate()

    def _validate(self) -> None:
        for name in ("width", "depth", "heads", "mlp_dim", "patch_size", "in_channels", "latent_channels"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if not 1 <= self.gen_depth <= self.depth:
            raise ValueError(f"gen_depth must be in [1, depth={self.depth}], got {self.gen_depth}")
        if not 0 <= self.fold_at <= self.gen_depth:
            raise ValueError(f"fold_at must be in [0, gen_depth={self.gen_depth}], got {self.fold_at}")
        if self.temporal_unfold not in TEMPORAL_UNFOLDS:
            raise ValueError(f"temporal_unfold must be one of {TEMPORAL_UNFOLDS}, got {self.temporal_unfold!r}")
        if self.decoder not in DECODER_KINDS:
            raise ValueError(f"decoder must be one of {DECODER_KINDS}, got {self.decoder!r}")
        if isinstance(self.flow_steps, bool) or not isinstance(self.flow_steps, int) or self.flow_steps < 1:
            raise ValueError(f"flow_steps must be a positive integer, got {self.flow_steps!r}")
        if self.flow_prediction not in ("x", "velocity"):
            raise ValueError(f"flow_prediction must be 'x' or 'velocity', got {self.flow_prediction!r}")
        if self.flow_time_dim < 2 or self.flow_time_dim % 2:
            raise ValueError(f"flow_time_dim must be even and at least 2, got {self.flow_time_dim}")
        if not 0 <= self.decoder_unfold_at <= self.decoder_depth:
            raise ValueError(
                f"decoder_unfold_at must be in [0, decoder_depth={self.decoder_depth}], got {self.decoder_unfold_at}"
            )
        for name in ("attention", "sem_attention", "decoder_attention"):
            mode = getattr(self, name)
            if mode is not None and mode not in ATTENTION_MODES:
                raise ValueError(f"{name} must be one of {ATTENTION_MODES}, got {mode!r}")
        if self.attention_impl not in ATTENTION_IMPLS:
            raise ValueError(f"attention_impl must be one of {ATTENTION_IMPLS}, got {self.attention_impl!r}")
        if self.pos_interpolation not in ("bilinear", "bicubic"):
            raise ValueError(f"pos_interpolation must be 'bilinear' or 'bicubic', got {self.pos_interpolation!r}")
        if self.mlp_act not in ("gelu_tanh", "gelu"):
            raise ValueError(f"mlp_act must be 'gelu_tanh' or 'gelu', got {self.mlp_act!r}")
        for prefix, width, heads in (
            ("", self.width, self.heads),
            ("decoder_", self.decoder_width, self.decoder_heads),
        ):
            if width % heads:
                raise ValueError(f"{prefix}width={width} is not divisible by {prefix}heads={heads}")
            head_dim = width // heads
            if self.rope and (head_dim % 2 or head_dim < 6):
                raise ValueError(
                    f"3D RoPE needs an even head dimension of at least 6; {prefix}width/heads = {head_dim}"
                )

    # Derived quantities used throughout the model.
    @property
    def temporal_factor(self) -> int:
        return self.temporal_folds[0] * self.temporal_folds[1]

    @property
    def sem_depth(self) -> int:
        return self.depth - self.gen_depth

    @property
    def gen_attention(self) -> str:
        return self.attention

    @property
    def sem_attention_mode(self) -> str:
        return self.sem_attention or self.attention

    @property
    def decoder_attention_mode(self) -> str:
        return self.decoder_attention or self.attention

    def latent_steps(self, frames: int) -> int:
        """Latent time steps of a clip of ``frames`` = 1 + T frames: 1 + T / temporal_factor."""
        return 1 + (frames - 1) // self.temporal_factor

    def replace(self, **changes: Any) -> TokenizerConfig:
        """A copy with ``changes``, whose derived sizes follow them: a size this config derived (gen_depth,
        fold_at, the decoder's) is derived again from the new values, one set explicitly keeps its value.

        ``tokenizer_config("so400m").replace(depth=12)`` has the Gen/Sem split and fold of a 12-layer ViT. A size
        that was set to exactly its derived value counts as derived.
        """
        unknown = sorted(set(changes) - set(self.__dataclass_fields__))
        if unknown:
            raise ValueError(f"unknown tokenizer config field(s) {unknown}")
        fields = {**self.to_dict(), **changes}
        current = self.to_dict()
        for name in DERIVED_FIELDS:
            if name not in changes and getattr(TokenizerConfig(**{**current, name: None}), name) == current[name]:
                fields[name] = None
        return TokenizerConfig(**fields)

    def to_dict(self) -> dict[str, Any]:
        return config_to_dict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TokenizerConfig:
        return config_from_dict(cls, data, where="tokenizer config")


# ---------------------------------------------------------------------------------------------- presets

# What HYDRA-TOK shares at every size: InternViT's block and embeddings, image only, the flow decoder.
_INTERNVIT: dict[str, Any] = dict(
    cls_token=True,
    pos_interpolation="bicubic",
    layer_scale_init=0.1,
    mlp_act="gelu",
    qkv_bias=False,
    norm_eps=1e-6,
    final_norm=False,
    latent_channels=64,
    temporal_folds=(1, 1),
    decompressor=False,
    decoder="flow",
)

TOKENIZER_PRESETS: dict[str, dict[str, Any]] = {
    # CPU tests: a forward of a 17-frame 64^2 clip takes milliseconds.
    "tiny": dict(width=96, depth=4, heads=4, mlp_dim=192, latent_channels=64),
    # One GPU, 128-256 px experiments.
    "small": dict(width=512, depth=12, heads=8, mlp_dim=2048),
    # ViT-B/16; matches SigLIP 2 base/16, so it can start from google/siglip2-base-patch16-*.
    "base": dict(width=768, depth=12, heads=12, mlp_dim=3072, abs_pos_grid=16),
    # The paper's size: SigLIP 2 So400m/16 (27 layers, width 1152, 16 heads, MLP 4304), symmetric
    # 27-layer decoder, C = 64, Gen/Sem split 13 / 14, fold 2 after 6 Gen-ViT layers.
    "so400m": dict(width=1152, depth=27, heads=16, mlp_dim=4304, abs_pos_grid=16, image_teacher_dim=1152),
    # HYDRA-TOK (HYDRA's tokenizer), image only: InternViT-300M's shape and architecture (patch 14, CLS token,
    # absolute position embedding with CLS on InternVL's 448 / 14 = 32 grid, resized bicubically, layer
    # scale, exact GELU, no q/k/v bias, no final norm), split 12 / 12, C = 64, no temporal folds, no
    # Decompressor, flow-matching pixel decoder. Start it with HydraXTokenizer.from_internvit.
    "hydra-tok": dict(
        _INTERNVIT, width=1024, depth=24, heads=16, mlp_dim=4096, patch_size=14, gen_depth=12, abs_pos_grid=32
    ),
    # HYDRA-TOK's architecture at `small` size for one GPU, from scratch: patch 16 (not 14) so it trains on
    # the same 128^2 crops as HYDRA-X `small` (128 is no multiple of 14) and the two compare token for token;
    # RoPE only (no absolute embedding: nothing pretrained to keep).
    "hydra-tok-small": dict(_INTERNVIT, width=512, depth=12, heads=8, mlp_dim=2048, patch_size=16, gen_depth=6),
}


def tokenizer_config(name: str, **overrides: Any) -> TokenizerConfig:
    """The preset ``name`` with ``overrides`` applied (any TokenizerConfig field)."""
    if name not in TOKENIZER_PRESETS:
        raise ValueError(f"unknown tokenizer preset {name!r}; choose one of {sorted(TOKENIZER_PRESETS)}")
    return TokenizerConfig(**{**TOKENIZER_PRESETS[name], **overrides})
