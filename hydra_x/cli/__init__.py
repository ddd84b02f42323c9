"""The ``hydra-x`` command: a thin dispatcher over the library, one module per command family.

    hydra-x info | reconstruct | encode | decode ...    the tokenizer (hydra_x.cli.tokenizer)
    hydra-x chat | generate | edit | llm ...            the unified model (hydra_x.cli.unified)
    hydra-x eval recon | table | shapes ...             evaluation (hydra_x.cli.eval; also under torchrun)
    hydra-x train tokenizer | unified ...               training (the family's own command line)
    hydra-x serve ...                                   the web app (hydra_x.cli.serve; pip install 'hydra-x[web]')
    hydra-x demo ...                                    train, evaluate and report, no download (hydra_x.cli.demo)

Every command follows one error contract (hydra_x.cli.common): a problem the user can fix prints one line
``hydra-x: error: ...`` and exits with 2; a bug prints one line and exits with 1 (``HYDRA_X_DEBUG=1``: the
traceback).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from hydra_x._version import __version__
from hydra_x.cli.common import PROG, Parser, run_guarded


def build_parser() -> argparse.ArgumentParser:
    from hydra_x.cli import demo, serve, tokenizer, unified

    parser = Parser(
        prog=PROG,
        description="HYDRA-X: tokenize images and videos (info, reconstruct, encode, decode), chat about and "
        "generate images and videos (chat, generate), evaluate and train. "
        "Pixels are handled in [-1, 1]; sizes that are not multiples of the patch size are padded (edge "
        "replicate) and cropped back. Set HYDRA_X_DEBUG=1 to see tracebacks of unexpected errors.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    # Dispatched in main() before parsing (their own parsers); listed here for --help.
    sub.add_parser(
        "eval",
        help="reconstruction metrics under a pinned protocol (PSNR, SSIM, LPIPS, rFID / rFVD), for HYDRA-X "
        "and diffusers autoencoders, and the shapes-world scores of a unified model (generation, understanding, "
        "video, editing) and its edits of your own triples scored against their targets; see 'hydra-x eval --help'",
        add_help=False,
    )
    sub.add_parser(
        "train",
        help="train a model family: 'hydra-x train tokenizer --config RECIPE [KEY=VALUE ...]'; see "
        "'hydra-x train tokenizer --help'",
        add_help=False,
    )
    tokenizer.add_commands(sub)
    unified.add_commands(sub)
    serve.add_commands(sub)
    demo.add_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 2 a problem the user can fix, 1 a bug)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["eval"]:  # its own parser; also runs under torchrun as python -m hydra_x.cli.eval
        from hydra_x.cli.eval import main as eval_main

        return eval_main(argv[1:])
    if argv[:1] == ["train"]:
        from hydra_x.cli.train import main as train_main

        return train_main(argv[1:])
    return run_guarded(lambda: _dispatch(argv))


def _dispatch(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)
