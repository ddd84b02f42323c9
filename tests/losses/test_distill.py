"""Cosine distances, token-grid alignment, distillation masks and the consistency term."""

import pytest
import torch

from hydra_x.losses.distill import (
    align_tokens,
    consistency_loss,
    cosine_distance,
    image_distill_loss,
    video_distill_loss,
)
from hydra_x.teachers import TeacherOutput
from tests.helpers import tiny


def test_cosine_distance_known_values():
    a = torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 4.0]])
    b = torch.tensor([[5.0, 0.0], [1.0, 0.0], [-3.0, -4.0]])
    # 1 - cos: 0 (same direction, any scale), 1 (orthogonal), 2 (opposite)
    torch.testing.assert_close(cosine_distance(a, b), torch.tensor(1.0))
    assert cosine_distance(a, 7 * a).abs() < 1e-6


@pytest.mark.parametrize(
    "shape,grid,target",
    [
        ((2, 4, 6, 8), None, (2, 3)),  # shrink
        ((2, 4, 6, 8), None, (7, 9)),  # grow
        ((2, 4, 6, 8), None, (3, 9)),  # mixed
        ((2, 6, 4, 3, 8), None, (3, 5, 2)),  # video: time shrinks, height grows, width shrinks
        ((2, 6, 12, 8), (4, 3), (3, 5, 2)),  # the same as flat tokens with their grid
    ],
)
def test_align_tokens_keeps_a_constant_field_constant(shape, grid, target):
    value = torch.randn(shape[-1])
    out = align_tokens(value.expand(shape), target, grid=grid)
    n = target[-2] * target[-1]
    assert out.shape == (2, *target[:-2], n, shape[-1])
    torch.testing.assert_close(out, value.expand(out.shape))


def test_align_tokens_pools_and_interpolates_as_by_hand():
    x = torch.arange(16.0).view(1, 4, 4, 1)  # (B, h, w, D)
    # 2 x 2 blocks of [[0, 1, 2, 3], [4, ...]]: means 2.5, 4.5, 10.5, 12.5
    torch.testing.assert_close(align_tokens(x, (2, 2)).flatten(), torch.tensor([2.5, 4.5, 10.5, 12.5]))
    # flat tokens and their grid give the same
    torch.testing.assert_close(align_tokens(x.flatten(1, 2), (2, 2), grid=(4, 4)), align_tokens(x, (2, 2)))
    # time 4 -> 2 averages frame pairs (a tubelet of 2)
    clip = torch.arange(4.0).view(1, 4, 1, 1, 1).expand(1, 4, 2, 2, 1)
    torch.testing.assert_close(align_tokens(clip, (2, 2, 2))[0, :, 0, 0], torch.tensor([0.5, 2.5]))
    # growing 2 -> 4 is linear between token centres (edges clamp): [0, 1] -> [0, 0.25, 0.75, 1]
    row = torch.tensor([0.0, 1.0]).view(1, 1, 2, 1)
    torch.testing.assert_close(align_tokens(row, (1, 4)).flatten(), torch.tensor([0.0, 0.25, 0.75, 1.0]))
    # equal grids: untouched
    y = torch.randn(2, 3, 5, 4)
    assert torch.equal(align_tokens(y, (3, 5)), y.flatten(1, 2))
    with pytest.raises(ValueError, match="grid"):
        align_tokens(torch.randn(2, 15, 4), (3, 5))


def test_image_distill_loss_aligns_then_compares():
    teacher = TeacherOutput(torch.randn(2, 4, 8), (2, 2))
    student = torch.randn(2, 16, 8, requires_grad=True)  # a 4 x 4 student grid
    loss = image_distill_loss(student, teacher, grid=(4, 4))
    torch.testing.assert_close(loss, cosine_distance(align_tokens(student, (2, 2), grid=(4, 4)), teacher.tokens))
    loss.backward()
    assert student.grad.abs().sum() > 0
    # a student that equals the teacher (up to scale) on the teacher's grid has zero loss
    assert image_distill_loss(3 * teacher.tokens, teacher, grid=(2, 2)).abs() < 1e-6
    # mask drops samples
    only_first = image_distill_loss(student, teacher, grid=(4, 4), mask=torch.tensor([True, False]))
    first = image_distill_loss(student[:1], TeacherOutput(teacher.tokens[:1], (2, 2)), grid=(4, 4))
    torch.testing.assert_close(only_first, first)
    with pytest.raises(ValueError, match="must match"):
        image_distill_loss(torch.randn(2, 16, 5), teacher, grid=(4, 4))


def test_video_term_is_exactly_zero_without_video_samples():
    teacher = TeacherOutput(torch.randn(3, 2, 4, 8), (2, 2, 2))
    teacher.tokens[0].zero_()  # degenerate features must not matter either
    student = torch.randn(3, 4, 16, 8)
    student[1] = 0.0
    student.requires_grad_()
    loss = video_distill_loss(student, teacher, grid=(4, 4), is_video=torch.zeros(3, dtype=torch.bool))
    assert loss.item() == 0.0
    loss.backward()
    assert torch.isfinite(student.grad).all() and not student.grad.any()


def test_video_term_averages_over_video_samples_only():
    teacher = TeacherOutput(torch.randn(3, 2, 4, 8), (2, 2, 2))
    student = torch.randn(3, 4, 16, 8)  # 4 frames on a 4 x 4 grid -> pooled to 2 steps of 2 x 2
    mask = torch.tensor([True, False, True])
    loss = video_distill_loss(student, teacher, grid=(4, 4), is_video=mask)
    subset = video_distill_loss(student[mask], TeacherOutput(teacher.tokens[mask], (2, 2, 2)), grid=(4, 4))
    torch.testing.assert_close(loss, subset)


def test_consistency_pulls_the_restored_features_only():
    h = torch.randn(2, 1, 6, 8, requires_grad=True)
    restored = torch.randn(2, 1, 6, 8, requires_grad=True)
    consistency_loss(restored, h).backward()
    assert restored.grad.abs().sum() > 0 and h.grad is None
    both = consistency_loss(restored, h, detach_target=False)
    both.backward()
    assert h.grad is not None
    assert consistency_loss(h, h).abs() < 1e-6


def test_losses_on_the_tokenizers_outputs():
    model = tiny(image_teacher_dim=24, video_teacher_dim=20).train()
    clip = torch.rand(2, 3, 5, 32, 32) * 2 - 1  # anchor + 4 frames: s has 2 steps, the Decompressor gives 4
    out = model(clip)
    grid = (2, 2)
    image_teacher = TeacherOutput(torch.randn(2, 9, 24), (3, 3))  # e.g. a patch-14 teacher at 42 px
    video_teacher = TeacherOutput(torch.randn(2, 2, 4, 20), (2, 2, 2))  # tubelet 2 over the 4 frames
    loss = (
        image_distill_loss(out.image_features, image_teacher, grid=grid)
        + video_distill_loss(out.video_features, video_teacher, grid=grid, is_video=torch.tensor([True, False]))
        + consistency_loss(out.h_restored, out.h)
    )
    loss.backward()
    assert torch.isfinite(loss)
    assert model.image_head.weight.grad.abs().sum() > 0 and model.video_head.weight.grad.abs().sum() > 0
