"""benchmarks/unified_packing.py: a step's rows hold its tokens, in a multiple of ``row_multiple``, no more rows than
that takes; dropping a default system turn removes exactly its tokens from every example."""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

from hydra_x.data.mixture import UnifiedDataLoader
from hydra_x.train.unified.recipes import tiny
from hydra_x.unified.text_tokenizer import use_chat_template
from tests.unified.fixtures import SMOLLM2_SYSTEM, SMOLLM2_TEMPLATE, tiny_tokenizer

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from unified_packing import pack_steps  # noqa: E402


def test_rows_hold_the_tokens_in_multiples_and_the_default_system_turn_costs_its_tokens_on_every_example():
    cfg = tiny()
    cfg.data.examples_per_step, cfg.max_length = 12, 256
    steps = [item.examples for item in itertools.islice(iter(UnifiedDataLoader(cfg.data)), 3)]
    own = tiny_tokenizer(SMOLLM2_TEMPLATE)
    plain = use_chat_template(tiny_tokenizer(SMOLLM2_TEMPLATE), "chatml")
    system = len(own(SMOLLM2_SYSTEM, add_special_tokens=False).input_ids)
    counts = {}
    for multiple in (1, 2, 4):
        cfg.row_multiple = multiple
        (own_tokens, own_rows), (plain_tokens, plain_rows) = pack_steps(steps, own, cfg), pack_steps(steps, plain, cfg)
        assert own_tokens - plain_tokens == system * sum(len(s) for s in steps)
        for tokens, rows in ((own_tokens, own_rows), (plain_tokens, plain_rows)):
            assert sum(rows.values()) == len(steps) and all(n % multiple == 0 for n in rows)
            assert sum(n * c for n, c in rows.items()) * cfg.max_length >= tokens
        counts[multiple] = sorted(plain_rows.elements())
    # a multiple only adds padding rows: the fewest rows that first-fit packing needs, rounded up
    assert counts[2] == [-(-n // 2) * 2 for n in counts[1]] and counts[4] == [-(-n // 4) * 4 for n in counts[1]]
