"""HydraXTokenizer: one ViT that turns images and videos into a 64-channel latent and semantic tokens, and back.

    pixels x --fold 1--> Gen-ViT --fold 2--> Gen-ViT --> GSB --> z --> Sem-ViT --> s
                                                               |
                                                               +--> pixel decoder --> x_rec

Public shapes: pixels (B, 3, H, W) for images or (B, 3, 1 + T, H, W) for clips, values in [-1, 1];
latents z (B, C, 1 + T / 4, H / p, W / p), normalised by the per-channel statistics that training stage 3
stores (identity until then); semantic tokens s (B, 1 + T / 4, N, D) with N = (H / p) * (W / p) row-major.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from einops import rearrange

from hydra_x.nn.flow import clean_estimate
from hydra_x.nn.layers import init_weights
from hydra_x.tokenizer.bottleneck import DiagonalGaussian, GenerationSemanticBottleneck
from hydra_x.tokenizer.checks import check_latent, check_pixels
from hydra_x.tokenizer.config import TokenizerConfig, tokenizer_config
from hydra_x.tokenizer.decoder import PixelDecoder
from hydra_x.tokenizer.decompressor import Decompressor
from hydra_x.tokenizer.flow_decoder import FlowDecoder, check_decoder_kind
from hydra_x.tokenizer.folds import zero_frame_differences
from hydra_x.tokenizer.outputs import PAIR_LAYOUTS, PairEncoding, TokenizerOutput
from hydra_x.tokenizer.vit import GenViT, SemViT, check_feature_layers


class HydraXTokenizer(nn.Module):
    def __init__(self, config: TokenizerConfig) -> None:
        super().__init__()
        self.config = config
        c = config.latent_channels
        self.gen_vit = GenViT(config)
        self.bottleneck = GenerationSemanticBottleneck(config.width, c, config.norm_eps)
        self.sem_vit = SemViT(config)
        self.decoder = FlowDecoder(config) if config.decoder == "flow" else PixelDecoder(config)
        self.decompressor = Decompressor(config) if config.decompressor else None
        self.image_head = nn.Linear(config.width, config.image_teacher_dim) if config.image_teacher_dim else None
        self.video_head = (
            nn.Linear(config.width, config.video_teacher_dim)
            if config.video_teacher_dim and config.decompressor
            else None
        )
        # Per-channel statistics of the raw latent (training stage 3); identity until then.
        self.register_buffer("latent_mean", torch.zeros(c))
        self.register_buffer("latent_std", torch.ones(c))
        # The public API checks values (NaN / Inf / range); a training loop may switch this off.
        self.validate_inputs = True
        self.init_weights()

    # ------------------------------------------------------------------ construction

    @torch.no_grad()
    def init_weights(self) -> None:
        """(Re-)initialise every parameter and buffer; safe after building on the meta device."""
        init_weights(self, self.config.init_std)
        self.gen_vit.init_from_scratch(self.config.init_std)  # embeddings; folds an image passes unchanged
        zero_frame_differences(self.decoder)  # shared unfolds: every frame of a group starts as its last
        self.bottleneck.to_moments.bias[self.config.latent_channels :].fill_(self.config.init_logvar)
        if isinstance(self.decoder, FlowDecoder):
            self.decoder.init_modulation()
        self.latent_mean.zero_()
        self.latent_std.fill_(1.0)

    @classmethod
    def from_config(
        cls,
        config: TokenizerConfig,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        seed: int | None = None,
    ) -> HydraXTokenizer:
        """Build on the meta device (instant at any size), then materialise and initialise on ``device``.

        ``device="meta"`` returns the model unmaterialised, e.g. to count parameters.
        """
        with torch.device("meta"):
            model = cls(config)
        if str(device) == "meta":
            return model
        model = model.to_empty(device=device or "cpu")
        if seed is None:
            model.init_weights()
        else:
            # A private generator state: seeding must not reset the caller's global RNG.
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                model.init_weights()
        return model.to(dtype) if dtype is not None else model

    @classmethod
    def from_preset(
        cls,
        name: str,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        seed: int | None = None,
        **overrides: Any,
    ) -> HydraXTokenizer:
        """A randomly initialised model of preset ``name`` (tiny, small, base, so400m) with field overrides."""
        return cls.from_config(tokenizer_config(name, **overrides), device=device, dtype=dtype, seed=seed)

    @classmethod
    def from_pretrained(cls, name_or_path: str | Path, **kwargs: Any) -> HydraXTokenizer:
        """Load ``config.json`` + ``model.safetensors`` from a local folder or a Hub repo id.

        See :func:`hydra_x.hub.load_pretrained` for the keyword arguments (device, dtype, strict,
        output_loading_info, revision, cache_dir, token, local_files_only).
        """
        from hydra_x.hub import load_pretrained

        return load_pretrained(cls, TokenizerConfig, name_or_path, **kwargs)

    def save_pretrained(self, folder: str | Path) -> Path:
        """Write ``config.json`` and ``model.safetensors`` to ``folder`` (atomically, file by file)."""
        from hydra_x.hub import save_pretrained

        return save_pretrained(self, self.config.to_dict(), folder, model_type="hydra-x-tokenizer")

    @classmethod
    def from_siglip2(cls, name_or_path: str | Path, **kwargs: Any) -> HydraXTokenizer:
        """Start both ViT halves from a SigLIP 2 (or SigLIP) checkpoint; see hydra_x.tokenizer.siglip."""
        from hydra_x.tokenizer.siglip import tokenizer_from_siglip

        return tokenizer_from_siglip(cls, name_or_path, **kwargs)

    @classmethod
    def from_internvit(cls, name_or_path: str | Path, **kwargs: Any) -> HydraXTokenizer:
        """Start both ViT halves from an InternVL vision tower (HYDRA-TOK); see hydra_x.tokenizer.internvit."""
        from hydra_x.tokenizer.internvit import tokenizer_from_internvit

        return tokenizer_from_internvit(cls, name_or_path, **kwargs)

    @staticmethod
    def check_state_dict(config: TokenizerConfig, keys, source: str, strict: bool = True) -> None:
        """Refuse (or with ``strict=False`` warn about) decoder weights of the other kind than the config's."""
        check_decoder_kind(config.decoder, keys, source, strict)

    def parameter_counts(self) -> dict[str, int]:
        """Parameters per part (works on the meta device)."""
        parts = {
            "gen_vit": self.gen_vit,
            "bottleneck": self.bottleneck,
            "sem_vit": self.sem_vit,
            "decoder": self.decoder,
            "decompressor": self.decompressor,
            "distill_heads": nn.ModuleList([m for m in (self.image_head, self.video_head) if m is not None]),
        }
        counts = {k: sum(p.numel() for p in m.parameters()) if m is not None else 0 for k, m in parts.items()}
        counts["total"] = sum(p.numel() for p in self.parameters())
        return counts

    # ------------------------------------------------------------------ latent normalisation

    @property
    def has_latent_stats(self) -> bool:
        """Whether statistics were set (stage 3, or a unified run's start); else latents are raw (mean 0, std 1)."""
        return not (bool((self.latent_mean == 0).all()) and bool((self.latent_std == 1).all()))

    @torch.no_grad()
    def set_latent_stats(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Store per-channel statistics of the raw latent (training stage 3).

        The decoder's input projection and the bottleneck's un-projection are re-parameterised so that
        they take normalised latents and compute exactly the same function of the raw latent as before:
        a frozen decoder keeps working on the normalised latents stage 3 feeds it.
        """
        c = self.config.latent_channels
        mean, std = mean.reshape(c).to(self.latent_mean), std.reshape(c).to(self.latent_std)
        if not torch.isfinite(mean).all() or not torch.isfinite(std).all() or (std <= 0).any():
            raise ValueError("latent statistics must be finite with a positive standard deviation")
        for linear in (self.decoder.in_proj, self.bottleneck.from_latent):
            w_raw = linear.weight.float() / self.latent_std.float()  # (D, C) acting on raw latents
            b_raw = linear.bias.float() - w_raw @ self.latent_mean.float()
            linear.weight.copy_(w_raw * std.float())
            linear.bias.copy_(b_raw + w_raw @ mean.float())
        self.latent_mean.copy_(mean)
        self.latent_std.copy_(std)

    def normalize(self, z_raw: torch.Tensor) -> torch.Tensor:
        """Raw latent (B, C, ...) -> normalised."""
        shape = (1, -1) + (1,) * (z_raw.ndim - 2)
        mean, std = self.latent_mean.view(shape).to(z_raw.dtype), self.latent_std.view(shape).to(z_raw.dtype)
        return (z_raw - mean) / std

    # ------------------------------------------------------------------ public API

    def _dtype(self) -> torch.dtype:
        # The compute dtype is the weights' (FSDP2's mixed precision makes them bf16 while buffers stay fp32).
        return self.bottleneck.to_moments.weight.dtype

    def _gen(self, x: torch.Tensor, hidden: list[torch.Tensor] | None = None) -> tuple[torch.Tensor, tuple[int, int]]:
        """Checked pixels (B, C, F, H, W) -> Gen-ViT features (B, S, N, D) and the token grid."""
        p = self.config.patch_size
        grid = (x.shape[-2] // p, x.shape[-1] // p)
        return self.gen_vit(x.to(self._dtype()), self.config.gen_attention, hidden), grid

    def _layer_features(
        self, layers: tuple[int, ...], gen_hidden: list[torch.Tensor] | None, sem_hidden: list[torch.Tensor] | None
    ) -> dict[int, torch.Tensor] | None:
        """Hidden state k of the whole ViT, (B, S_k, N, D), CLS dropped: k <= gen_depth from the Gen-ViT
        (0 the patch embedding), k > gen_depth the Sem-ViT's layer k - gen_depth on the restored latent."""
        if not layers:
            return None
        g, p = self.config.gen_depth, self.gen_vit.num_prefix
        return {k: gen_hidden[k][:, :, p:] if k <= g else sem_hidden[k - g - 1] for k in layers}

    def _to_latent(self, tokens: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        return rearrange(tokens, "b s (h w) c -> b c s h w", h=grid[0], w=grid[1])

    def latent_tokens(self, z: torch.Tensor) -> torch.Tensor:
        """Latent (B, C, S, h, w) -> tokens (B, S, h * w, C) in the order the ViTs see them (row-major)."""
        return rearrange(z, "b c s h w -> b s (h w) c")

    def encode(
        self, x: torch.Tensor, *, sample: bool = False, return_posterior: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, DiagonalGaussian]:
        """Pixels -> normalised latent (B, C, S, h, w): the posterior mean, or a sample if ``sample``.

        With ``return_posterior`` also returns the posterior over the raw latent.
        """
        x, _ = check_pixels(x, self.config, values=self.validate_inputs)
        h, grid = self._gen(x)
        post = self.bottleneck.posterior(h)
        posterior = DiagonalGaussian(self._to_latent(post.mean, grid), self._to_latent(post.logvar, grid))
        z = self.normalize(posterior.sample() if sample else posterior.mean)
        return (z, posterior) if return_posterior else z

    def decode(
        self,
        z: torch.Tensor,
        *,
        video: bool | None = None,
        steps: int | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Normalised latent (B, C, S, h, w) -> pixels (B, 3, 1 + (S - 1) * 4, H, W).

        A one-step latent decodes to an image (B, 3, H, W) unless ``video=True`` (a one-frame clip).
        With a flow decoder: Euler sampling in ``steps`` steps (default ``config.flow_steps``) from Gaussian
        noise drawn from ``generator`` (its device; the global RNG if None), so a seeded generator gives
        the same pixels every time. A regression decoder is deterministic: ``steps`` is an error there and
        ``generator`` is not used.
        """
        if steps is not None and self.config.decoder != "flow":
            raise ValueError(
                f"steps={steps} sets the flow decoder's sampling steps, but this tokenizer has a "
                f"{self.config.decoder} decoder (one deterministic pass)"
            )
        z = check_latent(z, self.config, values=self.validate_inputs).to(self._dtype())
        grid = (z.shape[-2], z.shape[-1])
        if self.config.decoder == "flow":
            x = self.decoder.sample_pixels(self.latent_tokens(z), grid, None, steps, generator).to(self._dtype())
        else:
            x = self.decoder(self.latent_tokens(z), grid)
        as_image = z.shape[2] == 1 if video is None else not video
        if as_image and z.shape[2] != 1:
            raise ValueError(f"video=False needs a one-step latent; got {z.shape[2]} steps")
        return x[:, :, 0] if as_image else x

    def semantic(self, z: torch.Tensor, *, mode: str | None = None) -> torch.Tensor:
        """Normalised latent (B, C, S, h, w), clean or noisy, image or video -> s (B, S, N, D)."""
        z = check_latent(z, self.config, values=self.validate_inputs).to(self._dtype())
        grid = (z.shape[-2], z.shape[-1])
        restored = self.bottleneck.restore(self.latent_tokens(z))
        return self.sem_vit(restored, grid, mode or self.config.sem_attention_mode)

    def forward(
        self,
        x: torch.Tensor,
        *,
        sample: bool | None = None,
        noise: torch.Tensor | None = None,
        reconstruct: bool = True,
        semantic: bool = True,
        flow_noise: torch.Tensor | None = None,
        flow_t: torch.Tensor | None = None,
        feature_layers: Sequence[int] = (),
    ) -> TokenizerOutput:
        """Everything a training step needs. ``sample`` defaults to ``self.training``.

        ``feature_layers`` (multi-layer distillation, HYDRA-TOK): hidden states k in 0..depth of the whole
        ViT go to ``out.layer_features`` (k after layer k as in transformers, 0 the patch embedding; layers of
        the Sem-ViT are those of the training path, fed by the restored latent).

        ``noise`` (B, S, N, C), if given, is the standard-normal draw of the posterior sample (training
        derives it from sample indices, so a run gives the same losses on any number of GPUs).

        Flow decoder: with ``flow_t`` (B,) the decoder predicts the velocity at x_t = (1 - t) x + t eps,
        eps = ``flow_noise`` (x's shape; drawn if None), and x_rec is its clean estimate (the training
        forward). Without ``flow_t``, x_rec is sampled in ``config.flow_steps`` Euler steps from
        ``flow_noise`` (no gradient through the sampler), as held-out evaluation needs.

        ``reconstruct=False`` skips the pixel decoder (x_rec is None) and ``semantic=False`` the Sem-ViT,
        the Decompressor and the heads (s and the features are None): training stages that freeze a part
        do not pay for it.
        """
        x5, is_image = check_pixels(x, self.config, values=self.validate_inputs)
        sample = self.training if sample is None else sample
        layers = check_feature_layers(self.config, feature_layers, semantic)
        gen_hidden = [] if any(k <= self.config.gen_depth for k in layers) else None
        sem_hidden = [] if any(k > self.config.gen_depth for k in layers) else None
        h, grid = self._gen(x5, gen_hidden)
        post = self.bottleneck.posterior(h)
        if not sample:
            z_raw = post.mean
        else:
            z_raw = post.sample() if noise is None else post.mean + post.std * noise.to(post.mean)
        shape = (1, 1, 1, -1)
        mean, std = self.latent_mean.view(shape).to(z_raw.dtype), self.latent_std.view(shape).to(z_raw.dtype)
        z_tokens = (z_raw - mean) / std  # (B, S, N, C)
        restored = s = image_features = video_features = None
        if semantic:
            restored = self.bottleneck.restore(z_tokens)
            s = self.sem_vit(restored, grid, self.config.sem_attention_mode, sem_hidden)
            image_features = self.image_head(s[:, 0]) if self.image_head is not None else None
            if self.decompressor is not None and s.shape[1] > 1:
                video_features = self.decompressor(s[:, 1:], grid)
                if self.video_head is not None:
                    video_features = self.video_head(video_features)
        x_rec = velocity = target = None
        if reconstruct:
            x_rec, velocity, target = self._reconstruct(z_tokens, grid, x5, is_image, flow_noise, flow_t)
        return TokenizerOutput(
            x_rec=x_rec,
            z=self._to_latent(z_tokens, grid),
            posterior=DiagonalGaussian(self._to_latent(post.mean, grid), self._to_latent(post.logvar, grid)),
            s=s,
            h=h,
            h_restored=restored,
            image_features=image_features,
            video_features=video_features,
            layer_features=self._layer_features(layers, gen_hidden, sem_hidden),
            velocity=velocity,
            velocity_target=target,
        )

    def _reconstruct(self, z_tokens, grid, x5, is_image, flow_noise, flow_t):
        """forward()'s pixel decoder: (x_rec, velocity, velocity target), x's shape (the last two None unless a
        flow decoder trains at ``flow_t``)."""
        eps = flow_noise.unsqueeze(2) if flow_noise is not None and flow_noise.ndim == 4 else flow_noise
        velocity = target = None
        if self.config.decoder != "flow":
            x_rec = self.decoder(z_tokens, grid)
        elif flow_t is None:
            x_rec = self.decoder.sample_pixels(z_tokens, grid, eps, None, None).to(self._dtype())
        else:
            t = flow_t.to(device=x5.device, dtype=torch.float32)
            x_t, velocity, target = self.decoder.train_velocity(z_tokens, grid, x5, eps, t)
            if is_image:
                x_t, velocity, target = x_t[:, :, 0], velocity[:, :, 0], target[:, :, 0]
            # From the returned velocity, so that gradients taken at it (the GAN's weight) see x_rec; kept 5-D
            # as the other branches are.
            x_rec = clean_estimate(x_t, t, velocity)
            x_rec = x_rec.unsqueeze(2) if is_image else x_rec
        return (x_rec[:, :, 0] if is_image else x_rec), velocity, target

    def encode_pair(self, source: torch.Tensor, target: torch.Tensor, *, layout: str = "sti") -> PairEncoding:
        """An editing pair of images (B, 3, H, W) encoded as a 2-step clip [source; target].

        The Gen-ViT encodes each image alone. ``layout`` sets the Sem-ViT's attention between the two steps,
        whatever the model's ``sem_attention``: ``"sti"`` (Source-Target Interaction, the paper's) the tubelet
        mask, so the target's s sees the source and the source's s never sees the target; ``"independent"``
        none at all (the paper's ablation without the interaction).
        """
        if layout not in PAIR_LAYOUTS:
            raise ValueError(f"layout must be one of {tuple(PAIR_LAYOUTS)}, got {layout!r}")
        src, src_is_image = check_pixels(source, self.config, values=self.validate_inputs)
        tgt, tgt_is_image = check_pixels(target, self.config, values=self.validate_inputs)
        if not (src_is_image and tgt_is_image) or src.shape != tgt.shape:
            raise ValueError(
                f"encode_pair takes two image batches of one shape (B, 3, H, W); got {tuple(source.shape)} "
                f"and {tuple(target.shape)}"
            )
        b = src.shape[0]
        h, grid = self._gen(torch.cat((src, tgt)))  # each image alone: (2B, 1, N, D)
        z_tokens = self.bottleneck.posterior(h).mean
        z = self.normalize(self._to_latent(z_tokens, grid))  # (2B, C, 1, h, w)
        z = torch.cat((z[:b], z[b:]), dim=2)  # (B, C, 2, h, w)
        return PairEncoding(z=z, s=self.semantic(z, mode=PAIR_LAYOUTS[layout]), layout=layout)
