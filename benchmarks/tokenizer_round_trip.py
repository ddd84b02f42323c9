"""Which `small` tokenizer gives the shapes world back? Several tokenizer runs at once on one GPU, each scored by its
round trip: the shapes scorers of `hydra-x eval shapes` on its reconstructions of the held-out truth pictures, clips
and edit targets (the most a unified model trained on it can score), before any unified model is trained.

    python benchmarks/tokenizer_round_trip.py --minutes 5 --out runs/tok-sweep \\
        --arms photos=mix=photos mix-lr3e-4=mix=shapes,optim.lr=3e-4 mse=mix=shapes,loss.l1=0,loss.mse=1
    python benchmarks/tokenizer_round_trip.py --smoke --out /tmp/tok-sweep-smoke     # CPU: a few steps each

Each arm is ``NAME=KEY=VALUE,...``: overrides of ``hydra-x train tokenizer --config small`` (``loss.lpips=0``: no
VGG weights offline), plus ``mix``, the data: ``photos`` (the recipe's embedded photographs and clips), ``shapes``
(those and shapes-world renders weighted ``--shapes-weight`` and half that for clips) or ``shapes-only``. The runs
share the GPU under the same wall-clock budget, so each reaches fewer steps than it would alone. A run whose export
exists is kept. Then one table: steps, the last L1, the KL at its peak and at the end (a KL falling toward 0 while
L1 rises is the posterior collapsing onto the prior), and the round trip (OUT/summary.json; a grid of truth over
reconstruction per arm, OUT/NAME-round-trip.png). ``--best FOLDER`` links the arm with the highest generation round
trip there, for ``benchmarks/shapes_world_run.py --tokenizer FOLDER``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch
from shapes_world_run import dig, fmt, shapes_sources  # this folder's: the same data and table cells

MIXES = ("photos", "shapes", "shapes-only")


def parse_arms(specs: list[str]) -> dict[str, tuple[str, list[str]]]:
    """``NAME=KEY=VALUE,...`` -> {NAME: (mix, overrides)}."""
    arms: dict[str, tuple[str, list[str]]] = {}
    for spec in specs:
        name, _, rest = spec.partition("=")
        overrides = [o for o in rest.split(",") if o]
        if not name or any("=" not in o for o in overrides) or name in arms:
            raise SystemExit(f"--arms: expected distinct NAME=KEY=VALUE,..., got {spec!r}")
        mixes = [o.partition("=")[2] for o in overrides if o.startswith("mix=")]
        mix = mixes[-1] if mixes else "photos"
        if mix not in MIXES:
            raise SystemExit(f"--arms {name}: mix must be one of {MIXES}, got {mix!r}")
        arms[name] = (mix, [o for o in overrides if not o.startswith("mix=")])
    return arms


def sources(args: argparse.Namespace, out: Path, mix: str) -> list[dict[str, Any]] | None:
    """The data of ``mix`` (None: the recipe's own): shapes_world_run.py's mix (its renders are written once under
    OUT: the writers keep a complete folder), or its renders alone."""
    if mix == "photos":
        return None
    return shapes_sources(args, out, photos=mix == "shapes")


def train(args: argparse.Namespace, out: Path, arms: dict[str, tuple[str, list[str]]]) -> None:
    procs = {}
    for name, (mix, overrides) in arms.items():
        folder = out / name
        if (folder / "export").is_dir():
            print(f"{name}: {folder}/export exists, kept", flush=True)
            continue
        cli = [sys.executable, "-m", "hydra_x.cli", "train", "tokenizer", "--config", "small"]
        cli += [f"out_dir={folder}", "loss.lpips=0", "eval_every=0", "ckpt_every=100000", "steps=100000"]
        if args.smoke:
            cli += ["steps=3", "device=cpu", "compile=false", "data.num_workers=0", "data.image_size=32"]
            cli += ["data.clip_frames=5", "data.image_batch_size=2", "data.video_batch_size=1", "model.depth=2"]
            cli += ["heldout_images=0", "heldout_clips=0"]
        else:
            cli += [f"time_budget_minutes={args.minutes}", f"data.num_workers={args.workers}"]
        data = sources(args, out, mix)
        if data is not None:
            cli.append("data.sources=" + json.dumps(data))
        cli += overrides
        print("$", " ".join(cli), flush=True)
        log = out / "logs" / f"{name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        procs[name] = (subprocess.Popen(cli, stdout=log.open("w"), stderr=subprocess.STDOUT, env=dict(os.environ)), log)
    for name, (proc, log) in procs.items():
        if proc.wait() != 0:
            raise SystemExit(f"{name} failed (exit {proc.returncode}); the end of {log}:\n{log.read_text()[-4000:]}")


def training_trace(folder: Path) -> dict[str, Any]:
    """Steps, the last L1, and the KL at its peak and at the end, from the run's metrics.jsonl."""
    rows = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines() if line.strip()]
    rows = [r for r in rows if "loss/l1" in r]
    if not rows:
        return {}
    kl = [r.get("loss/kl", 0.0) for r in rows]
    return {"steps": rows[-1]["step"], "l1": rows[-1]["loss/l1"], "kl peak": max(kl), "kl last": kl[-1]}


def score(args: argparse.Namespace, out: Path, name: str, device: str) -> dict[str, Any]:
    from hydra_x.data.media import write_image
    from hydra_x.data.shapes import render_image
    from hydra_x.eval.prompts import prompt_set
    from hydra_x.eval.shapes_run import tokenizer_round_trip
    from hydra_x.tokenizer.model import HydraXTokenizer
    from hydra_x.train.visualize import image_grid

    tokenizer = HydraXTokenizer.from_pretrained(out / name / "export", device=device).eval()
    size, frames = (32, 5) if args.smoke else (args.size, 17)
    items = prompt_set().limited(2 if args.smoke else args.limit)
    summary, _ = tokenizer_round_trip(tokenizer, items, size=size, frames=frames)
    shown = items.generation[:: max(1, len(items.generation) // 12)][:12]
    truth = torch.stack([render_image(i.scene, size, size) for i in shown])
    with torch.no_grad():
        recon = tokenizer.decode(tokenizer.encode(truth.to(device))).float().clamp(-1, 1).cpu()
    write_image(out / f"{name}-round-trip.png", image_grid(truth, recon))
    return summary


ROWS = (
    ("generation overall", ("generation", "overall")),
    ("single object", ("generation", "categories", "single_object", "accuracy")),
    ("two objects", ("generation", "categories", "two_object", "accuracy")),
    ("counting", ("generation", "categories", "counting", "accuracy")),
    ("colours", ("generation", "categories", "colors", "accuracy")),
    ("position", ("generation", "categories", "position", "accuracy")),
    ("colour attribution", ("generation", "categories", "color_attr", "accuracy")),
    ("video motion", ("video", "motion_accuracy")),
    ("video presence", ("video", "presence")),
    ("editing success", ("editing", "success")),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--arms", nargs="+", default=["photos=mix=photos"])
    parser.add_argument("--out", default="runs/tok-sweep")
    parser.add_argument(
        "--minutes",
        type=float,
        default=5.0,
        help="each run's wall-clock budget (they run at once); it includes compiling and the export's 60 s reserve, "
        "so below about 4 minutes a run trains little (2.5 minutes: 100 steps on an H200)",
    )
    parser.add_argument("--workers", type=int, default=3, help="data workers of each run")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--shapes-images", type=int, default=4000)
    parser.add_argument("--shapes-clips", type=int, default=500)
    parser.add_argument("--shapes-weight", type=float, default=3.0)
    parser.add_argument("--limit", type=int, help="at most N prompt-set items per category, kind and op")
    parser.add_argument("--best", help="link the arm with the highest generation round trip here")
    parser.add_argument("--smoke", action="store_true", help="CPU, a few steps each: checks the script")
    args = parser.parse_args()
    if args.smoke:
        args.shapes_images, args.shapes_clips = 8, 2
    arms = parse_arms(args.arms)
    out = Path(args.out)
    start = time.perf_counter()
    train(args, out, arms)
    print(f"[{time.perf_counter() - start:.0f} s] training done", flush=True)
    device = "cuda" if torch.cuda.is_available() and not args.smoke else "cpu"
    results = {}
    for name in arms:
        results[name] = {"trace": training_trace(out / name), "round trip": score(args, out, name, device)}
        print(f"[{time.perf_counter() - start:.0f} s] {name} scored", flush=True)
    print("\n| measure | " + " | ".join(arms) + " |\n|---|" + "---:|" * len(arms))
    for key in ("steps", "l1", "kl peak", "kl last"):
        print(f"| {key} | " + " | ".join(fmt(results[a]["trace"].get(key)) for a in arms) + " |")
    for label, path in ROWS:
        print(f"| round trip: {label} | " + " | ".join(fmt(dig(results[a]["round trip"], path)) for a in arms) + " |")
    (out / "summary.json").write_text(json.dumps(results, indent=2))
    if args.best:
        best = max(arms, key=lambda a: dig(results[a]["round trip"], ("generation", "overall")) or 0.0)
        link = Path(args.best)
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink():
            link.unlink()
        link.symlink_to((out / best).resolve())
        print(f"best: {best} -> {link}", flush=True)


if __name__ == "__main__":
    main()
