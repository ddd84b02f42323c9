"""benchmarks/edit_routing.py: its R^2 reads a linear map exactly and nothing from features without the source."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from edit_routing import explained, routing  # noqa: E402

from hydra_x.unified.model import HydraX


def test_explained_is_one_for_a_linear_map_and_near_zero_for_unrelated_features():
    g = torch.Generator().manual_seed(0)
    features = torch.randn(40, 16, 6, generator=g)
    target = features @ torch.randn(6, 3, generator=g) + 0.5
    assert explained(features, target, 30, ridge=0.0) == pytest.approx(1.0, abs=1e-5)
    assert 0.9 < explained(features, target, 30) < 1.0  # the ridge shrinks the fit a little
    unrelated = torch.randn(40, 16, 6, generator=g)
    assert abs(explained(unrelated, target, 30)) < 0.1
    many = torch.randn(40, 16, 120, generator=g)  # enough columns to fit the fitted scenes' noise: not held-out signal
    assert explained(many, target, 30) < 0.1
    half = features.clone()
    half[..., 3:] = unrelated[..., 3:]  # the target's map also reads the replaced columns: part of it is lost
    assert 0.05 < explained(half, target, 30, ridge=0.0) < 0.95


@pytest.mark.parametrize("layout", ["sti", "independent"])
def test_routing_reads_the_source_from_its_own_embedding_and_not_from_a_target_that_never_sees_it(layout):
    torch.manual_seed(0)
    model = HydraX.from_preset("tiny", seed=0, edit_layout=layout).eval()
    scores = routing(model, scenes=48, size=64, seed=0)  # 36 x 64 tokens to fit, more than the features
    assert scores["source's own embedding"] > 0.3
    assert scores["target, independent embedding"] < 0.1
    llm = scores[f"target, LLM last hidden ({layout})"]
    if layout == "independent":
        assert llm < scores["source's own embedding"]  # it sees the source only through the LLM's attention
