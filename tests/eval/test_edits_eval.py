"""``hydra-x eval edits``: an oracle edit scores perfectly, a copy scores what the source scores, records are taken in
file order with their own seeds, and bad records are listed rather than dropped."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from hydra_x.cli import main as hydra_main
from hydra_x.data.folders import decode_image_bytes
from hydra_x.eval.edits import evaluate_edit_file, pair_score
from tests.data.test_edit_pairs import triple
from tests.data.unified_data import corrupt_png

SIZE = 64


@pytest.fixture(scope="module")
def edits(tmp_path_factory) -> tuple[Path, dict[str, tuple[torch.Tensor, torch.Tensor]]]:
    """An edits file of four shapes-world triples, a corrupt image and a record without a target; the pixels of
    each good triple by instruction."""
    folder = tmp_path_factory.mktemp("eval_edits")
    truth, records = {}, []
    for k in range(4):
        source, instruction, target = triple(k)
        instruction = f"{instruction} ({k})"  # distinct, so an oracle can look its target up
        (folder / f"{k}-in.png").write_bytes(source)
        (folder / f"{k}-out.png").write_bytes(target)
        truth[instruction] = (decode_image_bytes(source, "s"), decode_image_bytes(target, "t"))
        records.append({"id": str(k), "input_image": f"{k}-in.png", "edit_prompt": instruction,
                        "edited_image": f"{k}-out.png"})  # fmt: skip
        if k == 1:
            (folder / "bad.png").write_bytes(corrupt_png())
            records.append({"id": "corrupt", "source": "bad.png", "instruction": "x", "target": "0-out.png"})
            records.append({"id": "no_target", "source": "0-in.png", "instruction": "x"})
    path = folder / "edits.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    return path, truth


def test_an_oracle_scores_perfectly_a_copy_scores_the_source_and_bad_records_are_listed(edits):
    path, truth = edits
    calls = []

    def oracle(image, instruction, seed):
        calls.append((instruction, seed))
        assert torch.equal(image, truth[instruction][0])  # the record's own source
        return truth[instruction][1]

    result, pictures = evaluate_edit_file(oracle, path, size=SIZE, seed=5)
    s = result["summary"]
    assert s["items"] == 4 and s["skipped"] == 2 and len(pictures) == 4
    assert [seed for _, seed in calls] == [5, 6, 8, 9]  # file order; record 2 of the file is the corrupt one
    assert s["edit"]["l1"] == 0 and s["edit"]["l2"] == 0 and math.isinf(s["edit"]["psnr"]) and s["edit"]["ssim"] == 1
    assert s["source"]["l1"] > 0.001
    reasons = {x["record"].split(" (")[-1].rstrip(")"): x["reason"] for x in result["skipped"]}
    assert set(reasons) == {"corrupt", "no_target"} and reasons["no_target"].startswith("bad_record")

    copy, _ = evaluate_edit_file(lambda image, instruction, seed: image, path, size=SIZE, limit=2)
    assert copy["summary"]["items"] == 2
    assert copy["summary"]["edit"] == pytest.approx(copy["summary"]["source"])
    assert math.isinf(copy["summary"]["kept_psnr"])
    first = next(iter(truth.values()))
    assert copy["items"][0]["source"] == pytest.approx(pair_score(*first).__dict__)


def test_the_command_edits_with_a_model_and_writes_the_report(edits, tmp_path, capsys):
    path, _ = edits
    out = tmp_path / "report"
    args = ["eval", "edits", "--preset", "tiny", "--data", str(path), "--out", str(out), "--size", "32"]
    assert hydra_main([*args, "--steps", "2", "--limit", "3"]) == 0
    report = json.loads((out / "report.json").read_text())
    # the first 3 records the scan keeps: one of them has an image that does not decode, listed with the scan's
    assert report["format"] == "hydra-x-edits-report" and report["summary"]["items"] == 2
    assert len(report["items"]) == 2 and len(report["skipped"]) == 2 and (out / "editing.png").is_file()
    assert "the source, unedited" in (out / "report.md").read_text()
    assert "2 edits: L1" in capsys.readouterr().out
    near = tmp_path / "near"  # begun from the sources noised to t = 0.05 (the same seeds: other edits)
    near_args = [*args[:6], "--out", str(near), "--size", "32", "--steps", "2", "--limit", "3", "--edit-start", "0.05"]
    assert hydra_main(near_args) == 0
    kept = json.loads((near / "report.json").read_text())
    assert kept["settings"]["edit_start"] == 0.05 and report["settings"]["edit_start"] == 1.0
    assert kept["summary"]["kept_psnr"] != report["summary"]["kept_psnr"]
    capsys.readouterr()
    assert (
        hydra_main(["eval", "edits", "--preset", "tiny", "--data", str(tmp_path / "none.jsonl"), "--out", str(out)])
        == 2
    )
    err = capsys.readouterr().err
    assert "no such file" in err and "no trained weights" not in err  # refused before any model was loaded
