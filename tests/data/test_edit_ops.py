"""A shapes source can draw its edits from some edit kinds only (``edit_ops``), for studies of one kind of edit;
left unset, every edit is drawn exactly as before (the versioned prompt set depends on it)."""

from __future__ import annotations

from collections import Counter

import pytest

from hydra_x.config import config_from_dict, config_to_dict
from hydra_x.data.mixture import UnifiedDataConfig, UnifiedDataLoader, UnifiedSource
from hydra_x.data.shapes import COLOURS
from hydra_x.data.shapes_tasks import ShapesTasks
from hydra_x.data.shapes_text import EDIT_OPS, ShapesWorld


def test_all_ops_by_default_and_the_same_draws_as_naming_them_all():
    world = ShapesWorld(0, "train")
    ops = Counter(world.edit_sample(k).op for k in range(100))
    assert set(ops) == set(EDIT_OPS)
    assert all(world.edit_sample(k) == world.edit_sample(k, EDIT_OPS) for k in range(20))


def test_only_the_named_ops_are_drawn():
    world = ShapesWorld(0, "train")
    assert {world.edit_sample(k, ("recolour",)).op for k in range(40)} == {"recolour"}
    assert {world.edit_sample(k, ("move", "add")).op for k in range(60)} == {"move", "add"}


def test_the_loader_gives_recolours_alone_from_a_source_that_asks_for_them():
    source = UnifiedSource("shapes", edit_ops=["recolour"])
    cfg = UnifiedDataConfig(
        sources=(source,), task_ratios={"edit": 1.0}, image_size=32, clip_frames=5, examples_per_step=8, num_workers=0
    )
    it = iter(UnifiedDataLoader(cfg))
    examples = [e for _ in range(3) for e in next(it).examples]
    assert len(examples) == 24
    for e in examples:
        instruction = e.messages[0]["content"].split("\n")[-1].rstrip(".")
        assert instruction.startswith("Make the") and instruction.split()[-1] in COLOURS, instruction
    tasks = ShapesTasks(0, "train", 32, 5)  # the default source draws other kinds too
    last_words = {tasks.example("edit", k).messages[0]["content"].rstrip(".").split()[-1] for k in range(40)}
    assert not last_words <= set(COLOURS)


def test_the_config_round_trips_and_bad_ops_are_named():
    cfg = UnifiedDataConfig(sources=(UnifiedSource("shapes", edit_ops=["recolour", "move"]),))
    again = config_from_dict(UnifiedDataConfig, config_to_dict(cfg))
    assert again.sources[0].edit_ops == ("recolour", "move")
    with pytest.raises(ValueError, match="'recolor'"):
        UnifiedSource("shapes", edit_ops=["recolor"])
    with pytest.raises(ValueError, match="non-empty"):
        UnifiedSource("shapes", edit_ops=[])
    with pytest.raises(ValueError, match="distinct"):
        UnifiedSource("shapes", edit_ops=["move", "move"])
    with pytest.raises(ValueError, match="edit_ops is for shapes sources, not conversations"):
        UnifiedSource("conversations", "chat.jsonl", edit_ops=["recolour"])
