import pytest
import torch

from hydra_x.nn.attention import (
    flex_attention,
    masked_attention,
    per_step_attention,
    spatiotemporal_attention,
    step_mask,
    tubelet_attention,
)


def qkv(steps: int, n: int = 6, b: int = 2, h: int = 3, d: int = 8, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(b, h, steps * n, d, generator=g, dtype=torch.float64, requires_grad=True) for _ in range(3)]


def test_step_masks_have_the_documented_structure():
    steps, n = 4, 2
    by_step = {mode: step_mask(steps, n, mode, "cpu")[::n, ::n] for mode in ("causal", "tubelet", "none")}
    eye = torch.eye(steps, dtype=torch.bool)
    assert torch.equal(by_step["none"], eye)
    assert torch.equal(by_step["causal"], torch.ones(steps, steps, dtype=torch.bool).tril())
    assert torch.equal(
        by_step["tubelet"], torch.tensor([[0 <= i - j <= 1 for j in range(steps)] for i in range(steps)])
    )
    assert step_mask(steps, n, "full", "cpu") is None
    # Inside a step every mode is full.
    for mode in ("causal", "tubelet", "none"):
        assert step_mask(steps, n, mode, "cpu")[:n, :n].all()


def _grads(fn, tensors):
    out = fn(*tensors)
    weights = torch.randn(out.shape, generator=torch.Generator().manual_seed(1), dtype=out.dtype)
    grads = torch.autograd.grad((out * weights).sum(), tensors)
    return out.detach(), grads


@pytest.mark.parametrize(
    "fast_path, mode, steps",
    [(tubelet_attention, "tubelet", s) for s in (1, 2, 5)] + [(per_step_attention, "none", s) for s in (1, 3)],
)
def test_mask_free_paths_equal_the_masked_reference_forward_and_gradients(fast_path, mode, steps):
    tensors = qkv(steps)
    fast, fast_grads = _grads(lambda q, k, v: fast_path(q, k, v, steps), tensors)
    ref, ref_grads = _grads(lambda q, k, v: masked_attention(q, k, v, mode, steps), tensors)
    torch.testing.assert_close(fast, ref, rtol=1e-10, atol=1e-10)
    for a, b in zip(fast_grads, ref_grads):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("mode", ["causal", "tubelet", "none"])
def test_flex_equals_masked_reference(mode):
    steps = 3
    q, k, v = (t.detach().float() for t in qkv(steps, n=16))
    torch.testing.assert_close(flex_attention(q, k, v, mode, steps), masked_attention(q, k, v, mode, steps))


def test_modes_differ_where_the_masks_differ():
    steps = 4
    q, k, v = (t.detach() for t in qkv(steps))
    n = q.shape[2] // steps
    outs = {m: spatiotemporal_attention(q, k, v, m, steps) for m in ("full", "causal", "tubelet", "none")}
    # Step 0 sees only itself in every mode but full; step 1 sees steps 0-1 in causal and tubelet.
    torch.testing.assert_close(outs["causal"][:, :, : 2 * n], outs["tubelet"][:, :, : 2 * n])
    torch.testing.assert_close(outs["none"][:, :, :n], outs["tubelet"][:, :, :n])
    assert not torch.allclose(outs["causal"][:, :, 2 * n :], outs["tubelet"][:, :, 2 * n :])
    assert not torch.allclose(outs["full"][:, :, :n], outs["causal"][:, :, :n])


def test_unknown_mode_and_impl_are_errors():
    q, k, v = (t.detach() for t in qkv(2))
    with pytest.raises(ValueError, match="unknown attention mode 'diagonal'"):
        spatiotemporal_attention(q, k, v, "diagonal", 2)
    with pytest.raises(ValueError, match="unknown attention implementation 'fast'"):
        spatiotemporal_attention(q, k, v, "tubelet", 2, impl="fast")
