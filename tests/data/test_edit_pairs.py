"""Edit triples from JSONL files and WebDataset shards: source, instruction and target stay together, the target is
generated, field names of the common datasets are read, and bad records or samples are skipped and counted once."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
import torch

from hydra_x.data.config import DataSourceError
from hydra_x.data.mixture import UnifiedDataConfig, UnifiedDataLoader, UnifiedSource
from hydra_x.data.shapes import render_image
from hydra_x.data.shapes_text import ShapesWorld
from tests.data.unified_data import corrupt_png, png_bytes, write_tar

SIZE = 64


def triple(k: int) -> tuple[bytes, str, bytes]:
    """(source PNG, instruction, target PNG) of shapes-world edit k."""
    edit = ShapesWorld(11).edit_sample(k)
    source, target = (png_bytes(render_image(s, SIZE, SIZE)) for s in (edit.source, edit.target))
    return source, edit.instruction, target


def pixels(png: bytes) -> torch.Tensor:
    from hydra_x.data.folders import decode_image_bytes

    return decode_image_bytes(png, "x")


def loader(kind: str, path: Path, steps: int, **source) -> tuple[UnifiedDataLoader, list]:
    cfg = UnifiedDataConfig(
        sources=(UnifiedSource(kind, str(path), **source),),
        task_ratios={"edit": 1.0},
        image_size=SIZE,
        examples_per_step=5,
        num_workers=0,
        shard_streams=1,
    )
    stream = UnifiedDataLoader(cfg)
    it = iter(stream)
    return stream, [next(it) for _ in range(steps)]


def check_edit(ex, triples: dict[str, tuple[bytes, str, bytes]], rid: str) -> None:
    source, instruction, target = triples[rid]
    assert ex.task == "edit"
    assert ex.messages == [
        {"role": "user", "content": f"<image>\n{instruction}"},
        {"role": "assistant", "content": "<image>"},
    ]
    assert [v.role for v in ex.visuals] == ["understand", "generate"]
    assert torch.equal(ex.visuals[0].pixels, pixels(source)), f"{rid}: the source is not its own"
    assert torch.equal(ex.visuals[1].pixels, pixels(target)), f"{rid}: the target is not its own"


@pytest.fixture(scope="module")
def edits_file(tmp_path_factory) -> tuple[Path, dict]:
    folder = tmp_path_factory.mktemp("edits")
    (folder / "img").mkdir()
    triples = {}
    for k in range(3):
        source, instruction, target = triples[f"e{k}"] = triple(k)
        (folder / "img" / f"{k}-in.png").write_bytes(source)
        (folder / "img" / f"{k}-out.png").write_bytes(target)
    (folder / "img" / "bad.png").write_bytes(corrupt_png())
    records = [
        {"id": "e0", "source": "img/0-in.png", "instruction": triples["e0"][1], "target": "img/0-out.png"},
        {"id": "e1", "input_image": "img/1-in.png", "edit_prompt": triples["e1"][1], "edited_image": "img/1-out.png"},
        {"id": "e2", "source_img": "img/2-in.png", "instruction": triples["e2"][1], "target_img": "img/2-out.png"},
        {"id": "corrupt", "source": "img/bad.png", "instruction": "x", "target": "img/0-out.png"},
        {"id": "no_instruction", "source": "img/0-in.png", "target": "img/0-out.png"},
        {"id": "empty_instruction", "source": "img/0-in.png", "instruction": " ", "target": "img/0-out.png"},
        {"id": "missing", "source": "img/0-in.png", "instruction": "x", "target": "img/none.png"},
        ["not", "an", "object"],
    ]
    path = folder / "edits.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    return path, triples


def test_jsonl_edits_keep_each_triple_together_in_every_field_naming(edits_file):
    path, triples = edits_file
    stream, steps = loader("edits", path, 8)
    used = Counter()
    for ex in (e for s in steps for e in s.examples):
        rid = ex.key.split(" (")[-1].rstrip(")")
        check_edit(ex, triples, rid)
        used[rid] += 1
    assert set(used) == {"e0", "e1", "e2"}  # every good record, in each naming; never the corrupt one
    assert stream.skip_counts == {"bad_record": 3, "missing_media": 1, "corrupt": 1}
    reported = [name for s in steps for name, _ in s.skipped]
    assert len(reported) == len(set(reported)) == 5  # each bad record once


def test_a_media_root_places_the_images_and_bad_files_are_clear_errors(edits_file, tmp_path):
    path, triples = edits_file
    moved = tmp_path / "records.jsonl"
    moved.write_text(path.read_text())
    with pytest.raises(DataSourceError, match=r"edits:.*records\.jsonl: no usable record among 8"):
        loader("edits", moved, 1)
    _, steps = loader("edits", moved, 2, media_root=str(path.parent))
    check_edit(steps[0].examples[0], triples, steps[0].examples[0].key.split(" (")[-1].rstrip(")"))
    with pytest.raises(DataSourceError, match="no such file"):
        loader("edits", tmp_path / "absent.jsonl", 1)
    with pytest.raises(ValueError, match="media_root is for conversations and edits sources, not edit_shards"):
        UnifiedSource("edit_shards", str(tmp_path), media_root=str(tmp_path))
    with pytest.raises(ValueError, match="task 'image_gen' has ratio 1 but no source provides it"):
        UnifiedDataConfig(sources=(UnifiedSource("edits", str(path)),), task_ratios={"edit": 1.0, "image_gen": 1.0})


def test_edit_shards_stream_every_good_triple_once_an_epoch_and_count_bad_samples_once(tmp_path):
    triples = {str(k): triple(k) for k in range(4)}

    def sample(k: str, text: str = "txt") -> dict[str, bytes]:
        source, instruction, target = triples[k]
        said = instruction.encode() if text == "txt" else json.dumps({"instruction": instruction}).encode()
        return {"source.png": source, "target.png": target, text: said}

    bad = [
        {"source.png": triples["0"][0], "txt": b"no target"},
        {"source.png": triples["0"][0], "target.png": triples["0"][2]},  # no instruction
        {"source.png": corrupt_png(), "target.png": triples["0"][2], "txt": b"corrupt source"},
    ]
    write_tar(tmp_path / "e-000.tar", [sample("0"), sample("1", "json"), *bad])
    write_tar(tmp_path / "e-001.tar", [sample("2"), sample("3", "json")])
    stream, steps = loader("edit_shards", tmp_path / "e-*.tar", 8)
    examples = [e for s in steps for e in s.examples]
    keys = []
    for ex in examples:
        shard, key = ex.key.rsplit(":", 1)
        rid = {("e-000.tar", "000000"): "0", ("e-000.tar", "000001"): "1"}.get((Path(shard).name, key))
        rid = rid or {"000000": "2", "000001": "3"}[key]
        check_edit(ex, triples, rid)
        keys.append(ex.key)
    for epoch in range(len(keys) // 4):
        assert len(set(keys[epoch * 4 : (epoch + 1) * 4])) == 4  # each good sample once an epoch
    assert stream.skip_counts == {"no_media": 1, "no_instruction": 1, "corrupt": 1}
    reported = [name for s in steps for name, _ in s.skipped]
    assert len(reported) == len(set(reported)) == 3


@pytest.mark.slow
def test_the_unified_model_trains_on_an_edits_file_from_the_command_line(edits_file, tmp_path):
    from hydra_x.cli import main as hydra_main

    path, _ = edits_file
    run = tmp_path / "run"
    source = json.dumps([{"kind": "edits", "path": str(path)}])
    args = ["train", "unified", "--config", "tiny", f"out_dir={run}", "steps=3", "log_every=1", "eval_every=0"]
    args += [f"data.sources={source}", 'data.task_ratios={"edit": 1.0}', "data.examples_per_step=2"]
    assert hydra_main(args) == 0
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    flow = [r["loss/flow"] for r in rows if "loss/flow" in r]
    assert len(flow) == 3 and all(f > 0 for f in flow)  # every step had edit targets to denoise
    saved = json.loads((run / "config.json").read_text())["data"]
    assert [s["kind"] for s in saved["sources"]] == ["edits"] and saved["task_ratios"] == {"edit": 1.0}
    skipped = json.loads((run / "summary.json").read_text())["skipped"]
    assert skipped.get("bad_record") == 3 and skipped.get("missing_media") == 1  # the scan's, logged by the run


def test_shapes_edits_written_to_disk_come_back_as_the_same_examples(tmp_path, monkeypatch):
    """benchmarks/write_shapes_edits.py's file, read by the edits source, gives the shapes world's own edits."""
    import runpy

    from hydra_x.data.conversations import ConversationSource, scan_conversations
    from hydra_x.data.edit_pairs import parse_edit_record
    from hydra_x.data.media import read_image
    from hydra_x.data.shapes_tasks import ShapesTasks

    script = Path(__file__).resolve().parents[2] / "benchmarks" / "write_shapes_edits.py"
    argv = ["write_shapes_edits.py", "--out", str(tmp_path), "--count", "3", "--size", str(SIZE)]
    monkeypatch.setattr("sys.argv", argv)
    runpy.run_path(str(script), run_name="__main__")
    index = scan_conversations(tmp_path / "edits.jsonl", None, parse_edit_record, "edits")
    reader = ConversationSource(index, 0, 0, SIZE, 1, 1)
    truth = ShapesTasks(0, "heldout", SIZE, 5)
    records = [reader.record(pos, where) for pos, where in index.positions["edit"].tolist()]
    assert len(records) == 3
    for k, record in enumerate(records):
        expected = truth.example("edit", k)
        assert record.key.endswith(f"(shapes:heldout:edit:{k})") and record.messages == expected.messages
        for (_, path), role, want in zip(record.media, record.roles, expected.visuals):
            assert role == want.role and torch.allclose(read_image(path), want.pixels, atol=1 / 255)
