"""Editing by Source-Target Interaction: what depends on what, sampling with and without the cache, a few steps
of editing training, and hydra-x edit from a checkpoint."""

from __future__ import annotations

import json

import pytest
import torch

from hydra_x.cli import main as hydra_main
from hydra_x.data.media import read_image, write_image
from hydra_x.unified.model import HydraX
from hydra_x.unified.sampling import edit_latents, render, sampling_calls


@pytest.fixture(scope="module")
def model() -> HydraX:
    m = HydraX.from_preset("tiny", seed=0).eval()
    with torch.no_grad():  # the flow head starts at zero: make it say something
        for p in m.flow_head.parameters():
            p.normal_(0, 0.05)
    return m


def latent(seed: int) -> torch.Tensor:
    return torch.randn(1, 64, 1, 2, 2, generator=torch.Generator().manual_seed(seed))


def test_the_target_sees_the_source_and_the_source_never_sees_the_target(model):
    t = torch.tensor([0.5])
    src, other_src, tgt, other_tgt = latent(0), latent(1), latent(2), latent(3)
    s, g = model.pair_embeddings(src, tgt, t)
    s2, g2 = model.pair_embeddings(src, other_tgt, t)
    torch.testing.assert_close(s, s2, rtol=0, atol=0)  # the source's tokens ignore the target
    torch.testing.assert_close(s, model.visual_embeddings(src)[:, :4], rtol=1e-5, atol=1e-5)  # = the source alone
    _, g3 = model.pair_embeddings(other_src, tgt, t)
    assert not torch.allclose(g, g3)  # the target's tokens depend on the source
    assert not torch.allclose(g, model.visual_embeddings(tgt, t))  # not the target alone (the independent layout)


@pytest.mark.parametrize("layout", ["sti", "independent"])
def test_the_layout_decides_whether_the_target_embedding_depends_on_the_source(layout):
    from hydra_x.data.examples import Example, Visual
    from hydra_x.train.unified.batch import build_batch
    from hydra_x.train.unified.recipes import tiny

    m = HydraX.from_preset("tiny", seed=0, edit_layout=layout).eval()
    cfg = tiny()
    cfg.loss.cond_dropout = 0.0
    x = [torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(k)) * 2 - 1 for k in range(3)]
    messages = [
        {"role": "user", "content": "<image>\nMake the red circle blue."},
        {"role": "assistant", "content": "<image>"},
    ]

    def target_embedding(source):
        ex = Example("edit", messages, [Visual(source), Visual(x[2], "generate")], "k")
        packed, visuals, _ = build_batch(m, [ex], cfg, 0, 0)
        assert visuals.pairs == [(0, 1)]
        emb, _ = m._embed_visuals(packed, visuals, visuals.latents(m))
        return emb[4:]  # the target's 4 tokens after the source's

    a, b = target_embedding(x[0]), target_embedding(x[1])
    assert torch.allclose(a, b) == (layout == "independent")


@pytest.mark.parametrize("guidance", [1.0, 3.0])
def test_cached_editing_equals_the_uncached_loop(model, guidance):
    x = torch.rand(3, 32, 48, generator=torch.Generator().manual_seed(0)) * 2 - 1
    kwargs = dict(steps=3, guidance=guidance, seed=1)
    cached = edit_latents(model, [x], ["make the red circle blue"], use_cache=True, **kwargs)
    plain = edit_latents(model, [x], ["make the red circle blue"], use_cache=False, **kwargs)
    assert cached.shape == (1, 64, 1, 2, 3)
    torch.testing.assert_close(cached, plain, rtol=1e-5, atol=1e-5)
    other = edit_latents(model, [x.flip(-1)], ["make the red circle blue"], **kwargs)
    assert not torch.allclose(cached, other)  # the output depends on the source


def test_an_edit_started_below_one_begins_from_the_source(model):
    """SDEdit's strength: from the source noised to a small time, a few steps stay near the source; from t = 1 the
    same random model lands far from it; a start outside (0, 1] is refused by name."""
    x = torch.rand(2, 3, 32, 48, generator=torch.Generator().manual_seed(0)) * 2 - 1
    z_src = model.encode(x)
    texts = ["make the red circle blue", "remove it"]
    near = edit_latents(model, list(x), texts, steps=4, guidance=3.0, start=0.02)
    far = edit_latents(model, list(x), texts, steps=4, guidance=3.0)
    assert (near - z_src).abs().mean() < 0.1 * (far - z_src).abs().mean()
    with pytest.raises(ValueError, match="start time must be in"):
        edit_latents(model, list(x), texts, steps=4, start=1.5)


@pytest.mark.parametrize(
    ("sampler", "start", "shift"), [("euler", 1.0, None), ("heun", 0.5, None), ("euler", 0.3, 3.0)]
)
def test_sampling_calls_is_the_progress_an_edit_reports(model, sampler, start, shift):
    x = torch.rand(3, 32, 48, generator=torch.Generator().manual_seed(0)) * 2 - 1
    options = dict(steps=9, guidance=3.0, sampler=sampler, start=start, shift=shift)
    seen = []
    edit_latents(model, [x], ["remove it"], **options, progress=seen.append)
    assert seen == list(range(1, sampling_calls(model, "image", 32, 48, **options) + 1))


@pytest.mark.slow
def test_a_few_dozen_editing_steps_lower_the_editing_loss_and_edit_runs_from_the_checkpoint(tmp_path, capsys):
    from hydra_x.train.unified import train
    from hydra_x.train.unified.recipes import tiny

    cfg = tiny()
    # 80 steps: the tokenizer's latents are normalised to unit scale (latent statistics measured at the start), so
    # the flow must learn the edit itself; windows of 10 steps average out the random flow times (0.73-0.76 here).
    cfg.out_dir, cfg.steps, cfg.log_every, cfg.eval_every, cfg.ckpt_every = str(tmp_path / "run"), 80, 1, 0, 100
    cfg.data.image_size, cfg.data.examples_per_step, cfg.data.task_ratios = 32, 4, {"edit": 1.0}
    cfg.model = cfg.model.replace(image_size=32)
    train(cfg)
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    flow = [r["loss/flow"] for r in rows if "loss/flow" in r]
    assert len(flow) == 80 and sum(flow[-10:]) < 0.9 * sum(flow[:10]), flow
    source = tmp_path / "source.png"
    write_image(source, torch.rand(3, 32, 32) * 2 - 1)
    out = tmp_path / "edited.png"
    ckpt = str(tmp_path / "run" / "export")
    args = ["edit", str(source), "make the red circle blue", "--ckpt", ckpt, "--out", str(out), "--steps", "2"]
    assert hydra_main(args) == 0 and out.is_file()
    assert "sti layout" in capsys.readouterr().out
    assert hydra_main(["edit", str(tmp_path / "missing.png"), "x", "--ckpt", ckpt, "--out", str(out)]) == 2
    near = tmp_path / "near.png"  # from the source noised to t = 0.02: the sampler keeps it, as the model would
    assert hydra_main([*args[:5], "--out", str(near), "--steps", "2", "--start", "0.02"]) == 0
    model = HydraX.from_pretrained(ckpt).eval()
    kept = read_image(near)
    round_trip = render(model, model.encode(read_image(source)[None]))[0]
    edited = read_image(out)
    assert (kept - round_trip).abs().mean() < 0.5 * (edited - round_trip).abs().mean()
    assert hydra_main([*args[:5], "--out", str(near), "--start", "0"]) == 2
    assert "--start must be in (0, 1], got 0.0" in capsys.readouterr().err
    # OUT as the third word, as `hydra-x edit IMAGE "instruction" OUT` reads; given twice it must agree.
    third = tmp_path / "third.png"
    assert hydra_main(["edit", str(source), "make it blue", str(third), "--ckpt", ckpt, "--steps", "1"]) == 0
    assert third.is_file() and f"wrote {third}" in capsys.readouterr().out
    assert hydra_main(["edit", str(source), "x", str(third), "--out", str(out), "--ckpt", ckpt]) == 2
    assert f"two outputs given: {third} and --out {out}" in capsys.readouterr().err


@pytest.fixture(scope="module")
def source_model() -> HydraX:
    m = HydraX.from_preset("tiny", seed=0, edit_source_input=True).eval()
    with torch.no_grad():
        for p in m.flow_head.parameters():
            p.normal_(0, 0.05)
    return m


def _edit_velocity(model, z_src, noise, t, instruction="make the red circle blue"):
    """The training forward's velocity (tokens, C) of an edit's target at flow time ``t``."""
    from hydra_x.unified.inputs import VisualInputs
    from hydra_x.unified.packing import pack
    from hydra_x.unified.sampling import edit_rows, visual_spec

    spec, _ = visual_spec(model, "image", 32, 48, None)
    tok = model.text_tokenizer
    batch = pack(edit_rows(model, [instruction], spec), 512, tok.pad_token_id)
    visuals = VisualInputs(z=[z_src, z_src], t=torch.tensor([t]), noise=[noise], pairs=[(0, 1)])
    with torch.no_grad():
        return model(batch, visuals).velocity


def test_the_head_reads_the_source_in_training_and_sampling_alike(source_model):
    """One Euler step from t = 1 returns noise - v: the sampler's edit gives the head the source the training
    forward gives it, and a head that reads the source edits differently from one that does not."""
    x = torch.rand(3, 32, 48, generator=torch.Generator().manual_seed(0)) * 2 - 1
    z_src = source_model.encode(x[None])[0]
    edited = edit_latents(source_model, [x], ["make the red circle blue"], steps=1, guidance=1.0, seed=5)
    noise = torch.randn(edited.shape, generator=torch.Generator().manual_seed(5))  # the sampler's draw for seed 5
    v = _edit_velocity(source_model, z_src, noise[0], 1.0)
    torch.testing.assert_close(edited, noise - v.T.reshape(edited.shape), rtol=1e-4, atol=1e-4)
    import copy

    deaf = copy.deepcopy(source_model)
    deaf.flow_head.source_proj.weight.data.zero_()
    assert not torch.allclose(
        _edit_velocity(deaf, z_src, noise[0], 0.5), _edit_velocity(source_model, z_src, noise[0], 0.5)
    )
    other = edit_latents(deaf, [x], ["make the red circle blue"], steps=1, guidance=1.0, seed=5)
    assert not torch.allclose(other, edited)


def test_the_source_input_reaches_edit_targets_and_no_generated_image(source_model):
    import copy

    from hydra_x.unified.inputs import VisualInputs
    from hydra_x.unified.packing import pack
    from hydra_x.unified.sequence import VisualSpec, generation_sample

    tok = source_model.text_tokenizer
    batch = pack([generation_sample(tok, VisualSpec.image(6), "a red circle")], 256, tok.pad_token_id)
    z = torch.randn(64, 1, 2, 3, generator=torch.Generator().manual_seed(0))
    noise = torch.randn(64, 1, 2, 3, generator=torch.Generator().manual_seed(1))
    deaf = copy.deepcopy(source_model)
    deaf.flow_head.source_proj.weight.data.zero_()
    visuals = VisualInputs(z=[z], t=torch.tensor([0.5]), noise=[noise])
    with torch.no_grad():
        a, b = source_model(batch, visuals).velocity, deaf(batch, visuals).velocity
    torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.fixture(scope="module", params=["velocity", "x"])
def copy_model(request) -> HydraX:
    # its flow head at its zero start, predicting the velocity or the clean latent
    return HydraX.from_preset("tiny", seed=0, edit_copy_prior=True, flow_prediction=request.param).eval()


@pytest.mark.parametrize("guidance", [1.0, 3.0])
def test_the_copy_prior_makes_an_untrained_head_copy_the_source_exactly(copy_model, guidance):
    x = torch.rand(2, 3, 32, 48, generator=torch.Generator().manual_seed(0)) * 2 - 1
    z_src = copy_model.encode(x)
    edited = edit_latents(copy_model, list(x), ["make the red circle blue", "remove it"], steps=6, guidance=guidance)
    torch.testing.assert_close(edited, z_src, rtol=1e-4, atol=1e-4)
    plain = HydraX.from_preset("tiny", seed=0).eval()  # the same weights without the prior: noise comes back
    assert (edit_latents(plain, list(x), ["make it blue", "remove it"], steps=6) - z_src).abs().mean() > 0.3


def test_the_copy_prior_joins_edit_targets_alone_and_its_flow_loss_is_what_the_edit_changes(copy_model):
    """Training forward: a target equal to its source costs nothing at the zero start; a changed token costs what
    the copy gets wrong there; a generated image in the same batch gets the plain model's velocity."""
    from hydra_x.unified.inputs import VisualInputs
    from hydra_x.unified.packing import pack
    from hydra_x.unified.sampling import edit_rows, visual_spec
    from hydra_x.unified.sequence import VisualSpec, generation_sample

    g = torch.Generator().manual_seed(0)
    z_src, noise, z_img, noise_img = (torch.randn(64, 1, 2, 3, generator=g) for _ in range(4))
    spec, _ = visual_spec(copy_model, "image", 32, 48, None)
    tok = copy_model.text_tokenizer
    image = generation_sample(tok, VisualSpec.image(6), "a red circle")
    rows = [*edit_rows(copy_model, ["make the red circle blue"], spec), image]
    batch = pack(rows, 512, tok.pad_token_id)
    t = torch.tensor([0.6, 0.3])

    def forward(target):
        visuals = VisualInputs(z=[z_src, target, z_img], t=t, noise=[noise, noise_img], pairs=[(0, 1)])
        with torch.no_grad():
            return copy_model(batch, visuals)

    assert [p.role for p in batch.placements] == ["understand", "generate", "generate"]
    same = forward(z_src)
    torch.testing.assert_close(same.velocity[:6], (noise - z_src).flatten(1).T, rtol=1e-5, atol=1e-5)
    # the image: the zero head's own output, a zero velocity or the velocity of a zero clean latent
    plain = torch.zeros(6, 64)
    if copy_model.config.flow_prediction == "x":
        plain = ((1 - t[1]) * z_img + t[1] * noise_img).flatten(1).T / t[1]
    torch.testing.assert_close(same.velocity[6:], plain, rtol=1e-5, atol=1e-5)
    image_loss = float((plain - (noise_img - z_img).flatten(1).T).square().sum())
    assert same.flow_loss_sum == pytest.approx(image_loss, rel=1e-5)
    changed = z_src.clone()
    changed[:, 0, 0, 0] += 1.0  # the first token
    error = forward(changed).flow_loss_sum - same.flow_loss_sum
    # the copy's velocity, (z_t - source) / t, misses the target's by the change / t on each of the 64 channels
    assert float(error) == pytest.approx(64 * (1 / 0.6) ** 2, rel=1e-4)


@pytest.mark.parametrize("t", [0.1, 0.5, 0.9])
def test_under_the_copy_prior_a_clean_latent_head_learns_the_change_and_a_velocity_head_the_change_over_t(t):
    from hydra_x.nn.flow import velocity_from_clean
    from hydra_x.unified.heads import copy_velocity

    g = torch.Generator().manual_seed(0)
    source, target, eps = (torch.randn(8, 4, generator=g) for _ in range(3))
    z_t, times = (1 - t) * target + t * eps, torch.full((8,), t)
    wanted = eps - target  # the path's velocity, what the flow loss compares with
    change = target - source
    by_velocity = -change / t + copy_velocity(z_t, source, times)
    by_clean = velocity_from_clean(z_t, times, change) + copy_velocity(z_t, source, times, "x")
    torch.testing.assert_close(by_velocity, wanted, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(by_clean, wanted, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("t", [0.01, 0.03, 0.5])
def test_under_the_copy_prior_a_clean_latent_head_gives_source_plus_output_below_the_clamp_too(t):
    # Below CLEAN_MIN_TIME both the clean-latent velocity and the copy velocity divide by the clamp, not t; only if
    # they clamp alike is the clean latent the velocity implies (z_t - t_c v) the source plus the head's output.
    from hydra_x.nn.flow import CLEAN_MIN_TIME, velocity_from_clean
    from hydra_x.unified.heads import copy_velocity

    g = torch.Generator().manual_seed(1)
    source, output, z_t = (torch.randn(8, 4, generator=g) for _ in range(3))
    times = torch.full((8,), t)
    v = velocity_from_clean(z_t, times, output) + copy_velocity(z_t, source, times, "x")
    torch.testing.assert_close(z_t - max(t, CLEAN_MIN_TIME) * v, source + output, rtol=1e-5, atol=1e-5)
