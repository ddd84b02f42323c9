"""How full a unified step's packed rows are: tokens an example, rows a step and the share of padding, per chat
template and row multiple; counted on the host, no model runs.

    python benchmarks/unified_packing.py                                   # the `small` recipe (128 px, 256)
    python benchmarks/unified_packing.py --set data.image_size=64 model.image_size=64 data.clip_frames=9 \
        model.clip_frames=9 data.task_ratios.edit=4 data.examples_per_step=512 --row-multiples 8 4 1

The LLM runs every position of every row, padding too (its linear layers cost per position; FlexAttention skips
the padding's attention alone), so a step costs its rows x ``max_length`` positions. Rows are what first-fit
packing of the step's examples needs, rounded up to a multiple of ``row_multiple``: a compiled LLM layer is one
graph per row count, so the multiple trades padding for recompilations. This draws ``--steps`` steps of the
recipe's mixture (``--set KEY=VALUE ...`` as ``hydra-x train unified`` takes them), writes each example with the
LLM's text tokenizer (``--llm``: default SmolLM2-135M's, converted by ``hydra-x llm convert-smollm2``) in each
``--chat-template`` and packs it at each ``--row-multiples``, and prints one table row for each pair.
"""

from __future__ import annotations

import argparse
import collections
import copy
import itertools

from hydra_x.data.mixture import UnifiedDataLoader
from hydra_x.train.command import override
from hydra_x.train.unified.batch import pack_examples
from hydra_x.train.unified.recipes import small
from hydra_x.unified.llm import load_llm
from hydra_x.unified.sequence import add_visual_tokens
from hydra_x.unified.text_tokenizer import CHAT_TEMPLATES, use_chat_template


def pack_steps(steps: list[list], text_tokenizer, cfg) -> tuple[int, collections.Counter]:
    """(tokens, how many steps packed into each row count) of ``steps`` as training packs them under ``cfg``."""
    rows, tokens = collections.Counter(), 0
    for i, step in enumerate(steps):
        packed, _ = pack_examples(text_tokenizer, cfg.model.tokenizer, step, cfg, i, 0)
        rows[packed.valid.shape[0]] += 1
        tokens += int(packed.valid.sum())
    return tokens, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--llm", default="smollm2-135m", help="the LLM whose text tokenizer writes the examples")
    parser.add_argument("--chat-template", nargs="+", choices=CHAT_TEMPLATES, default=list(CHAT_TEMPLATES))
    parser.add_argument("--row-multiples", type=int, nargs="+", default=[8, 4, 2, 1])
    parser.add_argument("--steps", type=int, default=40, help="steps drawn (default 40)")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="overrides of the `small` recipe")
    args = parser.parse_args()
    cfg = override(small(), args.set)
    cfg.data.num_workers = 0
    steps = [item.examples for item in itertools.islice(iter(UnifiedDataLoader(cfg.data)), args.steps)]
    examples = sum(len(s) for s in steps)
    print(f"{args.steps} steps of {cfg.data.examples_per_step} examples, rows of {cfg.max_length} tokens")
    print("| chat template | row multiple | tokens / example | rows a step (steps) | padding | positions / example |")
    print("|---|---:|---:|---|---:|---:|")
    _, loaded = load_llm(args.llm)
    add_visual_tokens(loaded)  # the block markers, as the model adds them
    for template in args.chat_template:
        text_tokenizer = use_chat_template(copy.deepcopy(loaded), template)
        for multiple in args.row_multiples:
            cfg.row_multiple = multiple
            tokens, rows = pack_steps(steps, text_tokenizer, cfg)
            positions = sum(n * count for n, count in rows.items()) * cfg.max_length
            counts = ", ".join(f"{n}: {c}" for n, c in sorted(rows.items()))
            print(
                f"| {template} | {multiple} | {tokens / examples:.1f} | {counts} | {1 - tokens / positions:.0%} "
                f"| {positions / examples:.1f} |"
            )


if __name__ == "__main__":
    main()
