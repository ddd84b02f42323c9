"""``python -m hydra_x.train.tokenizer --config RECIPE [KEY=VALUE ...]`` (also ``hydra-x train tokenizer``).

Errors follow the hydra-x command line's contract (hydra_x.cli.common.run_guarded): a problem the user can fix
(a bad recipe or override, a data folder that is missing or holds no usable file) prints one line
``PROG: error: ...`` and exits with 2; anything else is a bug (one line and exit 1, the traceback with
HYDRA_X_DEBUG=1).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from hydra_x.cli.common import run_guarded
from hydra_x.data.loader import check_sources
from hydra_x.tokenizer.config import tokenizer_config
from hydra_x.train.command import parse_train_args
from hydra_x.train.tokenizer.config import TokenizerTrainConfig
from hydra_x.train.tokenizer.loop import train
from hydra_x.train.tokenizer.recipes import RECIPES

PROG = "python -m hydra_x.train.tokenizer"
DESCRIPTION = (
    "Train the HYDRA-X tokenizer (stage 1, 2 or 3) on image and video data. Settings are a recipe (--config) plus "
    "dotted overrides KEY=VALUE, e.g. steps=2000 data.image_size=128 optim.lr=1e-4 model.width=256 (model.* are "
    "TokenizerConfig fields; sizes derived from them follow) or model=small (another tokenizer preset)."
)


def parse_config(argv: Sequence[str] | None = None, prog: str = PROG) -> TokenizerTrainConfig:
    return parse_train_args(
        argv, prog=prog, description=DESCRIPTION, recipes=RECIPES, default="tiny", presets={"model": tokenizer_config}
    )


def main(argv: Sequence[str] | None = None, prog: str = PROG) -> int:
    """Run the command line; returns the exit status (0, 2 for a user error, 1 for a bug, 128 + N on signal N)."""

    def command() -> int:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
        cfg = parse_config(argv, prog)
        check_sources(cfg.data)  # a missing folder is an error now, not after the model and teachers are built
        return train(cfg)["exit_code"]

    return run_guarded(command, prog)


if __name__ == "__main__":
    sys.exit(main())
