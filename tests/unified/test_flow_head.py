"""The flow head's options. ``flow_prediction``: a velocity head, or a clean-latent head whose output is turned into
the velocity (the same loss, the same sampler; only what the last layer means differs). ``head_attention_layers``:
self-attention among the tokens of each generated block, and of no other, in training and sampling alike;
``head_attention_input``: whether those layers read the noisy latents or the LLM's hidden states."""

from __future__ import annotations

import pytest
import torch

from hydra_x.nn.flow import clean_estimate
from hydra_x.unified.config import unified_config
from hydra_x.unified.heads import FlowHead
from hydra_x.unified.inputs import VisualInputs
from hydra_x.unified.model import HydraX
from hydra_x.unified.packing import pack
from hydra_x.unified.sampling import generate_latents
from hydra_x.unified.sequence import VisualSpec, generation_sample


def heads(seed: int = 0) -> tuple[FlowHead, FlowHead]:
    """A velocity head and a clean-latent head with the same, non-zero weights."""
    velocity, clean = FlowHead(32, 8, 16, 2, 16, "velocity"), FlowHead(32, 8, 16, 2, 16, "x")
    with torch.no_grad(), torch.random.fork_rng():
        torch.manual_seed(seed)
        for p in velocity.parameters():
            p.normal_(0, 0.3)
    clean.load_state_dict(velocity.state_dict())
    return velocity, clean


def test_a_clean_head_returns_the_velocity_of_its_clean_estimate():
    velocity, clean = heads()
    g = torch.Generator().manual_seed(1)
    hidden, z_t = torch.randn(64, 32, generator=g), torch.randn(64, 8, generator=g)
    t = torch.linspace(0.0, 1.0, 64)
    raw = velocity(hidden, z_t, t)  # the last layer's output: read as a velocity by one head, as x by the other
    v = clean(hidden, z_t, t)
    above = t >= 0.05
    # Where t >= 0.05 the sampler's clean estimate z_t - t v is exactly the head's output ...
    torch.testing.assert_close(clean_estimate(z_t[above], t[above], v[above]), raw[above])
    # ... and below it the velocity divides by 0.05 (JiT's clamp), not by t, so it stays finite at t = 0.
    torch.testing.assert_close(v[~above], (z_t[~above] - raw[~above]) / 0.05)
    assert torch.isfinite(v).all()


def test_a_new_clean_head_predicts_the_mean_latent_and_a_velocity_head_no_motion():
    """adaLN-Zero: the last layer starts at zero, which a velocity head reads as v = 0 and a clean head as x = 0 (the
    normalised latents' mean), i.e. v = z_t / t: at t = 1 the noise itself."""
    velocity, clean = FlowHead(32, 8, 16, 2, 16, "velocity"), FlowHead(32, 8, 16, 2, 16, "x")
    for head in (velocity, clean):
        head.init_zero()
    hidden, z_t, t = torch.randn(4, 32), torch.randn(4, 8), torch.tensor([1.0, 0.5, 0.25, 1.0])
    assert velocity(hidden, z_t, t).abs().max() == 0
    torch.testing.assert_close(clean(hidden, z_t, t), z_t / t[:, None])


def test_the_choice_is_checked_and_travels_with_a_checkpoint(tmp_path):
    with pytest.raises(ValueError, match="flow_prediction must be one of"):
        unified_config("tiny", flow_prediction="epsilon")
    with pytest.raises(ValueError, match="predicts one of"):
        FlowHead(32, 8, 16, 2, 16, "noise")
    model = HydraX.from_preset("tiny", seed=0, flow_prediction="x").eval()
    with torch.no_grad():
        for p in model.flow_head.parameters():
            p.normal_(0, 0.05)
    loaded = HydraX.from_pretrained(model.save_pretrained(tmp_path / "x"))
    assert loaded.flow_head.prediction == "x"
    a = generate_latents(model, ["a red circle"], height=32, width=32, steps=3, guidance=2.0)
    b = generate_latents(loaded, ["a red circle"], height=32, width=32, steps=3, guidance=2.0)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    # The other reading of the same weights samples something else: the flag is what the checkpoint restores.
    loaded.flow_head.prediction = "velocity"
    c = generate_latents(loaded, ["a red circle"], height=32, width=32, steps=3, guidance=2.0)
    assert (a - c).abs().max() > 1e-3


def attention_head(layers: int = 2, step_attention: str = "full", seed: int = 0, reads: str = "latent") -> FlowHead:
    head = FlowHead(32, 8, 128, 2, 16, attention_layers=layers, step_attention=step_attention, attention_input=reads)
    with torch.no_grad(), torch.random.fork_rng():
        torch.manual_seed(seed)
        for p in head.parameters():
            p.normal_(0, 0.1)
    return head


def inputs(tokens: int, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(tokens, 32, generator=g), torch.randn(tokens, 8, generator=g), torch.rand(tokens, generator=g)


def test_attention_mixes_the_tokens_of_a_block_and_of_no_other_block():
    grids = [(1, 2, 3), (1, 3, 2), (1, 2, 3)]  # blocks 0 and 2 share a grid, so they run as one batch
    hidden, z_t, t = inputs(18)
    head = attention_head()
    base = head(hidden, z_t, t, grids)
    poked = z_t.clone()
    poked[1] += 2.0  # a token of block 0
    moved = (head(hidden, poked, t, grids) - base).abs().amax(dim=-1)
    assert (moved[:6] > 1e-4).all()  # every token of block 0 sees it
    assert moved[6:].max() == 0  # blocks 1 and 2 do not, block 2 though batched with block 0
    # Batched by grid or run alone, each block gets the same velocities: the grouping scatters back in order.
    alone = torch.cat(
        [head(hidden[a:b], z_t[a:b], t[a:b], [g]) for (a, b), g in zip([(0, 6), (6, 12), (12, 18)], grids)]
    )
    torch.testing.assert_close(base, alone, rtol=1e-5, atol=1e-5)
    # Without attention layers a token's velocity depends on that token alone.
    plain = FlowHead(32, 8, 128, 2, 16)
    moved = (plain(hidden, poked, t) - plain(hidden, z_t, t)).abs().amax(dim=-1)
    assert moved[1] > 0 and moved[torch.arange(18) != 1].max() == 0


def test_an_attention_head_that_reads_the_condition_mixes_hidden_states_and_not_latents():
    """``attention_input="condition"``: the layers mix the LLM's hidden states within each block; each noisy latent
    joins its own token only, after them."""
    grids = [(1, 2, 3), (1, 2, 3)]
    hidden, z_t, t = inputs(12)
    head = attention_head(reads="condition")
    base = head(hidden, z_t, t, grids)
    poked_z, poked_hidden = z_t.clone(), hidden.clone()
    poked_z[1] += 2.0
    poked_hidden[1] += 2.0
    by_latent = (head(hidden, poked_z, t, grids) - base).abs().amax(dim=-1)
    assert by_latent[1] > 1e-4 and by_latent[torch.arange(12) != 1].max() == 0
    by_hidden = (head(poked_hidden, z_t, t, grids) - base).abs().amax(dim=-1)
    assert (by_hidden[:6] > 1e-4).all() and by_hidden[6:].max() == 0
    # The same weights reading the latents mix the latents instead: the switch is what decides.
    head.attention_input = "latent"
    assert ((head(hidden, poked_z, t, grids) - head(hidden, z_t, t, grids)).abs().amax(dim=-1)[:6] > 1e-4).all()


def test_attention_knows_where_each_token_sits():
    """Two tokens with equal inputs at different grid cells get different velocities (RoPE), as they would not
    in a per-token head."""
    hidden, z_t, t = inputs(4)
    hidden[3], z_t[3], t[3] = hidden[0], z_t[0], t[0]
    v = attention_head()(hidden, z_t, t, [(1, 2, 2)])
    assert (v[0] - v[3]).abs().max() > 1e-4


@pytest.mark.parametrize("mode", ["full", "causal"])
def test_across_latent_steps_attention_is_full_or_causal_as_the_video_attention(mode):
    hidden, z_t, t = inputs(8)
    head = attention_head(step_attention=mode)
    poked = z_t.clone()
    poked[6] += 2.0  # a token of the second latent step of a (2, 2, 2) clip
    moved = (head(hidden, poked, t, [(2, 2, 2)]) - head(hidden, z_t, t, [(2, 2, 2)])).abs().amax(dim=-1)
    assert (moved[4:] > 1e-4).all()
    if mode == "causal":
        assert moved[:4].max() == 0  # the first step does not see the second
    else:
        assert (moved[:4] > 1e-4).all()


@pytest.mark.parametrize("reads", ["latent", "condition"])
def test_a_new_attention_head_starts_as_the_per_token_head(reads):
    """adaLN-Zero: the attention layers' gates start at zero, so adding them changes nothing until they learn."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        plain = FlowHead(32, 8, 128, 2, 16)
        torch.manual_seed(1)
        with_attention = FlowHead(32, 8, 128, 2, 16, attention_layers=2, attention_input=reads)
    with_attention.init_zero()
    with torch.no_grad():
        for p in plain.parameters():
            p.normal_(0, 0.1)
        for name, p in plain.named_parameters():
            with_attention.get_parameter(name).copy_(p)
    hidden, z_t, t = inputs(6)
    torch.testing.assert_close(with_attention(hidden, z_t, t, [(1, 2, 3)]), plain(hidden, z_t, t))


def test_attention_heads_check_their_grids_and_settings():
    hidden, z_t, t = inputs(6)
    with pytest.raises(ValueError, match="needs the grid of each visual block"):
        attention_head()(hidden, z_t, t)
    with pytest.raises(ValueError, match="hold 4 tokens, not 6"):
        attention_head()(hidden, z_t, t, [(1, 2, 2)])
    with pytest.raises(ValueError, match="'full' or 'causal'"):
        FlowHead(32, 8, 128, 2, 16, attention_layers=1, step_attention="tubelet")
    with pytest.raises(ValueError, match="head_attention_layers must be >= 0"):
        unified_config("tiny", head_attention_layers=-1)
    with pytest.raises(ValueError, match="attention reads one of"):
        FlowHead(32, 8, 128, 2, 16, attention_layers=1, attention_input="pixels")
    with pytest.raises(ValueError, match="head_attention_input must be one of"):
        unified_config("tiny", head_attention_input="pixels")


@pytest.fixture(scope="module", params=["latent", "condition"])
def attention_model(request) -> HydraX:
    m = HydraX.from_preset("tiny", seed=0, head_attention_layers=1, head_attention_input=request.param).eval()
    with torch.no_grad():  # a non-zero head (its gates start at zero)
        for p in m.flow_head.parameters():
            p.normal_(0, 0.05)
    return m


@pytest.mark.parametrize("kind", ["image", "video"])
def test_sampling_with_an_attention_head_is_cached_exactly(attention_model, kind):
    kwargs = dict(height=32, width=48, steps=3, guidance=3.0, seed=4, frames=5 if kind == "video" else None)
    prompts = ["a red circle", "two blue squares"]
    cached = generate_latents(attention_model, prompts, kind, use_cache=True, **kwargs)
    plain = generate_latents(attention_model, prompts, kind, use_cache=False, **kwargs)
    torch.testing.assert_close(cached, plain, rtol=1e-5, atol=1e-5)


def test_one_sampling_step_is_the_training_forwards_clean_estimate(attention_model):
    """The sampler's one Euler step from ``start`` t straight to 0 returns z_t - t v, with v the velocity the training
    forward computes for the same caption, latent, noise and t: sampling gives the head the grids training does."""
    model = attention_model
    z = torch.randn(1, model.config.latent_channels, 1, 2, 3, generator=torch.Generator().manual_seed(7))
    sampled = generate_latents(
        model, ["a red circle"], height=32, width=48, steps=1, guidance=1.0, seed=5, init=z, start=0.7
    )
    noise = torch.randn(z.shape, generator=torch.Generator().manual_seed(5))  # the sampler's draw for seed 5
    tok = model.text_tokenizer
    batch = pack([generation_sample(tok, VisualSpec.image(6), "a red circle")], 256, tok.pad_token_id)
    with torch.no_grad():
        v = model(batch, VisualInputs(z=[z[0]], t=torch.tensor([0.7]), noise=[noise[0]])).velocity  # (tokens, C)
    z_t = 0.3 * z + 0.7 * noise
    torch.testing.assert_close(sampled, z_t - 0.7 * v.T.reshape(z.shape), rtol=1e-4, atol=1e-4)


def test_what_the_attention_reads_travels_with_a_checkpoint(attention_model, tmp_path):
    loaded = HydraX.from_pretrained(attention_model.save_pretrained(tmp_path / "m"))
    assert loaded.flow_head.attention_input == attention_model.flow_head.attention_input
    a = generate_latents(attention_model, ["a red circle"], height=32, width=32, steps=2, guidance=2.0)
    b = generate_latents(loaded, ["a red circle"], height=32, width=32, steps=2, guidance=2.0)
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_a_trained_per_token_head_grows_attention_without_changing_its_outputs(tmp_path):
    model = HydraX.from_preset("tiny", seed=0).eval()
    with torch.no_grad():
        for p in model.flow_head.parameters():
            p.normal_(0, 0.05)
    prompts = ["a red circle", "two blue squares"]
    kwargs = dict(height=32, width=32, steps=3, guidance=3.0, seed=2)
    before = generate_latents(model, prompts, **kwargs)
    model.grow_head_attention(2)
    assert len(model.flow_head.attention) == 2 and model.config.head_attention_layers == 2
    torch.testing.assert_close(generate_latents(model, prompts, **kwargs), before, rtol=0, atol=0)
    # The new layers are real: once their gates open, the samples change; and the checkpoint keeps them.
    with torch.no_grad():
        model.flow_head.attention[0].modulation[-1].weight.normal_(0, 0.05)
    opened = generate_latents(model, prompts, **kwargs)
    assert (opened - before).abs().max() > 1e-3
    loaded = HydraX.from_pretrained(model.save_pretrained(tmp_path / "grown"))
    torch.testing.assert_close(generate_latents(loaded, prompts, **kwargs), opened, rtol=0, atol=0)
    with pytest.raises(ValueError, match="cannot shrink to 1"):
        model.grow_head_attention(1)


def test_a_source_input_starts_silent_reads_each_tokens_own_source_and_is_refused_without_the_switch():
    head = FlowHead(32, 8, 16, 2, 16, source_input=True)
    with torch.no_grad(), torch.random.fork_rng():
        torch.manual_seed(0)
        for p in head.parameters():
            p.normal_(0, 0.3)
    head.source_proj.weight.data.zero_()  # as init_zero leaves it
    g = torch.Generator().manual_seed(1)
    hidden, z_t, source = (
        torch.randn(6, 32, generator=g),
        torch.randn(6, 8, generator=g),
        torch.randn(6, 8, generator=g),
    )
    t = torch.full((6,), 0.6)
    plain = head(hidden, z_t, t)
    torch.testing.assert_close(head(hidden, z_t, t, source=source), plain, rtol=0, atol=0)  # silent at the start
    with torch.no_grad():
        head.source_proj.weight.normal_(0, 0.3)
    torch.testing.assert_close(head(hidden, z_t, t, source=torch.zeros_like(source)), plain, rtol=0, atol=0)
    read = head(hidden, z_t, t, source=source)
    moved = source.clone()
    moved[2] += 1.0
    changed = (head(hidden, z_t, t, source=moved) - read).abs().amax(dim=1) > 0
    assert changed.tolist() == [False, False, True, False, False, False]  # a token reads its own source alone
    with pytest.raises(ValueError, match="no source input"):
        FlowHead(32, 8, 16, 2, 16)(hidden, z_t, t, source=source)
