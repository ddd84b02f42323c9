"""benchmarks/tokenizer_round_trip.py: each arm's data mix and overrides reach its run as written."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from tokenizer_round_trip import parse_arms, sources  # noqa: E402


def test_arms_name_their_mix_and_keep_the_other_overrides_in_order():
    arms = parse_arms(["a=mix=shapes,optim.lr=3e-4,loss.mse=1", "b=loss.kl=0", "c=mix=shapes-only"])
    assert arms == {
        "a": ("shapes", ["optim.lr=3e-4", "loss.mse=1"]),
        "b": ("photos", ["loss.kl=0"]),  # the recipe's own data by default
        "c": ("shapes-only", []),
    }
    for bad in (["a=mix=video"], ["a=lr"], ["a", "a"], ["=x=1"]):
        with pytest.raises(SystemExit):
            parse_arms(bad)


def test_the_mixes_are_the_recipes_data_the_renders_beside_it_or_the_renders_alone(tmp_path):
    args = argparse.Namespace(smoke=True, size=32, shapes_images=3, shapes_clips=1, shapes_weight=3.0)
    assert sources(args, tmp_path, "photos") is None
    mixed = sources(args, tmp_path, "shapes")
    assert [(s["kind"], s["weight"]) for s in mixed] == [
        ("embedded_images", 1.0),
        ("embedded_videos", 0.5),
        ("image_folder", 3.0),
        ("video_folder", 1.5),
    ]
    assert len(list(Path(mixed[2]["path"]).glob("*.png"))) == 3
    assert len(list(Path(mixed[3]["path"]).glob("*.mp4"))) == 1
    assert sources(args, tmp_path, "shapes-only") == mixed[2:]
