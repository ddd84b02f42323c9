"""The tokenizer's training objective, term by term: L1 (or flow matching), LPIPS, GAN, KL, distillation, consistency.

Each term is returned unweighted for logging, and the total is the weighted sum. Which terms a stage computes
is its row of the stage table (hydra_x.train.tokenizer.stages): stage 2 has no KL or distillation (encoder and
Sem-ViT frozen), stage 3 no reconstruction terms (decoder frozen, not even run).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from hydra_x.losses import (
    LPIPS,
    LPIPSWeightsError,
    PatchDiscriminator,
    adaptive_gan_weight,
    consistency_loss,
    d_hinge_loss,
    g_hinge_loss,
    gan_weight_at,
    image_distill_loss,
    layer_distill_losses,
    load_lpips,
    video_distill_loss,
)
from hydra_x.teachers.base import FrozenTeacher
from hydra_x.tokenizer.model import TokenizerOutput
from hydra_x.train.engine import LossTerms, region
from hydra_x.train.tokenizer.config import LossConfig
from hydra_x.train.tokenizer.stages import Stage
from hydra_x.train.tokenizer.stages import stage as stage_of

log = logging.getLogger(__name__)


def load_lpips_for(config: LossConfig, stage: Stage) -> LPIPS | None:
    """LPIPS per the config: a file, ``hf://repo/file`` on the Hub, or the default lookup (hydra_x.losses.lpips).

    With ``lpips > 0`` in a stage that uses it, weights that cannot be found stop the run here, before its
    first step, unless ``lpips_required`` is false: then one warning says that LPIPS is off.
    """
    if config.lpips <= 0 or not stage.uses("lpips"):
        return None
    spec = config.lpips_weights
    try:
        if spec and spec.startswith("hf://"):
            repo, _, filename = spec[len("hf://") :].rpartition("/")
            return load_lpips(repo_id=repo, filename=filename)
        return load_lpips(Path(spec) if spec else None, required=config.lpips_required)
    except LPIPSWeightsError as err:
        raise LPIPSWeightsError(
            f"loss.lpips={config.lpips} needs the LPIPS-VGG weights. {err} (training: loss.lpips_weights=PATH). "
            "To train without the perceptual loss, say so: loss.lpips=0, or loss.lpips_required=false (LPIPS "
            "then runs where its weights are found)"
        ) from err


def frames_for_lpips(x: torch.Tensor, count: int) -> torch.Tensor:
    """Clips (B, C, F, H, W) -> (B * count, C, H, W) of evenly spaced frames; images pass through."""
    if x.ndim == 4:
        return x
    # Made on x's device: copying a CPU index there would wait for the GPU (a host sync every step).
    idx = torch.linspace(0, x.shape[2] - 1, min(count, x.shape[2]), device=x.device).round().long()
    return x.index_select(2, idx).transpose(1, 2).flatten(0, 1)


class TokenizerObjective:
    def __init__(
        self,
        config: LossConfig,
        stage: Stage | int,
        *,
        image_teacher: FrozenTeacher | None = None,
        video_teacher: FrozenTeacher | None = None,
        lpips: LPIPS | None = None,
        discriminator: nn.Module | None = None,
        distill_layers: Sequence[int] = (),
    ) -> None:
        self.config, self.stage = config, stage if isinstance(stage, Stage) else stage_of(stage)
        self.image_teacher, self.video_teacher = image_teacher, video_teacher
        self.lpips, self.discriminator = lpips, discriminator
        self.reconstruct = self.stage.decoder
        self.semantic = self.stage.semantic
        # The student's hidden states that model.forward must return (multi-layer distillation); the
        # teacher checks the indices against its own depth here, before the first step.
        active = self.semantic and image_teacher is not None and config.distill_layers > 0
        self.feature_layers: tuple[int, ...] = tuple(distill_layers) if active else ()
        if self.feature_layers:
            image_teacher._check_layers(self.feature_layers)

    def gan_active(self, step: int) -> bool:
        return self.discriminator is not None and self.config.gan > 0 and gan_weight_at(step, self.config.gan_start) > 0

    def generator(self, out: TokenizerOutput, x: torch.Tensor, step: int) -> LossTerms:
        """The tokenizer's loss for pixels ``x`` and the forward output ``out``."""
        cfg = self.config
        terms: dict[str, tuple[float, torch.Tensor]] = {}
        if self.reconstruct:
            x_rec = out.x_rec  # the flow decoder's clean estimate x_t - t v in its training forward
            flow = out.velocity is not None
            if flow:
                terms["flow"] = (cfg.flow, F.mse_loss(out.velocity.float(), out.velocity_target.float()))
            terms["l1"] = (cfg.flow_l1 if flow else cfg.l1, F.l1_loss(x_rec.float(), x.float()))
            if cfg.mse > 0 and self.stage.uses("mse"):
                terms["mse"] = (cfg.mse, F.mse_loss(x_rec.float(), x.float()))
            if self.lpips is not None:
                pair = frames_for_lpips(x_rec, cfg.lpips_frames), frames_for_lpips(x, cfg.lpips_frames)
                terms["lpips"] = (cfg.lpips, self.lpips(pair[0].float(), pair[1].float()).mean())
            if self.gan_active(step):
                rec = sum(w * v for w, v in terms.values())
                # D's parameters collect gradients here too; the loop zeroes them before D's own backward.
                gan = g_hinge_loss(self.discriminator(x_rec))
                weight = cfg.gan * gan_weight_at(step, cfg.gan_start)
                if cfg.gan_adaptive:
                    # Gradient norms at the decoder output: free of FSDP sharding (see adaptive_gan_weight).
                    # The flow decoder's output is the velocity: the flow term does not pass through x_rec.
                    at = out.velocity if flow else x_rec
                    weight = weight * float(adaptive_gan_weight(rec, gan, at, across_ranks=True))
                terms["gan"] = (weight, gan)
        if self.stage.uses("kl"):
            terms["kl"] = (cfg.kl, out.posterior.kl())
        if self.semantic:
            self._distillation(out, x, terms)
        total = sum(w * v for w, v in terms.values() if w)
        if not isinstance(total, torch.Tensor):
            raise ValueError(f"stage {self.stage.name!r}: every loss term is off (check the loss weights and teachers)")
        return LossTerms(
            total=total,
            values={k: v.detach() for k, (_, v) in terms.items()},
            weights={k: float(w) for k, (w, _) in terms.items()},
        )

    def _distillation(self, out: TokenizerOutput, x: torch.Tensor, terms: dict) -> None:
        cfg = self.config
        grid = (out.z.shape[-2], out.z.shape[-1])
        image_terms = cfg.distill_image > 0 and out.image_features is not None
        if self.image_teacher is not None and (image_terms or self.feature_layers):
            anchor = x if x.ndim == 4 else x[:, :, 0]
            with region("teacher"):
                teacher = self.image_teacher(anchor, layers=self.feature_layers)  # one pass for both terms
            if image_terms:
                loss = image_distill_loss(out.image_features, teacher, grid=grid)
                terms["distill_image"] = (cfg.distill_image, loss)
            if self.feature_layers:
                student = {k: out.layer_features[k][:, 0] for k in self.feature_layers}  # anchor step, (B, N, D)
                per_layer = layer_distill_losses(student, teacher.hidden, teacher.grid, grid=grid)
                for k, value in per_layer.items():
                    terms[f"distill_layer{k}"] = (0.0, value)  # logged; the weighted term is their mean
                terms["distill_layers"] = (cfg.distill_layers, torch.stack(list(per_layer.values())).mean())
        if self.video_teacher is not None and cfg.distill_video > 0 and out.video_features is not None:
            with region("teacher"):
                teacher = self.video_teacher(x[:, :, 1:])  # the T frames after the anchor, as D(s[1:]) covers
            terms["distill_video"] = (cfg.distill_video, video_distill_loss(out.video_features, teacher, grid=grid))
        if cfg.consistency > 0 and out.h_restored is not None:
            terms["consistency"] = (cfg.consistency, consistency_loss(out.h_restored, out.h))

    def discriminator_loss(self, x: torch.Tensor, x_rec: torch.Tensor) -> torch.Tensor:
        real = self.discriminator(x.detach())
        fake = self.discriminator(x_rec.detach())
        return d_hinge_loss(real, fake)


def build_discriminator(config: LossConfig, stage: Stage, device: torch.device, seed: int) -> PatchDiscriminator | None:
    """The discriminator, initialised from ``seed`` alone: every rank holds the same replica."""
    if config.gan <= 0 or not stage.uses("gan"):
        return None
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return PatchDiscriminator(config.discriminator).to(device)
