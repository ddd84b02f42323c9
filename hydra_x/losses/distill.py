"""Distillation and consistency terms: cosine distances between student and teacher (or target) tokens.

HYDRA-X: L_dist = (1 - cos(s[0], T_img(x))) + (1 - cos(D(s[1:]), T_vid(x))), the video term masked out for
image samples. The student's token grid rarely equals the teacher's (DINOv2's patch 14 against our 16, V-JEPA
2's crop size, a video teacher's tubelet of 2 frames against the Decompressor's frame rate), so the student
is resized to the teacher's grid first (average pooling or interpolation); the linear heads to the
teachers' widths live in the tokenizer.

All distances are computed in fp32; each returns a scalar.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

import torch
import torch.nn.functional as F


class TokensOnGrid(Protocol):
    """What the losses need from a teacher output (hydra_x.teachers.TeacherOutput has it)."""

    tokens: torch.Tensor  # (B, N, D) or (B, T', N, D)
    grid: tuple[int, ...]  # (h, w) or (T', h, w)


def per_sample_cosine_distance(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """1 - cos along the last (feature) dim, averaged over every token of a sample: (B, ..., D) x2 -> (B,)."""
    if student.shape != teacher.shape:
        raise ValueError(f"student {tuple(student.shape)} and teacher {tuple(teacher.shape)} must match")
    # F.normalize clamps the norm, so a zero vector gives a finite value and a finite (zero) gradient.
    a = F.normalize(student.float(), dim=-1, eps=1e-8)
    b = F.normalize(teacher.float(), dim=-1, eps=1e-8)
    return (1.0 - (a * b).sum(-1)).flatten(1).mean(1)


def cosine_distance(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Mean over tokens of 1 - cos(student, teacher) along the feature dim: (..., D) x2 -> scalar."""
    return per_sample_cosine_distance(student.unsqueeze(0), teacher.unsqueeze(0))[0]


def masked_mean(values: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean of ``values`` (B,) over the samples where ``mask`` (B,) is true; exactly 0 when none is.

    ``torch.where`` (not a product) keeps a non-finite value of an excluded sample out of the result and of
    the gradient; the count is clamped to 1 so an empty mask divides 0 by 1. No host sync.
    """
    if mask is None:
        return values.mean()
    mask = mask.to(device=values.device, dtype=torch.bool).reshape(values.shape)
    total = torch.where(mask, values, torch.zeros_like(values)).sum()
    return total / mask.sum().clamp_min(1).to(values.dtype)


def align_tokens(
    student: torch.Tensor, target_grid: Sequence[int], *, grid: Sequence[int] | None = None
) -> torch.Tensor:
    """Resize the student's token grid (time and space) to ``target_grid``; return flat tokens.

    student: (B, h, w, D) or (B, T, h, w, D) on a grid, or flat tokens (B, N, D) / (B, T, N, D) with
    ``grid=(h, w)``. target_grid: (h', w') for images, (T', h', w') for videos.
    Returns (B, h' * w', D) or (B, T', h' * w', D), row-major as the teachers' tokens.

    Per axis: shrinking uses adaptive average pooling (each target token is the mean of the student tokens
    it covers: a 2x time reduction averages frame pairs, as a tubelet of 2 frames sees them); growing uses
    linear interpolation (bilinear / trilinear, align_corners=False, i.e. token centres). An axis that
    shrinks is pooled first, then any axis that grows is interpolated; equal sizes pass untouched.
    """
    target = tuple(int(s) for s in target_grid)
    if len(target) not in (2, 3):
        raise ValueError(f"target_grid must be (h, w) or (T, h, w); got {target_grid}")
    spatial_ndim = len(target) + 2  # (B, [T,] h, w, D)
    if grid is not None:
        if student.ndim != spatial_ndim - 1 or student.shape[-2] != grid[0] * grid[1]:
            raise ValueError(f"flat tokens for grid {tuple(grid)} must be (B, [T,] {grid[0] * grid[1]}, D)")
        student = student.unflatten(-2, (int(grid[0]), int(grid[1])))
    elif student.ndim != spatial_ndim:
        raise ValueError(
            f"for target grid {target} the student must be {'(B, T, h, w, D)' if len(target) == 3 else '(B, h, w, D)'}"
            f" or flat tokens with grid=(h, w); got shape {tuple(student.shape)}"
        )
    x = student.movedim(-1, 1)  # (B, D, [T,] h, w)
    source = tuple(x.shape[2:])
    middle = tuple(min(s, t) for s, t in zip(source, target))
    if middle != source:
        pool = F.adaptive_avg_pool3d if len(target) == 3 else F.adaptive_avg_pool2d
        x = pool(x, middle)
    if middle != target:
        mode = "trilinear" if len(target) == 3 else "bilinear"
        x = F.interpolate(x, size=target, mode=mode, align_corners=False)
    return x.movedim(1, -1).flatten(-3, -2)  # (B, [T',] h' * w', D)


def image_distill_loss(
    student: torch.Tensor,
    teacher: TokensOnGrid,
    *,
    grid: Sequence[int] | None = None,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """1 - cos between the student's anchor-step features and the image teacher's tokens.

    student: (B, N, D) with ``grid`` (e.g. ``TokenizerOutput.image_features``) or (B, h, w, D); teacher:
    ``TeacherOutput`` of the image teacher on the anchor frame. ``mask`` (B,) optionally drops samples.
    """
    aligned = align_tokens(student, teacher.grid, grid=grid)  # (B, N', D)
    return masked_mean(per_sample_cosine_distance(aligned, teacher.tokens), mask)


def video_distill_loss(
    student: torch.Tensor,
    teacher: TokensOnGrid,
    *,
    grid: Sequence[int] | None = None,
    is_video: torch.Tensor | None = None,
) -> torch.Tensor:
    """1 - cos between the Decompressor's features and the video teacher's tokens, over video samples only.

    student: (B, T, N, D) with ``grid=(h, w)`` (``TokenizerOutput.video_features``: T frames after the
    anchor) or (B, T, h, w, D); teacher: ``TeacherOutput`` of the video teacher on those T frames, tokens
    (B, T', N', D). ``is_video`` (B,) bool: samples where it is false (images packed into a clip batch)
    contribute nothing; with no video sample at all the loss is exactly 0 with a zero gradient.
    """
    aligned = align_tokens(student, teacher.grid, grid=grid)  # (B, T', N', D)
    return masked_mean(per_sample_cosine_distance(aligned, teacher.tokens), is_video)


def layer_distill_losses(
    student: Mapping[int, torch.Tensor],
    teacher: Mapping[int, torch.Tensor],
    teacher_grid: Sequence[int],
    *,
    grid: Sequence[int],
) -> dict[int, torch.Tensor]:
    """HYDRA's multi-layer distillation, per layer k: 1 - cos(student's hidden state k, teacher's hidden state k).

    student: k -> (B, N, D) on ``grid`` (the anchor step of ``TokenizerOutput.layer_features``); teacher:
    k -> (B, N', D) on ``teacher_grid`` (``TeacherOutput.hidden``, CLS dropped). The student is resized to the
    teacher's grid; no head: HYDRA distils from the model it starts from, so the widths must match.
    Returns k -> scalar (mean over tokens and samples), in the student's order.
    """
    missing = [k for k in student if k not in teacher]
    if missing:
        raise ValueError(f"the teacher returned no hidden state for layers {missing}; it has {sorted(teacher)}")
    losses = {}
    for k, feats in student.items():
        if feats.shape[-1] != teacher[k].shape[-1]:
            raise ValueError(
                f"layer {k}: student width {feats.shape[-1]} != teacher width {teacher[k].shape[-1]}; multi-layer "
                "distillation compares features directly (HYDRA: the teacher is the ViT the student starts from)"
            )
        aligned = align_tokens(feats, teacher_grid, grid=grid)  # (B, N', D)
        losses[k] = per_sample_cosine_distance(aligned, teacher[k]).mean()
    return losses


def consistency_loss(h_restored: torch.Tensor, h: torch.Tensor, *, detach_target: bool = True) -> torch.Tensor:
    """HYDRA's cosine consistency: 1 - cos(restored features, pre-bottleneck features), (..., D) x2 -> scalar.

    The target ``h`` is detached by default: the term is meant to make the un-projected latent carry the
    pre-bottleneck features to the Sem-ViT (pulling ``h_restored`` toward ``h``), not to pull the Gen-ViT's
    features toward whatever survives the bottleneck, which would fight the distillation and
    reconstruction terms that shape ``h``.
    """
    return cosine_distance(h_restored, h.detach() if detach_target else h)
