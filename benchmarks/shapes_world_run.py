"""The shapes world end to end on one GPU: the `small` tokenizer, then the `small` unified model (SmolLM2-135M) with
Source-Target Interaction and with the independent edit layout side by side, each scored on the held-out prompt set.

    python benchmarks/shapes_world_run.py --tokenizer-minutes 4.5 --unified-minutes 11 --out runs/shapes-world
    python benchmarks/shapes_world_run.py --smoke --out /tmp/shapes-smoke     # CPU: a few steps each, to check it

Phases, each through the real command line and each skipped when its output exists (so a run cut short by a job
limit goes on where it stopped):

1. tokenizer (or ``--tokenizer FOLDER``, one trained before, e.g. by benchmarks/tokenizer_round_trip.py): ``hydra-x
   train tokenizer --config small`` under a wall-clock budget (or for ``--tokenizer-steps``) -> OUT/tokenizer, on
   shapes-world renders (``--shapes-images N`` / ``--shapes-clips N`` PNGs and MP4s written to OUT/shapes-images,
   OUT/shapes-clips first), with ``--with-photos`` beside the embedded photographs and clips (``--shapes-weight``
   the renders' share; 0 and 0: photographs only; ``--clips-weight`` the clips', default half the images'), with
   ``--tokenizer-set`` overrides (default: MSE instead of L1, LR 3e-4). Read the evaluation's tokenizer round trip
   first (docs/benchmarks.md): the recipe's own L1 at LR 1e-3 gave back 1.4% of the truth pictures on the
   photographs alone and collapsed the shapes on the mix; with MSE at LR 3e-4 the mix kept 25% and the shapes alone
   97% in 1700 steps
   warm (not among the default phases; benchmarks/shapes_world_job.sh runs it beside the tokenizer phase): each
   arm's unified run for ``--warm-steps`` steps from a randomly initialised tokenizer of the tokenizer's
   architecture -> OUT/warm-ARM, which fills torch.compile's caches on disk so that the timed runs start sooner
2. unified: ``hydra-x train unified --config small`` twice at once on the same GPU (``model.edit_layout=sti`` and
   ``independent``), the same budget, seed and data order, from OUT/tokenizer -> OUT/unified-sti, -independent
3. eval: ``hydra-x eval shapes --seen-questions`` of each export at the training size -> OUT/eval-sti,
   OUT/eval-independent (understanding on held-out and on seen combinations side by side); with
   several ``--guidance`` scales, the first there and each other in OUT/eval-ARM-gSCALE (a sampling setting, so
   one training run answers whether guidance is what scatters its objects)

``--arms`` compares other runs side by side instead of the two layouts, each ``NAME`` or ``NAME=KEY=VALUE,...``
(overrides of that run; a bare ``sti`` or ``independent`` is that layout):

    python benchmarks/shapes_world_run.py --arms sti sti-pos=model.visual_positions=true --out runs/sw-pos

``--size`` and ``--frames`` (default: the recipes' 128 and 17) set the renders, both runs and the evaluation alike;
``--read-size N`` also gives the tokenizer the images rendered at N px, for arms that read images at that size
(``data.understanding_image_size=N,model.understanding_image_size=N``).

Then one table: the steps each run reached, its last logged losses, and the scores side by side
(OUT/summary.json). The budgets include start-up (data workers, compile, the LLM's load); the two unified runs
share the GPU, so each reaches fewer steps than it would alone.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

LAYOUTS = ("sti", "independent")
# Figures of `hydra-x eval shapes` shown side by side: (label, path in report.json).
SCORES = (
    ("generation overall (GenEval)", ("summary", "generation", "overall")),
    ("understanding accuracy", ("summary", "understanding", "accuracy")),
    ("understanding on seen combinations", ("summary", "understanding_control", "accuracy")),
    ("video: motion accuracy", ("summary", "video", "motion_accuracy")),
    ("video: objects in every frame", ("summary", "video", "presence")),
    ("editing success", ("summary", "editing", "success")),
    ("editing PSNR outside the edit (dB)", ("summary", "editing", "psnr")),
    ("editing SSIM outside the edit", ("summary", "editing", "ssim")),
    ("tokenizer round trip: generation", ("summary", "round_trip", "generation", "overall")),
    ("tokenizer round trip: video motion", ("summary", "round_trip", "video", "motion_accuracy")),
    ("tokenizer round trip: editing success", ("summary", "round_trip", "editing", "success")),
)


def run(command: list[str], log: Path) -> subprocess.Popen:
    """Start one phase's command, its output teed into ``log`` (and ours)."""
    print("$", " ".join(command), flush=True)
    log.parent.mkdir(parents=True, exist_ok=True)
    # Two unified runs share the GPU: expandable segments keep each one's unused reserved memory small.
    env = {"PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:True", **os.environ}
    return subprocess.Popen(command, stdout=log.open("w"), stderr=subprocess.STDOUT, env=env)


def wait(procs: dict[str, subprocess.Popen], logs: dict[str, Path]) -> None:
    """Wait for every phase process; then name those that failed (all of them, not only the first)."""
    failed = []
    for name, proc in procs.items():
        if proc.wait() != 0:
            tail = logs[name].read_text(errors="replace")[-4000:]
            failed.append(f"{name} failed ({exit_reason(proc.returncode)}); the end of {logs[name]}:\n{tail}")
    if failed:
        raise SystemExit("\n\n".join(failed))


def exit_reason(code: int) -> str:
    """A process's exit status in words: a negative one is the signal that ended it, with no Python error in its
    log (SIGKILL: most often the host's memory, e.g. several runs compiling at once)."""
    if code >= 0:
        return f"exit {code}"
    try:
        name = signal.Signals(-code).name
    except ValueError:
        name = f"signal {-code}"
    return f"killed by {name}" + (", likely for the host's memory" if -code == signal.SIGKILL else "")


def size_overrides(args: argparse.Namespace, run: str) -> list[str]:
    """The picture side and clip length of ``--size`` and ``--frames`` as overrides of the tokenizer or unified run,
    so that the runs train at the size the renders have and the evaluation scores."""
    data = [f"data.image_size={args.size}", f"data.clip_frames={args.frames}"]
    return data if run == "tokenizer" else [*data, f"model.image_size={args.size}", f"model.clip_frames={args.frames}"]


# The tokenizer run of --smoke: a few CPU steps of a two-block tokenizer.
SMOKE_TOKENIZER = [
    "steps=2",
    "device=cpu",
    "compile=false",
    "data.num_workers=0",
    "data.image_size=32",
    "data.clip_frames=5",
    "data.image_batch_size=2",
    "data.video_batch_size=1",
    "eval_every=0",
    "heldout_images=0",
    "heldout_clips=0",
    "model.depth=2",
]


def tokenizer_phase(args: argparse.Namespace, out: Path) -> Path:
    folder = out / "tokenizer"
    if (folder / "export").is_dir():
        print(f"tokenizer: {folder}/export exists, kept")
        return folder
    cli = [
        sys.executable,
        "-m",
        "hydra_x.cli",
        "train",
        "tokenizer",
        "--config",
        "small",
        f"out_dir={folder}",
        "loss.lpips=0",
    ]  # no LPIPS-VGG weights offline
    if args.smoke:
        cli += SMOKE_TOKENIZER
    else:
        cli += [*tokenizer_length(args), "eval_every=0", "ckpt_every=100000"]
        cli += size_overrides(args, "tokenizer")
    if args.shapes_images or args.shapes_clips:
        sources = shapes_sources(args, out, args.with_photos, args.read_size, args.clips_weight)
        cli.append("data.sources=" + json.dumps(sources))
    cli += args.tokenizer_set + args.tokenizer_extra
    wait({"tokenizer": run(cli, out / "logs" / "tokenizer.log")}, {"tokenizer": out / "logs" / "tokenizer.log"})
    return folder


def tokenizer_length(args: argparse.Namespace) -> list[str]:
    """How long the tokenizer trains: ``--tokenizer-steps`` steps, or as many as ``--tokenizer-minutes`` allow. A
    budget in minutes gives each lent machine another tokenizer (2055 steps on one, 2397-2458 on others; round trips
    of 68.8% and 81-82%), and the unified runs' figures move with it; a number of steps gives every machine the same
    one."""
    if args.tokenizer_steps:
        return [f"steps={args.tokenizer_steps}"]
    return [f"time_budget_minutes={args.tokenizer_minutes}", "steps=100000"]


def shapes_sources(
    args: argparse.Namespace,
    out: Path,
    photos: bool = True,
    read_size: int | None = None,
    clips_weight: float | None = None,
) -> list[dict[str, Any]]:
    """The tokenizer's data: shapes-world renders written now, and with ``photos`` the embedded photographs and
    clips (weights 1 and 0.5); with ``read_size`` the renders at that side too, as a source of their own. The
    shapes clips weigh ``clips_weight`` (default: half the images' weight)."""
    from hydra_x.demo.data import write_shapes_clips, write_shapes_images

    size, frames = (32, 5) if args.smoke else (args.size, args.frames)
    sources: list[dict[str, Any]] = []
    if photos:
        sources += [{"kind": "embedded_images", "weight": 1.0}, {"kind": "embedded_videos", "weight": 0.5}]
    if args.shapes_images:
        folder = write_shapes_images(out / "shapes-images", size, args.shapes_images)
        sources.append({"kind": "image_folder", "path": str(folder), "weight": args.shapes_weight})
        if read_size and read_size != size:  # a source of its own, batched at its size
            folder = write_shapes_images(out / f"shapes-images-{read_size}", read_size, args.shapes_images)
            weight = args.shapes_weight / 2
            sources.append({"kind": "image_folder", "path": str(folder), "weight": weight, "image_size": read_size})
    if args.shapes_clips:
        folder = write_shapes_clips(out / "shapes-clips", size, frames, args.shapes_clips)
        weight = args.shapes_weight / 2 if clips_weight is None else clips_weight
        sources.append({"kind": "video_folder", "path": str(folder), "weight": weight})
    print(f"tokenizer data: {sources}", flush=True)
    return sources


def unified_phase(
    args: argparse.Namespace, out: Path, tokenizer: Path, prefix: str = "unified", extra: tuple[str, ...] = ()
) -> None:
    """Each arm's ``hydra-x train unified`` (side by side) -> OUT/PREFIX-ARM, with ``extra`` overrides last."""
    procs, logs = {}, {}
    for arm, overrides in args.arms.items():
        folder = out / f"{prefix}-{arm}"
        if (folder / "export").is_dir():
            print(f"{prefix} ({arm}): {folder}/export exists, kept")
            continue
        cli = [
            sys.executable,
            "-m",
            "hydra_x.cli",
            "train",
            "unified",
            "--config",
            "small",
            f"tokenizer_init={tokenizer}",
            f"out_dir={folder}",
        ]
        if args.smoke:
            cli += [
                "steps=2",
                "device=cpu",
                "data.num_workers=0",
                "data.image_size=32",
                "data.clip_frames=5",
                "data.examples_per_step=4",
                "max_length=512",
                "eval_every=0",
            ]
        else:
            cli += [
                f"time_budget_minutes={args.unified_minutes}",
                "budget_reserve_s=20",  # no evaluation at the end: the export alone, a few seconds
                "steps=100000",
                "ckpt_every=100000",
                "eval_every=0",
                f"data.num_workers={args.workers}",
            ]
            cli += size_overrides(args, "unified")
            if args.compile:
                cli += ["compile=true"]
            if args.examples:
                cli += [f"data.examples_per_step={args.examples}"]
        cli += args.unified_set + overrides + list(extra)
        logs[arm] = out / "logs" / f"{prefix}-{arm}.log"
        procs[arm] = run(cli, logs[arm])
        if args.smoke:
            # One after another on the CPU: each process takes every core, and several LLMs at once its memory.
            procs[arm].wait()
    wait(procs, logs)


# A warm-up run: enough steps for the data's shapes to vary (automatic dynamic shapes recompile once they do) and
# for the flow head's attention to join half-way; no FLOP-counted eager step.
WARM_OVERRIDES = ("time_budget_minutes=null", "head_attention_from_share=0.5", "mfu=false", "ckpt_every=100000")


def warm_phase(args: argparse.Namespace, out: Path) -> None:
    """Compile the unified runs' graphs while the tokenizer trains, so that the timed runs find them in the compile
    caches (torch.compile's FX-graph and Triton caches on disk, and its record of which sizes turned dynamic). The
    graphs depend on the tokenizer's architecture, not its weights: each arm trains ``--warm-steps`` steps from a
    randomly initialised tokenizer of the tokenizer phase's config (OUT/warm-tokenizer) -> OUT/warm-ARM. On a CPU
    a second compiled `tiny` run in a fresh process took 21 s where the first took 101 (its first step 11 s
    against 71)."""
    from hydra_x.tokenizer import HydraXTokenizer
    from hydra_x.train.tokenizer.__main__ import parse_config

    config = parse_config(["--config", "small", *tokenizer_model_overrides(args)])
    tokenizer = out / "warm-tokenizer"
    HydraXTokenizer.from_config(config.model, seed=config.seed).save_pretrained(tokenizer)
    unified_phase(args, out, tokenizer, "warm", (f"steps={args.warm_steps}", *WARM_OVERRIDES))


def tokenizer_model_overrides(args: argparse.Namespace) -> list[str]:
    """The tokenizer phase's overrides of its model's config (``model.*``), which its export's architecture has."""
    given = [*(SMOKE_TOKENIZER if args.smoke else []), *args.tokenizer_set, *args.tokenizer_extra]
    return [o for o in given if o.startswith("model.") or o.startswith("model=")]


def eval_phase(args: argparse.Namespace, out: Path) -> dict[str, tuple[str, dict]]:
    """Each arm's export scored at each of ``--guidance``: {label: (arm, report)}; the first guidance's label is the
    arm's name, the others' ``ARM g<scale>``."""
    reports = {}
    for layout in args.arms:
        if not (out / f"unified-{layout}" / "export").is_dir():
            # An arm whose run died (one arm of two out of GPU memory, say): the others are still scored.
            print(f"unified ({layout}): no export in {out / f'unified-{layout}'}, not scored", flush=True)
            continue
        for k, guidance in enumerate(args.guidance):
            label = layout if k == 0 else f"{layout} g{guidance:g}"
            folder = out / ("eval-" + label.replace(" ", "-"))
            if not (folder / "report.json").is_file():
                cli = [
                    sys.executable,
                    "-m",
                    "hydra_x.cli",
                    "eval",
                    "shapes",
                    "--ckpt",
                    str(out / f"unified-{layout}" / "export"),
                    "--out",
                    str(folder),
                    "--name",
                    f"small, {label}",
                    "--size",
                    str(32 if args.smoke else args.size),
                    "--steps",
                    str(args.sample_steps),
                    "--guidance",
                    str(guidance),
                    "--frames",
                    str(5 if args.smoke else args.frames),
                    "--seen-questions",
                ]
                if args.edit_guidance is not None:
                    cli += ["--edit-guidance", str(args.edit_guidance)]
                if args.samples_per_prompt > 1:
                    cli += ["--samples-per-prompt", str(args.samples_per_prompt)]
                if args.smoke:
                    cli += ["--limit", "2", "--device", "cpu"]
                elif args.eval_limit:
                    cli += ["--limit", str(args.eval_limit)]
                log = out / "logs" / f"{folder.name}.log"
                wait({label: run(cli, log)}, {label: log})
            reports[label] = (layout, json.loads((folder / "report.json").read_text()))
    if not reports:
        raise SystemExit(f"no arm of {list(args.arms)} has an export to score in {out}")
    return reports


def caption_phase(args: argparse.Namespace, out: Path) -> None:
    """How far another caption, or none, moves each export's prediction (benchmarks/memorise_pairs.py --steps 0)."""
    for arm in args.arms:
        log = out / "logs" / f"caption-{arm}.log"
        cli = [sys.executable, str(Path(__file__).with_name("memorise_pairs.py")), "--ckpt"]
        cli += [str(out / f"unified-{arm}" / "export"), "--steps", "0", "--pairs", "16", "--time-means", "1"]
        cli += ["--size", "32", "--device", "cpu"] if args.smoke else ["--size", str(args.size), "--device", "cuda"]
        wait({arm: run(cli, log)}, {arm: log})
        print(f"caption effect ({arm}):", *log.read_text().splitlines()[-3:], sep="\n", flush=True)


def last_losses(run_dir: Path) -> dict[str, Any]:
    """The run's last logged row: its step and loss terms, and how many examples the run saw by then."""
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    rows = [r for r in rows if any(k.startswith("loss") for k in r)]
    if not rows:
        return {}
    out = {k: v for k, v in rows[-1].items() if k == "step" or k.startswith("loss")}
    config = json.loads((run_dir / "config.json").read_text())
    out["examples seen"] = out["step"] * config["data"]["examples_per_step"] * config["grad_accum"]
    return out


def dig(report: dict, path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(report, dict) or key not in report:
            return None
        report = report[key]
    return report


def table(out: Path, reports: dict[str, tuple[str, dict]]) -> dict[str, Any]:
    """One column per evaluation ({label: (arm, report)}): the arm's last losses, then the report's scores."""
    columns = list(reports)
    losses = {label: last_losses(out / f"unified-{arm}") for label, (arm, _) in reports.items()}
    print("\n| measure | " + " | ".join(columns) + " |\n|---|" + "---:|" * len(columns))
    for key in sorted({k for row in losses.values() for k in row}):
        print(f"| {key} | " + " | ".join(fmt(losses[c].get(key)) for c in columns) + " |")
    for name, path in SCORES:
        print(f"| {name} | " + " | ".join(fmt(dig(reports[c][1], path)) for c in columns) + " |")
    scores = {name: {c: dig(reports[c][1], p) for c in columns} for name, p in SCORES}
    summary = {"losses": losses, "scores": scores}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def parse_arms(specs: list[str]) -> dict[str, list[str]]:
    """``NAME`` or ``NAME=KEY=VALUE,...`` -> {NAME: overrides}; a bare layout name sets that layout. A comma starts
    the next override only where a ``KEY=`` follows it, so a JSON value keeps its commas
    (``two=data.sources=[{"kind":"shapes","balanced_answers":true}],lr_scale=20``)."""
    arms: dict[str, list[str]] = {}
    for spec in specs:
        name, _, rest = spec.partition("=")
        overrides = [o for o in re.split(r",(?=[A-Za-z_][\w.]*=)", rest) if o]
        if not name or any("=" not in o for o in overrides):
            raise SystemExit(f"--arms: expected NAME or NAME=KEY=VALUE,..., got {spec!r}")
        if not overrides:
            if name not in LAYOUTS:
                raise SystemExit(f"--arms: a bare arm must be one of {LAYOUTS}, got {name!r}")
            overrides = [f"model.edit_layout={name}"]
        if name in arms:
            raise SystemExit(f"--arms: {name!r} given twice")
        arms[name] = overrides
    return arms


def fmt(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="runs/shapes-world")
    parser.add_argument(
        "--tokenizer",
        help="a trained tokenizer's run folder (with export/): no tokenizer phase (e.g. the best of "
        "benchmarks/tokenizer_round_trip.py --best)",
    )
    parser.add_argument("--tokenizer-minutes", type=float, default=4.5, help="the tokenizer's wall-clock budget")
    parser.add_argument(
        "--tokenizer-steps", type=int, help="train the tokenizer this many steps instead (the same one on any machine)"
    )
    parser.add_argument("--unified-minutes", type=float, default=11.0)
    parser.add_argument("--workers", type=int, default=6, help="data workers of each unified run")
    parser.add_argument("--warm-steps", type=int, default=30, help="steps of each arm's compile warm-up (warm phase)")
    parser.add_argument(
        "--size", type=int, default=128, help="picture side of the renders, both runs and the evaluation (the recipe's)"
    )
    parser.add_argument("--frames", type=int, default=17, help="frames of a clip, likewise (the recipe's)")
    parser.add_argument("--sample-steps", type=int, default=30)
    parser.add_argument(
        "--guidance", type=float, nargs="+", default=[3.0], help="guidance scales to evaluate each arm at (eval phase)"
    )
    parser.add_argument(
        "--edit-guidance", type=float, help="guidance scale of the edits in the eval phase (default: each --guidance)"
    )
    parser.add_argument(
        "--samples-per-prompt", type=int, default=1, help="images scored a generation prompt (GenEval's protocol: 4)"
    )
    parser.add_argument("--compile", action="store_true", help="compile the unified runs' blocks (compile=true)")
    parser.add_argument("--examples", type=int, help="examples per step of the unified runs (default: the recipe's)")
    parser.add_argument(
        "--unified-set", nargs="*", default=[], metavar="KEY=VALUE", help="more overrides of both unified runs"
    )
    parser.add_argument(
        "--arms", nargs="+", default=list(LAYOUTS), metavar="NAME[=KEY=VALUE,...]", help="the runs side by side"
    )
    parser.add_argument("--smoke", action="store_true", help="CPU, a few steps each: checks the script")
    parser.add_argument("--eval-limit", type=int, help="at most N items per category, kind and op in the evaluation")
    parser.add_argument(
        "--phases", default="tokenizer,unified,eval,caption", help="of tokenizer, warm, unified, eval, caption"
    )
    parser.add_argument("--shapes-images", type=int, default=4000, help="shapes-world PNGs for the tokenizer")
    parser.add_argument("--shapes-clips", type=int, default=1000, help="shapes-world MP4s for the tokenizer")
    parser.add_argument(
        "--tokenizer-extra",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="overrides of the tokenizer run after --tokenizer-set's (e.g. model.temporal_unfold=shared)",
    )
    parser.add_argument(
        "--tokenizer-set",
        nargs="*",
        default=["loss.l1=0", "loss.mse=1", "optim.lr=3e-4", "ema_decay=0.995"],
        metavar="KEY=VALUE",
        help="overrides of the tokenizer run (default: the shapes-world loss, MSE, at LR 3e-4, EMA 0.995: a short "
        "run's EMA must forget its start; none: the recipe's)",
    )
    parser.add_argument(
        "--with-photos",
        action="store_true",
        help="the tokenizer also trains on the embedded photographs and clips (default: the shapes world alone: "
        "at 1700 GPU steps the mix gave back 25%% of the truth pictures, the shapes alone 97%%)",
    )
    parser.add_argument(
        "--shapes-weight", type=float, default=3.0, help="the shapes images' weight (clips: half) beside the photos' 1"
    )
    parser.add_argument(
        "--clips-weight",
        type=float,
        help="the shapes clips' weight (default: half the images'). Their frames between a latent step's last ones "
        "come back from a third of the tokenizer's batches at 29-58%%; clips alone taught them within minutes",
    )
    parser.add_argument(
        "--read-size",
        type=int,
        help="the tokenizer also learns the shapes images rendered at this side (a source of their own, half the "
        "images' weight): for arms that read images at data.understanding_image_size=N",
    )
    args = parser.parse_args()
    args.arms = parse_arms(args.arms)
    if args.smoke:
        args.shapes_images, args.shapes_clips = min(args.shapes_images, 8), min(args.shapes_clips, 2)
    out = Path(args.out)
    phases = set(args.phases.split(","))
    start = time.perf_counter()
    tokenizer = Path(args.tokenizer) if args.tokenizer else out / "tokenizer"
    if "tokenizer" in phases and not args.tokenizer:
        tokenizer = tokenizer_phase(args, out)
        print(f"[{time.perf_counter() - start:.0f} s] tokenizer done", flush=True)
    if "warm" in phases:
        warm_phase(args, out)
        print(f"[{time.perf_counter() - start:.0f} s] warm-up done", flush=True)
    if "unified" in phases:
        unified_phase(args, out, tokenizer)
        print(f"[{time.perf_counter() - start:.0f} s] unified done", flush=True)
    if "eval" in phases:
        table(out, eval_phase(args, out))
        print(f"[{time.perf_counter() - start:.0f} s] eval done", flush=True)
    if "caption" in phases:
        caption_phase(args, out)
        print(f"[{time.perf_counter() - start:.0f} s] caption effect done", flush=True)


if __name__ == "__main__":
    main()
