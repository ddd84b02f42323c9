"""compile=true also compiles the frozen modules (LPIPS, teachers): same losses and gradients as eager."""

from __future__ import annotations

import pytest
import torch
from torch._dynamo.utils import counters

from hydra_x.losses import LPIPS
from hydra_x.teachers import load_teacher
from hydra_x.teachers.tiny import save_tiny_teacher
from hydra_x.train.tokenizer.build import compile_frozen
from hydra_x.train.tokenizer.config import LossConfig
from hydra_x.train.tokenizer.objective import TokenizerObjective
from tests.helpers import pixels, tiny


def losses_and_gradients(objective: TokenizerObjective, x: torch.Tensor) -> tuple[dict, dict]:
    model = tiny(image_teacher_dim=objective.image_teacher.dim, video_teacher_dim=objective.video_teacher.dim)
    out = model.train()(x, noise=torch.zeros(x.shape[0], 2, 4, 64))
    terms = objective.generator(out, x, step=0)
    terms.total.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return {k: v.clone() for k, v in terms.values.items()}, grads


@pytest.mark.slow
def test_compiled_frozen_modules_give_the_eager_losses_and_gradients(tmp_path) -> None:
    torch.manual_seed(0)
    objective = TokenizerObjective(
        LossConfig(lpips=1.0),
        1,
        image_teacher=load_teacher(save_tiny_teacher("siglip2", tmp_path / "i"), dtype=torch.float32),
        video_teacher=load_teacher(save_tiny_teacher("vjepa2", tmp_path / "v"), dtype=torch.float32),
        lpips=LPIPS(),
    )
    x = pixels(2, 3, 5, 32, 32)
    eager_values, eager_grads = losses_and_gradients(objective, x)
    torch.compiler.reset()
    counters.clear()
    try:
        compile_frozen(objective.lpips, objective.image_teacher, objective.video_teacher)
        values, grads = losses_and_gradients(objective, x)
        compiled_frames = counters["frames"]["ok"]
    finally:
        torch.compiler.reset()
    assert compiled_frames >= 3  # LPIPS and both teachers really ran compiled
    assert set(values) == set(eager_values) >= {"lpips", "distill_image", "distill_video"}
    for k in values:
        torch.testing.assert_close(values[k], eager_values[k], rtol=1e-4, atol=1e-6, msg=k)
    assert grads.keys() == eager_grads.keys()
    for n in grads:
        torch.testing.assert_close(grads[n], eager_grads[n], rtol=1e-3, atol=1e-6, msg=n)
