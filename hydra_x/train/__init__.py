"""Training: the engine every model family shares, and one package per family (its config, recipes, loop).

hydra_x.train.engine       the run around a family's train_step: process group, resume, logging, budget
hydra_x.train.parallel     activation checkpointing, compile and FSDP2, applied from outside the model
hydra_x.train.checkpoint   numbered DCP checkpoints, written atomically
hydra_x.train.tokenizer    the tokenizer's three stages
"""
