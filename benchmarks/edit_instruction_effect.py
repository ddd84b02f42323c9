"""Does an edit model read the instruction? For recolour edits of the shapes world's training split, the same source
and seed are edited twice: as the instruction says ("make the purple circle red") and with another new colour
("... green"). A model that reads the instruction changes its output where the object is (inside) and not
elsewhere (outside); one that edits also draws the object nearer the target than the source there.

    python benchmarks/edit_instruction_effect.py --ckpt runs/demo/unified/export                  # CPU, about 1 min
    python benchmarks/edit_instruction_effect.py --ckpt runs/unified-small/export --size 128 --device cuda

Prints one table row per guidance scale: the mean absolute pixel change between the two instructions' outputs
inside and outside the object (pixels in [-1, 1]), and in how many edits the output inside is nearer the target.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass

import torch

from hydra_x.data.shapes import render_image
from hydra_x.data.shapes_text import COLOURS, EditSample, ShapesWorld

Editor = Callable[[torch.Tensor, str], torch.Tensor]  # (source (3, H, W), instruction) -> edited (3, H, W)


@dataclass(frozen=True)
class InstructionEffect:
    inside: float  # mean |output(asked colour) - output(other colour)| where source and target differ
    outside: float  # the same elsewhere
    nearer_target: int  # edits whose output inside is nearer the target than the source
    edits: int


def recolour_edits(count: int, seed: int = 0) -> list[EditSample]:
    """The first ``count`` recolour edits of the training split's edit stream."""
    world, edits, k = ShapesWorld(seed=seed, split="train"), [], 0
    while len(edits) < count:
        edit = world.edit_sample(k)
        k += 1
        if edit.op == "recolour":
            edits.append(edit)
    return edits


def other_colour(instruction: str) -> str:
    """The instruction with its new colour (the last word) replaced by one it does not name."""
    words = instruction.split()
    other = next(c for c in COLOURS if c not in words)
    return " ".join([*words[:-1], other])


def instruction_effect(edit: Editor, edits: list[EditSample], size: int) -> InstructionEffect:
    inside, outside, nearer = [], [], 0
    for e in edits:
        source, target = render_image(e.source, size, size), render_image(e.target, size, size)
        # The recoloured object's own pixels: EditSample.changed_mask is its box, whose corners are background
        # that source and target share and would dilute "nearer the target" with pixels no edit should touch.
        region = (source - target).abs().sum(0) > 0.1
        asked = edit(source, e.instruction).float().cpu()
        other = edit(source, other_colour(e.instruction)).float().cpu()
        change = (asked - other).abs().mean(0)
        inside.append(float(change[region].mean()))
        outside.append(float(change[~region].mean()))
        to_target = (asked - target).abs().mean(0)[region].mean()
        to_source = (asked - source).abs().mean(0)[region].mean()
        nearer += int(to_target < to_source)
    n = len(edits)
    return InstructionEffect(sum(inside) / n, sum(outside) / n, nearer, n)


def main() -> None:
    from hydra_x.unified.model import HydraX

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ckpt", required=True, help="a unified export folder")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--edits", type=int, default=12)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--guidance", type=float, nargs="+", default=[3.0, 10.0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    model = HydraX.from_pretrained(args.ckpt).to(args.device).eval()
    edits = recolour_edits(args.edits, args.seed)
    print("| guidance | change inside the object | change outside | output nearer the target |\n|---:|---:|---:|---:|")
    for g in args.guidance:

        def edit(x: torch.Tensor, text: str, g: float = g) -> torch.Tensor:
            return model.edit(x.to(model.device), text, steps=args.steps, guidance=g, seed=args.seed)

        r = instruction_effect(edit, edits, args.size)
        print(f"| {g:g} | {r.inside:.4f} | {r.outside:.4f} | {r.nearer_target} of {r.edits} |")


if __name__ == "__main__":
    main()
