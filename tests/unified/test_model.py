"""HydraX, the unified model, on the tiny preset: what each loss sees, sampling with and without the KV cache,
text decoding, save / load, and the errors a caller can hit."""

from __future__ import annotations

import pytest
import torch

from hydra_x.errors import InputError
from hydra_x.unified.inputs import VisualInputs
from hydra_x.unified.model import HydraX, rows_of_one_stack
from hydra_x.unified.packing import pack
from hydra_x.unified.sampling import generate_latents
from hydra_x.unified.sequence import VisualSpec, generation_sample, understanding_sample


@pytest.fixture(scope="module")
def model() -> HydraX:
    m = HydraX.from_preset("tiny", seed=0).eval()
    with torch.no_grad():  # a non-zero head (it starts at zero), so that sampling has something to follow
        for p in m.flow_head.parameters():
            p.normal_(0, 0.05)
    return m


def image(seed: int, size: int = 32) -> torch.Tensor:
    return torch.rand(3, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def batch_of(model, answer="red", caption="a red circle", size=32):
    tok, x = model.text_tokenizer, image(0, size)
    spec = VisualSpec.image((size // 16) ** 2)
    samples = [
        understanding_sample(tok, spec, "What colour is the circle?", answer),
        generation_sample(tok, spec, caption),
    ]
    z = model.encode(x[None])[0]
    noise = torch.randn(z.shape, generator=torch.Generator().manual_seed(1))
    return pack(samples, 256, tok.pad_token_id), VisualInputs(z=[z, z], t=torch.tensor([0.4]), noise=[noise]), z, noise


def test_the_flow_loss_is_the_squared_error_to_the_path_velocity(model):
    packed, visuals, z, noise = batch_of(model)
    out = model(packed, visuals)
    assert out.flow_elements == z.numel()
    target = (noise - z).flatten(1).T  # (tokens, C): eps - z0, step-major, row-major tokens
    torch.testing.assert_close(out.flow_loss_sum, (out.velocity - target).square().sum())
    # The velocity depends on the noisy latent of its own block: another t changes it.
    other = model(packed, VisualInputs(z=visuals.z, t=torch.tensor([0.9]), noise=visuals.noise))
    assert not torch.allclose(other.velocity, out.velocity)


def test_the_text_loss_covers_the_answer_and_the_markers_around_a_generated_image(model):
    packed, visuals, _, _ = batch_of(model)
    base = model(packed, visuals)
    changed, _, _, _ = batch_of(model, answer="blue")  # another answer: another text loss
    assert model(changed, visuals).text_loss_sum != base.text_loss_sum
    tok = model.text_tokenizer
    gen = generation_sample(tok, VisualSpec.image(4), "a red circle")
    predicted = [tok.convert_ids_to_tokens(int(i)) for i in gen.targets[gen.targets >= 0]]
    assert predicted == ["<|begin_of_image|>", "<|im_end|>"]  # when to open an image and to end the turn
    answer = understanding_sample(tok, VisualSpec.image(4), "What colour is the circle?", "red")
    assert tok.decode(answer.targets[answer.targets >= 0]) == "red<|im_end|>"
    assert base.text_tokens == len(predicted) + int((answer.targets >= 0).sum())


@pytest.mark.parametrize("guidance", [1.0, 3.0])
def test_kv_cached_sampling_equals_the_uncached_loop(model, guidance):
    kwargs = dict(height=32, width=48, steps=3, guidance=guidance, seed=2)
    cached = generate_latents(model, ["a red circle", "two blue squares"], use_cache=True, **kwargs)
    plain = generate_latents(model, ["a red circle", "two blue squares"], use_cache=False, **kwargs)
    assert cached.shape == (2, 64, 1, 2, 3)
    torch.testing.assert_close(cached, plain, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(cached[0], cached[1])  # each prompt conditions its own image


def test_video_sampling_is_cached_exactly_too(model):
    kwargs = dict(height=32, width=32, frames=5, steps=2, seed=0)
    cached = generate_latents(model, ["a red circle moving left"], "video", use_cache=True, **kwargs)
    plain = generate_latents(model, ["a red circle moving left"], "video", use_cache=False, **kwargs)
    assert cached.shape == (1, 64, 2, 2, 2)
    torch.testing.assert_close(cached, plain, rtol=1e-5, atol=1e-5)


def test_sampling_from_a_later_start_keeps_what_its_init_latents_leave_unnoised(model):
    """Begun from given latents noised to ``start`` (SDEdit's strength): near 0 the model gets them back; the
    closer to 1, the more it draws of its own; at 1 they are ignored, as in plain sampling."""
    kwargs = dict(height=32, width=32, steps=4, guidance=3.0, seed=3)
    init = model.encode(torch.stack([image(5), image(6)]))
    prompts = ["a red circle", "a blue square"]
    near = generate_latents(model, prompts, init=init, start=0.01, **kwargs)
    far = generate_latents(model, prompts, init=init, start=0.9, **kwargs)
    error = lambda z: (z - init).square().mean().item()  # noqa: E731
    assert error(near) < 1e-3 < error(far)
    torch.testing.assert_close(
        generate_latents(model, prompts, init=init, **kwargs), generate_latents(model, prompts, **kwargs)
    )


@pytest.mark.parametrize("top_p", [None, 0.9])
def test_cached_and_uncached_text_decoding_agree(model, top_p):
    x = image(3)
    fast = model.chat("What colour is it?", image=x, max_new_tokens=6, top_p=top_p, seed=5)
    slow = model.chat("What colour is it?", image=x, max_new_tokens=6, top_p=top_p, seed=5, use_cache=False)
    assert fast == slow and len(fast) > 0
    assert model.chat("What colour is it?", image=image(4), max_new_tokens=6) != fast or top_p is not None


def test_save_and_load_give_the_same_model(model, tmp_path):
    folder = model.save_pretrained(tmp_path / "hydra")
    assert {p.name for p in folder.iterdir()} >= {"config.json", "heads.safetensors", "tokenizer", "llm"}
    loaded = HydraX.from_pretrained(folder)
    packed, visuals, _, _ = batch_of(model)
    a, b = model(packed, visuals), loaded(packed, visuals)
    torch.testing.assert_close(a.velocity, b.velocity, rtol=0, atol=0)
    torch.testing.assert_close(a.text_loss_sum, b.text_loss_sum, rtol=0, atol=0)
    (folder / "config.json").write_text('{"model_type": "something-else"}')
    with pytest.raises(ValueError, match="not a HydraX checkpoint"):
        HydraX.from_pretrained(folder)


def test_bad_inputs_are_named(model):
    with pytest.raises(InputError, match="multiples of the patch size 16"):
        model.generate_image("a red circle", height=40, width=32)
    with pytest.raises(InputError, match="1 \\+ k \\* 4 frames"):
        model.generate_video("a red circle", frames=6, height=32, width=32)
    with pytest.raises(InputError, match="an image is \\(3, H, W\\)"):
        model.chat("What is it?", image=torch.zeros(3, 5, 32, 32))
    with pytest.raises(InputError, match="a video is \\(3, F, H, W\\)"):
        model.chat("What is it?", video=image(0))
    with pytest.raises(InputError, match="longer|more than the LLM's context"):
        model.generate_image("red " * 3000, height=32, width=32, steps=1)
    image_only = HydraX.from_preset("tiny", seed=0, video=False)
    with pytest.raises(InputError, match="image-only"):
        image_only.generate_video("a red circle", frames=5, height=32, width=32)
    with pytest.raises(InputError, match="image-only"):
        image_only.chat("Which way?", video=torch.zeros(3, 5, 32, 32))


def test_a_training_forward_builds_no_kv_cache_so_all_llm_layers_share_one_compiled_graph(model):
    from torch._dynamo.testing import CompileCounter

    packed, visuals, _, _ = batch_of(model)
    layers = model.llm.get_decoder().layers
    assert len(layers) > 1
    eager = model(packed, visuals).velocity
    counter = CompileCounter()
    torch.compiler.reset()
    try:
        for layer in layers:
            layer.compile(backend=counter, dynamic=False)
        torch.testing.assert_close(model(packed, visuals).velocity, eager)
        # One graph for every layer: a cache slot per layer would guard each layer into a graph of its own.
        assert counter.frame_count == 1
    finally:
        for layer in layers:
            layer._compiled_call_impl = None
        torch.compiler.reset()


def test_noised_blocks_equal_the_per_block_reference_in_generation_order():
    """Blocks of three latent shapes interleaved, one clean block among them: each generated block's z_t, and its
    rows (z_t, noise - z0, t) in generation order, as computed block by block."""
    from hydra_x.unified.model import noised

    g = torch.Generator().manual_seed(0)
    shapes = [(4, 1, 2, 2), (4, 2, 2, 2), (4, 1, 2, 2), (4, 1, 3, 2), (4, 2, 2, 2)]
    z0 = [torch.randn(s, generator=g) for s in shapes]
    gen = [0, 1, 3, 4]  # block 2 is clean (a source)
    noise = [torch.randn(shapes[i], generator=g) for i in gen]
    times = {i: torch.rand((), generator=g) for i in gen}
    got = noised(z0, gen, noise, times, torch.device("cpu"))
    rows = lambda zs: torch.cat([z.flatten(1).T for z in zs])  # noqa: E731
    z_t = [(1 - times[i]) * z0[i] + times[i] * eps for i, eps in zip(gen, noise)]
    assert sorted(got.latents) == gen
    for i, z in zip(gen, z_t):
        torch.testing.assert_close(got.latents[i], z)
    torch.testing.assert_close(got.z_t, rows(z_t))
    torch.testing.assert_close(got.target, rows(noise) - rows([z0[i] for i in gen]))
    torch.testing.assert_close(got.t, torch.cat([times[i].expand(z0[i][0].numel()) for i in gen]))


def test_rows_of_one_stack_are_found_and_anything_else_is_not():
    stack = torch.rand(5, 3, 8, 8)
    rows = stack.unbind()
    assert rows_of_one_stack(list(rows)) == [0, 1, 2, 3, 4]
    assert rows_of_one_stack([rows[3], rows[0], rows[3]]) == [3, 0, 3]
    assert rows_of_one_stack([torch.rand(3, 8, 8), torch.rand(3, 8, 8)]) is None  # tensors of their own
    assert rows_of_one_stack([rows[0], torch.rand(5, 3, 8, 8)[1]]) is None  # rows of two stacks
    assert rows_of_one_stack([x[:, :4] for x in rows]) is None  # parts of rows
    shifted = stack.flatten()[7 : 7 + 3 * 64].view(3, 8, 8)  # a row's size, not at a row's start
    assert rows_of_one_stack([shifted]) is None
    assert rows_of_one_stack([stack.transpose(0, 1)[0]]) is None  # views, but not of rows


def test_pictures_that_are_rows_of_a_stack_encode_as_pictures_of_their_own_do(model):
    # A step from a data worker holds its pictures as rows of one stack per shape: copied to the device whole.
    images, clips = torch.rand(4, 3, 32, 32) * 2 - 1, torch.rand(2, 3, 5, 32, 32) * 2 - 1
    rows = [images[2], clips[1], images[0], images[2], clips[0]]
    latents = model.encode_each(rows)
    alone = model.encode_each([x.clone() for x in rows])
    assert [z.shape for z in latents] == [z.shape for z in alone]
    assert all(torch.equal(a, b) for a, b in zip(latents, alone))
    assert model._to_device_stacked(list(images.unbind())) is images  # whole and in order: the stack, not a gather
