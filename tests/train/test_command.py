"""The training command line: recipes, dotted overrides, a typed model config whose derived sizes follow."""

from __future__ import annotations

import json

import pytest

from hydra_x.tokenizer import HydraXTokenizer, tokenizer_config
from hydra_x.train.tokenizer.__main__ import parse_config
from hydra_x.train.tokenizer.stages import STAGES


def test_model_overrides_rederive_the_sizes_they_imply_and_keep_explicit_ones():
    base = tokenizer_config("so400m")
    deeper = base.replace(depth=12)
    assert (deeper.gen_depth, deeper.fold_at, deeper.decoder_depth) == (6, 3, 12)
    assert deeper == tokenizer_config("so400m", depth=12)
    explicit = tokenizer_config("small", gen_depth=4).replace(depth=8)
    assert (explicit.gen_depth, explicit.fold_at) == (4, 2)  # gen_depth kept, fold_at follows it
    flow = tokenizer_config("small").replace(decoder="flow")
    assert flow == tokenizer_config("small", decoder="flow")  # the flow decoder's own unfold point
    with pytest.raises(ValueError, match="unknown tokenizer config field"):
        base.replace(widht=3)


def test_the_command_line_sets_a_preset_fields_and_nested_configs(capsys):
    cfg = parse_config(["--config", "tiny", "model=small", "model.depth=8", "optim.lr=0.01", "steps=7"])
    assert cfg.model == tokenizer_config("small", depth=8) and cfg.optim.lr == 0.01 and cfg.steps == 7
    with pytest.raises(SystemExit):
        parse_config(["--config", "tiny", "model.widht=3"])
    assert "unknown tokenizer config field" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse_config(["--config", "tiny", "model=huge"])
    assert "unknown tokenizer preset 'huge'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        parse_config(["--config", "tiny", "model.depth=2", "--print-config"])
    assert exit_.value.code == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["model"]["depth"] == 2 and printed["model"]["gen_depth"] == 1


def test_overrides_apply_outside_the_command_line_as_on_it():
    """``override`` is the command line's overriding, for benchmarks that build a recipe themselves."""
    from hydra_x.train.command import override
    from hydra_x.train.unified.recipes import small

    cfg = override(small(), ["model.image_size=64", "data.image_size=64", "data.task_ratios.edit=4", "steps=3"])
    assert (cfg.model.image_size, cfg.data.image_size, cfg.data.task_ratios["edit"], cfg.steps) == (64, 64, 4, 3)
    assert cfg.data.task_ratios["image_gen"] == small().data.task_ratios["image_gen"]  # the rest of the dict kept
    with pytest.raises(ValueError, match="overrides are KEY=VALUE, got 'steps'"):
        override(small(), ["steps"])


def test_every_stage_trains_parameters_that_exist():
    """A prefix with a typo would freeze a part silently: each one must name parameters of the model."""
    model = HydraXTokenizer.from_preset("tiny", image_teacher_dim=8, video_teacher_dim=8, device="meta")
    names = [n for n, _ in model.named_parameters()]
    for number, stage in STAGES.items():
        for prefix in stage.trains:
            assert any(n.startswith(prefix) for n in names), (number, prefix)
        assert stage.decoder or stage.semantic
