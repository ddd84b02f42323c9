"""Unified-model training: config, recipes, the stage table, the batch builder, the objective and the loop."""

from hydra_x.train.unified.config import UnifiedLossConfig, UnifiedTrainConfig
from hydra_x.train.unified.loop import train, train_step
from hydra_x.train.unified.recipes import RECIPES
from hydra_x.train.unified.stages import STAGES, UnifiedStage

__all__ = ["RECIPES", "STAGES", "UnifiedLossConfig", "UnifiedStage", "UnifiedTrainConfig", "train", "train_step"]
