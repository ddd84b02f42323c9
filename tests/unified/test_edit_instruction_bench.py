"""benchmarks/edit_instruction_effect.py: an editor that follows the instruction scores inside the object only and
nearer the target every time; one that copies its source scores nothing, as does a fresh model."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from edit_instruction_effect import instruction_effect, other_colour, recolour_edits  # noqa: E402

from hydra_x.data.shapes import render_image
from hydra_x.data.shapes_text import COLOURS
from hydra_x.unified.model import HydraX


def test_other_colour_names_a_new_colour_the_instruction_does_not():
    for e in recolour_edits(6):
        other = other_colour(e.instruction)
        asked, new = e.instruction.split()[-1], other.split()[-1]
        assert other.split()[:-1] == e.instruction.split()[:-1]
        assert new in COLOURS and new != asked and new not in e.instruction.split()


def test_an_instruction_follower_and_a_copier_are_told_apart():
    edits = recolour_edits(4)
    targets = {e.instruction: render_image(e.target, 32, 32) for e in edits}
    follower = instruction_effect(lambda x, text: targets.get(text, x), edits, 32)
    assert follower.inside > 0.1 and follower.outside == 0.0 and follower.nearer_target == 4
    copier = instruction_effect(lambda x, text: x, edits, 32)
    assert (copier.inside, copier.outside, copier.nearer_target) == (0.0, 0.0, 0)


def test_a_fresh_model_reads_no_instruction():
    # Its flow head's last layer starts at zero: every instruction gives the same velocity, so the same edit.
    torch.manual_seed(0)
    model = HydraX.from_preset("tiny", seed=0).eval()
    edits = recolour_edits(2)
    r = instruction_effect(lambda x, text: model.edit(x, text, steps=2, guidance=3.0, seed=0), edits, 32)
    assert r.edits == 2 and 0 <= r.nearer_target <= 2
    assert (r.inside, r.outside) == (0.0, 0.0)
