"""attention="flex": the LLM trains with FlexAttention and a BlockMask of the same rule as the dense mask; inference
switches it to SDPA (its KV-cached query masks are dense). FlexAttention has no CPU backward, so the CPU checks
the forward pass."""

from __future__ import annotations

import warnings

import pytest
import torch

from hydra_x.unified.inputs import VisualInputs
from hydra_x.unified.model import HydraX
from hydra_x.unified.packing import pack
from hydra_x.unified.sampling import generate_latents
from hydra_x.unified.sequence import VisualSpec, generation_sample, understanding_sample


@pytest.fixture(scope="module")
def models():
    sdpa = HydraX.from_preset("tiny", seed=0).eval()
    flex = HydraX.from_preset("tiny", seed=0, attention="flex").eval()
    with torch.no_grad():
        for a, b in zip(sdpa.flow_head.parameters(), flex.flow_head.parameters()):
            a.normal_(0, 0.05)
            b.copy_(a)
    return sdpa, flex


def test_the_flex_forward_equals_the_dense_mask_forward(models, monkeypatch):
    sdpa, flex = models
    import hydra_x.unified.flex as flex_module

    calls = []
    eager = flex_module.flex_attention
    monkeypatch.setattr(flex_module, "flex_attention", lambda *a, **k: calls.append(k["block_mask"]) or eager(*a, **k))
    assert flex.llm.config._attn_implementation == "hydra_flex"
    tok = sdpa.text_tokenizer
    z = sdpa.encode(torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1)[0]
    spec = VisualSpec.image(4)
    samples = [understanding_sample(tok, spec, "What colour?", "red"), generation_sample(tok, spec, "a red circle")]
    batch = pack(samples, 128, tok.pad_token_id)
    visuals = VisualInputs(z=[z, z], t=torch.tensor([0.5]), noise=[torch.randn(z.shape)])
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # flex_attention without torch.compile on the CPU
        a, b = sdpa(batch, visuals), flex(batch, visuals)
    torch.testing.assert_close(b.text_loss_sum, a.text_loss_sum, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(b.velocity, a.velocity, rtol=1e-5, atol=1e-5)
    assert len(calls) == flex.llm.config.num_hidden_layers  # every layer ran FlexAttention with the BlockMask


def test_the_counted_first_step_runs_under_flopcountermode(models):
    # The engine counts the FLOPs of the first CUDA step under FlopCounterMode, where FlexAttention itself fails
    # ("no implementation found for 'torch.ops.higher_order.flex_attention'", eager or compiled): the flex model
    # then takes SDPA with the same rule, and gives the dense mask's forward.
    from torch.utils.flop_counter import FlopCounterMode

    sdpa, flex = models
    tok = sdpa.text_tokenizer
    z = sdpa.encode(torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(2)) * 2 - 1)[0]
    spec = VisualSpec.image(4)
    samples = [generation_sample(tok, spec, "a blue square"), understanding_sample(tok, spec, "Count?", "one")]
    batch = pack(samples, 128, tok.pad_token_id)
    visuals = VisualInputs(z=[z, z], t=torch.tensor([0.3]), noise=[torch.randn(z.shape)])
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with FlopCounterMode(display=False) as counter:
            b = flex(batch, visuals)
        a = sdpa(batch, visuals)
    assert counter.get_total_flops() > 0
    torch.testing.assert_close(b.text_loss_sum, a.text_loss_sum, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(b.velocity, a.velocity, rtol=1e-5, atol=1e-5)


@pytest.mark.gpu
def test_the_counted_first_step_keeps_to_the_memory_efficient_kernel():
    # With enable_gqa and a mask SDPA has no memory-efficient kernel (torch 2.11) and falls back to the math one,
    # which stores every layer's (B, H, L, L) weights: the first step of a 128-example `small` run ran out of memory.
    # Only the memory-efficient kernel is allowed here, so that fallback would raise "No available kernel".
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    flex = HydraX.from_preset("tiny", seed=0, attention="flex").cuda()
    assert flex.llm.config.num_attention_heads != flex.llm.config.num_key_value_heads  # grouped-query attention
    tok = flex.text_tokenizer
    z = flex.encode(torch.rand(1, 3, 32, 32, device="cuda") * 2 - 1)[0]
    spec = VisualSpec.image(4)
    samples = [generation_sample(tok, spec, "a blue square"), understanding_sample(tok, spec, "Count?", "one")]
    batch = pack(samples, 128, tok.pad_token_id)
    visuals = VisualInputs(z=[z, z], t=torch.tensor([0.3]), noise=[torch.randn(z.shape, device="cuda")])
    with sdpa_kernel([SDPBackend.EFFICIENT_ATTENTION]), FlopCounterMode(display=False) as counter:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out = flex(batch, visuals)
        (out.text_loss_sum + out.flow_loss_sum).backward()
    assert counter.get_total_flops() > 0
    assert all(p.grad is not None for p in flex.llm.get_decoder().layers[0].parameters())


def test_inference_runs_sdpa_and_gives_the_same_samples(models):
    sdpa, flex = models
    kwargs = dict(height=32, width=32, steps=2, seed=3)
    torch.testing.assert_close(
        generate_latents(flex, ["a red circle"], **kwargs), generate_latents(sdpa, ["a red circle"], **kwargs)
    )
    assert flex.llm.config._attn_implementation == "hydra_flex"  # restored after sampling
    image = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1
    assert flex.chat("What colour?", image=image, max_new_tokens=4) == sdpa.chat(
        "What colour?", image=image, max_new_tokens=4
    )
