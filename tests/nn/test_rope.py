import torch

from hydra_x.nn.rope import apply_rope, axis_pairs, rope_table


def test_axis_pairs_cover_the_head_dimension():
    for head_dim in (6, 16, 24, 64, 72, 128):
        t, h, w = axis_pairs(head_dim)
        assert t + h + w == head_dim // 2 and h == w and t >= 1 and h >= 1
    assert axis_pairs(72) == (12, 12, 12)


def _scores(steps, height, width, scale=None, shift=(0, 0, 0)):
    """q.k after RoPE for one query/key pair placed at every position of a grid, shifted by ``shift``."""
    head_dim, heads = 24, 2
    table = rope_table(steps + 2, height + 2, width + 2, head_dim, 100.0, "cpu")
    cos, sin = table.cos_sin(scale)
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(2, 1, 1, heads, head_dim, generator=g, dtype=torch.float64)
    grid = torch.arange(table.base.shape[0]).view(steps + 2, height + 2, width + 2)
    i = grid[shift[0], shift[1], shift[2]]
    j = grid[shift[0] + steps, shift[1] + height, shift[2] + width]
    q_rot = apply_rope(q.expand(1, 1, heads, head_dim), cos[i : i + 1].double(), sin[i : i + 1].double())
    k_rot = apply_rope(k.expand(1, 1, heads, head_dim), cos[j : j + 1].double(), sin[j : j + 1].double())
    return (q_rot * k_rot).sum(-1)


def test_rope_scores_depend_only_on_relative_position():
    a = _scores(1, 1, 1, shift=(0, 0, 0))
    b = _scores(1, 1, 1, shift=(1, 1, 1))
    torch.testing.assert_close(a, b)
    c = _scores(1, 1, 0)
    assert not torch.allclose(a, c)


def test_zero_scale_switches_an_axis_off():
    heads = 2
    spatial_off = torch.ones(3, heads)
    spatial_off[1:] = 0
    # With h and w off, moving the key in space changes nothing; moving it in time still does.
    torch.testing.assert_close(_scores(0, 1, 1, scale=spatial_off), _scores(0, 0, 0, scale=spatial_off))
    assert not torch.allclose(_scores(1, 0, 0, scale=spatial_off), _scores(0, 0, 0, scale=spatial_off))


def test_rotation_preserves_norms():
    table = rope_table(3, 4, 5, 16, 10000.0, "cpu")
    cos, sin = table.cos_sin(None)
    x = torch.randn(2, 60, 4, 16, dtype=torch.float64)
    torch.testing.assert_close(apply_rope(x, cos.double(), sin.double()).norm(dim=-1), x.norm(dim=-1))


def test_a_layouts_table_is_kept_and_serves_a_backward_whatever_mode_made_it():
    with torch.inference_mode():  # sampling meets a layout first
        first = rope_table(2, 3, 5, 16, 321.0, "cpu")
    table = rope_table(2, 3, 5, 16, 321.0, torch.device("cpu"))
    assert table is first  # kept: no operators to build it again
    assert rope_table(2, 3, 5, 16, 123.0, "cpu") is not table  # another theta, another table
    scale = torch.ones(3, 2, requires_grad=True)  # learnt per-head scales, as a ViT's
    cos, sin = table.cos_sin(scale)
    (cos.sum() + sin.sum()).backward()  # an inference tensor could not be saved for it
    assert scale.grad is not None and scale.grad.abs().sum() > 0
