"""Training the tokenizer with the flow-matching decoder: the objective, the draws, learning and exact resume."""

import json
from contextlib import nullcontext

import torch
import torch.nn.functional as F

from hydra_x import HydraXTokenizer
from hydra_x.data import heldout_images
from hydra_x.data.config import SourceConfig
from hydra_x.losses import PatchDiscriminator
from hydra_x.tokenizer import tokenizer_config
from hydra_x.train.tokenizer import train
from hydra_x.train.tokenizer.config import LossConfig
from hydra_x.train.tokenizer.draws import flow_draws
from hydra_x.train.tokenizer.heldout import evaluate
from hydra_x.train.tokenizer.objective import TokenizerObjective
from tests.helpers import pixels, tiny
from tests.train.test_tokenizer_train import config, losses

FLOW = {"decoder": "flow", "flow_steps": 4}  # TokenizerConfig overrides
FLOW_MODEL = tokenizer_config("tiny", **FLOW)


def test_flow_draws_depend_on_the_global_sample_index_only():
    x = pixels(4, 3, 5, 16, 16)
    loss = LossConfig(flow_time="uniform")
    noise, t = flow_draws(x, loss, seed=0, micro_step=3, first_index=0)
    assert noise.shape == x.shape and t.shape == (4,) and ((t > 0) & (t < 1)).all()
    # Two processes with half the batch each draw exactly what one process draws for the whole batch.
    halves = [flow_draws(x[:2], loss, 0, 3, 0), flow_draws(x[2:], loss, 0, 3, 2)]
    assert torch.equal(noise, torch.cat([h[0] for h in halves])) and torch.equal(t, torch.cat([h[1] for h in halves]))
    other, t_other = flow_draws(x, loss, seed=0, micro_step=4, first_index=0)
    assert not torch.allclose(noise, other) and not torch.allclose(t, t_other)
    assert not torch.allclose(noise[0], noise[1])
    # The time distribution is the configured one, from the same normal draw.
    _, t_logit = flow_draws(x, LossConfig(flow_time="logit_normal", flow_time_std=2.0), 0, 3, 0)
    torch.testing.assert_close(torch.special.ndtri(t.double()) * 2.0, torch.logit(t_logit.double()))


def test_the_objective_uses_flow_matching_and_puts_lpips_and_gan_on_the_clean_estimate():
    model = tiny(decoder="flow").train()
    x = pixels(2, 3, 32, 32)
    eps, t = torch.randn(2, 3, 32, 32), torch.tensor([0.2, 0.9])
    out = model(x, noise=torch.zeros(2, 1, 4, 64), flow_noise=eps, flow_t=t)
    terms = TokenizerObjective(LossConfig(lpips=0.0), 1).generator(out, x, step=0)
    assert set(terms.values) == {"flow", "l1", "kl"} and terms.weights["l1"] == 0.0 and terms.weights["flow"] == 1.0
    torch.testing.assert_close(terms.values["flow"], F.mse_loss(out.velocity, eps - x))
    torch.testing.assert_close(terms.values["l1"], F.l1_loss(out.x_rec, x))  # logged, weight 0 by default
    torch.testing.assert_close(terms.total, terms.values["flow"] + 1e-4 * terms.values["kl"])
    # The GAN judges the clean estimate; its adaptive weight is taken at the decoder output (the velocity).
    disc = PatchDiscriminator(LossConfig().discriminator)
    seen = []
    disc.register_forward_hook(lambda m, args, res: seen.append(args[0]))
    objective = TokenizerObjective(LossConfig(lpips=0.0, gan=0.075, flow_l1=0.5), 1, discriminator=disc)
    terms = objective.generator(out, x, step=0)
    assert set(terms.values) == {"flow", "l1", "kl", "gan"} and terms.weights["l1"] == 0.5
    assert seen[-1] is out.x_rec and 0 < terms.weights["gan"] < 1e4
    terms.total.backward()
    assert model.decoder.blocks[-1].modulation.weight.grad.abs().sum() > 0  # adaLN-Zero: the modulation learns


def test_held_out_evaluation_samples_with_the_configured_steps_from_fixed_noise():
    model = tiny(**FLOW)
    images = heldout_images(2, 32)
    result = evaluate(model, images, None, nullcontext)
    expected = model.decode(model.encode(images), generator=torch.Generator().manual_seed(0)).clamp(-1, 1)
    torch.testing.assert_close(result["images"][1], expected, rtol=1e-5, atol=1e-5)
    one_step = model.decode(model.encode(images), steps=1, generator=torch.Generator().manual_seed(0)).clamp(-1, 1)
    assert not torch.allclose(result["images"][1], one_step)


def test_a_few_dozen_steps_lower_the_flow_loss_and_the_one_step_error(tmp_path):
    cfg = config(tmp_path, steps=40, ema_decay=0.0, model=FLOW_MODEL, data__sources=(SourceConfig("embedded_images"),))
    cfg.optim.lr = 3e-3
    train(cfg)
    flow = list(losses(tmp_path, "loss/flow").values())
    assert len(flow) == 40 and sum(flow[-10:]) < 0.6 * sum(flow[:10]), flow
    assert json.loads((tmp_path / "config.json").read_text())["resolved_model"]["decoder"] == "flow"
    # Held-out images: one sampling step (the clean estimate from pure noise) is closer after training.
    images = heldout_images(4, cfg.data.image_size)
    initial = HydraXTokenizer.from_config(cfg.model, seed=cfg.seed).eval()
    trained = HydraXTokenizer.from_pretrained(tmp_path / "export")
    assert trained.config.decoder == "flow"
    errors = []
    for model in (initial, trained):
        rec = model.decode(model.encode(images), steps=1, generator=torch.Generator().manual_seed(1))
        errors.append(F.l1_loss(rec, images).item())
    # Images the run never saw, 40 steps of batch 4: the regression decoder gains about 13% here.
    assert errors[1] < 0.95 * errors[0], errors


def test_resume_with_the_flow_decoder_follows_the_uninterrupted_loss_curve(tmp_path):
    changes = dict(steps=4, model=FLOW_MODEL, loss__gan=0.1, loss__gan_start=1, loss__gan_adaptive=True)
    train(config(tmp_path / "straight", **changes))
    assert train(config(tmp_path / "resumed", stop_at_step=2, **changes))["step"] == 2
    train(config(tmp_path / "resumed", **changes))
    for key in ("loss/total", "loss/flow", "loss/gan"):
        straight, resumed = losses(tmp_path / "straight", key), losses(tmp_path / "resumed", key)
        assert sorted(resumed) == list(range(1 if key != "loss/gan" else 2, 5))
        for step in resumed:
            assert resumed[step] == straight[step], (key, step, resumed[step], straight[step])
