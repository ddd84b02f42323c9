"""benchmarks/fold_ablation.py: the variants are the paper's, and they differ in nothing else."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from fold_ablation import PAPER, VARIANTS, variant_config  # noqa: E402

from hydra_x.train.tokenizer.recipes import small  # noqa: E402

# What a variant may change: attention and folds, and the sizes the folds derive (layers before / after fold 2).
VARIANT_FIELDS = {"attention", "temporal_folds", "fold_at", "decoder_unfold_at"}


def configs():
    return {name: variant_config(c, out_dir="runs/x", steps=7, batch=3, workers=0) for name, c in VARIANTS.items()}


def test_the_variants_are_the_papers_fold_ablation_and_the_final_is_the_small_preset():
    cfgs = configs()
    got = {(c.model.attention, c.model.temporal_folds) for c in cfgs.values()}
    assert got == {("full", (4, 1)), ("causal", (4, 1)), ("tubelet", (4, 1)), ("tubelet", (2, 2))}
    assert next(iter(cfgs)) == PAPER  # it runs first: its steps are everyone's
    assert cfgs[PAPER].model == small().model
    for c in cfgs.values():  # the whole tokenizer follows the variant's attention
        assert c.model.sem_attention_mode == c.model.decoder_attention_mode == c.model.attention


def test_the_variants_differ_in_nothing_but_attention_and_folds():
    cfgs = list(configs().values())
    ref = cfgs[0].to_dict()
    for c in cfgs[1:]:
        d = c.to_dict()
        assert {k: v for k, v in d.items() if k != "model"} == {k: v for k, v in ref.items() if k != "model"}
        changed = {k for k in d["model"] if d["model"][k] != ref["model"][k]}
        assert changed <= VARIANT_FIELDS, changed
    c = cfgs[0]
    assert [s.name for s in c.data.sources] == ["embedded_videos"]
    assert (c.data.clip_frames, c.data.image_size, c.data.video_batch_size, c.steps) == (17, 128, 3, 7)
    assert c.loss.lpips == 0 and c.loss.gan == 0 and c.ema_decay == 0 and c.heldout_clips > 0
