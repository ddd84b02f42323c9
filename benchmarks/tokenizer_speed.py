"""Encode / decode speed of the HYDRA-X tokenizer on one GPU, per attention variant, against two VAEs.

    python benchmarks/tokenizer_speed.py                      # so400m, bf16, all cases, all variants, peers
    python benchmarks/tokenizer_speed.py --device cpu --preset tiny --cases images256 --repeats 2 --warmup 1 --no-peers

Times are medians over --repeats calls after --warmup calls (CUDA events on a GPU, perf_counter on the CPU);
"enc+dec" is timed as one call, not summed. Peak memory is the allocator's peak over one encode+decode,
weights and inputs included. FLOPs are counted once per case on the fast path with FlopCounterMode.
Peers (random weights, when diffusers imports): the Wan2.2 VAE (TI2V-5B config) and the SD 1.x VAE.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import datetime
import gc
import json
import platform
import statistics
import time

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from hydra_x.tokenizer.model import HydraXTokenizer

VARIANTS = {  # name -> from_preset overrides
    "fast": dict(attention="tubelet", attention_impl="auto"),
    "masked": dict(attention="tubelet", attention_impl="masked"),
    "full": dict(attention="full", attention_impl="auto"),
    "flex": dict(attention="tubelet", attention_impl="flex"),  # last: it compiles, and may fail to
}
LABELS = {
    "fast": "tubelet, fast path",
    "masked": "tubelet, masked SDPA",
    "full": "full attention",
    "flex": "tubelet, FlexAttention",
}
CASES = {  # name -> input shape; the last two are small inputs for CPU smoke tests of the peers
    "images256": (16, 3, 256, 256),
    "clip17x256": (1, 3, 17, 256, 256),
    "clip17x512": (1, 3, 17, 512, 512),
    "images64": (1, 3, 64, 64),
    "clip5x64": (1, 3, 5, 64, 64),
}
DEFAULT_CASES = ["images256", "clip17x256", "clip17x512"]
H100_SXM_BF16_TFLOPS = 989.0
TARGET_CASE, TARGET_MS, TARGET_GIB = "clip17x512", 75.0, 4.3
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}

# Wan-AI/Wan2.2-TI2V-5B-Diffusers vae/config.json; the latent statistics (48 channels) are only used by
# pipelines, never by encode/decode, so zeros / ones stand in for the real values here.
# fmt: off
WAN22_VAE_CONFIG = dict(
    base_dim=160, decoder_base_dim=256, z_dim=48, dim_mult=[1, 2, 4, 4], num_res_blocks=2, attn_scales=[],
    temperal_downsample=[False, True, True], dropout=0.0, is_residual=True, in_channels=12, out_channels=12,
    patch_size=2, scale_factor_spatial=16, scale_factor_temporal=4, latents_mean=[0.0] * 48, latents_std=[1.0] * 48,
)
# Stable Diffusion 1.x VAE (runwayml/stable-diffusion-v1-5 vae/config.json).
SD_VAE_CONFIG = dict(
    in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4, block_out_channels=(128, 256, 512, 512), layers_per_block=2,
    act_fn="silu", latent_channels=4, norm_num_groups=32, sample_size=512,
)
# fmt: on


def parse_overrides(items: list[str]) -> dict:
    """key=value pairs; values are Python literals where they parse (ints, floats, tuples, None), else strings."""
    out = {}
    for item in items:
        key, _, value = item.partition("=")
        if value.lower() in ("true", "false"):
            out[key] = value.lower() == "true"
            continue
        try:
            out[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out[key] = value
    return out


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_ms(fn, device: torch.device, repeats: int, warmup: int) -> float:
    """Median milliseconds of ``fn()`` over ``repeats`` calls after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    sync(device)
    if device.type != "cuda":
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            times.append((time.perf_counter() - start) * 1e3)
        return statistics.median(times)
    events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(repeats)]
    for start, end in events:
        start.record()
        fn()
        end.record()
    torch.cuda.synchronize(device)
    return statistics.median(start.elapsed_time(end) for start, end in events)


def peak_gib(fn, device: torch.device) -> float | None:
    """Peak allocated GiB over one ``fn()``, counting what is already allocated (weights, inputs)."""
    if device.type != "cuda":
        return None
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    fn()
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device) / 2**30


def count_flops(fn, device: torch.device) -> int:
    # FlopCounterMode counts the CUDA SDPA kernels but not the CPU flash kernel: use the math path there.
    ctx = sdpa_kernel([SDPBackend.MATH]) if device.type == "cpu" else contextlib.nullcontext()
    with ctx, FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def matmul_tflops(device: torch.device) -> float | None:
    """The bf16 matmul ceiling of this GPU: an 8192^3 product, median of 10 after warmup."""
    if device.type != "cuda":
        return None
    a, b = (torch.randn(8192, 8192, device=device, dtype=torch.bfloat16) for _ in range(2))
    ms = time_ms(lambda: a @ b, device, repeats=10, warmup=5)
    return 2 * 8192**3 / ms / 1e9


def bench(encode, decode, x: torch.Tensor, device: torch.device, repeats: int, warmup: int) -> dict:
    z = encode(x)
    row = {
        "encode_ms": time_ms(lambda: encode(x), device, repeats, warmup),
        "decode_ms": time_ms(lambda: decode(z), device, repeats, warmup),
        "enc_dec_ms": time_ms(lambda: decode(encode(x)), device, repeats, warmup),
    }
    z = None  # the peak below counts the weights and x, not a stale latent
    row["peak_gib"] = peak_gib(lambda: decode(encode(x)), device)
    return row


def progress(name: str, case: str, row: dict) -> None:
    text = row.get("note") or ", ".join(f"{k} {fmt(v, '.2f')}" for k, v in row.items())
    print(f"  {name:>10} {case:>11}: {text}", flush=True)


def free(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def build_tokenizer(args, variant: str) -> HydraXTokenizer:
    overrides = {**parse_overrides(args.overrides), **VARIANTS[variant]}
    model = HydraXTokenizer.from_preset(args.preset, device=args.device, dtype=DTYPES[args.dtype], seed=0, **overrides)
    model.validate_inputs = False  # the value check syncs the device
    return model.eval()


def run_tokenizer(args, inputs: dict, results: dict, flops: dict) -> None:
    device = torch.device(args.device)
    for variant in args.variants:
        model = build_tokenizer(args, variant)
        for case, x in inputs.items():
            try:
                if variant == "fast":
                    flops[case] = count_flops(lambda: model.decode(model.encode(x)), device)  # noqa: B023
                row = bench(model.encode, model.decode, x, device, args.repeats, args.warmup)
            except Exception as e:  # FlexAttention may not compile on this stack: note it and go on
                if variant != "flex":
                    raise
                row = {"note": f"skipped: {type(e).__name__}: {(str(e).splitlines() or [''])[0]}"[:160]}
            results[case][variant] = row
            progress(variant, case, row)
        model = None
        free(device)
    if "fast" not in args.variants:  # the useful work is still the fast path's
        model = build_tokenizer(args, "fast")
        for case, x in inputs.items():
            flops[case] = count_flops(lambda: model.decode(model.encode(x)), device)  # noqa: B023
        model = None
        free(device)


def bench_vae(vae, x: torch.Tensor, args) -> dict:
    repeats, device = args.peer_repeats or args.repeats, torch.device(args.device)
    try:
        encode = lambda v: vae.encode(v).latent_dist.mode()
        return bench(encode, lambda z: vae.decode(z).sample, x, device, repeats, args.warmup)
    except torch.cuda.OutOfMemoryError as e:
        return {"note": f"skipped: out of memory ({str(e).splitlines()[0][:80]})"}


def run_peers(args, inputs: dict, results: dict) -> None:
    try:
        from diffusers import AutoencoderKL, AutoencoderKLWan
        from diffusers.utils import logging as diffusers_logging
    except ImportError as e:
        print(f"\nNote: diffusers does not import ({e}); peers skipped.")
        return
    diffusers_logging.set_verbosity_error()  # not the "keep in float32" notice of .to(bf16)
    device, dtype = torch.device(args.device), DTYPES[args.dtype]
    peers = {
        "wan2.2-vae": lambda: AutoencoderKLWan(**WAN22_VAE_CONFIG),
        "sd-vae": lambda: AutoencoderKL(**SD_VAE_CONFIG),
    }
    for name, make in peers.items():
        torch.manual_seed(0)
        vae = make().to(device=device, dtype=dtype).eval()
        for case, x in inputs.items():
            if name == "sd-vae" and x.ndim == 5:
                continue  # the SD VAE takes images only
            if name == "wan2.2-vae" and x.ndim == 4:
                x = x.unsqueeze(2)  # images as 1-frame videos
            results[case][name] = bench_vae(vae, x, args)
            progress(name, case, results[case][name])
        vae = None
        free(device)


def fmt(value, spec: str = ".1f") -> str:
    return "-" if value is None else format(value, spec)


def print_case_table(case: str, rows: dict, flops: int | None, ceiling: float | None) -> None:
    shape = " x ".join(map(str, CASES[case]))
    print(f"\n### {case}: input {shape}\n")
    gflop = fmt(flops / 1e9 if flops else None, ".4g")
    print(
        f"TFLOP/s and MFU use the fast path's counted FLOPs ({gflop} GFLOP per encode+decode) as the useful work "
        "of every variant: the masked path is counted as dense attention and full attention computes more, so "
        "their own FLOPs are higher. MFU: against the bf16 matmul ceiling measured in this run, and against "
        f"the nominal {H100_SXM_BF16_TFLOPS:.0f} TFLOP/s of an H100 SXM. Peers: random weights.\n"
    )
    fast_ms = rows.get("fast", {}).get("enc_dec_ms")
    print("| model | encode ms | decode ms | enc+dec ms | vs fast | peak GiB | TFLOP/s | MFU (meas.) | MFU (989) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, row in rows.items():
        label = LABELS.get(name, name)
        if "note" in row:
            print(f"| {label} | {row['note']} |" + " |" * 7)
            continue
        ms = row["enc_dec_ms"]
        ours = name in VARIANTS and flops
        tflops = flops / ms / 1e9 if ours else None
        mfu = tflops / ceiling if tflops and ceiling else None
        mfu_nominal = tflops / H100_SXM_BF16_TFLOPS if tflops and ceiling else None
        ratio = f"{ms / fast_ms:.2f}x" if fast_ms else "-"
        times = [fmt(row[k], ".2f") for k in ("encode_ms", "decode_ms", "enc_dec_ms")]
        cells = [label, *times, ratio, fmt(row["peak_gib"], ".2f"), fmt(tflops, ".4g"), fmt(mfu, ".1%")]
        print("| " + " | ".join([*cells, fmt(mfu_nominal, ".1%")]) + " |")


def ratio_rows(results: dict) -> list[dict]:
    rows = []
    for case, models in results.items():
        fast = models.get("fast")
        for name, row in models.items():
            if name in VARIANTS or "note" in row or not fast or "note" in fast:
                continue
            keys = ("encode_ms", "decode_ms", "enc_dec_ms")
            rows.append({"case": case, "peer": name, **{k: row[k] / fast[k] for k in keys}})
    return rows


def print_summary(results: dict, device: torch.device) -> dict:
    ratios = ratio_rows(results)
    if ratios:
        print("\n### Peers against the fast path (peer time / HYDRA-X time; > 1: HYDRA-X is faster)\n")
        print("| case | peer | encode | decode | encode+decode |")
        print("|---|---|---:|---:|---:|")
        for r in ratios:
            cells = " | ".join(f"{r[k]:.2f}x" for k in ("encode_ms", "decode_ms", "enc_dec_ms"))
            print(f"| {r['case']} | {r['peer']} | {cells} |")
    target = results.get(TARGET_CASE, {}).get("fast")
    if target and "note" not in target:
        ms, gib = target["enc_dec_ms"], target["peak_gib"]
        ok_ms, ok_gib = ms <= TARGET_MS, gib is not None and gib <= TARGET_GIB
        print(
            f"\nTarget ({TARGET_CASE}, fast path, {device.type}): encode+decode {ms:.2f} ms <= {TARGET_MS:.0f} ms: "
            f"{'PASS' if ok_ms else 'FAIL'}; peak {fmt(gib, '.2f')} GiB <= {TARGET_GIB} GiB: "
            f"{'PASS' if ok_gib else 'FAIL' if gib is not None else 'n/a (no CUDA)'}"
        )
    return {"ratios": ratios}


def environment(device: torch.device) -> dict:
    env = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": str(device),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        env.update(gpu=props.name, cuda=torch.version.cuda, sms=props.multi_processor_count)
    try:
        import diffusers

        env["diffusers"] = diffusers.__version__
    except ImportError:
        env["diffusers"] = None
    return env


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--preset", default="so400m")
    p.add_argument("--dtype", default="bf16", choices=list(DTYPES))
    p.add_argument("--cases", nargs="+", default=DEFAULT_CASES, choices=list(CASES))
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--peer-repeats", type=int, default=None, help="repeats for the peers (default: --repeats)")
    p.add_argument("--no-peers", action="store_true")
    p.add_argument("--json", default=None, metavar="PATH", help="write every number to this file")
    p.add_argument("--overrides", nargs="*", default=[], metavar="KEY=VALUE", help="from_preset overrides")
    args = p.parse_args()
    device = torch.device(args.device)

    env = environment(device)
    print("## Tokenizer speed\n")
    print(" | ".join(f"{k}: {v}" for k, v in env.items()))
    print(f"preset {args.preset}, {args.dtype}, overrides {parse_overrides(args.overrides)}, repeats {args.repeats}")
    ceiling = matmul_tflops(device)
    print(f"bf16 matmul ceiling (8192^3, median of 10): {fmt(ceiling)} TFLOP/s", flush=True)

    torch.manual_seed(0)
    inputs = {c: torch.rand(CASES[c], device=device, dtype=DTYPES[args.dtype]) * 2 - 1 for c in args.cases}
    results: dict[str, dict] = {c: {} for c in args.cases}
    flops: dict[str, int] = {}
    with torch.inference_mode():
        run_tokenizer(args, inputs, results, flops)
        if args.no_peers:
            print("\nPeers skipped (--no-peers).")
        else:
            run_peers(args, inputs, results)

    for case in args.cases:
        print_case_table(case, results[case], flops.get(case), ceiling)
    summary = print_summary(results, device)
    if args.json:
        record = {"env": env, "args": vars(args), "matmul_tflops": ceiling, "flops": flops, "results": results}
        with open(args.json, "w") as f:
            json.dump({**record, **summary}, f, indent=2)
        print(f"\nWrote {args.json}")


if __name__ == "__main__":
    main()
