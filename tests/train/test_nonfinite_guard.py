"""The non-finite guard: a step whose gradient norm is NaN / Inf changes nothing (weights, AdamW moments, step
counts), is logged and counted, and ``limit`` in a row stop the run; with a fused AdamW the skip happens on the
device and is read when the guard settles (what the engine does when it logs, saves or finishes)."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn as nn

from hydra_x.train.engine import Engine, NonFiniteGuard
from hydra_x.train.tokenizer.recipes import tiny


def setup(fused: bool):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.GELU(), nn.Linear(8, 2))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1, fused=fused)
    return model, optimizer


def backward(model, poison: bool = False) -> None:
    model.zero_grad(set_to_none=True)
    model(torch.randn(5, 4)).square().mean().backward()
    if poison:
        model[0].weight.grad[0, 0] = float("nan")


def snapshot(model, optimizer):
    return copy.deepcopy(model.state_dict()), copy.deepcopy(optimizer.state_dict()["state"])


@pytest.mark.parametrize("fused", [False, True])
def test_a_non_finite_step_changes_nothing_and_is_counted_once_settled(fused):
    model, optimizer = setup(fused)
    guard, logged = NonFiniteGuard(limit=5), []
    backward(model)
    guard.step(optimizer, list(model.parameters()), 1.0, 0, logged.append)  # finite: moments exist now
    weights, state = snapshot(model, optimizer)
    backward(model, poison=True)
    norm = guard.step(optimizer, list(model.parameters()), 1.0, 1, logged.append)
    assert not torch.isfinite(norm)
    if fused:  # not read yet: reading it at every step would make the host wait for the backward
        assert (guard.total, len(guard.pending)) == (0, 2)
    guard.settle(logged.append)
    assert guard.total == 1 and logged == ["step 2: non-finite gradient norm, update skipped (1 in a row)"]
    after_weights, after_state = snapshot(model, optimizer)
    for k in weights:
        assert torch.equal(after_weights[k], weights[k]), k
    for i in state:
        for k in state[i]:
            assert torch.equal(after_state[i][k], state[i][k]), (i, k)  # moments and the step count


@pytest.mark.parametrize("fused", [False, True])
def test_finite_steps_are_plain_clipped_steps(fused):
    model, optimizer = setup(fused)
    twin, twin_optimizer = copy.deepcopy(model), None
    twin_optimizer = torch.optim.AdamW(twin.parameters(), lr=1e-2, weight_decay=0.1, fused=fused)
    guard = NonFiniteGuard(limit=5)
    for step in range(3):
        torch.manual_seed(step)
        backward(model)
        guard.step(optimizer, list(model.parameters()), 0.5, step, print)
        torch.manual_seed(step)
        backward(twin)
        torch.nn.utils.clip_grad_norm_(twin.parameters(), 0.5)
        twin_optimizer.step()
    guard.settle(print)
    assert guard.total == 0
    for a, b in zip(model.parameters(), twin.parameters()):
        assert torch.equal(a, b)


@pytest.mark.parametrize("fused", [False, True])
def test_limit_skips_in_a_row_stop_the_run_and_a_finite_step_resets_the_count(fused):
    model, optimizer = setup(fused)
    guard = NonFiniteGuard(limit=2)
    params = list(model.parameters())
    for step, poison in enumerate([True, False, True]):  # 1 in a row, reset, 1 in a row
        backward(model, poison)
        guard.step(optimizer, params, 1.0, step, lambda _: None)
    guard.settle(lambda _: None)
    assert (guard.total, guard.in_a_row) == (2, 1)
    with pytest.raises(FloatingPointError, match="2 consecutive steps had non-finite gradients .last at step 4"):
        backward(model, poison=True)
        guard.step(optimizer, params, 1.0, 3, lambda _: None)
        guard.settle(lambda _: None)


def test_the_engine_settles_before_it_logs(tmp_path):
    cfg = tiny()
    cfg.out_dir, cfg.device = str(tmp_path), "cpu"
    engine = Engine(cfg)
    engine.start({}, "guard")
    engine.window.add_losses({"total": torch.tensor(1.0)})
    engine.window.seconds, engine.window.steps = 1.0, 1
    engine.guard.pending.append((0, torch.tensor(1.0)))  # a skip made on the device, not read yet
    record = engine.log(skipped_total=0)
    assert record["nonfinite_steps_total"] == 1 and not engine.guard.pending
    engine.finish({})


class RecordingAdamW(torch.optim.AdamW):
    """A fused-flagged AdamW that records whether the guard handed it a device-side skip flag."""

    def step(self, closure=None):
        self.saw_found_inf = hasattr(self, "found_inf")


def test_sharded_parameters_keep_the_check_before_each_step(tmp_path):
    # FSDP2's parameters are DTensors: the guard reads their norm at once instead of handing the fused kernel a
    # plain found_inf beside them.
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import Replicate, distribute_tensor

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        mesh = init_device_mesh("cpu", (1,))
        sharded = nn.Parameter(distribute_tensor(torch.ones(3), mesh, [Replicate()]))
        plain = nn.Parameter(torch.ones(3))
        for param, deferred in ((sharded, False), (plain, True)):
            optimizer = RecordingAdamW([param], lr=0.1)
            optimizer.defaults["fused"] = True
            param.grad = torch.ones_like(param)
            guard = NonFiniteGuard(limit=3)
            guard.step(optimizer, [param], 1.0, 0, print)
            assert optimizer.saw_found_inf == deferred and bool(guard.pending) == deferred
    finally:
        dist.destroy_process_group()
