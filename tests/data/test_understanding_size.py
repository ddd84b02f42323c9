"""Image understanding at its own picture size: the image tasks that only read their pictures render or fit them at
``understanding_image_size``, every other task (generation, editing, clips) at ``image_size``, from every kind of
source, and the examples say the same as at one size."""

from __future__ import annotations

import json
from collections import Counter

import pytest
import torch

from hydra_x.data.examples import GENERATION_TASKS, READ_IMAGE_TASKS, TASKS, task_image_size
from hydra_x.data.mixture import UnifiedDataConfig, UnifiedDataLoader, UnifiedSource
from hydra_x.data.shapes import render_image
from hydra_x.data.shapes_tasks import ShapesTasks
from hydra_x.data.shapes_text import ShapesWorld
from hydra_x.eval.shapes_read import read_objects
from tests.data.unified_data import mp4_bytes, png_bytes, shapes_png, write_conversations, write_tar

SIZE, READ = 64, 96


def test_the_tasks_that_only_read_images_are_image_captions_and_questions():
    assert set(READ_IMAGE_TASKS) == {"image_caption", "image_sft"}
    assert not set(READ_IMAGE_TASKS) & set(GENERATION_TASKS)
    assert [task_image_size(t, SIZE, READ) for t in TASKS] == [READ if t in READ_IMAGE_TASKS else SIZE for t in TASKS]
    assert {task_image_size(t, SIZE, None) for t in TASKS} == {SIZE}
    with pytest.raises(ValueError, match="unknown task 'caption'"):
        task_image_size("caption", SIZE, READ)


def kinds(pixels: torch.Tensor) -> Counter:
    return Counter(o.kind for o in read_objects(pixels if pixels.ndim == 3 else pixels[:, 0]))


@pytest.mark.parametrize("task", TASKS)
def test_shapes_examples_read_at_their_size_show_the_same_scene_and_say_the_same(task):
    plain = ShapesTasks(3, "train", SIZE, 5).example(task, 2)
    both = ShapesTasks(3, "train", SIZE, 5, understanding_image_size=READ).example(task, 2)
    assert (both.messages, both.key) == (plain.messages, plain.key)
    for v, p in zip(both.visuals, plain.visuals, strict=True):
        if task in READ_IMAGE_TASKS:
            assert v.pixels.shape == (*p.pixels.shape[:-2], READ, READ)
            assert kinds(v.pixels) == kinds(p.pixels) != Counter()  # the same objects, drawn larger
        else:
            assert torch.equal(v.pixels, p.pixels)  # generation, edits (source and target) and clips as before


def loader(sources, ratios, **kw) -> list:
    cfg = UnifiedDataConfig(
        sources=sources,
        task_ratios=ratios,
        image_size=SIZE,
        clip_frames=5,
        examples_per_step=6,
        num_workers=0,
        shard_streams=1,
        understanding_image_size=READ,
        **kw,
    )
    it = iter(UnifiedDataLoader(cfg))
    return [ex for _ in range(3) for ex in next(it).examples]


def sides(examples) -> dict[str, set[int]]:
    out: dict[str, set[int]] = {}
    for ex in examples:
        for v in ex.visuals:
            assert v.pixels.shape[-1] == v.pixels.shape[-2]
            out.setdefault(ex.task, set()).add(v.pixels.shape[-1])
    return out


def test_caption_shards_give_image_captions_at_the_reading_size_and_the_rest_at_generations(tmp_path):
    images = write_tar(
        tmp_path / "i.tar", [{"png": png, "txt": cap.encode()} for png, cap in map(shapes_png, range(6))]
    )
    clips = [{"mp4": mp4_bytes(tmp_path, f"{k}.mp4"), "txt": f"clip {k}".encode()} for k in range(3)]
    write_tar(tmp_path / "v.tar", clips)
    sources = (
        UnifiedSource("caption_shards", str(images)),
        UnifiedSource("video_caption_shards", str(tmp_path / "v.tar")),
    )
    ratios = {"image_caption": 1.0, "image_gen": 1.0, "video_caption": 1.0, "video_gen": 1.0}
    got = sides(loader(sources, ratios))
    assert got == {"image_caption": {READ}, "video_caption": {SIZE}, "image_gen": {SIZE}, "video_gen": {SIZE}}


def test_conversations_images_come_at_the_reading_size_and_clips_and_edits_files_at_generations(tmp_path):
    write_conversations(tmp_path)
    records = []
    for k in range(2):
        edit = ShapesWorld(11).edit_sample(k)
        for name, scene in (("in", edit.source), ("out", edit.target)):
            (tmp_path / f"e{k}-{name}.png").write_bytes(png_bytes(render_image(scene, 80, 80)))
        records.append({"source": f"e{k}-in.png", "instruction": edit.instruction, "target": f"e{k}-out.png"})
    (tmp_path / "edits.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    sources = (
        UnifiedSource("conversations", str(tmp_path / "data.jsonl")),
        UnifiedSource("edits", str(tmp_path / "edits.jsonl")),
    )
    got = sides(loader(sources, {"image_sft": 1.0, "video_sft": 1.0, "edit": 1.0}))
    assert got == {"image_sft": {READ}, "video_sft": {SIZE}, "edit": {SIZE}}


@pytest.mark.parametrize("size", [40, 8, 0, True, 96.0])
def test_a_reading_size_that_is_no_multiple_of_the_patch_is_refused(size):
    with pytest.raises(ValueError, match="understanding_image_size must be None or a multiple of 16"):
        UnifiedDataConfig(understanding_image_size=size)
    assert UnifiedDataConfig(understanding_image_size=128).task_size("image_sft") == 128
