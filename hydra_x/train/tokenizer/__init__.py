"""Tokenizer training: config, recipes, the stage table, the objective, and the loop (``train_step``, ``train``)."""

from hydra_x.train.tokenizer.config import LossConfig, TeacherConfig, TokenizerTrainConfig
from hydra_x.train.tokenizer.loop import train, train_step
from hydra_x.train.tokenizer.recipes import RECIPES
from hydra_x.train.tokenizer.stages import STAGES, Stage

__all__ = ["RECIPES", "STAGES", "LossConfig", "Stage", "TeacherConfig", "TokenizerTrainConfig", "train", "train_step"]
