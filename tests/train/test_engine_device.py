"""A run pinned to the CPU on a machine with a GPU says so (the toy recipes pin the CPU)."""

from __future__ import annotations

import logging

import pytest
import torch

from hydra_x.train.engine import Engine
from hydra_x.train.tokenizer.recipes import tiny

WARNING = "trains on the CPU (device=cpu) though a GPU is available"


@pytest.mark.parametrize("gpu", [True, False])
def test_a_cpu_run_beside_an_idle_gpu_is_named(tmp_path, monkeypatch, caplog, gpu):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: gpu)
    cfg = tiny()
    cfg.out_dir, cfg.device = str(tmp_path), "cpu"
    with caplog.at_level(logging.WARNING, logger="hydra_x.train.engine"):
        engine = Engine(cfg)
    assert engine.device.type == "cpu"
    assert (WARNING in caplog.text) == gpu
