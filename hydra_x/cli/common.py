"""What every ``hydra-x`` command shares: the error contract, the parser class, notes and warnings on stderr.

The contract: a problem the user can fix (a bad or unreadable file, a bad option, an unknown preset, an
unloadable checkpoint: any :class:`~hydra_x.errors.InputError`; running out of GPU or host memory, whose line says
what to lower) prints one line ``hydra-x: error: ...`` on stderr and exits with 2; anything else is a bug: one
line and exit 1, or the full traceback with ``HYDRA_X_DEBUG=1``; ^C (SIGINT) exits with 130 and SIGTERM with 143,
both after unwinding like an error, so that ``with`` blocks clean up (no half-written output, no hidden
``.NAME.partial.mp4``). Results go to stdout; warnings, notes and progress bars to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator

from hydra_x.errors import InputError, out_of_memory

PROG = "hydra-x"
DEBUG_ENV = "HYDRA_X_DEBUG"
# What a command that ran out of memory can lower; every knob named here exists in some command.
OUT_OF_MEMORY_HINT = (
    "lower what runs at once: in training data.examples_per_step (grad_accum keeps the examples a step) or "
    "data.image_batch_size / data.video_batch_size; in evaluation --batch-size; or use a GPU no other process shares"
)


class CliError(InputError):
    """A bad option or combination of options: printed as one line, exit status 2."""


class Parser(argparse.ArgumentParser):
    """argparse, but usage errors are one ``hydra-x: error:`` line like every other error."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise CliError(f"{message} (see '{self.prog} --help')")


def note(message: str) -> None:
    print(f"{PROG}: note: {message}", file=sys.stderr)


def warn(message: str) -> None:
    print(f"{PROG}: warning: {message}", file=sys.stderr)


def progress(total: int | None, desc: str, unit: str = "clip"):
    """A progress bar on stderr (shown only when stderr is a terminal)."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, disable=None, leave=False)


def one_line(message: object) -> str:
    return " ".join(str(message).split())


class Terminated(BaseException):
    """SIGTERM, raised where the main thread is, as ^C raises KeyboardInterrupt: ``with`` / ``finally`` clean up.

    A BaseException, like KeyboardInterrupt, so that no ``except Exception`` on the way swallows it.
    """


def _raise_terminated(signum: int, frame: object) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # one is enough: a second must not cut the cleanup short
    raise Terminated


@contextlib.contextmanager
def sigterm_raises() -> Iterator[None]:
    """While inside, SIGTERM raises :class:`Terminated` (main thread only: elsewhere signals cannot be set).

    Commands that handle SIGTERM themselves (training checkpoints and stops) install their own handler,
    which replaces this one; the previous handler is restored on the way out.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        # None: a handler set outside Python, which cannot be put back; the default is the nearest.
        signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


def run_guarded(command: Callable[[], int], prog: str = PROG) -> int:
    """Run ``command`` with the error contract above."""
    try:
        with sigterm_raises():
            return command()
    except SystemExit as exit_:  # --help and --version
        return exit_.code if isinstance(exit_.code, int) else 0
    except InputError as err:
        print(f"{prog}: error: {one_line(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except Terminated:
        print(f"{prog}: terminated", file=sys.stderr)
        return 128 + signal.SIGTERM
    except Exception as err:
        if os.environ.get(DEBUG_ENV) == "1":
            raise
        if out_of_memory(err):
            print(f"{prog}: error: out of memory: {one_line(err)} ({OUT_OF_MEMORY_HINT})", file=sys.stderr)
            return 2
        print(
            f"{prog}: error: unexpected {type(err).__name__}: {one_line(err)} "
            f"(this is a bug; set {DEBUG_ENV}=1 for the traceback)",
            file=sys.stderr,
        )
        return 1
