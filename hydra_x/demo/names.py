"""The demo's option words, apart from its configs so that the command line's parser reads them without loading
training and evaluation (``hydra_x.demo.config`` imports the recipes, and with them torch and the trainers)."""

PRESET_NAMES = ("cpu", "small", "smoke")  # the keys of hydra_x.demo.config.PRESETS, in that order
DEFAULT_PRESET = "cpu"
SMOLLM2 = "smollm2-135m"
LLM_CHOICES = ("auto", SMOLLM2, "config")
RETRAIN = ("all", "unified")
DEFAULT_OUT = "runs/demo"
