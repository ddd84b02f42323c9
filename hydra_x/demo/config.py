"""The demo's settings: one dataclass config per phase, and the presets that fill them.

A preset names the two training recipes (``hydra_x.train.tokenizer.recipes`` and
``hydra_x.train.unified.recipes``: the ``demo*`` ones), the LLM the unified model starts from, and what is
evaluated and shown. ``resolve`` places both runs inside the output folder and applies the command line's
choices (device, LLM, minutes), so the recipes stay runnable on their own with ``hydra-x train ... --config demo``.

    cpu     the default: about 10 minutes on 2 CPU cores, offline
    small   one GPU, 64 px: the `small` tokenizer, the `small-64` recipe and, where converted, SmolLM2-135M-Instruct
    smoke   seconds: a few steps of each phase, to check an installation (and for the tests)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from hydra_x.data.config import SourceConfig
from hydra_x.demo.names import DEFAULT_OUT, DEFAULT_PRESET, PRESET_NAMES
from hydra_x.errors import InputError
from hydra_x.train.tokenizer.config import TokenizerTrainConfig
from hydra_x.train.tokenizer.recipes import DEMO_SHAPES
from hydra_x.train.tokenizer.recipes import RECIPES as TOKENIZER_RECIPES
from hydra_x.train.unified.config import UnifiedTrainConfig
from hydra_x.train.unified.recipes import RECIPES as UNIFIED_RECIPES
from hydra_x.unified.llm import TinyLLMConfig


class DemoError(InputError):
    """A demo option or folder the user can fix: one line, exit status 2."""


@dataclass
class DemoEvalConfig:
    """``hydra-x eval recon`` (held-out photographs and clips) and ``hydra-x eval shapes`` settings."""

    recon_size: int = 64  # px; a multiple of the patch
    recon_images: int = 24  # held-out crops of the embedded set (at most 24)
    recon_clips: int = 8
    recon_frames: int = 9  # 1 + 4k
    shapes_size: int = 64
    shapes_frames: int = 5  # generated clips (1 + 4k)
    steps: int = 20  # flow sampling steps
    guidance: float = 3.0
    limit: int | None = 12  # items per generation category, question kind and edit op (None: the whole set)
    batch_size: int = 16
    seed: int = 0
    # Also the questions of shapes-v1-seen (combinations training draws): held-out understanding is read beside it.
    seen_questions: bool = True


@dataclass
class ShowcaseConfig:
    """What the report shows beside the figures: fixed prompts, held-out photographs, clips, questions, edits."""

    photos: int = 6  # held-out photograph crops, original | reconstruction
    clips: int = 2  # held-out clips, original | reconstruction (GIF)
    image_prompts: tuple[str, ...] = (
        "a red circle",
        "a blue square",
        "a green triangle",
        "two yellow circles",
        "three purple squares",
        "an orange triangle left of a blue circle",
        "a red square above a green circle",
        "a yellow triangle and a purple circle",
    )
    video_prompts: tuple[str, ...] = (
        "a red circle moving right",
        "a blue square moving down",
        "a green triangle moving left",
    )
    questions: int = 6  # held-out scenes with a question each
    edits: int = 5  # held-out edits (the first of each operation)
    display_px: int = 192  # pictures are enlarged (nearest neighbour) to about this side for viewing
    seed: int = 0


@dataclass
class DemoConfig:
    preset: str
    # The tokenizer is trained in two runs: `tokenizer_warmup` on the shapes world's images alone, then `tokenizer`
    # from it on the photographs, clips and shapes (see hydra_x.train.tokenizer.recipes.demo_warmup for why).
    tokenizer_warmup: TokenizerTrainConfig
    tokenizer: TokenizerTrainConfig
    unified: UnifiedTrainConfig
    shapes_images: int = 2048  # shapes-world renders written for the tokenizer's image_folder source
    # The config-built LLM (random weights from the run's seed) the unified model starts from when SmolLM2 is not
    # used; None: the `tiny` LLM preset.
    llm_config: TinyLLMConfig | None = None
    # Whether `--llm auto` takes SmolLM2-135M-Instruct when its converted folder exists. False for the CPU preset:
    # there it trains about 30 times slower per step than the config-built LLM (docs/demo.md).
    prefer_smollm2: bool = False
    # Whether the tokenizer's main run adds LPIPS (weight 1) when its weights are already on the machine (never
    # downloaded): the GPU preset; on a CPU its VGG16 would cost more than the rest of the step.
    lpips_if_local: bool = False
    eval: DemoEvalConfig = field(default_factory=DemoEvalConfig)
    showcase: ShowcaseConfig = field(default_factory=ShowcaseConfig)
    out_dir: str = DEFAULT_OUT
    device: str = "auto"
    llm: str = "auto"  # auto | smollm2-135m | config (resolved by hydra_x.demo.llm.choose_llm)

    @property
    def out(self) -> Path:
        return Path(self.out_dir)

    @property
    def shapes_dir(self) -> Path:
        return self.out / "shapes-images"

    @property
    def warmup_dir(self) -> Path:
        return self.out / "tokenizer-warmup"

    @property
    def tokenizer_dir(self) -> Path:
        return self.out / "tokenizer"

    @property
    def unified_dir(self) -> Path:
        return self.out / "unified"  # its export/ is what `hydra-x serve` loads by default

    @property
    def llm_dir(self) -> Path:
        return self.out / "llm-init"  # the config-built LLM's random start, written before training

    @property
    def eval_dir(self) -> Path:
        return self.out / "eval"

    @property
    def report_dir(self) -> Path:
        return self.out / "report"


# ---------------------------------------------------------------------------------------------- presets


def cpu() -> DemoConfig:
    """The default: the `demo` recipes on 2 CPU cores in about 10 minutes (each training has a time budget)."""
    return DemoConfig(
        preset="cpu",
        tokenizer_warmup=TOKENIZER_RECIPES["demo-warmup"](),
        tokenizer=TOKENIZER_RECIPES["demo"](),
        unified=UNIFIED_RECIPES["demo"](),
        llm_config=TinyLLMConfig(hidden_size=256, intermediate_size=512, num_layers=4, num_heads=4, num_kv_heads=2),
    )


def small() -> DemoConfig:
    """One GPU: the `small` tokenizer at 64 px and the `small-64` unified recipe (the best measured shapes-world
    run's) with SmolLM2-135M-Instruct where converted, about 25 minutes; scored on the whole held-out set."""
    cfg = DemoConfig(
        preset="small",
        tokenizer_warmup=TOKENIZER_RECIPES["demo-small-warmup"](),
        tokenizer=TOKENIZER_RECIPES["demo-small"](),
        unified=UNIFIED_RECIPES["demo-small"](),
        shapes_images=3000,  # as many renders as the benchmark's tokenizer trained on
        llm_config=TinyLLMConfig(hidden_size=512, intermediate_size=1536, num_layers=8, num_heads=8, num_kv_heads=4),
        prefer_smollm2=True,
        lpips_if_local=True,
        eval=DemoEvalConfig(recon_size=64, shapes_size=64, shapes_frames=9, steps=20, limit=None, batch_size=32),
    )
    cfg.showcase.display_px = 256
    return cfg


def smoke() -> DemoConfig:
    """Seconds on a CPU: a few steps of each training and a few items of each evaluation; scores are noise."""
    cfg = cpu()
    cfg.preset = "smoke"
    cfg.llm_config, cfg.shapes_images = None, 64  # the `tiny` LLM preset
    cfg.tokenizer_warmup = replace(cfg.tokenizer_warmup, steps=2, ckpt_every=2, log_every=1, time_budget_minutes=None)
    cfg.tokenizer = replace(cfg.tokenizer, steps=4, eval_every=4, ckpt_every=4, log_every=2, heldout_images=2)
    cfg.tokenizer.heldout_clips, cfg.tokenizer.time_budget_minutes = 1, None
    cfg.unified = replace(cfg.unified, steps=3, eval_every=0, ckpt_every=3, log_every=1, time_budget_minutes=None)
    cfg.unified.model = cfg.unified.model.replace(llm="tiny", head_width=None)
    cfg.eval = DemoEvalConfig(recon_images=2, recon_clips=1, recon_frames=5, steps=2, limit=1, batch_size=4)
    cfg.showcase = ShowcaseConfig(
        photos=2,
        clips=1,
        image_prompts=cfg.showcase.image_prompts[:2],
        video_prompts=cfg.showcase.video_prompts[:1],
        questions=2,
        edits=2,
        display_px=64,
    )
    return cfg


PRESETS: dict[str, Callable[[], DemoConfig]] = {"cpu": cpu, "small": small, "smoke": smoke}
assert tuple(PRESETS) == PRESET_NAMES, "hydra_x.demo.names lists the presets for the command line"


def demo_config(name: str = DEFAULT_PRESET) -> DemoConfig:
    if name not in PRESETS:
        raise DemoError(f"unknown demo preset {name!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[name]()


def resolve(cfg: DemoConfig, *, out_dir: str | None = None, device: str | None = None, minutes: float | None = None):
    """``cfg`` with the command line's choices applied: both runs inside ``out_dir``, the unified model starting
    from the demo's tokenizer, the device, and ``minutes`` shared between the two trainings as the preset shares
    them (a training's time budget only shortens it: steps are the recipe's at most)."""
    if out_dir is not None:
        cfg.out_dir = out_dir
    if device is not None:
        if device not in ("auto", "cpu", "cuda"):
            raise DemoError(f"--device must be auto, cpu or cuda, got {device!r}")
        cfg.device = device
    if minutes is not None:
        _share_minutes(cfg, minutes)
    warm, tok, uni = cfg.tokenizer_warmup, cfg.tokenizer, cfg.unified
    warm.out_dir, tok.out_dir, uni.out_dir = str(cfg.warmup_dir), str(cfg.tokenizer_dir), str(cfg.unified_dir)
    tok.init = str(cfg.warmup_dir)
    uni.tokenizer_init = str(cfg.tokenizer_dir)  # its export; the unified run sets its latent statistics
    for run in (warm, tok):
        run.data.sources = tuple(_relocated(source, cfg) for source in run.data.sources)
    warm.device = tok.device = uni.device = cfg.device
    return cfg


def _relocated(source: SourceConfig, cfg: DemoConfig) -> SourceConfig:
    """The recipes' shapes-image folder, moved into the demo's folder."""
    return replace(source, path=str(cfg.shapes_dir)) if source.path == DEMO_SHAPES else source


def _share_minutes(cfg: DemoConfig, minutes: float) -> None:
    if not minutes > 0:
        raise DemoError(f"--minutes must be positive, got {minutes}")
    runs = (cfg.tokenizer_warmup, cfg.tokenizer, cfg.unified)
    if not all(run.time_budget_minutes for run in runs):
        raise DemoError(f"the {cfg.preset} preset has no time budget to scale (--minutes is for cpu and small)")
    # The presets' budgets leave room for evaluation and the report; that share is kept.
    scale = minutes / PRESET_MINUTES[cfg.preset]
    for run in runs:
        run.time_budget_minutes *= scale


PRESET_MINUTES = {"cpu": 10.0, "small": 25.0}  # the whole demo, what each preset's budgets are planned for
