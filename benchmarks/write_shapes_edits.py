"""Write shapes-world edit triples as an edits file (PNG images + edits.jsonl), the format `hydra-x eval edits` and the
`edits` training source read: a check of the file-backed editing path against the shapes world's own edits.

    python benchmarks/write_shapes_edits.py --out runs/shapes-edits --count 40 --split heldout --size 64
    hydra-x eval edits --ckpt runs/demo/unified/export --data runs/shapes-edits/edits.jsonl --out runs/eval/e --size 64
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from hydra_x.data.media import write_image
from hydra_x.data.shapes_tasks import ShapesTasks


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="folder for edits.jsonl and images/")
    p.add_argument("--count", type=int, default=40)
    p.add_argument("--split", choices=("train", "heldout"), default="heldout")
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    out = Path(args.out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    tasks = ShapesTasks(args.seed, args.split, args.size, 5)
    lines = []
    for k in range(args.count):
        ex = tasks.example("edit", k)
        for name, visual in zip(("source", "target"), ex.visuals):
            write_image(out / "images" / f"{k:04d}-{name}.png", visual.pixels)
        instruction = ex.messages[0]["content"].removeprefix("<image>\n")
        record = {"id": ex.key, "source": f"images/{k:04d}-source.png", "instruction": instruction}
        lines.append(json.dumps({**record, "target": f"images/{k:04d}-target.png"}))
    (out / "edits.jsonl").write_text("\n".join(lines) + "\n")
    print(f"wrote {args.count} {args.split} edit triples: {out / 'edits.jsonl'}")


if __name__ == "__main__":
    main()
