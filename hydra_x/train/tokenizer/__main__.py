"""``python -m hydra_x.train.tokenizer --config RECIPE [KEY=VALUE ...]`` (also ``hydra-x train tokenizer``)."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from hydra_x.tokenizer.config import tokenizer_config
from hydra_x.train.command import parse_train_args
from hydra_x.train.tokenizer.config import TokenizerTrainConfig
from hydra_x.train.tokenizer.loop import train
from hydra_x.train.tokenizer.recipes import RECIPES

DESCRIPTION = (
    "Train the HYDRA-X tokenizer (stage 1, 2 or 3) on image and video data. Settings are a recipe (--config) plus "
    "dotted overrides KEY=VALUE, e.g. steps=2000 data.image_size=128 optim.lr=1e-4 model.width=256 (model.* are "
    "TokenizerConfig fields; sizes derived from them follow) or model=small (another tokenizer preset)."
)


def parse_config(
    argv: Sequence[str] | None = None, prog: str = "python -m hydra_x.train.tokenizer"
) -> TokenizerTrainConfig:
    return parse_train_args(
        argv, prog=prog, description=DESCRIPTION, recipes=RECIPES, default="tiny", presets={"model": tokenizer_config}
    )


def main(argv: Sequence[str] | None = None, prog: str = "python -m hydra_x.train.tokenizer") -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return train(parse_config(argv, prog))["exit_code"]


if __name__ == "__main__":
    sys.exit(main())
