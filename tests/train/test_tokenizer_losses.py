"""The training objective: the distillation terms use the teachers, and teachers never get gradients; LPIPS is
never off unless the run says so."""

import logging

import pytest
import torch

from hydra_x.losses import lpips as lpips_module
from hydra_x.losses.lpips import LPIPS, save_lpips
from hydra_x.losses.lpips_weights import OFFICIAL_FILES, LPIPSWeightsError, cached_weights_path
from hydra_x.teachers import load_teacher
from hydra_x.teachers.tiny import save_tiny_teacher
from hydra_x.train.tokenizer import train
from hydra_x.train.tokenizer.__main__ import parse_config
from hydra_x.train.tokenizer.config import LossConfig
from hydra_x.train.tokenizer.objective import TokenizerObjective, frames_for_lpips, load_lpips_for
from hydra_x.train.tokenizer.recipes import RECIPES
from hydra_x.train.tokenizer.stages import stage as stage_of
from tests.helpers import pixels, tiny
from tests.losses import lpips_fixtures
from tests.train.test_tokenizer_train import config as train_config


@pytest.fixture(scope="module")
def teachers(tmp_path_factory):
    root = tmp_path_factory.mktemp("teachers")
    return {
        "image_a": load_teacher(save_tiny_teacher("siglip2", root / "a", seed=0), dtype=torch.float32),
        "image_b": load_teacher(save_tiny_teacher("siglip2", root / "b", seed=1), dtype=torch.float32),
        "video": load_teacher(save_tiny_teacher("vjepa2", root / "v"), dtype=torch.float32),
    }


def test_distillation_uses_the_teachers_and_teachers_get_no_gradient(teachers):
    image_a, image_b, video = teachers["image_a"], teachers["image_b"], teachers["video"]
    model = tiny(image_teacher_dim=image_a.dim, video_teacher_dim=video.dim).train()
    x = pixels(2, 3, 5, 32, 32)
    config = LossConfig(lpips=0.0)
    values = {}
    for name, image_teacher in (("a", image_a), ("b", image_b)):
        objective = TokenizerObjective(config, 1, image_teacher=image_teacher, video_teacher=video)
        model.zero_grad()
        out = model(x, noise=torch.zeros(2, 2, 4, 64))
        terms = objective.generator(out, x, step=0)
        terms.total.backward()
        values[name] = terms.values
        assert model.image_head.weight.grad.abs().sum() > 0 and model.video_head.weight.grad.abs().sum() > 0
        for teacher in (image_teacher, video):
            assert all(not p.requires_grad and p.grad is None for p in teacher.model.parameters())
    assert set(values["a"]) == {"l1", "kl", "distill_image", "distill_video"}
    assert values["a"]["distill_image"] != values["b"]["distill_image"]  # another teacher, another loss
    assert values["a"]["distill_video"] == values["b"]["distill_video"]
    assert values["a"]["l1"] == values["b"]["l1"]


def test_image_batches_have_no_video_term_and_stage_terms_follow_the_stage(teachers):
    model = tiny(image_teacher_dim=teachers["image_a"].dim, video_teacher_dim=teachers["video"].dim).train()
    x = pixels(2, 3, 32, 32)
    both = dict(image_teacher=teachers["image_a"], video_teacher=teachers["video"])
    stage1 = TokenizerObjective(LossConfig(lpips=0.0), 1, **both).generator(model(x), x, 0)
    assert set(stage1.values) == {"l1", "kl", "distill_image"}
    stage2 = TokenizerObjective(LossConfig(lpips=0.0), 2, **both)
    assert set(stage2.generator(model(x, semantic=False), x, 0).values) == {"l1"}
    stage3 = TokenizerObjective(LossConfig(lpips=0.0, consistency=1.0), 3, **both)
    assert set(stage3.generator(model(x, reconstruct=False), x, 0).values) == {"distill_image", "consistency"}


def test_frames_for_lpips_picks_evenly_spaced_frames():
    clip = torch.arange(9.0).view(1, 1, 9, 1, 1).expand(2, 3, 9, 4, 4)
    frames = frames_for_lpips(clip, 3)
    assert frames.shape == (6, 3, 4, 4)
    assert frames[:3, 0, 0, 0].tolist() == [0.0, 4.0, 8.0]


# ---------------------------------------------------------------------------------- LPIPS is never off silently

lpips_home = lpips_fixtures.lpips_home  # the fixture: a hermetic torch.hub cache, no lpips package, no network
# The offline recipes (the tokenizer alone, and `hydra-x demo`'s): lpips=0, and their docstrings say so.
WITHOUT_LPIPS = {"tiny", "demo-warmup", "demo", "demo-small-warmup", "demo-small"}


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_every_recipe_but_tiny_requires_lpips_and_says_how_to_supply_it(name, lpips_home):
    cfg = RECIPES[name]()
    if name in WITHOUT_LPIPS:
        assert cfg.loss.lpips == 0 and "LPIPS is off" in RECIPES[name].__doc__
        assert load_lpips_for(cfg.loss, cfg.stage_spec) is None and lpips_home.asked == []
        return
    if not cfg.stage_spec.uses("lpips"):  # so400m-stage3: the decoder does not run
        assert load_lpips_for(cfg.loss, cfg.stage_spec) is None and lpips_home.asked == []
        return
    assert cfg.loss.lpips > 0 and cfg.loss.lpips_required
    with pytest.raises(LPIPSWeightsError) as info:
        load_lpips_for(cfg.loss, cfg.stage_spec)
    message = str(info.value)
    for part in ("needs the LPIPS-VGG weights", "vgg16-397923af.pth", "lpips_vgg.safetensors", "$HYDRA_X_LPIPS_WEIGHTS",
                 "python -m hydra_x.losses.lpips convert", "loss.lpips_weights=PATH", "loss.lpips=0",
                 "loss.lpips_required=false"):  # fmt: skip
        assert part in message, part


def test_running_without_lpips_is_said_on_the_command_line(lpips_home, monkeypatch, caplog):
    def no_lookup(*args, **kwargs):
        raise AssertionError("loss.lpips=0 must not look for weights")

    cfg = parse_config(["--config", "small", "loss.lpips=0"])
    with monkeypatch.context() as patch:
        patch.setattr(lpips_module, "find_lpips_weights", no_lookup)
        assert load_lpips_for(cfg.loss, cfg.stage_spec) is None
    cfg = parse_config(["--config", "small", "loss.lpips_required=false"])
    assert cfg.loss.lpips_required is False
    with caplog.at_level(logging.WARNING, logger="hydra_x.losses.lpips"):
        assert load_lpips_for(cfg.loss, cfg.stage_spec) is None
    assert any(r.getMessage().startswith("LPIPS is OFF") for r in caplog.records)
    # Weights where the lookup finds them: LPIPS is on, in every recipe that asks for it.
    torch.manual_seed(0)
    save_lpips(LPIPS(), cached_weights_path())
    assert isinstance(load_lpips_for(RECIPES["so400m-stage1"]().loss, stage_of(1)), LPIPS)
    assert lpips_home.asked == [f.url for f in OFFICIAL_FILES]  # the one optional lookup asked; then the cache


def test_a_run_that_needs_lpips_stops_before_its_first_step(lpips_home, tmp_path):
    cfg = train_config(tmp_path / "run", loss__lpips=1.0)
    with pytest.raises(LPIPSWeightsError, match="loss.lpips=1.0 needs the LPIPS-VGG weights"):
        train(cfg)
    assert not (tmp_path / "run" / "checkpoints").exists() or not any((tmp_path / "run" / "checkpoints").iterdir())
