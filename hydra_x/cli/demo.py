"""``hydra-x demo``: train, evaluate and report on a small HYDRA-X with no download (hydra_x.demo does the work).

    hydra-x demo                                  # about 10 minutes on 2 CPU cores: runs/demo/report/index.html
    hydra-x demo --preset small --device cuda     # one GPU: the `small` tokenizer and SmolLM2-135M where converted
    hydra-x demo --retrain                        # train both models again (--retrain unified: only the LLM side)

A second run reuses the trained runs (their export/ exists) and evaluates and reports again. Progress goes to
stderr; the summary (the report's path and headline figures) to stdout. Errors follow hydra_x.cli.common.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from hydra_x.demo.names import DEFAULT_OUT


def cmd_demo(args: argparse.Namespace) -> int:
    from hydra_x.demo.config import demo_config, resolve
    from hydra_x.demo.run import run_demo
    from hydra_x.demo.training import DemoStopped

    cfg = resolve(demo_config(args.preset), out_dir=args.out, device=args.device, minutes=args.minutes)
    cfg.llm = args.llm
    try:
        result = run_demo(cfg, retrain=args.retrain)
    except DemoStopped as stop:
        print(f"hydra-x demo: {stop}")
        return stop.exit_code
    print(summary_text(result))
    return 0


def summary_text(result) -> str:
    """The closing summary: where the report is, the headline figures, the phase times."""
    f = result.figures

    def num(key: str, digits: int, unit: str = "") -> str:
        v = f.get(key)
        return "n/a" if v is None else f"{v:.{digits}f}{unit}"

    def pct(key: str) -> str:
        v = f.get(key)
        return "n/a" if v is None else f"{100 * v:.1f}%"

    export = result.trainings["unified"].run_dir / "export"
    ckpt = "" if export == Path(DEFAULT_OUT, "unified", "export") else f" --ckpt {export}"  # serve's default
    times = ", ".join(f"{name} {int(sec // 60)}:{int(round(sec % 60)):02d}" for name, sec, _ in result.phases)
    total = sum(sec for _, sec, _ in result.phases)
    return "\n".join(
        [
            f"report: {result.report}  (Markdown: {result.markdown})",
            f"tokenizer: held-out photographs PSNR {num('recon_image_psnr', 2, ' dB')}, SSIM "
            f"{num('recon_image_ssim', 4)}; clips PSNR {num('recon_clip_psnr', 2, ' dB')}",
            f"unified model: generation {pct('generation_overall')} (GenEval overall; the tokenizer's round trip "
            f"{pct('round_trip_generation')}), understanding {pct('understanding_accuracy')} (seen combinations "
            f"{pct('understanding_seen_accuracy')}), video motion {pct('video_motion_accuracy')}, editing "
            f"{pct('editing_success')} (PSNR {num('editing_psnr', 2, ' dB')} outside the edits)",
            f"time: {times} (total {int(total // 60)}:{int(round(total % 60)):02d})",
            f"try it: hydra-x serve{ckpt}  (the web app), or hydra-x chat QUESTION --image FILE{ckpt}",
        ]
    )


def add_commands(sub) -> None:
    from hydra_x.demo.names import DEFAULT_OUT, DEFAULT_PRESET, LLM_CHOICES, PRESET_NAMES, RETRAIN

    p = sub.add_parser(
        "demo",
        help="train a small HYDRA-X (tokenizer and unified model) on the embedded data, evaluate it and write an "
        "HTML / Markdown report; no download",
        description="Train the tokenizer on the photographs bundled with scikit-image and the unified model on the "
        "procedural shapes world, evaluate both (as hydra-x eval recon and eval shapes) and write OUT/report/"
        "index.html and report.md: figures, reconstructions, generated images and clips, answers, edits and loss "
        "curves. The default preset takes about 10 minutes on 2 CPU cores. A second run reuses what was trained.",
    )
    p.add_argument(
        "--preset",
        choices=PRESET_NAMES,
        default=DEFAULT_PRESET,
        help=(
            "cpu: about 10 min on 2 CPU cores; small: one GPU, 64 px, about 25 min; smoke: seconds "
            f"(default {DEFAULT_PRESET})"
        ),
    )
    p.add_argument("--out", default=None, help=f"the demo's folder (default {DEFAULT_OUT})")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="default: cuda if available")
    p.add_argument(
        "--llm",
        choices=LLM_CHOICES,
        default="auto",
        help="the unified model's LLM: smollm2-135m (offline, once converted: hydra-x llm convert-smollm2), a "
        "config-built one, or auto: the preset's choice (default auto)",
    )
    p.add_argument(
        "--retrain",
        nargs="?",
        const="all",
        choices=RETRAIN,
        help="train again instead of reusing: all (default) or only the unified model",
    )
    p.add_argument(
        "--minutes",
        type=float,
        help="the whole demo's planned minutes (the preset's own: 10 for cpu, 25 for small): the trainings' time "
        "budgets are scaled by MINUTES over the preset's, keeping its share for evaluation (18 for small gives the "
        "trainings 14.4); a budget only shortens a training",
    )
    p.set_defaults(func=cmd_demo)
