"""``python -m hydra_x.train.unified --config RECIPE [KEY=VALUE ...]`` (also ``hydra-x train unified``)."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from hydra_x.train.command import parse_train_args
from hydra_x.train.unified.config import UnifiedTrainConfig
from hydra_x.train.unified.loop import train
from hydra_x.train.unified.recipes import RECIPES
from hydra_x.unified.config import unified_config

DESCRIPTION = (
    "Train the unified HYDRA-X model (stage 1, 2 or 3) on the shapes world or your data. Settings are a recipe "
    "(--config) plus dotted overrides KEY=VALUE, e.g. steps=2000 data.image_size=128 lr_scale=2 "
    "model.llm=qwen2.5-1.5b tokenizer_init=runs/so400m-stage3 (model.* are UnifiedConfig fields, "
    "model.tokenizer.* the tokenizer's) or model=small (another unified preset)."
)
PROG = "python -m hydra_x.train.unified"


def parse_config(argv: Sequence[str] | None = None, prog: str = PROG) -> UnifiedTrainConfig:
    return parse_train_args(
        argv, prog=prog, description=DESCRIPTION, recipes=RECIPES, default="tiny", presets={"model": unified_config}
    )


def main(argv: Sequence[str] | None = None, prog: str = PROG) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return train(parse_config(argv, prog))["exit_code"]


if __name__ == "__main__":
    sys.exit(main())
