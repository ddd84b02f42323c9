"""``hydra-x train FAMILY ...``: each model family's training command line (also ``python -m hydra_x.train.FAMILY``).

hydra-x train tokenizer --config tiny [KEY=VALUE ...]
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence

from hydra_x.cli.common import PROG, CliError, run_guarded

# family -> the module whose main(argv, prog) runs it
FAMILIES = {"tokenizer": "hydra_x.train.tokenizer.__main__", "unified": "hydra_x.train.unified.__main__"}


def main(argv: Sequence[str]) -> int:
    argv = list(argv)

    def command() -> int:
        if not argv or argv[0] in ("-h", "--help"):
            print(f"usage: {PROG} train FAMILY [--config RECIPE] [KEY=VALUE ...]\n\nfamilies: {', '.join(FAMILIES)}")
            return 0
        if argv[0] not in FAMILIES:
            raise CliError(f"unknown training family {argv[0]!r}; choose one of {', '.join(FAMILIES)}")
        family = importlib.import_module(FAMILIES[argv[0]])
        return family.main(argv[1:], prog=f"{PROG} train {argv[0]}")

    return run_guarded(command)
