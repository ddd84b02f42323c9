"""Conversations from JSONL: LLaVA and OpenAI records, media in placeholder order, bad records skipped once each."""

from __future__ import annotations

import json
from collections import Counter

import pytest
import torch

from hydra_x.data.config import DataSourceError
from hydra_x.data.conversations import ConversationSource, scan_conversations
from hydra_x.data.media import MediaError, read_image
from hydra_x.data.mixture import UnifiedDataConfig, UnifiedDataLoader, UnifiedSource
from hydra_x.eval.shapes_read import read_objects
from tests.data.unified_data import llava, write_conversations
from tests.media_fixtures import frame_index


@pytest.fixture(scope="module")
def conv(tmp_path_factory):
    folder = tmp_path_factory.mktemp("conversations")
    return folder, write_conversations(folder)


def source(folder, **kw) -> ConversationSource:
    return ConversationSource(scan_conversations(folder / "data.jsonl", **kw), 0, 3, 64, 5, 2)


def test_the_scan_keeps_good_records_by_task_and_names_why_each_bad_one_is_left_out(conv):
    folder, ids = conv
    index = scan_conversations(folder / "data.jsonl")
    assert {t: len(p) for t, p in index.positions.items()} == {"image_sft": 5, "video_sft": 1, "text": 2}
    reasons = {key.split(" (")[-1].rstrip(")"): r.split(":")[0] for key, r in index.skipped}
    assert reasons == {
        "missing": "missing_media",
        "no_placeholder": "placeholder_mismatch",
        "extra_placeholder": "placeholder_mismatch",
        "in_reply": "placeholder_mismatch",
        "gpt_first": "bad_record",
        "no_reply": "bad_record",
        f"{folder / 'data.jsonl'}:4": "bad_record",  # the line that is not JSON (no id to show)
    }
    assert index.total == len(ids["good"]) + 2 + len(ids["scan_bad"]) + 1  # + corrupt ones + the non-JSON line


def test_records_become_chat_examples_with_media_in_placeholder_order(conv):
    folder, _ = conv
    src = source(folder)
    by_id = {}
    for task, draws in (("video_sft", 1), ("text", 20), ("image_sft", 40)):
        for counter in range(draws):
            try:
                ex = src.draw(task, counter, 0)
            except MediaError:
                continue  # the corrupt record
            by_id[ex.key.split(" (")[-1].rstrip(")")] = ex
    assert set(by_id) == {"img0", "img1", "two", "vid", "txt", "oai"}
    assert [m["role"] for m in by_id["img1"].messages] == ["system", "user", "assistant"]
    assert by_id["oai"].messages == [{"role": "user", "content": "2 + 2?"}, {"role": "assistant", "content": "4"}]
    assert by_id["txt"].task == "text" and by_id["vid"].task == "video_sft" and by_id["two"].task == "image_sft"
    # the k-th <image> takes the k-th path: compare with the files themselves, resized the same way (64 -> 64)
    for v, name in zip(by_id["two"].visuals, ("2.png", "3.png")):
        assert torch.equal(v.pixels, read_image(folder / "img" / name)) and v.role == "understand"
    assert {o.kind for o in read_objects(by_id["img0"].visuals[0].pixels)}  # a picture, not noise
    clip = by_id["vid"].visuals[0].pixels
    assert clip.shape == (3, 5, 64, 64)
    assert frame_index(clip) == [11, 13, 15, 17, 19]  # 5 frames at stride 2 from the middle of 30


def test_draws_are_a_pure_function_of_the_numbers(conv):
    folder, _ = conv
    a, b = source(folder), source(folder)

    def key(src: ConversationSource, counter: int) -> str:
        try:
            return src.draw("image_sft", counter, 1).key
        except MediaError as err:
            return f"bad: {err.path}"

    keys_a = [key(a, c) for c in range(40) if c % 7]  # any order, any instance
    keys_b = [key(b, c) for c in reversed(range(40)) if c % 7][::-1]
    assert keys_a == keys_b and len(set(keys_a)) >= 4


def test_json_arrays_openai_records_and_a_media_root(tmp_path, conv):
    folder, _ = conv
    records = [
        {"id": "a", "image": "img/1.png", "messages": [
            {"role": "user", "content": "<image>\nWhat?"}, {"role": "assistant", "content": "ok"}]},
    ]  # fmt: skip
    (tmp_path / "mix.json").write_text(json.dumps(records))
    src = ConversationSource(scan_conversations(tmp_path / "mix.json", media_root=folder), 0, 0, 32, 5, 1)
    ex = src.draw("image_sft", 0, 0)
    assert ex.key == f"{tmp_path / 'mix.json'}:#0 (a)" and ex.visuals[0].pixels.shape == (3, 32, 32)


def test_unusable_files_are_clear_errors(tmp_path):
    with pytest.raises(DataSourceError, match="no such file"):
        scan_conversations(tmp_path / "absent.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(llava("m", [("human", "<image>"), ("gpt", "x")], image="none.png")) + "\n{oops\n")
    with pytest.raises(DataSourceError, match=r"bad\.jsonl: no usable record among 2 .*missing_media"):
        scan_conversations(bad)
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(DataSourceError, match="the file is empty"):
        scan_conversations(tmp_path / "empty.jsonl")


def test_the_loader_uses_good_records_and_reports_each_bad_one_once(conv):
    folder, ids = conv
    cfg = UnifiedDataConfig(
        sources=(UnifiedSource("conversations", str(folder / "data.jsonl")),),
        task_ratios={"image_sft": 1.0},
        image_size=32,
        clip_frames=5,
        examples_per_step=6,
        num_workers=0,
    )
    loader = UnifiedDataLoader(cfg)
    it = iter(loader)
    steps = [next(it) for _ in range(12)]
    assert all(len(s.examples) == 6 for s in steps)  # failed draws were replaced
    used = Counter(e.key.split(" (")[-1].rstrip(")") for s in steps for e in s.examples)
    assert set(used) == {"img0", "img1", "two"}  # every image record, never the corrupt one
    reported = [name for s in steps for name, _ in s.skipped]
    # two records use corrupt.png: one report; + the non-JSON line
    assert len(reported) == len(set(reported)) == len(ids["scan_bad"]) + 1 + 1
    assert steps[0].skipped[: len(ids["scan_bad"]) + 1] == [tuple(e) for e in loader.sources[0].index.skipped]
    assert any(name.endswith("corrupt.png") for name, _ in steps[0].skipped + steps[1].skipped + steps[2].skipped)
    counts = {"missing_media": 1, "placeholder_mismatch": 3, "bad_record": 3, "corrupt": 1}
    assert loader.skip_counts == counts
    # a resumed run (a fresh process: nothing remembered but the state) reports nothing again
    resumed = UnifiedDataLoader(cfg, start_step=12, state=loader.state_dict())
    it = iter(resumed)
    assert [next(it).skipped for _ in range(6)] == [[]] * 6 and resumed.skip_counts == counts
