"""``hydra-x serve``: the web app (hydra_x.web) over a unified checkpoint, on 127.0.0.1 unless told otherwise.

    hydra-x serve                                  # the demo's checkpoint (runs/demo/unified/export)
    hydra-x serve --ckpt DIR_OR_HUB_ID --port 7861 --device cuda
    hydra-x serve --host 0.0.0.0                   # reachable from other machines: anyone who can reach it can use it

Gradio is optional (``pip install 'hydra-x[web]'``); without it the command says so in one line, before loading
anything. Errors follow hydra_x.cli.common.
"""

from __future__ import annotations

import argparse
import ipaddress
import tempfile

from hydra_x.cli.common import CliError, note, warn
from hydra_x.errors import InputError
from hydra_x.web.checkpoint import DEFAULT_DEMO_CHECKPOINT, resolve_checkpoint
from hydra_x.web.uploads import MB, Limits

WEB_EXTRA = "pip install 'hydra-x[web]'"
DEFAULT_PORT = 7860


def require_gradio() -> None:
    """Import Gradio now, so a missing (or broken) install is one clear line before the model loads."""
    try:
        import gradio  # noqa: F401
    except ImportError as err:
        raise InputError(f"the web app needs Gradio, which is not installed or broken ({err}); {WEB_EXTRA}") from err


def limits_from(args: argparse.Namespace) -> Limits:
    try:
        return Limits(
            max_upload_bytes=round(args.max_upload_mb * MB),
            max_image_pixels=args.max_image_pixels,
            max_video_pixels=args.max_video_pixels,
            max_video_frames=args.max_video_frames,
            max_output_side=args.max_output_side,
            max_output_frames=args.max_output_frames,
        )
    except InputError as err:
        raise CliError(str(err)) from err


def cmd_serve(args: argparse.Namespace) -> int:
    from hydra_x.cli.unified import load_unified
    from hydra_x.data.media import image_pixel_limit

    if not 1 <= args.port <= 65535:
        raise CliError(f"--port must be 1 to 65535, got {args.port}")
    limits = limits_from(args)
    require_gradio()
    args.ckpt = resolve_checkpoint(args.ckpt)
    if not _loopback(args.host):
        warn(f"serving on {args.host}: anyone who can reach this address can upload files and run the model")
    model = load_unified(args)
    note(f"loaded {args.ckpt}; starting the web app on http://{args.host}:{args.port} (^C stops it)")
    from hydra_x.web.app import build_app, launch_app

    # While serving: the library's own pixel guard (a header check before any decode) at the app's limit, and
    # the sessions' folders inside one folder of this server's, removed when it stops (sessions still open then
    # would otherwise leave theirs behind).
    with image_pixel_limit(limits.max_image_pixels), tempfile.TemporaryDirectory(prefix="hydra-x-serve-") as root:
        demo = build_app(model, limits, checkpoint=args.ckpt, files_root=root)
        try:
            launch_app(demo, args.host, args.port, limits)
        except OSError as err:  # Gradio's message names its own options, not ours
            raise InputError(
                f"cannot serve on {args.host}:{args.port}: the port is in use or the address is not this machine's; "
                "choose another with --port / --host"
            ) from err
        finally:
            demo.close()
    return 0


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def add_commands(sub) -> None:
    """Register serve on the ``hydra-x`` parser's subcommands."""
    d = Limits()
    p = sub.add_parser(
        "serve",
        help="a web app for reconstruction, generation, chat and editing with a unified checkpoint "
        f"(Gradio: {WEB_EXTRA})",
        description="Serve a page with five tabs: reconstruct an image or video with the checkpoint's tokenizer "
        "(PSNR / SSIM), text to image, text to video, chat about an image or video, and editing. Binds to "
        "127.0.0.1 unless --host says otherwise; uploads over the limits below are refused before they are "
        "decoded. See docs/web.md.",
    )
    p.add_argument(
        "--ckpt",
        metavar="DIR_OR_HUB_ID",
        help="a HydraX checkpoint (a folder written by HydraX.save_pretrained, or a Hub repo id); "
        f"default: the demo's, {DEFAULT_DEMO_CHECKPOINT} (made by 'hydra-x demo')",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="default: cuda if available")
    p.add_argument("--dtype", choices=("auto", "float32", "bfloat16"), default="auto", help="auto: bf16 on cuda")
    g = p.add_argument_group("limits, per request (a guard for a server anyone may send files to)")
    mb = d.max_upload_bytes / MB
    g.add_argument("--max-upload-mb", type=float, default=mb, metavar="MB", help=f"an upload's size; default {mb:g}")
    for flag, default, what in (
        ("--max-image-pixels", d.max_image_pixels, "an uploaded image's width x height, checked from its header"),
        ("--max-video-pixels", d.max_video_pixels, "an uploaded video's width x height"),
        ("--max-video-frames", d.max_video_frames, "frames read of an uploaded video (the first ones)"),
        ("--max-output-side", d.max_output_side, "height and width of a generated image or video"),
        ("--max-output-frames", d.max_output_frames, "frames of a generated video"),
    ):
        g.add_argument(flag, type=int, default=default, metavar="N", help=f"{what}; default {default:,}")
    p.set_defaults(func=cmd_serve, preset=None, seed=0)
