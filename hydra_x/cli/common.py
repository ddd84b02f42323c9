"""What every ``hydra-x`` command shares: the error contract, the parser class, notes and warnings on stderr.

The contract: a problem the user can fix (a bad or unreadable file, a bad option, an unknown preset, an
unloadable checkpoint: any :class:`~hydra_x.errors.InputError`) prints one line ``hydra-x: error: ...`` on stderr
and exits with 2; anything else is a bug: one line and exit 1, or the full traceback with ``HYDRA_X_DEBUG=1``;
^C exits with 130. Results go to stdout; warnings, notes and progress bars to stderr.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable

from hydra_x.errors import InputError

PROG = "hydra-x"
DEBUG_ENV = "HYDRA_X_DEBUG"


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


def one_line(message: object) -> str:
    return " ".join(str(message).split())


def run_guarded(command: Callable[[], int], prog: str = PROG) -> int:
    """Run ``command`` with the error contract above."""
    try:
        return command()
    except SystemExit as exit_:  # --help and --version
        return exit_.code if isinstance(exit_.code, int) else 0
    except InputError as err:
        print(f"{prog}: error: {one_line(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except Exception as err:
        if os.environ.get(DEBUG_ENV) == "1":
            raise
        print(
            f"{prog}: error: unexpected {type(err).__name__}: {one_line(err)} "
            f"(this is a bug; set {DEBUG_ENV}=1 for the traceback)",
            file=sys.stderr,
        )
        return 1
