"""A run pinned to the CPU on a machine with a GPU says so (the toy recipes pin the CPU); a run's intra-op threads."""

from __future__ import annotations

import logging
from dataclasses import replace

import pytest
import torch

from hydra_x.train.config import host_thread_count
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


@pytest.mark.parametrize(
    ("configured", "device", "default", "expected"),
    [(None, "cuda", 16, 4), (None, "cuda", 2, 2), (None, "cpu", 16, 16), (8, "cuda", 16, 8), (1, "cpu", 16, 1)],
)
def test_host_threads_default_to_a_few_on_a_gpu_and_to_torchs_on_the_cpu(configured, device, default, expected):
    assert host_thread_count(configured, device, default) == expected


def test_a_run_trains_with_its_host_threads_and_gives_the_process_its_own_back(tmp_path):
    before = torch.get_num_threads()
    cfg = tiny()
    cfg.out_dir, cfg.device, cfg.host_threads = str(tmp_path), "cpu", 1 if before > 1 else 2
    try:
        engine = Engine(cfg)
        assert torch.get_num_threads() == cfg.host_threads != before
        engine.start({}, "threads")
        engine.finish({})
        assert torch.get_num_threads() == before
    finally:
        torch.set_num_threads(before)


def test_host_threads_below_one_are_refused():
    with pytest.raises(ValueError, match="host_threads"):
        replace(tiny(), host_threads=0)
