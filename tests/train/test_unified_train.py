"""Unified-model training on the CPU: both losses go down, each stage trains exactly its parts, exact resume, and
the export serves chat and generation through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from hydra_x.cli import main as hydra_main
from hydra_x.data.media import read_image
from hydra_x.data.mixture import UnifiedDataLoader
from hydra_x.data.shapes_tasks import ShapesTasks
from hydra_x.tokenizer import HydraXTokenizer
from hydra_x.train.unified import batch as batch_module
from hydra_x.train.unified import loop as loop_module
from hydra_x.train.unified import train
from hydra_x.train.unified.batch import StepPacker, build_batch, pack_examples
from hydra_x.train.unified.loop import head_attention_from, head_attention_on
from hydra_x.train.unified.recipes import tiny
from hydra_x.train.unified.stages import PARAM_GROUPS
from hydra_x.unified.heads import FlowHead
from hydra_x.unified.model import HydraX


def config(out: Path, **changes):
    cfg = tiny()
    cfg.out_dir = str(out)
    cfg.steps, cfg.log_every, cfg.eval_every, cfg.ckpt_every = 4, 1, 0, 100
    cfg.data.image_size, cfg.data.clip_frames, cfg.data.examples_per_step = 32, 5, 4
    cfg.model = cfg.model.replace(image_size=32)
    cfg.latent_stats_samples = 16
    for key, value in changes.items():
        target = cfg
        *parents, leaf = key.split("__")
        for part in parents:
            target = getattr(target, part)
        setattr(target, leaf, value)
    return cfg


def metric(run: Path, key: str) -> dict[int, float]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r[key] for r in rows if key in r}


@pytest.mark.slow
def test_a_few_dozen_steps_lower_both_losses(tmp_path):
    cfg = config(tmp_path, steps=36, data__examples_per_step=6)
    train(cfg)
    for key in ("loss/text", "loss/flow"):
        values = list(metric(tmp_path, key).values())
        assert len(values) > 30  # a step whose examples all read (or all generate) has one loss only
        assert sum(values[-6:]) < 0.9 * sum(values[:6]), (key, values)  # about 0.85 for both here
    assert all(0 < w < 1 for w in metric(tmp_path, "data_wait_fraction").values())  # measured, not a constant


def test_flex_attention_off_cuda_trains_with_sdpa_and_says_so(tmp_path, caplog):
    # The `small` recipe chooses FlexAttention (GPU); PyTorch has no CPU backward for it.
    cfg = config(tmp_path, steps=1, device="cpu", latent_stats_samples=0)
    cfg.model = cfg.model.replace(attention="flex")
    with caplog.at_level("WARNING", logger="hydra_x"):
        train(cfg)
    assert "model.attention=flex trains on CUDA only; this run on cpu uses sdpa" in caplog.text
    assert json.loads((tmp_path / "export" / "config.json").read_text())["attention"] == "sdpa"


def snapshot(model: HydraX) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("stage", [1, 2])
def test_each_stage_trains_exactly_the_parts_it_names(tmp_path, stage):
    cfg = config(tmp_path, steps=2, stage=stage, ckpt_every=2, latent_stats_samples=0)  # stats re-parameterise
    initial = HydraX.from_config(cfg.model, seed=cfg.seed)
    before = snapshot(initial)
    train(cfg)
    after = snapshot(HydraX.from_pretrained(tmp_path / "export"))
    learns = tuple(p for group in cfg.stage_spec.lrs for p in PARAM_GROUPS[group])
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed, "nothing trained"
    frozen_changed = sorted(k for k in changed if not k.startswith(learns))
    assert frozen_changed == []  # frozen weights bitwise unchanged: the LLM in stage 1, the Gen-ViT always
    for group in cfg.stage_spec.lrs:
        assert any(k.startswith(PARAM_GROUPS[group]) for k in changed), group
    assert not any(k.startswith("tokenizer.gen_vit.") for k in changed)
    if stage == 1:
        assert not any(k.startswith("llm.") for k in changed)


def test_group_lr_scale_multiplies_one_groups_rate_in_the_optimizer(tmp_path):
    from hydra_x.train.engine import set_trainable
    from hydra_x.train.optim import build_optimizer

    cfg = config(tmp_path, stage=2, lr_scale=2.0, group_lr_scale={"sem_vit": 5.0})
    base = cfg.stage_spec.lrs
    assert {g: lr for g, (_, lr) in cfg.param_lrs().items()} == {
        "heads": base["heads"] * 2,
        "sem_vit": base["sem_vit"] * 2 * 5,
        "llm": base["llm"] * 2,
    }
    model = HydraX.from_config(cfg.model, seed=0)
    set_trainable(model, cfg.stage_spec.trains)  # as build.build_run does before its optimizer
    optimizer = build_optimizer(model, cfg.optim, cfg.param_lrs())
    rates = {g["name"]: g["lr"] for g in optimizer.param_groups}
    assert rates == {g: lr for g, (_, lr) in cfg.param_lrs().items()}
    sem = {id(p) for g in optimizer.param_groups if g["name"] == "sem_vit" for p in g["params"]}
    assert sem == {id(p) for n, p in model.named_parameters() if n.startswith(PARAM_GROUPS["sem_vit"])}
    with pytest.raises(ValueError, match="unknown group 'vit'"):
        config(tmp_path, group_lr_scale={"vit": 2.0}).__post_init__()
    with pytest.raises(ValueError, match="'llm' is frozen in stage 'align'"):
        config(tmp_path, stage=1, group_lr_scale={"llm": 2.0}).__post_init__()
    with pytest.raises(ValueError, match="must be positive"):
        config(tmp_path, stage=2, group_lr_scale={"heads": 0.0}).__post_init__()


def test_a_fresh_run_sets_latent_statistics_measured_on_its_generation_targets(tmp_path):
    HydraXTokenizer.from_preset("tiny", seed=0).save_pretrained(tmp_path / "tokenizer")  # stage 1-2: no statistics
    train(config(tmp_path / "run", steps=1, tokenizer_init=str(tmp_path / "tokenizer"), latent_stats_samples=64))
    before = HydraXTokenizer.from_pretrained(tmp_path / "tokenizer").eval()
    after = HydraX.from_pretrained(tmp_path / "run" / "export").tokenizer.eval()
    assert not before.has_latent_stats and after.has_latent_stats
    assert torch.all(after.latent_std == after.latent_std[0])  # one std: channels keep their relative scale
    tasks = ShapesTasks(1, "train", 32, 5)  # other pictures than those measured
    x = torch.stack([tasks.example("image_gen", k).visuals[0].pixels for k in range(32)])
    with torch.no_grad():
        raw, z = before.encode(x), after.encode(x)
        # The unified stages never train the pixel decoder: it renders the normalised latents as before.
        torch.testing.assert_close(after.decode(z), before.decode(raw), atol=1e-4, rtol=1e-4)
    assert abs(float(z.std()) - 1) < 0.15 and float(z.mean(dim=(0, 2, 3, 4)).abs().max()) < 0.3
    assert float(raw.std()) < 0.5  # what the statistics fix: raw latents far below the flow's unit noise


def test_a_resumed_run_follows_the_uninterrupted_one(tmp_path, capsys):
    train(config(tmp_path / "straight"))
    assert train(config(tmp_path / "resumed", stop_at_step=2))["step"] == 2
    assert "setting(s)" not in capsys.readouterr().out  # fresh runs have nothing to compare
    train(config(tmp_path / "resumed"))
    # the resumed run names what it changes of the config its checkpoint was written with, and nothing else
    assert "changes 1 setting(s) of the config its checkpoint had: stop_at_step: 2 -> None\n" in capsys.readouterr().out
    for key in ("loss/text", "loss/flow"):
        straight, resumed = metric(tmp_path / "straight", key), metric(tmp_path / "resumed", key)
        assert sorted(resumed) == [1, 2, 3, 4]
        for step in (3, 4):
            assert resumed[step] == pytest.approx(straight[step], rel=1e-5, abs=1e-6), (key, step)


def test_rows_and_draws_made_in_data_workers_train_as_those_made_in_the_training_process(tmp_path, monkeypatch):
    # The loader's workers pack each step's rows and draw its flow times and noises (StepPacker); the training
    # process only moves them to the device.
    cfg = config(tmp_path / "main", steps=3, latent_stats_samples=0, loss__cond_dropout=0.5)
    train(cfg)

    def not_here(*args, **kwargs):
        raise AssertionError("the training process packed rows or drew noise itself")

    for name in ("pack_examples", "draw_generated"):
        monkeypatch.setattr(batch_module, name, not_here)  # workers are processes: unaffected
    workers = config(tmp_path / "workers", steps=3, latent_stats_samples=0, loss__cond_dropout=0.5)
    workers.data.num_workers = 2
    train(workers)
    for key in ("loss/text", "loss/flow", "tokens_per_s"):
        main, packed = metric(tmp_path / "main", key), metric(tmp_path / "workers", key)
        assert sorted(packed) == sorted(main) == [1, 2, 3]
        if key != "tokens_per_s":
            assert packed == pytest.approx(main, rel=1e-6, abs=1e-7), key


def test_rows_packed_for_another_step_are_refused():
    model = HydraX.from_preset("tiny", seed=0)
    cfg = config(Path("unused"))
    item = next(iter(UnifiedDataLoader(cfg.data, start_step=4)))
    prepared = StepPacker(model.text_tokenizer, model.config, cfg, rank=0)(item)
    packed, _, _ = build_batch(model, item.examples, cfg, 4, 0, prepared)
    assert torch.equal(
        packed.input_ids,
        pack_examples(model.text_tokenizer, model.config.tokenizer, item.examples, cfg, 4, 0)[0].input_ids,
    )
    with pytest.raises(ValueError, match="rows packed for micro-step 4, first example 0, given for micro-step 5"):
        build_batch(model, item.examples, cfg, 5, 0, prepared)


@pytest.mark.parametrize("read_size", [None, 48])
def test_a_packed_step_gives_each_example_what_it_gets_alone(read_size):
    # Every task at once (images, clips, edits, understanding and generation), visuals encoded and embedded in
    # groups of one shape: each example's losses and velocities are those of the example alone, whose draws
    # (caption dropout, flow time, noise) come from its global index. With read_size, the pictures that are only
    # read come at 48 px beside generation's 32: more shapes in one step.
    cfg = config(Path("unused"), latent_stats_samples=0, loss__cond_dropout=0.3)
    cfg.data.examples_per_step = 16
    cfg.data.understanding_image_size = read_size
    model = HydraX.from_config(cfg.model, seed=0).eval()
    with torch.no_grad():
        for p in model.flow_head.parameters():  # a non-zero head (it starts at zero)
            p.normal_(0, 0.05)
    examples = next(iter(UnifiedDataLoader(cfg.data, start_step=3))).examples
    assert {"edit", "video_gen", "image_gen", "image_sft", "video_caption"} <= {ex.task for ex in examples}
    sides = {v.pixels.shape[-1] for ex in examples for v in ex.visuals}
    assert sides == ({32} if read_size is None else {32, read_size})
    with torch.no_grad():
        packed, visuals, _ = build_batch(model, examples, cfg, 3, 0)
        whole = model(packed, visuals)
        alone = [model(*build_batch(model, [ex], cfg, 3, i)[:2]) for i, ex in enumerate(examples)]
    assert len(packed.rows) > 1  # several rows: samples of one row see nothing of another's
    close = dict(rtol=2e-5, atol=2e-5)
    torch.testing.assert_close(whole.text_loss_sum, sum(o.text_loss_sum for o in alone), **close)
    torch.testing.assert_close(whole.flow_loss_sum, sum(o.flow_loss_sum for o in alone), **close)
    assert whole.flow_elements == sum(o.flow_elements for o in alone) > 0
    generated = [p.sample for p in packed.placements if p.role == "generate"]  # placement order
    torch.testing.assert_close(whole.velocity, torch.cat([alone[i].velocity for i in generated]), **close)


def test_rows_of_padding_leave_the_losses_as_they_were():
    cfg = config(Path("unused"), latent_stats_samples=0)
    model = HydraX.from_config(cfg.model, seed=0).eval()
    with torch.no_grad():
        for p in model.flow_head.parameters():  # a non-zero head (it starts at zero)
            p.normal_(0, 0.05)
    examples = next(iter(UnifiedDataLoader(cfg.data, start_step=2))).examples
    with torch.no_grad():
        plain = model(*build_batch(model, examples, cfg, 2, 0)[:2])
        cfg.row_multiple = 4
        packed, visuals, _ = build_batch(model, examples, cfg, 2, 0)
        padded = model(packed, visuals)
    assert len(packed.rows) % 4 == 0 and packed.rows[-1] == []  # rows of padding were added
    close = dict(rtol=2e-5, atol=2e-5)
    torch.testing.assert_close(padded.text_loss_sum, plain.text_loss_sum, **close)
    torch.testing.assert_close(padded.flow_loss_sum, plain.flow_loss_sum, **close)
    torch.testing.assert_close(padded.velocity, plain.velocity, **close)
    assert (padded.text_tokens, padded.flow_elements) == (plain.text_tokens, plain.flow_elements)


@pytest.mark.gpu
@pytest.mark.parametrize("head_attention_layers", [0, 2])
def test_a_training_forward_and_backward_never_wait_for_the_gpu(head_attention_layers):
    # A read-back or a boolean mask on the device makes the host wait for all the work queued before it, so a
    # host-bound step could not run ahead of the GPU. CUDA's sync debug mode raises at any such wait.
    from hydra_x.train.unified.objective import unified_loss

    cfg = config(Path("unused"), latent_stats_samples=0)
    cfg.model = cfg.model.replace(head_attention_layers=head_attention_layers)
    model = HydraX.from_config(cfg.model, seed=0).cuda()
    model.tokenizer.validate_inputs = False  # as in training: the data pipeline checks the pixels' values
    examples = next(iter(UnifiedDataLoader(cfg.data, start_step=3))).examples
    packed, visuals, _ = build_batch(model, examples, cfg, 3, 0)
    unified_loss(model(packed, visuals), cfg.loss, torch.device("cuda")).total.backward()  # caches built once
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        out = model(packed, visuals)
        unified_loss(out, cfg.loss, torch.device("cuda")).total.backward()
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert out.velocity is not None and out.text_tokens > 0


def test_the_export_chats_and_generates_through_the_cli(tmp_path, capsys):
    train(config(tmp_path / "run", steps=1))
    ckpt = str(tmp_path / "run" / "export")
    image, clip = tmp_path / "gen.png", tmp_path / "gen.mp4"
    assert hydra_main(["generate", "a red circle", "--ckpt", ckpt, "--out", str(image), "--steps", "2"]) == 0
    assert image.is_file() and "wrote" in capsys.readouterr().out
    args = ["generate", "a red circle moving left", "--frames", "5", "--ckpt", ckpt, "--out", str(clip), "--steps", "2"]
    assert hydra_main(args) == 0 and clip.is_file()
    capsys.readouterr()
    assert hydra_main(["chat", "What colour is the circle?", "--image", str(image), "--ckpt", ckpt]) == 0
    assert hydra_main(["chat", "Which way does it move?", "--video", str(clip), "--ckpt", ckpt]) == 0
    # Errors a user can make: one line, exit 2.
    assert hydra_main(["generate", "x", "--ckpt", ckpt, "--height", "40", "--out", str(image)]) == 2
    assert hydra_main(["generate", "x", "--ckpt", ckpt, "--frames", "6", "--out", str(clip)]) == 2
    assert hydra_main(["chat", "x", "--image", str(clip), "--ckpt", ckpt]) == 2  # a video given as an image
    assert hydra_main(["chat", "x", "--image", str(tmp_path / "missing.png"), "--ckpt", ckpt]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 4 and all(line.startswith("hydra-x: error: ") for line in err), err


def test_understanding_at_its_own_size_is_trained_checked_saved_and_asked_at_that_size(tmp_path, monkeypatch):
    from hydra_x.train.unified import heldout
    from hydra_x.unified import chat

    asked = []  # the sides of the pictures chat was given: the held-out checks', then the CLI's
    real_chat = chat.chat

    def spy(model, prompt, **kwargs):
        media = "image" if kwargs.get("image") is not None else "video"
        asked.append((media, kwargs[media].shape[-1]))
        return real_chat(model, prompt, **{**kwargs, "max_new_tokens": 2})

    monkeypatch.setattr(chat, "chat", spy)
    monkeypatch.setattr(heldout, "chat", spy)
    cfg = config(tmp_path / "run", steps=2, eval_every=2, heldout_prompts=0, heldout_questions=2)
    cfg.data.understanding_image_size = 48
    with pytest.raises(ValueError, match=r"data.understanding_image_size \(48\) and model.understanding_image_size"):
        cfg.__post_init__()
    cfg.model = cfg.model.replace(understanding_image_size=48)
    train(cfg)
    ckpt = tmp_path / "run" / "export"
    saved = json.loads((ckpt / "config.json").read_text())
    assert (saved["image_size"], saved["understanding_image_size"]) == (32, 48)
    picture = tmp_path / "in.png"
    assert hydra_main(["generate", "a red circle", "--ckpt", str(ckpt), "--out", str(picture), "--steps", "1"]) == 0
    assert read_image(picture).shape == (3, 32, 32)  # generation at its own size
    clip = tmp_path / "in.mp4"
    args = [
        "generate",
        "a red circle moving left",
        "--ckpt",
        str(ckpt),
        "--out",
        str(clip),
        "--steps",
        "1",
        "--frames",
        "5",
    ]
    assert hydra_main(args) == 0
    assert hydra_main(["chat", "What colour is the circle?", "--image", str(picture), "--ckpt", str(ckpt)]) == 0
    assert hydra_main(["chat", "And now?", "--image", str(picture), "--ckpt", str(ckpt), "--size", "64"]) == 0
    assert hydra_main(["chat", "Which way?", "--video", str(clip), "--ckpt", str(ckpt)]) == 0
    assert asked == [("image", 48)] * 2 + [("image", 48), ("image", 64), ("video", 32)]  # clips at generation's size
    with pytest.raises(ValueError, match="understanding_image_size must be None or a multiple of the patch size 16"):
        cfg.model.replace(understanding_image_size=40)


def test_a_run_from_a_checkpoint_grows_attention_in_its_flow_head_and_starts_where_it_was(tmp_path):
    train(config(tmp_path / "first", steps=2, latent_stats_samples=0))
    trained = HydraX.from_pretrained(tmp_path / "first" / "export")
    with torch.no_grad():  # a head whose output is far from its zero start, as after a long run
        for p in trained.flow_head.parameters():
            p.normal_(0, 0.05)
    init = str(trained.save_pretrained(tmp_path / "init"))
    train(config(tmp_path / "grown", steps=3, init=init, init_head_attention_layers=2, latent_stats_samples=0))
    train(config(tmp_path / "same", steps=3, init=init, latent_stats_samples=0))
    grown, same = metric(tmp_path / "grown", "loss/total"), metric(tmp_path / "same", "loss/total")
    assert grown[1] == pytest.approx(same[1], rel=1e-6)  # zero gates: the first step is the checkpoint's
    exported = HydraX.from_pretrained(tmp_path / "grown" / "export")
    assert exported.config.head_attention_layers == 2
    assert all(layer.modulation[-1].weight.abs().max() > 0 for layer in exported.flow_head.attention)  # they trained
    with pytest.raises(ValueError, match="set init too"):
        config(tmp_path / "x", init_head_attention_layers=2).__post_init__()


def test_the_flow_heads_attention_is_held_out_until_its_step_then_trains(tmp_path):
    def attention(model: HydraX) -> dict[str, torch.Tensor]:
        return {k: v for k, v in snapshot(model).items() if k.startswith("flow_head.attention.")}

    cfg = config(tmp_path / "held", steps=2, head_attention_from_step=2, latent_stats_samples=0)
    cfg.model = cfg.model.replace(head_attention_layers=1)
    initial = HydraX.from_config(cfg.model, seed=cfg.seed)
    train(cfg)
    held = HydraX.from_pretrained(tmp_path / "held" / "export")
    for key, value in attention(initial).items():
        assert torch.equal(attention(held)[key], value), key  # skipped: no gradient, its gates still zero
    assert not torch.equal(held.flow_head.out.weight, initial.flow_head.out.weight)  # the rest of the head trained
    cfg.out_dir, cfg.steps = str(tmp_path / "joined"), 4
    train(cfg)
    joined = HydraX.from_pretrained(tmp_path / "joined" / "export")
    assert joined.flow_head.attention[0].modulation[-1].weight.abs().max() > 0  # from the third step on it trains
    with pytest.raises(ValueError, match="head_attention_from_step must be >= 0"):
        config(tmp_path / "x", head_attention_from_step=-1).__post_init__()


def record_head_attention(monkeypatch, plan: list[int] | None = None) -> tuple[list[set[bool]], list[bool]]:
    """Patches the training loop to record, per step, the flag its flow-head calls saw, and the flag once the step
    is over. ``plan``: [the engine's planned steps from the first step on], as a time budget's probe sets them."""
    used, after = [], []
    forward, step = FlowHead.forward, loop_module.train_step

    def recording_forward(self, *args, **kwargs):
        used[-1].add(self.use_attention)
        return forward(self, *args, **kwargs)

    def recording_step(run, batches, at):
        if plan is not None:
            run.engine.planned_steps = plan[0]
        used.append(set())
        grad_norm = step(run, batches, at)
        after.append(run.model.flow_head.use_attention)
        return grad_norm

    monkeypatch.setattr(FlowHead, "forward", recording_forward)
    monkeypatch.setattr(loop_module, "train_step", recording_step)
    return used, after


def test_the_flow_heads_attention_joins_at_a_share_of_the_runs_plan_however_long_the_budget_made_it(
    tmp_path, monkeypatch, capsys
):
    cfg = config(tmp_path / "share", steps=100, head_attention_from_share=0.5, latent_stats_samples=0)
    cfg.model = cfg.model.replace(head_attention_layers=1)
    # A time budget planned 954 steps on one machine and 788 on a slower one: step 800 joins in the first alone.
    cfg.head_attention_from_share = 0.84
    assert (head_attention_from(cfg, 954), head_attention_from(cfg, 788)) == (802, 662)
    assert not head_attention_on(cfg, 801, 954) and head_attention_on(cfg, 802, 954)
    assert head_attention_on(cfg, 700, 788)  # a plan shortened mid-run: joined earlier, and stays joined
    cfg.head_attention_from_share = 0.5
    # In a run whose plan is 6 steps (of steps=100), as a budget's probe leaves it: the layers join at step 3.
    plan = [6]
    used, _ = record_head_attention(monkeypatch, plan)
    cfg.stop_at_step = 5
    train(cfg)
    assert used == [{False}] * 3 + [{True}] * 2
    meta = json.loads((tmp_path / "share" / "checkpoints" / "step_00000005" / "meta.json").read_text())
    assert meta["head_attention_joined_at"] == 3
    # Resumed, the budget plans anew (12 steps: their half would be step 6), and the joined layers stay joined.
    plan[0], cfg.stop_at_step = 12, None
    used.clear()
    train(cfg)
    assert used == [{True}] * 7
    assert metric(tmp_path / "share", "loss/total").keys() == set(range(1, 13))
    assert json.loads((tmp_path / "share" / "summary.json").read_text())["head_attention_joined_at"] == 3
    assert "step 3 of 6: the flow head's attention layers join" in capsys.readouterr().out
    for bad, match in ((1.0, "share of the planned steps"), (-0.1, "share of the planned steps")):
        with pytest.raises(ValueError, match=match):
            config(tmp_path / "x", head_attention_from_share=bad).__post_init__()
    with pytest.raises(ValueError, match="both set: give one"):
        config(tmp_path / "x", head_attention_from_share=0.5, head_attention_from_step=3).__post_init__()


def test_the_flow_heads_attention_sits_out_a_drawn_share_of_steps_alike_in_every_run(tmp_path, monkeypatch):
    cfg = config(
        tmp_path / "drop", steps=8, head_attention_from_step=1, head_attention_drop=0.5, latent_stats_samples=0
    )
    cfg.model = cfg.model.replace(head_attention_layers=1)
    many = [head_attention_on(cfg, step, cfg.steps) for step in range(4000)]
    assert not many[0]  # before head_attention_from_step: never
    assert sum(many[1:]) / 3999 == pytest.approx(0.5, abs=0.03)
    assert many == [head_attention_on(cfg, step, cfg.steps) for step in range(4000)]  # the same draw every time
    cfg.seed += 1
    other_seed = [head_attention_on(cfg, step, cfg.steps) for step in range(4000)]
    cfg.seed -= 1
    assert other_seed != many
    cfg.head_attention_drop = 0.8
    share = sum(head_attention_on(cfg, step, cfg.steps) for step in range(1, 4000)) / 3999
    assert share == pytest.approx(0.2, abs=0.03)
    cfg.head_attention_drop = 0.5
    expected = many[: cfg.steps]
    assert True in expected and False in expected[1:]  # this seed's first steps hold both kinds

    used, after = record_head_attention(monkeypatch)
    train(cfg)
    assert used == [{on} for on in expected]
    assert all(after)  # sampling between steps (held-out checks) and the export run the attention layers
    for bad in (1.0, -0.1):
        with pytest.raises(ValueError, match="head_attention_drop is a share of steps"):
            config(tmp_path / "x", head_attention_drop=bad).__post_init__()
