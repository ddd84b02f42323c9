"""Train the HYDRA-X tokenizer: one process or many, one visible loop.

    python -m hydra_x.train.tokenizer --config tiny                                  # CPU, embedded data
    torchrun --nproc_per_node 8 -m hydra_x.train.tokenizer --config so400m-stage1 data.image_batch_size=32
    python -m hydra_x.train.tokenizer --config so400m-stage2 init=runs/stage1        # starts from stage 1

Each run folder holds checkpoints/, export/ (EMA weights as save_pretrained), metrics.jsonl, tensorboard/,
samples/ (held-out grids and GIFs), skipped.log and config.json. A run restarted on the same folder
resumes from its latest checkpoint.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import signal
import sys
import time
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_state_dict,
    set_state_dict,
)
from torch.utils.flop_counter import FlopCounterMode

from hydra_x.config import apply_overrides, parse_value
from hydra_x.data import Batch, TokenizerDataLoader, heldout_clips, heldout_images, heldout_photo
from hydra_x.eval.metrics import psnr, ssim, video_psnr, video_ssim
from hydra_x.teachers import FrozenTeacher, load_teacher
from hydra_x.tokenizer.flow import time_from_normal
from hydra_x.tokenizer.model import HydraXTokenizer
from hydra_x.train.checkpoint import CheckpointManager
from hydra_x.train.distributed import (
    DistInfo,
    all_reduce_max,
    all_reduce_mean,
    destroy_distributed,
    init_distributed,
    parallelize_tokenizer,
)
from hydra_x.train.ema import EMA
from hydra_x.train.optim import build_optimizer, build_scheduler, init_optimizer_state
from hydra_x.train.run_log import RunLogger
from hydra_x.train.tokenizer_config import STAGE_TRAINABLE, TokenizerTrainConfig
from hydra_x.train.tokenizer_losses import TokenizerObjective, build_discriminator, load_lpips_for
from hydra_x.train.visualize import save_heldout_pictures

log = logging.getLogger("hydra_x.train")
DTYPES = {"bfloat16": torch.bfloat16, "float32": torch.float32, "float16": torch.float16}
FLOW_STREAM = 1  # a fourth key element: the flow decoder's draws differ from the posterior noise's


# ---------------------------------------------------------------------------------------------- setup


def load_teachers(cfg: TokenizerTrainConfig, device: torch.device):
    """Frozen teachers (never nn.Modules of the trained model, never in an optimizer)."""
    dtype = DTYPES[cfg.teachers.dtype] if device.type == "cuda" else torch.float32
    image = video = None
    if cfg.teachers.image and cfg.stage != 2:
        options = {"image_size": cfg.teachers.image_size} if cfg.teachers.image_size else {}
        image = load_teacher(cfg.teachers.image, dtype=dtype, device=device, **options)
    if cfg.teachers.video and cfg.stage != 2:
        video = load_teacher(cfg.teachers.video, dtype=dtype, device=device)
    return image, video


def build_tokenizer(cfg: TokenizerTrainConfig, image_dim: int | None, video_dim: int | None) -> HydraXTokenizer:
    """The starting weights on the CPU, fp32: random, SigLIP 2, InternViT, or a previous stage's export."""
    heads = {"image_teacher_dim": image_dim, "video_teacher_dim": video_dim}
    if cfg.init is None:
        return HydraXTokenizer.from_preset(cfg.model_preset, seed=cfg.seed, **{**heads, **cfg.model})
    if cfg.init.startswith("siglip2:"):
        overrides = {**heads, **cfg.model}
        return HydraXTokenizer.from_siglip2(
            cfg.init[len("siglip2:") :], preset=cfg.model_preset, seed=cfg.seed, **overrides
        )
    if cfg.init.startswith("internvit:"):  # HYDRA-TOK: an InternVL vision tower or a full InternVL -hf checkpoint
        overrides = {**heads, **cfg.model}
        return HydraXTokenizer.from_internvit(
            cfg.init[len("internvit:") :], preset=cfg.model_preset, seed=cfg.seed, **overrides
        )
    folder = Path(cfg.init)
    if (folder / "export" / "config.json").is_file():
        folder = folder / "export"
    model = HydraXTokenizer.from_pretrained(folder if folder.exists() else cfg.init)
    for name, dim in heads.items():
        have = getattr(model.config, name)
        if dim is not None and have != dim:
            raise ValueError(f"{cfg.init} has {name}={have}, but the configured teacher has width {dim}")
    return model


def set_trainable(model: nn.Module, stage: int) -> list[str]:
    prefixes = STAGE_TRAINABLE[stage]
    trainable = []
    for name, param in model.named_parameters():
        param.requires_grad_(any(name.startswith(p) for p in prefixes))
        if param.requires_grad:
            trainable.append(name)
    return trainable


@torch.no_grad()
def measure_latent_stats(model: HydraXTokenizer, loader: TokenizerDataLoader, batches: int, device: torch.device):
    """Per-channel mean and std of the raw latent (posterior mean) over ``batches`` batches of every rank."""
    c = model.config.latent_channels
    sums = torch.zeros(3, c, dtype=torch.float64, device=device)  # count, sum, sum of squares
    for _, batch in zip(range(batches), loader):
        _, posterior = model.encode(batch.pixels.to(device), return_posterior=True)
        z = posterior.mean.double().movedim(1, -1).reshape(-1, c)  # (B * S * h * w, C)
        sums += torch.stack(
            (torch.full((c,), float(z.shape[0]), device=device, dtype=torch.float64), z.sum(0), z.square().sum(0))
        )
    if dist.is_initialized():
        dist.all_reduce(sums)
    count, total, squares = sums
    mean = total / count
    std = (squares / count - mean.square()).clamp_min(1e-12).sqrt()
    return mean.float(), std.float()


def measure_peak_tflops(device: torch.device) -> float | None:
    """The bf16 matmul ceiling of this GPU, the MFU denominator.

    Median of 7 timings of 20 back-to-back 8192^3 products, after 50 for warm-up: the GPU runs loaded, at the
    clocks it holds in training (single synchronised products read up to ~4% apart between runs).
    """
    if device.type != "cuda":
        return None
    a = torch.randn(8192, 8192, device=device, dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device=device, dtype=torch.bfloat16)
    for _ in range(50):
        a @ b
    times = []
    for _ in range(7):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(20):
            a @ b
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1e3 / 20)
    return 2 * 8192**3 / sorted(times)[3] / 1e12


def forget_compiled_code() -> None:
    """Let compiled blocks compile again after a step run under FlopCounterMode.

    Code that torch.compile first meets under a TorchDispatchMode (FlopCounterMode is one) is marked to run
    eagerly for good (seen in torch 2.11-2.13): without this reset, compile=true silently trained in eager
    mode after the step that counts the FLOPs for MFU.
    """
    torch.compiler.reset()


def compile_frozen(lpips: nn.Module | None, *teachers: FrozenTeacher | None) -> None:
    """With compile=true, also compile the frozen modules of the step.

    Their elementwise work is large and unfused in eager mode: LPIPS normalises full-resolution VGG feature
    maps, the teachers run their own norms, activations and (V-JEPA 2) RoPE. Compiled in place, so the
    objective keeps calling the same objects.
    """
    if lpips is not None:
        lpips.compile()
    for teacher in teachers:
        if teacher is not None:
            teacher.model.compile()


@functools.cache
def sample_generator(device: torch.device) -> torch.Generator:
    """One generator per device, reseeded for every sample draw (creating one per draw costs host time)."""
    return torch.Generator(device)


def posterior_noise(x: torch.Tensor, model_config, seed: int, micro_step: int, first_index: int) -> torch.Tensor:
    """Standard-normal draws for the posterior samples, one seed per global sample index.

    Sample i of rank r is global sample r * B + i of the micro-step, so one process with a batch of 2B
    draws exactly the noise two processes with B each draw: losses match on any number of GPUs. Drawn on x's
    device: on the CPU, a clip batch's draws cost ~80 ms of host time per step next to busy data workers.
    """
    frames = x.shape[2] if x.ndim == 5 else 1
    p = model_config.patch_size
    shape = (model_config.latent_steps(frames), (x.shape[-2] // p) * (x.shape[-1] // p), model_config.latent_channels)
    noise = torch.empty((x.shape[0], *shape), device=x.device)
    generator = sample_generator(x.device)
    for i in range(x.shape[0]):
        generator.manual_seed(hash((seed, micro_step, first_index + i)) & (2**63 - 1))
        noise[i].normal_(generator=generator)
    return noise


def flow_draws(
    x: torch.Tensor, loss_config, seed: int, micro_step: int, first_index: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The flow decoder's noise (x's shape) and times (B,), one seed per global sample index.

    As for ``posterior_noise``: sample i of rank r draws from its own seed, so losses match on any number of
    processes. The noise is drawn on x's device (pixel noise is large); times on the CPU.
    """
    noise = torch.empty_like(x, dtype=torch.float32)
    normals = torch.empty(x.shape[0])
    generator, cpu_generator = sample_generator(x.device), sample_generator(torch.device("cpu"))
    for i in range(x.shape[0]):
        key = hash((seed, micro_step, first_index + i, FLOW_STREAM)) & (2**63 - 1)
        normals[i] = torch.randn((), generator=cpu_generator.manual_seed(key))
        noise[i].normal_(generator=generator.manual_seed(key))
    t = time_from_normal(normals, loss_config.flow_time, loss_config.flow_time_mean, loss_config.flow_time_std)
    return noise, t.to(x.device, non_blocking=True)  # no stream sync: a pageable copy is staged first


def heldout_flow_noise(model: nn.Module, x: torch.Tensor | None) -> torch.Tensor | None:
    """Fixed sampler noise for held-out reconstructions with a flow decoder (None otherwise): comparable evals."""
    if x is None or model.config.decoder != "flow":
        return None
    return torch.randn(x.shape, generator=torch.Generator().manual_seed(0)).to(x.device)


def budget_steps(cfg: TokenizerTrainConfig, step: int, done: int, loop_seconds: float, elapsed: float, device) -> int:
    """The last step that fits the time budget at the speed of ``done`` steps that took ``loop_seconds``.

    ``elapsed`` counts from the start of ``train`` (setup included). Every rank gets the same answer.
    """
    rate = done / max(all_reduce_max(loop_seconds, device), 1e-9)
    # Kept back for the export and the last evaluations (which may compile new shapes).
    remaining = cfg.time_budget_minutes * 60 - all_reduce_max(elapsed, device) - cfg.budget_reserve_s
    return max(step, min(cfg.steps, step + int(rate * remaining * 0.97)))


def tokens_in(x: torch.Tensor, patch: int) -> int:
    """Frame-patch tokens of a batch: B x frames x (H / p) x (W / p)."""
    frames = x.shape[2] if x.ndim == 5 else 1
    return x.shape[0] * frames * (x.shape[-2] // patch) * (x.shape[-1] // patch)


class StopFlag:
    """SIGTERM / SIGINT ask the loop to checkpoint and stop at the end of the current step."""

    def __init__(self) -> None:
        self.signum = 0
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._handle)

    def _handle(self, signum, frame) -> None:
        self.signum = signum


# ---------------------------------------------------------------------------------------------- evaluation


def per_photo_means(name: str, values: torch.Tensor) -> dict[str, float]:
    """``name`` -> the mean of ``values`` (one per held-out sample, in order), and ``name/<photo>`` -> the mean
    over the samples of each held-out photograph: the photographs differ far more in difficulty (a cat's face,
    a cup, a gravel texture) than training runs differ from each other."""
    photos = [heldout_photo(k) for k in range(len(values))]
    values = values.tolist()
    result = {name: sum(values) / len(values)}
    for photo in dict.fromkeys(photos):
        mine = [v for v, p in zip(values, photos, strict=True) if p == photo]
        result[f"{name}/{photo}"] = sum(mine) / len(mine)
    return result


@torch.no_grad()
def evaluate(model: nn.Module, images: torch.Tensor | None, clips: torch.Tensor | None, autocast) -> dict:
    """Held-out reconstructions (posterior mean) with PSNR / SSIM, overall and per photograph; every rank runs
    it (FSDP needs that). A flow decoder samples in its config's ``flow_steps`` from fixed noise.
    """
    was_training = model.training
    model.eval()
    result: dict = {}
    with autocast():
        if images is not None:
            rec = model(images, semantic=False, flow_noise=heldout_flow_noise(model, images)).x_rec
            rec = rec.float().clamp(-1, 1)
            result.update(images=(images, rec), **per_photo_means("heldout_image_psnr", psnr(rec, images)))
            result["heldout_image_ssim"] = ssim(rec, images).mean().item()
        if clips is not None:
            rec = model(clips, semantic=False, flow_noise=heldout_flow_noise(model, clips)).x_rec
            rec = rec.float().clamp(-1, 1)
            result.update(clips=(clips, rec), **per_photo_means("heldout_clip_psnr", video_psnr(rec, clips)))
            result["heldout_clip_ssim"] = video_ssim(rec, clips).mean().item()
    model.train(was_training)
    return result


def export_ema(model: nn.Module, ema: EMA | None, folder: Path, is_main: bool) -> Path | None:
    """Gather the full weights (EMA where there is one) and write them as save_pretrained on rank 0."""
    state = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if ema is not None:
        for name, shadow in ema.shadow.items():
            full = shadow.full_tensor() if hasattr(shadow, "full_tensor") else shadow
            if is_main:
                state[name] = full.detach().cpu().to(state[name].dtype)
    if not is_main:
        return None
    clean = HydraXTokenizer.from_config(model.config, device="meta")
    clean = clean.to_empty(device="cpu")
    clean.load_state_dict(state)
    return clean.save_pretrained(folder)


# ---------------------------------------------------------------------------------------------- the loop


def train(cfg: TokenizerTrainConfig) -> dict:
    run_start = time.perf_counter()
    info: DistInfo = init_distributed(cfg.device, single_process_group=bool(cfg.fsdp))
    device = info.device
    torch.manual_seed(cfg.seed * 1000 + info.rank)  # posterior samples differ per rank, reproducibly
    run = Path(cfg.out_dir)
    ckpts = CheckpointManager(run / "checkpoints", cfg.keep_last)
    fsdp = cfg.fsdp if cfg.fsdp is not None else info.world_size > 1
    if info.world_size > 1 and not fsdp:
        raise ValueError("more than one process needs fsdp (set fsdp=true or leave it unset)")
    bf16 = cfg.precision == "bf16" and device.type == "cuda"
    if device.type == "cuda":
        torch.backends.cuda.enable_cudnn_sdp(cfg.cudnn_attention)

    resume_from = None
    if cfg.resume == "auto":
        resume_from = ckpts.latest()
    elif cfg.resume != "never":
        resume_from = Path(cfg.resume)

    image_teacher, video_teacher = load_teachers(cfg, device)
    # No image head when only multi-layer distillation uses the image teacher (HYDRA-TOK compares directly).
    image_dim = image_teacher.dim if image_teacher is not None and cfg.loss.distill_image > 0 else None
    model = build_tokenizer(cfg, image_dim, video_teacher and video_teacher.dim)
    model.validate_inputs = False  # one device sync per step saved; the data pipeline checks its samples
    model.to(device)
    start_step, data_state = ckpts.position(resume_from) if resume_from else (0, None)
    loader = TokenizerDataLoader(
        cfg.data,
        rank=info.rank,
        world_size=info.world_size,
        start_step=start_step * cfg.grad_accum,
        state=data_state,
        pin_memory=device.type == "cuda",
    )
    if cfg.stage == 3 and resume_from is None:
        # Stage 3 measures the latent statistics once; they then live in the model (and its checkpoints).
        stats_loader = TokenizerDataLoader(cfg.data, rank=info.rank, world_size=info.world_size)
        model.set_latent_stats(*measure_latent_stats(model, stats_loader, cfg.stage3_stat_batches, device))
        del stats_loader
    trainable = set_trainable(model, cfg.stage)
    parallelize_tokenizer(
        model,
        fsdp=fsdp,
        param_dtype=torch.bfloat16 if bf16 else None,
        activation_checkpointing=cfg.activation_checkpointing,
        compile_blocks=cfg.compile,
        compile_mode=cfg.compile_mode,
    )
    # Without FSDP2, autocast gives the model bf16 compute; with it, the mixed-precision policy does (weights
    # cast once per step, activations bf16 end to end). The losses (LPIPS' VGG, the discriminator) are plain
    # fp32 modules and always run under autocast.
    loss_autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if bf16 else nullcontext
    autocast = loss_autocast if not fsdp else nullcontext
    optimizer = build_optimizer(model, cfg.optim)
    planned = {"steps": cfg.steps}  # shortened once if a time budget is set
    scheduler = build_scheduler(optimizer, cfg.optim, lambda: planned["steps"])
    ema = EMA(model, cfg.ema_decay) if cfg.ema_decay > 0 else None
    discriminator = build_discriminator(cfg.loss, device, cfg.seed) if cfg.stage != 3 else None
    disc_opt = None
    if discriminator is not None:
        disc_opt = torch.optim.AdamW(discriminator.parameters(), lr=cfg.loss.disc_lr, betas=(0.5, 0.9))
        init_optimizer_state(disc_opt)
    lpips = load_lpips_for(cfg.loss) if cfg.stage != 3 else None
    if lpips is not None:
        lpips.to(device)
    objective = TokenizerObjective(
        cfg.loss,
        cfg.stage,
        image_teacher=image_teacher,
        video_teacher=video_teacher,
        lpips=lpips,
        discriminator=discriminator,
        distill_layers=cfg.teachers.distill_layers,
    )

    if cfg.compile:
        compile_frozen(lpips, image_teacher, video_teacher)
    # compile_mode=reduce-overhead: each forward (training micro-step, evaluation) starts a new generation of
    # CUDA graphs, which may overwrite the previous one's outputs (all consumed by then).
    cuda_graphs = cfg.compile and cfg.compile_mode == "reduce-overhead"
    mark_graph_step = torch.compiler.cudagraph_mark_step_begin if cuda_graphs else lambda: None

    def sharded_state() -> dict:
        model_sd, optim_sd = get_state_dict(model, optimizer)
        state = {"model": model_sd, "optim": optim_sd}
        if ema is not None:
            state["ema"] = ema.state_dict()
        if discriminator is not None:
            state["disc"], state["disc_optim"] = get_state_dict(discriminator, disc_opt)
        return state

    if resume_from is not None:
        state = sharded_state()
        meta = ckpts.load(resume_from, state)
        set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optim"])
        if ema is not None:
            ema.load_state_dict(state["ema"])
        if discriminator is not None:
            set_state_dict(
                discriminator, disc_opt, model_state_dict=state["disc"], optim_state_dict=state["disc_optim"]
            )
        scheduler.load_state_dict(meta["scheduler"])

    logger = RunLogger(run, info.is_main, cfg.steps, start_step)
    if info.is_main:
        (run / "config.json").write_text(
            json.dumps({**cfg.to_dict(), "resolved_model": model.config.to_dict()}, indent=2)
        )
        local_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad) / 1e6
        logger.info(
            f"stage {cfg.stage}: {len(trainable)} trainable tensors ({local_trainable:.1f}M on this rank), "
            f"{info.world_size} process(es), device {device}, fsdp {fsdp}, "
            f"{'resumed from ' + str(resume_from) if resume_from else 'fresh start'}; image teacher "
            f"{image_teacher or 'none'}, video teacher {video_teacher or 'none'}, LPIPS {'on' if lpips else 'off'}, "
            f"GAN {'from step ' + str(cfg.loss.gan_start) if discriminator else 'off'}"
        )
    peak = cfg.peak_tflops or measure_peak_tflops(device)
    if peak:
        origin = "configured" if cfg.peak_tflops else "measured"
        logger.info(f"MFU denominator: {peak:.0f} TFLOP/s ({origin} bf16 matmul)")
    heldout = (
        heldout_images(cfg.heldout_images, cfg.data.image_size).to(device) if cfg.heldout_images else None,
        heldout_clips(cfg.heldout_clips, cfg.data.clip_frames, cfg.data.image_size).to(device)
        if cfg.heldout_clips
        else None,
    )
    stop = StopFlag()
    batches = iter(loader)
    flops_per_step = None
    window = {"time": 0.0, "data": 0.0, "samples": 0, "tokens": 0, "steps": 0}
    losses_sum: dict[str, float] = {}
    final_eval: dict = {}
    step = start_step
    exit_code = 0
    nonfinite = nonfinite_total = 0
    probe_start = time.perf_counter()
    while step < planned["steps"]:
        t0 = time.perf_counter()
        # The first step's FLOPs (forward, backward, teachers, LPIPS, GAN) are counted once, for MFU.
        counter = FlopCounterMode(display=False) if flops_per_step is None and device.type == "cuda" else nullcontext()
        pending_d = []
        with counter:
            for micro in range(cfg.grad_accum):
                t_data = time.perf_counter()
                batch: Batch = next(batches)
                window["data"] += time.perf_counter() - t_data
                logger.skipped(step, batch.skipped)
                x = batch.pixels.to(device, non_blocking=True)
                micro_step = step * cfg.grad_accum + micro
                mark_graph_step()
                noise = posterior_noise(x, model.config, cfg.seed, micro_step, info.rank * x.shape[0])
                if fsdp:
                    model.set_requires_gradient_sync(micro == cfg.grad_accum - 1)
                flow = {}
                if model.config.decoder == "flow" and objective.reconstruct:
                    eps, t = flow_draws(x, cfg.loss, cfg.seed, micro_step, info.rank * x.shape[0])
                    flow = {"flow_noise": eps, "flow_t": t}
                with autocast():
                    out = model(
                        x,
                        noise=noise,
                        reconstruct=objective.reconstruct,
                        semantic=objective.semantic,
                        feature_layers=objective.feature_layers,
                        **flow,
                    )
                with loss_autocast():
                    terms = objective.generator(out, x, step)
                (terms.total / cfg.grad_accum).backward()
                if objective.gan_active(step):
                    pending_d.append((x, out.x_rec.detach()))
                # Summed on the device and read at the logging step: no host sync per step.
                for k, v in (*terms.values.items(), ("total", terms.total.detach())):
                    losses_sum[k] = losses_sum.get(k, 0.0) + v.float() / cfg.grad_accum
                window["samples"] += x.shape[0]
                window["tokens"] += tokens_in(x, model.config.patch_size)
        if isinstance(counter, FlopCounterMode):
            flops_per_step = counter.get_total_flops()
            if cfg.compile:
                forget_compiled_code()
        params = [p for p in model.parameters() if p.requires_grad]
        grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.optim.grad_clip or float("inf"))
        if torch.isfinite(grad_norm):  # the norm is global: every rank takes the same branch
            optimizer.step()
            nonfinite = 0
        else:
            # A NaN / Inf gradient would poison every weight through the clipping scale: skip the step.
            nonfinite += 1
            nonfinite_total += 1
            logger.info(f"step {step + 1}: non-finite gradient norm, update skipped ({nonfinite} in a row)")
            if nonfinite >= cfg.max_nonfinite_steps:
                raise FloatingPointError(
                    f"{nonfinite} consecutive steps had non-finite gradients (last at step {step + 1}); the run "
                    "diverged: lower optim.lr or check the data; the last checkpoint holds finite weights"
                )
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        if pending_d:
            disc_opt.zero_grad(set_to_none=True)  # drop what the generator's backward left in D
            for x_real, x_fake in pending_d:
                with loss_autocast():
                    d_loss = objective.discriminator_loss(x_real, x_fake)
                (d_loss / len(pending_d)).backward()
                losses_sum["disc"] = losses_sum.get("disc", 0.0) + d_loss.detach().float() / len(pending_d)
            _average_gradients(discriminator)
            disc_opt.step()
        if ema is not None:
            ema.update(model)
        step += 1
        last = step == planned["steps"]
        probe_half = cfg.time_budget_minutes and step == start_step + cfg.budget_probe_steps // 2
        probe_end = cfg.time_budget_minutes and step == start_step + cfg.budget_probe_steps
        # The host runs ahead of the GPU between logging steps (the gradient-norm check above is the only
        # sync per step); it waits for the GPU only where a time is read.
        timed = step % cfg.log_every == 0 or last or probe_half or probe_end
        if timed and device.type == "cuda":
            torch.cuda.synchronize()
        window["time"] += time.perf_counter() - t0
        window["steps"] += 1
        logger.advance()

        if probe_half:
            probe_start = time.perf_counter()  # the speed is measured after warm-up and compilation
        if probe_end:
            now = time.perf_counter()
            done = cfg.budget_probe_steps - cfg.budget_probe_steps // 2
            planned["steps"] = budget_steps(cfg, step, done, now - probe_start, now - run_start, device)
            logger.set_total(planned["steps"])
            logger.info(f"time budget {cfg.time_budget_minutes} min: the run ends at step {planned['steps']}")
            last = step == planned["steps"]
        if step % cfg.log_every == 0 or last:
            means = all_reduce_mean({k: float(v) / window["steps"] for k, v in losses_sum.items()}, device)
            rates = all_reduce_mean({"samples": window["samples"], "tokens": window["tokens"]}, device)
            seconds = all_reduce_max(window["time"], device)
            record = {f"loss/{k}": v for k, v in means.items()}
            record.update(
                lr=scheduler.get_last_lr()[0],
                grad_norm=float(grad_norm),
                samples_per_s=rates["samples"] * info.world_size / seconds,
                tokens_per_s=rates["tokens"] * info.world_size / seconds,
                skipped_total=sum(logger.skip_counts.values()),
                nonfinite_steps_total=nonfinite_total,
                data_wait_fraction=window["data"] / max(window["time"], 1e-9),
            )
            if peak and flops_per_step:
                record["mfu"] = flops_per_step * window["steps"] / seconds / (peak * 1e12)
                record["mfu_peak_tflops"] = peak
            postfix = {"loss": f"{means['total']:.4f}", "samp/s": f"{record['samples_per_s']:.1f}"}
            if "mfu" in record:
                postfix["mfu"] = f"{100 * record['mfu']:.1f}%"
            logger.metrics(step, record, postfix)
            losses_sum.clear()
            window = {"time": 0.0, "data": 0.0, "samples": 0, "tokens": 0, "steps": 0}

        if cfg.eval_every and (step % cfg.eval_every == 0 or last):
            mark_graph_step()
            result = evaluate(model, *heldout, autocast)
            scores = {k: v for k, v in result.items() if k.startswith("heldout_")}
            logger.metrics(step, scores)
            if info.is_main:
                for path in save_heldout_pictures(run / "samples", step, result.get("images"), result.get("clips")):
                    logger.image(path.stem.split("_")[0], path, step)
                logger.info(f"step {step}: " + ", ".join(f"{k} {v:.4f}" for k, v in scores.items()))
            final_eval = scores

        stopping = all_reduce_max(float(stop.signum), device) > 0 or step == cfg.stop_at_step
        if step % cfg.ckpt_every == 0 or last or stopping:
            meta = {
                "scheduler": scheduler.state_dict(),
                "config": cfg.to_dict(),
                "model_config": model.config.to_dict(),
            }
            ckpts.save(step, sharded_state(), meta, {"data": loader.state_dict()})
            logger.info(f"checkpoint: step {step} -> {ckpts.path(step)}")
        if stopping:
            signum = int(all_reduce_max(float(stop.signum), device))
            exit_code = 128 + signum if signum else 0
            logger.info(f"stopped at step {step}; rerun the same command to resume")
            break

    summary = {"step": step, "skipped": dict(logger.skip_counts), **final_eval}
    if step == planned["steps"]:
        exported = export_ema(model, ema, run / "export", info.is_main)
        if exported is not None:
            logger.info(f"exported {'EMA' if ema else 'final'} weights to {exported}")
            if cfg.eval_every:
                ema_model = HydraXTokenizer.from_pretrained(exported, device=device)
                ema_model.validate_inputs = False
                ema_scores = {
                    f"ema_{k}": v
                    for k, v in evaluate(ema_model, *heldout, autocast).items()
                    if k.startswith("heldout_")
                }
                logger.metrics(step, ema_scores)
                logger.info("EMA export: " + ", ".join(f"{k} {v:.4f}" for k, v in ema_scores.items()))
                summary.update(ema_scores)
    if info.is_main:
        (run / "summary.json").write_text(json.dumps(summary, indent=2))
    logger.close()
    destroy_distributed()
    summary["exit_code"] = exit_code
    return summary


def _average_gradients(module: nn.Module) -> None:
    """The discriminator is small and replicated on every rank: average its gradients by all-reduce."""
    if not dist.is_initialized():
        return
    world = dist.get_world_size()
    for p in module.parameters():
        if p.grad is not None:
            dist.all_reduce(p.grad)
            p.grad /= world


# ---------------------------------------------------------------------------------------------- command line


def parse_config(argv: Sequence[str] | None = None) -> TokenizerTrainConfig:
    from hydra_x.configs.train_tokenizer import TRAIN_PRESETS

    parser = argparse.ArgumentParser(
        prog="python -m hydra_x.train.tokenizer",
        description="Train the HYDRA-X tokenizer (stage 1, 2 or 3) on image and video data. Settings are a preset "
        "(--config) plus dotted overrides KEY=VALUE, e.g. steps=2000 data.image_size=128 optim.lr=1e-4 "
        "model.width=256 (model.* are TokenizerConfig fields on top of model_preset).",
        epilog=f"presets: {', '.join(sorted(TRAIN_PRESETS))}",
    )
    parser.add_argument("--config", default="tiny", help="a training preset (default: tiny, CPU-sized)")
    parser.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    if args.config not in TRAIN_PRESETS:
        parser.error(f"unknown preset {args.config!r}; choose one of {sorted(TRAIN_PRESETS)}")
    cfg = TRAIN_PRESETS[args.config]()
    model_overrides, overrides = dict(cfg.model), {}
    for item in args.overrides:
        key, sep, value = item.partition("=")
        if not sep:
            parser.error(f"overrides are KEY=VALUE, got {item!r}")
        if key.startswith("model."):
            model_overrides[key[len("model.") :]] = parse_value(value)
        else:
            overrides[key] = parse_value(value)
    try:
        cfg = apply_overrides(cfg, {**overrides, "model": model_overrides})
    except (ValueError, TypeError) as err:
        parser.error(str(err))
    if args.print_config:
        print(json.dumps(cfg.to_dict(), indent=2))
        sys.exit(0)
    return cfg


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cfg = parse_config(argv)
    summary = train(cfg)
    return summary["exit_code"]


if __name__ == "__main__":
    sys.exit(main())
