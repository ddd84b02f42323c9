"""``hydra-x eval``: reconstruction metrics under a pinned protocol, tables of several reports, the shapes-world
scorers of the unified model (generation, understanding, video, editing), and its edits of and answers to files of
your own.

    hydra-x eval recon --ckpt DIR --data FOLDER|SHARDS|embedded --protocol image256 --out DIR
    hydra-x eval recon --model diffusers:REPO_OR_FOLDER --data ... --protocol video17x256 --out DIR
    hydra-x eval table a/report.json b/report.json [--out table.md]
    hydra-x eval shapes --ckpt DIR --out DIR [--size 64 --question-size S --frames 17 --steps 20 --guidance 3
                        --edit-guidance G --shift S --limit N]
    hydra-x eval edits --ckpt DIR --data edits.jsonl --out DIR [--size 256 --steps 20 --guidance 3 --limit N]
    hydra-x eval questions --ckpt DIR --data pope.jsonl --out DIR [--size 256 --frames 17 --limit N]
    torchrun --nproc_per_node N -m hydra_x.cli.eval recon ...     (samples split by index across ranks)

Errors a user can fix print one line ``hydra-x eval: error: ...`` and exit with 2, as in hydra_x.cli.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from hydra_x.cli.common import CliError, Parser, note, run_guarded, warn
from hydra_x.device import resolve_device
from hydra_x.distributed import destroy_distributed, init_distributed
from hydra_x.errors import InputError
from hydra_x.eval.protocols import PROTOCOLS
from hydra_x.tokenizer.io import resolve_source

PROG = "hydra-x eval"
DIFFUSERS_PREFIX = "diffusers:"

PROTOCOL_HELP = (
    "image256: resize the short side to 256 (bicubic, antialiased), centre crop 256x256; PSNR, SSIM, LPIPS, "
    "rFID (Inception pool3 features of the originals against those of the reconstructions). video17x256: the "
    "first 17 frames of each video (native frame rate; --frame-stride k takes every k-th), each frame resized "
    "and centre cropped to 256x256; per-frame PSNR and SSIM averaged over the clip, LPIPS on frames, rFVD (I3D "
    "features of clips). --size, --frames, --frame-stride change a preset; the report then names the change"
)


def _diffusers_source(args: argparse.Namespace) -> str | None:
    """The peer of ``--model diffusers:SOURCE`` (None: HYDRA-X from --ckpt / --preset)."""
    if not args.model:
        return None
    if not args.model.startswith(DIFFUSERS_PREFIX) or len(args.model) == len(DIFFUSERS_PREFIX):
        raise CliError(f"--model takes diffusers:<repo id or folder>, got {args.model!r}")
    if args.ckpt or args.preset:
        raise CliError("give either --model diffusers:... or --ckpt / --preset (HYDRA-X), not both")
    return args.model[len(DIFFUSERS_PREFIX) :]


def _recon(args: argparse.Namespace) -> int:
    import torch

    from hydra_x.eval.models import ModelLoadError, load_diffusers, load_hydra_x
    from hydra_x.eval.protocols import resolve_protocol
    from hydra_x.eval.recon import MetricUnavailableError, ReconOptions, evaluate
    from hydra_x.eval.report import build_report, write_outputs
    from hydra_x.eval.samples import DataSpecError, EvalData

    if args.batch_size < 1:
        raise CliError(f"--batch-size must be at least 1, got {args.batch_size}")
    if args.decode_steps is not None and args.decode_steps < 1:
        raise CliError(f"--decode-steps must be at least 1, got {args.decode_steps}")
    try:
        protocol = resolve_protocol(
            args.protocol,
            size=args.size,
            frames=args.frames,
            frame_stride=args.frame_stride,
            max_samples=args.max_samples,
        )
    except ValueError as err:
        raise CliError(str(err)) from err
    diffusers_source = _diffusers_source(args)
    source = None if diffusers_source else resolve_source(args.ckpt, args.preset, args.seed, "tiny")
    weights = args.fid_weights if protocol.media == "image" else args.fvd_weights
    options = ReconOptions(
        batch_size=args.batch_size,
        require_all=args.require_all,
        lpips_weights=args.lpips_weights,
        feature_net=args.feature_net,
        feature_weights=weights,
        picture_columns=3 if protocol.media == "image" else 2,
    )
    try:
        data = EvalData(args.data, protocol)
    except (DataSpecError, FileNotFoundError) as err:
        raise CliError(str(err)) from err
    device, dtype = resolve_device(args.device, args.dtype)
    info = init_distributed(device.type)  # a no-op without torchrun
    try:
        device = info.device
        try:
            if diffusers_source:
                model = load_diffusers(diffusers_source, device, dtype, subfolder=args.subfolder)
            else:
                if source.checkpoint is None:
                    warn(
                        f"no trained weights given (--ckpt); evaluating a randomly initialised '{source.preset}' "
                        f"tokenizer (seed {source.seed})"
                    )
                model = load_hydra_x(source, device, dtype, decode_steps=args.decode_steps)
            if args.name:
                model.name = args.name
            result = evaluate(model, data, protocol, options, info.rank, info.world_size)
        except (ModelLoadError, MetricUnavailableError) as err:
            raise CliError(str(err)) from err
        except (ValueError, OSError) as err:  # no usable sample, a missing or wrong feature-net file, ...
            if isinstance(err, InputError):
                raise
            raise CliError(str(err)) from err
        if info.is_main:
            report = build_report(result, protocol, model, data, options)
            paths = write_outputs(Path(args.out), report, result)
            figures = ", ".join(
                f"{k} {v['value']:.4g}" if v.get("available") else f"{k} n/a" for k, v in report["metrics"].items()
            )
            print(f"{model.name} on {report['data']['evaluated']} samples ({protocol.name}): {figures}")
            skipped = report["data"]["skipped"]
            if skipped:
                print(f"{PROG}: warning: {skipped} item(s) skipped, listed in {paths[0]}", file=sys.stderr)
            print(f"wrote {', '.join(str(p) for p in paths)}")
    finally:
        if torch.distributed.is_initialized():
            destroy_distributed()
    return 0


def _table(args: argparse.Namespace) -> int:
    from hydra_x.eval.report import load_reports, table

    try:
        text = table(load_reports(args.reports))
    except ValueError as err:
        raise CliError(str(err)) from err
    if args.out:
        Path(args.out).write_text(text)
    print(text, end="")
    return 0


def _shapes(args: argparse.Namespace) -> int:
    from hydra_x.cli.unified import load_unified
    from hydra_x.eval.prompts import PROMPT_SET_VERSION, SEEN_VERSION, prompt_set
    from hydra_x.eval.shapes_report import build_report, summary_line, write_outputs
    from hydra_x.eval.shapes_run import evaluate_shapes

    _check_sampling(args, ("size", "steps", "limit", "batch_size", "frames", "question_size", "samples_per_prompt"))
    try:
        items = prompt_set(args.prompt_set)
    except ValueError as err:
        raise CliError(str(err)) from err
    if args.seen_questions and args.prompt_set != PROMPT_SET_VERSION:
        raise CliError(
            f"--seen-questions asks {SEEN_VERSION}'s questions beside {PROMPT_SET_VERSION}'s; not with "
            f"--prompt-set {args.prompt_set}"
        )
    args.seed = 0 if args.seed is None else args.seed
    model = load_unified(args)  # --ckpt xor --preset; a random preset is warned about
    result = evaluate_shapes(
        model,
        items,
        size=args.size,
        frames=args.frames,
        steps=args.steps,
        guidance=args.guidance,
        sampler=args.sampler,
        shift=args.shift,
        edit_start=args.edit_start,
        edit_guidance=args.edit_guidance,
        seed=args.seed,
        limit=args.limit,
        batch_size=args.batch_size,
        progress=note,
        round_trip=args.round_trip,
        control=prompt_set(SEEN_VERSION) if args.seen_questions else None,
        question_size=args.question_size,
        samples_per_prompt=args.samples_per_prompt,
    )
    report = build_report(result, _model_info(args, model), model.device)
    return _wrote(summary_line(report), write_outputs(Path(args.out), report, result))


def _model_info(args: argparse.Namespace, model) -> dict:
    """The unified model in a report: its checkpoint (with weight digests) or preset, named by --name if given."""
    from hydra_x.cli.unified import DEFAULT_PRESET
    from hydra_x.eval.shapes_run import model_info

    info = model_info(model, checkpoint=args.ckpt, preset=args.preset or DEFAULT_PRESET, seed=args.seed)
    if args.name:
        info["name"] = args.name
    return info


def _wrote(summary: str, paths: list[Path]) -> int:
    print(summary)
    print(f"wrote {', '.join(str(p) for p in paths)}")
    return 0


def _add_shapes(sub) -> None:
    p = sub.add_parser(
        "shapes",
        help="GenEval-style scores of a unified model on the shapes world's held-out prompt set",
        description="Generate images for the versioned prompt set (held-out combinations of the shapes world; "
        "GenEval's six categories), answer held-out questions, generate clips of moving objects (video models) "
        "and edit images (models with an edit method), read every output back into objects and score it; the "
        "same scorers also read the model's tokenizer's reconstructions of the truth (the tokenizer round trip: "
        "the most generation, video and editing can score through that tokenizer). "
        "Writes OUT/report.json (every figure and item, the prompt-set version and digest, the model, the "
        "settings), report.md and sample grids (generation.png, video.png, editing.png); prints one summary line.",
    )
    p.add_argument("--out", required=True, help="folder for report.json, report.md and the grids")
    g = _add_sampling(p, size=64)
    g.add_argument("--frames", type=int, default=17, help="frames per generated clip, 1 + 4k (default 17)")
    g.add_argument("--batch-size", type=int, default=16, help="prompts generated together (default 16)")
    g.add_argument(
        "--samples-per-prompt",
        type=int,
        default=1,
        help="images generated for each generation prompt, each scored (default 1; GenEval's protocol draws 4): "
        "sample k is seed + k's single sample",
    )
    g.add_argument(
        "--edit-guidance",
        type=float,
        help="guidance scale of the edits (default: --guidance); a scale that draws prompts better can keep less of "
        "an edit's source",
    )
    g.add_argument(
        "--question-size",
        type=int,
        help="side of the scenes the questions are asked about (default: the model's understanding_image_size, "
        "else --size)",
    )
    g = p.add_argument_group("prompt set")
    g.add_argument(
        "--prompt-set",
        default="shapes-v1",
        help="shapes-v1 (default): combinations never drawn for training; shapes-v1-seen: its control, the same "
        "categories from combinations training does draw (new scenes): a gap between the two is what the model "
        "fails to recombine",
    )
    g.add_argument("--limit", type=int, help="at most N items per generation category, question kind and edit op")
    g.add_argument(
        "--no-round-trip",
        dest="round_trip",
        action="store_false",
        help="skip scoring the tokenizer's reconstructions of the truth (the round trip)",
    )
    g.add_argument(
        "--seen-questions",
        action="store_true",
        help="also answer the questions of shapes-v1-seen (the same kinds about combinations training draws) and "
        "report that accuracy beside the held-out one",
    )
    p.set_defaults(func=_shapes)


def _check_counts(args: argparse.Namespace, counts: tuple[str, ...]) -> None:
    """The counts given must be at least 1."""
    for name in counts:
        value = getattr(args, name)
        if value is not None and value < 1:
            raise CliError(f"--{name.replace('_', '-')} must be at least 1, got {value}")


def _check_sampling(args: argparse.Namespace, counts: tuple[str, ...]) -> None:
    """The counts given must be at least 1 and --shift positive (``hydra-x eval shapes`` and ``edits``)."""
    _check_counts(args, counts)
    if args.shift is not None and not args.shift > 0:
        raise CliError(f"--shift must be positive, got {args.shift}")
    if not 0 < args.edit_start <= 1:
        raise CliError(f"--edit-start must be in (0, 1], got {args.edit_start}")


def _add_model(p: argparse.ArgumentParser) -> None:
    """The unified model's options (``hydra-x eval shapes``, ``edits`` and ``questions``)."""
    g = p.add_argument_group("model")
    g.add_argument("--ckpt", metavar="DIR_OR_HUB_ID", help="HydraX weights: a save_pretrained folder or a Hub id")
    g.add_argument("--preset", metavar="NAME", help="without --ckpt: a HydraX preset with random weights (tests)")
    g.add_argument("--seed", type=int, help="sampling seed, and the seed of --preset's random weights (default 0)")
    g.add_argument("--name", help="the model's name in the report")
    g.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="default: cuda if available")
    g.add_argument("--dtype", choices=("auto", "float32", "bfloat16"), default="auto", help="auto: bf16 on cuda")


def _add_sampling(p: argparse.ArgumentParser, size: int) -> argparse._ArgumentGroup:
    """The unified model's and its sampling's options (``hydra-x eval shapes`` and ``edits``); returns the
    sampling group."""
    _add_model(p)
    g = p.add_argument_group("sampling")
    g.add_argument(
        "--size", type=int, default=size, help=f"image side in pixels, a multiple of the patch (default {size})"
    )
    g.add_argument("--steps", type=int, default=20, help="sampling steps (default 20)")
    g.add_argument("--guidance", type=float, default=3.0, help="classifier-free guidance scale (default 3)")
    g.add_argument("--sampler", choices=("euler", "heun"), default="euler", help="default euler")
    g.add_argument(
        "--shift", type=float, help="time shift toward the noise (default: the model's resolution-dependent shift)"
    )
    g.add_argument(
        "--edit-start",
        type=float,
        default=1.0,
        help="flow time an edit's sampling starts at: 1 (default) from noise; below 1 from the source noised to that "
        "time (SDEdit; diffusers' img2img strength), which keeps more of the source",
    )
    return g


def _add_user_file(p: argparse.ArgumentParser, kind: str, outputs: str, media: str) -> None:
    """The options of an evaluation on a file of the user's (``hydra-x eval edits`` and ``questions``)."""
    p.add_argument("--data", required=True, help=f"the {kind} file (.jsonl, or .json holding an array)")
    p.add_argument("--media-root", help=f"where the records' relative {media} paths start (default: the file's folder)")
    p.add_argument("--out", required=True, help=f"folder for {outputs}")
    p.add_argument(
        "--limit",
        type=int,
        help=f"take only the first N records the scan keeps (one whose {media} does not decode is listed as skipped)",
    )


def _edits(args: argparse.Namespace) -> int:
    from hydra_x.cli.unified import load_unified
    from hydra_x.eval.edits import build_report, evaluate_edit_file, scan_edit_file, summary_line, write_outputs

    _check_sampling(args, ("size", "steps", "limit"))
    args.seed = 0 if args.seed is None else args.seed
    index = scan_edit_file(args.data, args.media_root)  # a file with nothing to edit fails before the model loads
    model = load_unified(args)
    settings = dict(size=args.size, steps=args.steps, guidance=args.guidance, sampler=args.sampler, seed=args.seed)
    options = {k: settings[k] for k in ("steps", "guidance", "sampler")} | {"shift": args.shift}
    options["start"] = settings["edit_start"] = args.edit_start
    try:
        result, pictures = evaluate_edit_file(
            model.edit, index, size=args.size, limit=args.limit, seed=args.seed,
            progress=note, **options,
        )  # fmt: skip
    except ValueError as err:  # no record could be edited
        raise CliError(str(err)) from err
    data = {"path": args.data, "media_root": args.media_root, "limit": args.limit}
    report = build_report(result, data, {**settings, "shift": args.shift}, _model_info(args, model), model.device)
    return _wrote(summary_line(report), write_outputs(Path(args.out), report, pictures))


def _add_edits(sub) -> None:
    p = sub.add_parser(
        "edits",
        help="a unified model's edits of your own (source, instruction, target) triples, scored against the targets",
        description="Edit the sources of an edits file (JSONL or JSON: source / instruction / target, or "
        "InstructPix2Pix's input_image / edit_prompt / edited_image, or MagicBrush's source_img / instruction / "
        "target_img), in file order, and score each edit against its target with MagicBrush's pixel metrics (L1, "
        "L2 on pixels in [0, 1]) and PSNR / SSIM, beside the unedited source's figures (what an edit that changes "
        "nothing scores). Writes OUT/report.json (every record's figures, the records skipped and why, the model, "
        "the settings), report.md and editing.png (source | edit | target); prints one summary line.",
    )
    _add_user_file(p, "edits", "report.json, report.md and editing.png", "image")
    _add_sampling(p, size=256)
    p.set_defaults(func=_edits)


def _questions(args: argparse.Namespace) -> int:
    from hydra_x.cli.unified import load_unified
    from hydra_x.eval.questions import (
        build_report,
        evaluate_question_file,
        scan_question_file,
        summary_line,
        write_outputs,
    )  # fmt: skip

    _check_counts(args, ("size", "frames", "limit", "max_new_tokens"))
    args.seed = 0 if args.seed is None else args.seed
    index = scan_question_file(args.data, args.media_root)  # a file with nothing to ask fails before the model loads
    model = load_unified(args)
    frames = args.frames or model.config.clip_frames
    settings = dict(size=args.size, frames=frames, max_new_tokens=args.max_new_tokens, decoding="greedy")
    try:
        result = evaluate_question_file(
            model.chat, index, patch=model.config.tokenizer.patch_size, size=args.size, frames=frames,
            limit=args.limit, max_new_tokens=args.max_new_tokens, progress=note,
        )  # fmt: skip
    except ValueError as err:  # no record could be asked
        raise CliError(str(err)) from err
    data = {"path": args.data, "media_root": args.media_root, "limit": args.limit}
    report = build_report(result, data, settings, _model_info(args, model), model.device)
    return _wrote(summary_line(report), write_outputs(Path(args.out), report))


def _add_questions(sub) -> None:
    p = sub.add_parser(
        "questions",
        help="a unified model's answers to your own questions about images or videos, scored against the answers",
        description="Ask the questions of a file (JSONL or JSON: image or video / question / answer, with an "
        "optional category and multiple-choice options; POPE's text / label; or LLaVA / OpenAI conversations, "
        "asked their first user turn) in file order, greedily, and score each reply against its answer: normalised "
        "(lowercase, no punctuation or articles, number words as digits), right when it equals the answer or "
        "begins with it; for multiple choice when it gives the right letter or option. Writes OUT/report.json "
        "(every reply, accuracy overall and per category, POPE's precision / recall / F1 of yes where all answers "
        "are yes or no, the records skipped and why) and report.md; prints one summary line.",
    )
    _add_user_file(p, "questions", "report.json and report.md", "media")
    p.add_argument("--size", type=int, default=256, help="short side images and videos are resized to (default 256)")
    p.add_argument("--frames", type=int, help="frames read of a video, 1 + 4k (default: the model's clip_frames)")
    p.add_argument("--max-new-tokens", type=int, default=16, help="longest reply in tokens (default 16)")
    _add_model(p)
    p.set_defaults(func=_questions)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog=PROG,
        description="Evaluate tokenizers (reconstruction metrics under a pinned protocol) and unified models "
        "(shapes-world scorers; edits of your own triples; answers to your own questions).",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser(
        "recon",
        help="PSNR, SSIM, LPIPS, rFID / rFVD and throughput of a model on a data set",
        description="Reconstruct every sample of a data set and write OUT/report.json (every figure, the "
        "protocol, model, data incl. skipped files, versions), report.md, per_sample.csv and samples.png "
        "(+ samples.gif for clips: worst, median and best samples). Protocols: " + PROTOCOL_HELP + ". Under "
        "torchrun the samples are split across processes and the figures equal a one-process run.",
    )
    g = p.add_argument_group("data and protocol")
    g.add_argument(
        "--data",
        required=True,
        help="an image or video folder (recursive, sorted), WebDataset shards (a folder of .tar files, a glob "
        "or a brace pattern), or 'embedded' (held-out crops / clips of the bundled photographs)",
    )
    g.add_argument("--protocol", default="image256", choices=tuple(PROTOCOLS), help="the preset (default: image256)")
    g.add_argument("--size", type=int, help="override the protocol's square size (pixels)")
    g.add_argument("--frames", type=int, help="override the frames per clip (video protocols)")
    g.add_argument("--frame-stride", type=int, help="take every k-th frame (video protocols; default 1: native fps)")
    g.add_argument("--max-samples", type=int, help="evaluate only the first N items (sorted order)")
    g.add_argument("--out", required=True, help="folder for report.json, report.md, per_sample.csv, samples.png")
    g = p.add_argument_group("model")
    g.add_argument(
        "--ckpt",
        metavar="DIR_OR_HUB_ID",
        help="HYDRA-X weights: a save_pretrained folder, a training run folder (its export/) or a Hub id",
    )
    g.add_argument("--preset", metavar="NAME", help="without --ckpt: a HYDRA-X preset with random weights (tests)")
    g.add_argument("--seed", type=int, help="seed of the random weights (default 0)")
    g.add_argument(
        "--model",
        metavar="diffusers:SOURCE",
        help="a peer autoencoder from diffusers (pip install 'hydra-x[peers]'): a Hub repo id or a folder whose "
        "config.json names the class (AutoencoderKL, AutoencoderKLWan, AutoencoderKLHunyuanVideo, "
        "AutoencoderKLCogVideoX, ...); a pipeline's vae/ subfolder is found by itself",
    )
    g.add_argument("--subfolder", help="diffusers: the model's subfolder in the repo / folder (default: '' or vae)")
    g.add_argument("--name", help="the model's name in the report and tables")
    g.add_argument("--decode-steps", type=int, help="HYDRA-X: sampling steps of a flow-matching decoder")
    g.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="default: cuda if available")
    g.add_argument("--dtype", choices=("auto", "float32", "bfloat16"), default="auto", help="auto: bf16 on cuda")
    g.add_argument("--batch-size", type=int, default=8, help="samples per batch and process (default: 8)")
    g = p.add_argument_group("metric weights")
    g.add_argument("--lpips-weights", help="LPIPS-VGG safetensors file or hf://REPO/FILE (see docs/evaluation.md)")
    g.add_argument("--fid-weights", help="pt_inception-2015-12-05-6726825d.pth (default: torch.hub cache / download)")
    g.add_argument("--fvd-weights", help="i3d_torchscript.pt (default: torch.hub cache / download)")
    g.add_argument(
        "--feature-net",
        help="the rFID / rFVD network: inception, i3d, or tiny-image:PATH / tiny-video:PATH (offline tests only; "
        "NOT FID / FVD) (default: inception for images, i3d for videos)",
    )
    g.add_argument(
        "--require-all",
        action="store_true",
        help="fail (exit 2) when a metric of the protocol is unavailable instead of listing it as unavailable",
    )
    p.set_defaults(func=_recon)
    p = sub.add_parser(
        "table",
        help="merge several report.json files into one Markdown table",
        description="Print one Markdown table with a row per report (HYDRA-X and peers side by side); notes "
        "say when the rows' protocols or data differ.",
    )
    p.add_argument("reports", nargs="+", metavar="REPORT_JSON")
    p.add_argument("--out", help="also write the table to this file")
    p.set_defaults(func=_table)
    _add_shapes(sub)
    _add_edits(sub)
    _add_questions(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """``hydra-x eval ...`` (also ``python -m hydra_x.cli.eval`` under torchrun); exit status as hydra-x's."""

    def command() -> int:
        args = build_parser().parse_args(argv)
        return args.func(args)

    return run_guarded(command, PROG)


if __name__ == "__main__":
    sys.exit(main())
