"""The training objective: the distillation terms use the teachers, and teachers never get gradients."""

import pytest
import torch

from hydra_x.teachers import load_teacher
from hydra_x.teachers.tiny import save_tiny_teacher
from hydra_x.train.tokenizer.config import LossConfig
from hydra_x.train.tokenizer.objective import TokenizerObjective, frames_for_lpips
from tests.helpers import pixels, tiny


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
