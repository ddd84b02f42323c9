"""The unified data stream: deterministic, exactly resumable, the same with workers, ratios kept, clear errors."""

from __future__ import annotations

import json
import math
import pickle
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from hydra_x.data.config import DataSourceError
from hydra_x.data.examples import TASKS, Example
from hydra_x.data.mixture import (
    StepExamples,
    UnifiedDataConfig,
    UnifiedDataLoader,
    UnifiedSource,
    step_plan,
    step_tasks,
)
from tests.data.unified_data import corrupt_png, llava, mp4_bytes, shapes_png, write_conversations, write_tar


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("mixture")
    write_conversations(root / "conv")
    samples = [{"png": png, "txt": cap.encode()} for png, cap in (shapes_png(k) for k in range(7))]
    samples.insert(3, {"png": corrupt_png(), "txt": b"broken"})
    for i in range(2):
        write_tar(root / f"img-{i}.tar", samples[i::2])
    clips = [{"mp4": mp4_bytes(root, f"{k}.mp4", frames=12), "txt": f"clip {k}".encode()} for k in range(3)]
    write_tar(root / "vid-0.tar", clips)
    return {"conv": root / "conv" / "data.jsonl", "img": root / "img-{0..1}.tar", "vid": root / "vid-0.tar"}


def mixed(data, **kw) -> UnifiedDataConfig:
    sources = (
        UnifiedSource("shapes"),
        UnifiedSource("conversations", str(data["conv"]), weight=2.0),
        UnifiedSource("caption_shards", str(data["img"]), weight=2.0),
        UnifiedSource("video_caption_shards", str(data["vid"]), weight=2.0),
    )
    base = dict(image_size=32, clip_frames=5, examples_per_step=4, num_workers=0, seed=5, shard_streams=2)
    return UnifiedDataConfig(sources=sources, task_ratios={t: 1.0 for t in TASKS}, **{**base, **kw})


def take(loader: UnifiedDataLoader, n: int) -> list[StepExamples]:
    it = iter(loader)
    return [next(it) for _ in range(n)]


def assert_same(a: list[StepExamples], b: list[StepExamples]) -> None:
    assert [s.step for s in a] == [s.step for s in b]
    for x, y in zip(a, b):
        assert x.skipped == y.skipped, x.step
        assert [(e.task, e.key, e.messages) for e in x.examples] == [(e.task, e.key, e.messages) for e in y.examples]
        for e, f in zip(x.examples, y.examples):
            assert len(e.visuals) == len(f.visuals), e.key
            assert all(torch.equal(v.pixels, w.pixels) and v.role == w.role for v, w in zip(e.visuals, f.visuals))


def test_every_source_and_task_is_used_and_the_stream_is_deterministic(data):
    cfg = mixed(data)
    steps = take(UnifiedDataLoader(cfg), 12)
    assert_same(steps, take(UnifiedDataLoader(cfg), 12))
    examples = [e for s in steps for e in s.examples]
    assert all(len(s.examples) == 4 for s in steps)
    assert [e.task for e in examples] == [t for s in range(12) for t in step_tasks(cfg, s)]
    origin = Counter(e.key.split(":")[0].rsplit("/", 1)[-1] for e in examples)
    assert {"shapes", "data.jsonl", "img-0.tar", "img-1.tar", "vid-0.tar"} <= set(origin)
    other = take(UnifiedDataLoader(mixed(data, seed=6)), 3)  # another seed, another stream
    assert [e.key for s in other for e in s.examples] != [e.key for e in examples[:12]]


def test_resuming_at_step_k_gives_the_uninterrupted_runs_steps(data):
    cfg = mixed(data)
    reference = take(UnifiedDataLoader(cfg), 9)
    first = UnifiedDataLoader(cfg)
    take(first, 5)
    state = json.loads(json.dumps(first.state_dict()))  # what a checkpoint stores
    assert state["step"] == 5 and state["streams"]
    assert_same(take(UnifiedDataLoader(cfg, start_step=5, state=state), 4), reference[5:])


def test_workers_give_what_the_main_process_gives_and_resume_it(data):
    reference = take(UnifiedDataLoader(mixed(data)), 8)
    workers = UnifiedDataLoader(mixed(data, num_workers=2))
    assert_same(take(workers, 5), reference[:5])
    resumed = UnifiedDataLoader(mixed(data), start_step=5, state=workers.state_dict())
    assert_same(take(resumed, 3), reference[5:])


class MarkPrepared:
    """A loader's ``prepare`` (picklable, so it runs in the worker) that leaves a file named after each step."""

    def __init__(self, folder: Path):
        self.folder = folder

    def __call__(self, step: StepExamples) -> None:
        (self.folder / str(step.step)).touch()


def test_the_data_workers_start_at_iter_not_at_the_first_step(data, tmp_path):
    # A trainer calls iter() before its setup so that the workers' start overlaps it (they took 33 s of a GPU run's
    # first step): the first steps are built before anything asks for them.
    loader = UnifiedDataLoader(mixed(data, num_workers=1), prepare=MarkPrepared(tmp_path))
    steps = iter(loader)
    deadline = time.monotonic() + 120
    while not (tmp_path / "0").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert (tmp_path / "0").exists() and loader.step == 0
    assert [next(steps).step for _ in range(2)] == [0, 1] and loader.step == 2


def test_a_step_crosses_from_its_worker_as_one_stack_per_picture_shape(data):
    # Pictures pickled one tensor each are mapped from shared memory one by one on the trainer's side (0.9 s for a
    # 2048-example step); a stack per shape is a few mappings.
    built_here = take(UnifiedDataLoader(mixed(data, examples_per_step=16)), 2)
    from_worker = take(UnifiedDataLoader(mixed(data, examples_per_step=16, num_workers=1)), 2)
    assert_same(from_worker, built_here)
    for here, there in zip(built_here, from_worker):
        pictures = [v.pixels for ex in there.examples for v in ex.visuals]
        shapes = {tuple(x.shape) for x in pictures}
        assert len(shapes) >= 2 and len(pictures) > len(shapes)  # images and clips, several of a shape
        assert len({x.untyped_storage().data_ptr() for x in pictures}) == len(shapes)
        assert len({v.pixels.untyped_storage().data_ptr() for ex in here.examples for v in ex.visuals}) == len(pictures)
        assert all(isinstance(ex, Example) for ex in there.examples)
        assert_same([pickle.loads(pickle.dumps(there))], [here])  # and again, from rows of stacks
        # Pinning (CUDA only) replaces the stacks with page-locked copies, and the pictures with their rows:
        copies = [stack.clone() for stack in there._pixel_stacks]
        there._set_pixels(copies, there._pixel_rows)
        assert_same([there], [here])
        assert {v.pixels.untyped_storage().data_ptr() for ex in there.examples for v in ex.visuals} == {
            c.untyped_storage().data_ptr() for c in copies
        }


@pytest.mark.gpu
@pytest.mark.parametrize("workers", [0, 2])
def test_pinned_steps_are_the_same_steps(data, workers):
    """A CUDA run gets page-locked pixels (asynchronous copies to the GPU) with the same content."""
    pinned = take(UnifiedDataLoader(mixed(data, num_workers=workers), pin_memory=True), 3)
    assert all(v.pixels.is_pinned() for step in pinned for ex in step.examples for v in ex.visuals)
    assert any(ex.visuals for step in pinned for ex in step.examples)
    assert_same(pinned, take(UnifiedDataLoader(mixed(data)), 3))


def test_map_style_steps_depend_on_the_global_batch_not_its_split_over_ranks(data):
    cfg = mixed(data, examples_per_step=4)
    cfg.sources = cfg.sources[:2]
    cfg.task_ratios = {"image_sft": 1.0, "text": 1.0, "image_gen": 1.0}
    whole = take(UnifiedDataLoader(cfg), 3)
    cfg.examples_per_step = 2
    halves = [take(UnifiedDataLoader(cfg, rank=r, world_size=2), 3) for r in (0, 1)]
    joined = [StepExamples(a.step, a.examples + b.examples, a.skipped + b.skipped) for a, b in zip(*halves)]
    assert_same(
        [StepExamples(s.step, s.examples, []) for s in whole], [StepExamples(s.step, s.examples, []) for s in joined]
    )


def test_task_ratios_and_source_weights_hold_within_binomial_noise():
    cfg = UnifiedDataConfig(task_ratios={"image_caption": 1.0, "image_gen": 3.0, "text": 0.0}, examples_per_step=8)
    counts = Counter(t for step in range(1000) for rank in (0, 1) for t in step_tasks(cfg, step, rank))
    n = sum(counts.values())
    assert set(counts) == {"image_caption", "image_gen"}
    assert abs(counts["image_gen"] - 0.75 * n) < 4 * math.sqrt(n * 0.75 * 0.25)
    # two sources for one task, weights 1 : 3
    cfg.sources = (UnifiedSource("shapes"), UnifiedSource("shapes", split="heldout", weight=3.0))
    both = {"image_caption": [0, 1], "image_gen": [0, 1]}
    picks = Counter(sid for step in range(1000) for _, sid in step_plan(cfg, both, step, 0))
    m = sum(picks.values())
    assert abs(picks[1] - 0.75 * m) < 4 * math.sqrt(m * 0.75 * 0.25)
    # ranks and steps draw independently: rank 1 is not rank 0 again
    assert [step_tasks(cfg, s, 0) for s in range(20)] != [step_tasks(cfg, s, 1) for s in range(20)]


def test_a_task_no_source_gives_is_an_error_naming_the_task_and_the_sources(data, tmp_path):
    with pytest.raises(
        ValueError, match=r"task 'image_sft' has ratio 2 .*caption_shards:x \(weight 1\): image_caption"
    ):
        UnifiedDataConfig(sources=(UnifiedSource("caption_shards", "x"),), task_ratios={"image_sft": 2.0})
    with pytest.raises(ValueError, match="task 'text'.*shapes.*weight 0"):
        UnifiedDataConfig(sources=(UnifiedSource("shapes", weight=0.0),), task_ratios={"text": 1.0})
    only_images = tmp_path / "images.jsonl"
    record = llava("a", [("human", "<image>"), ("gpt", "x")], image=str(Path(data["conv"]).parent / "img/0.png"))
    only_images.write_text(json.dumps(record) + "\n")
    cfg = UnifiedDataConfig(sources=(UnifiedSource("conversations", str(only_images)),), task_ratios={"video_sft": 1.0})
    with pytest.raises(DataSourceError, match=r"task 'video_sft'.*images\.jsonl \(weight 1\): image_sft$"):
        UnifiedDataLoader(cfg)


@pytest.mark.parametrize(
    ("kw", "error", "match"),
    [
        (dict(image_size=40), ValueError, "multiple of 16"),
        (dict(clip_frames=6), ValueError, "1 \\+ 4k"),
        (dict(task_ratios={"painting": 1.0}), ValueError, "unknown task 'painting'"),
        (dict(task_ratios={"text": 0.0}), ValueError, "no task a positive weight"),
        (dict(sources=({"kind": "shapes", "path": "x"},)), ValueError, "takes no path"),
        (dict(sources=({"kind": "conversations"},)), ValueError, "needs a path"),
        (dict(sources=({"kind": "shapes", "weight": -1},)), ValueError, "finite and >= 0"),
        (dict(sources=({"kind": "shapes", "tasks": ["image_sft", "oops"]},)), ValueError, "subset"),
    ],
)
def test_bad_configs_are_refused(kw, error, match):
    with pytest.raises(error, match=match):
        UnifiedDataConfig(**{"task_ratios": {"text": 1.0}, **kw})


def test_bad_loader_arguments_and_unusable_sources_are_refused(data, tmp_path):
    with pytest.raises(ValueError, match="task_ratios is not set"):
        UnifiedDataLoader(UnifiedDataConfig())
    with pytest.raises(ValueError, match=r"num_workers \(3\) must divide shard_streams \(2\)"):
        UnifiedDataLoader(mixed(data, num_workers=3))
    with pytest.raises(DataSourceError, match="no such file"):
        UnifiedDataLoader(_with(mixed(data), 1, tmp_path / "absent.jsonl"))
    with pytest.raises(DataSourceError, match="no shard file"):
        UnifiedDataLoader(_with(mixed(data), 2, tmp_path / "none-*.tar"))
    with pytest.raises(ValueError, match="saved at step 5, not at start_step 4"):
        UnifiedDataLoader(mixed(data), start_step=4, state={**UnifiedDataLoader(mixed(data)).state_dict(), "step": 5})


def _with(cfg: UnifiedDataConfig, i: int, path: Path) -> UnifiedDataConfig:
    sources = list(cfg.sources)
    sources[i] = UnifiedSource(sources[i].kind, str(path))
    cfg.sources = tuple(sources)
    return cfg


def test_the_config_round_trips_through_a_dict(data):
    cfg = mixed(data)
    cfg.sources = (*cfg.sources, UnifiedSource("shapes", split="heldout", tasks=("image_gen",), weight=0.5))
    again = UnifiedDataConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg and isinstance(again.sources[-1], UnifiedSource) and again.sources[-1].tasks == ("image_gen",)
    assert np.isclose(sum(cfg.task_ratios.values()), len(TASKS))
