"""Loss building blocks of tokenizer training, each a separate term so each can be logged on its own.

- reconstruction: L1 is ``F.l1_loss``; LPIPS (VGG16, real weights) in ``lpips``, the official files it is
  converted from (URLs, hashes, cache, download) in ``lpips_weights``; KL of the bottleneck is
  ``TokenizerOutput.posterior.kl()`` (hydra_x.tokenizer.bottleneck).
- adversarial: PatchGAN discriminator, hinge losses, adaptive weight, start step in ``gan``.
- distillation and HYDRA's consistency term in ``distill``.
"""

from hydra_x.losses.distill import (
    align_tokens,
    consistency_loss,
    cosine_distance,
    image_distill_loss,
    layer_distill_losses,
    masked_mean,
    per_sample_cosine_distance,
    video_distill_loss,
)
from hydra_x.losses.gan import (
    DiscriminatorConfig,
    PatchDiscriminator,
    adaptive_gan_weight,
    d_hinge_loss,
    g_hinge_loss,
    gan_weight_at,
)
from hydra_x.losses.lpips import (
    LPIPS,
    convert_official,
    find_lpips_weights,
    load_lpips,
    lpips_from_file,
    save_lpips,
)
from hydra_x.losses.lpips_weights import LPIPSWeightsError, WeightsHashError

__all__ = [
    "LPIPS",
    "DiscriminatorConfig",
    "LPIPSWeightsError",
    "PatchDiscriminator",
    "adaptive_gan_weight",
    "align_tokens",
    "consistency_loss",
    "convert_official",
    "cosine_distance",
    "d_hinge_loss",
    "find_lpips_weights",
    "g_hinge_loss",
    "gan_weight_at",
    "image_distill_loss",
    "layer_distill_losses",
    "load_lpips",
    "lpips_from_file",
    "masked_mean",
    "per_sample_cosine_distance",
    "save_lpips",
    "video_distill_loss",
    "WeightsHashError",
]
