"""Configuration of unified-model training: the model, where it starts, the stage, data, losses, sampling checks.

The engine's fields (steps, precision, compile, checkpoints, time budget, ...) come from ``EngineConfig``; the
recipes are in ``hydra_x.train.unified.recipes``; what each stage trains is in ``hydra_x.train.unified.stages``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hydra_x.config import config_from_dict
from hydra_x.data.mixture import UnifiedDataConfig
from hydra_x.train.config import EngineConfig
from hydra_x.train.optim import OptimConfig
from hydra_x.train.unified.stages import stage
from hydra_x.unified.config import UnifiedConfig, unified_config


@dataclass
class UnifiedLossConfig:
    text: float = 1.0  # next-token prediction on the assistant's text (the paper's weight)
    flow: float = 1.0  # rectified flow on generated latents (the paper's weight)
    # Classifier-free guidance: a generated example's caption is dropped (made empty) with this probability.
    cond_dropout: float = 0.1
    # Flow times: logit-normal, sigmoid(N(mean, std)), then the model's resolution-dependent shift.
    time_mean: float = 0.0
    time_std: float = 1.0

    def __post_init__(self) -> None:
        if self.text < 0 or self.flow < 0 or self.text + self.flow == 0:
            raise ValueError("loss.text and loss.flow must be >= 0, and not both 0")
        if not 0 <= self.cond_dropout < 1:
            raise ValueError(f"loss.cond_dropout must be in [0, 1), got {self.cond_dropout}")
        if self.time_std <= 0:
            raise ValueError(f"loss.time_std must be positive, got {self.time_std}")


@dataclass
class UnifiedTrainConfig(EngineConfig):
    # The architecture (``model=small``, ``model.llm=qwen2.5-1.5b``, ``model.tokenizer.depth=12`` on the command line).
    model: UnifiedConfig = field(default_factory=lambda: unified_config("tiny"))
    # A trained tokenizer (a save_pretrained folder, a tokenizer run folder, or a Hub id); its config replaces
    # model.tokenizer. None: the model's tokenizer starts random (tests; a real run needs a trained one).
    tokenizer_init: str | None = None
    # A HydraX checkpoint to start from (the previous stage's <run>/export, or the run folder). None: the
    # tokenizer from tokenizer_init, the LLM as model.llm names it (pretrained), fresh heads.
    init: str | None = None
    # With init: give its flow head this many attention layers in all (model.head_attention_layers), the new ones
    # with zero gates, so that the run starts from exactly the checkpoint's outputs. None: the checkpoint's head.
    init_head_attention_layers: int | None = None
    # The flow head's attention layers (model.head_attention_layers) take part from this step on (0: from the
    # first); before it they are skipped, so they keep their zero gates, and the per-token head alone learns to read
    # the captions, which attention among a block's tokens slows (docs/benchmarks.md); then they join without a jump.
    head_attention_from_step: int = 0
    # Instead, the share of the run's planned steps after which they join (0.84: at step 800 of 954): with a time
    # budget the plan is known only after its probe and depends on the machine's speed, so a fixed step may come
    # late or never (a run planned for 788 steps never reaches step 800); a share joins at the same point of any
    # run. Once joined they stay joined, also in a resumed run, whose budget plans anew (the checkpoint records the
    # step). None: head_attention_from_step decides.
    head_attention_from_share: float | None = None
    # After head_attention_from_step, the share of steps whose flow head skips its attention layers (each step's
    # draw depends on the seed and the step alone): on those steps the per-token head alone must read the captions,
    # on the others the layers join the tokens of each block. 0: every step uses them.
    head_attention_drop: float = 0.0
    stage: int = 1  # see hydra_x.train.unified.stages
    data: UnifiedDataConfig = field(default_factory=UnifiedDataConfig)
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(weight_decay=0.0, warmup_steps=100))
    lr_scale: float = 1.0  # multiplies the stage's learning rates (which replace optim.lr)
    # Per parameter group (heads, sem_vit, llm) a further multiplier of its rate, e.g. {"sem_vit": 5.0}; a group the
    # stage keeps frozen cannot be given one.
    group_lr_scale: dict[str, float] = field(default_factory=dict)
    loss: UnifiedLossConfig = field(default_factory=UnifiedLossConfig)
    max_length: int = 1024  # tokens per packed row
    # Rows of padding up to a multiple of this many rows per step: fewer row counts, fewer graphs to compile (with
    # compile=true each new count compiles the LLM's layer and FlexAttention again). 1: no padding rows.
    row_multiple: int = 1
    # Held-out checks every eval_every steps: images generated for held-out prompts (a grid) and the accuracy
    # of answers to held-out questions.
    heldout_prompts: int = 4
    heldout_questions: int = 16
    sample_steps: int = 20
    sample_guidance: float = 3.0
    ema_decay: float = 0.0  # the engine's EMA; 0 (off) by default: an EMA of the LLM doubles its memory
    # A fresh run (no init) from a tokenizer without latent statistics (stages 1-2 only) first measures them on
    # this many generation targets of its data (per-channel mean, one std over all channels) and stores them in
    # the tokenizer, so the latents the flow must reach have the scale of its unit noise (reconstructions are
    # unchanged; see hydra_x.tokenizer.latent_stats). 0: keep the raw latents.
    latent_stats_samples: int = 256
    # With compile=true, also compile the tokenizer's Gen-ViT and Sem-ViT blocks (with dynamic shapes: how many
    # images or clips of one shape a step holds changes every step). Off: only the LLM's layers compile.
    compile_tokenizer: bool = True
    # With compile=true, also compile the flow head's blocks (dynamic shapes: a step's generated tokens vary).
    compile_head: bool = True
    # With compile=true and FlexAttention, also build the step's BlockMask with a compiled create_block_mask (one
    # fused graph; eager, the rule is evaluated on the whole rows x L x L grid, dozens of launches a step).
    compile_mask: bool = True
    out_dir: str = "runs/unified"

    def __post_init__(self) -> None:
        super().__post_init__()
        self.stage_spec  # noqa: B018 - validates the stage number
        if self.row_multiple < 1:
            raise ValueError(f"row_multiple must be >= 1, got {self.row_multiple}")
        if self.max_length < 16:
            raise ValueError(f"max_length must be at least 16, got {self.max_length}")
        if self.latent_stats_samples < 0:
            raise ValueError(f"latent_stats_samples must be >= 0, got {self.latent_stats_samples}")
        if self.init_head_attention_layers is not None and self.init is None:
            raise ValueError("init_head_attention_layers grows the head of an init checkpoint: set init too")
        if self.head_attention_from_step < 0:
            raise ValueError(f"head_attention_from_step must be >= 0, got {self.head_attention_from_step}")
        if self.head_attention_from_share is not None:
            if not 0.0 <= self.head_attention_from_share < 1.0:
                raise ValueError(
                    f"head_attention_from_share is a share of the planned steps in [0, 1), got "
                    f"{self.head_attention_from_share}"
                )
            if self.head_attention_from_step:
                raise ValueError("head_attention_from_step and head_attention_from_share both set: give one")
        if not 0.0 <= self.head_attention_drop < 1.0:
            raise ValueError(f"head_attention_drop is a share of steps in [0, 1), got {self.head_attention_drop}")
        if self.lr_scale <= 0:
            raise ValueError(f"lr_scale must be positive, got {self.lr_scale}")
        data_read, model_read = self.data.understanding_image_size, self.model.understanding_image_size
        if data_read != model_read:
            raise ValueError(
                f"data.understanding_image_size ({data_read}) and model.understanding_image_size ({model_read}) "
                "differ: the model would learn to read pictures at one size and be asked at the other (chat and the "
                "evaluations use the model's); set both"
            )
        self.stage_spec.param_lrs(self.lr_scale, self.group_lr_scale)  # names and values checked here

    def param_lrs(self) -> dict[str, tuple[tuple[str, ...], float]]:
        """For build_optimizer: each trained group's prefixes and learning rate."""
        return self.stage_spec.param_lrs(self.lr_scale, self.group_lr_scale)

    @property
    def stage_spec(self):
        return stage(self.stage)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> UnifiedTrainConfig:
        return config_from_dict(cls, data, where="train config")
