"""Training's command line keeps the hydra-x error contract: a problem the user can fix (a data folder that is
missing or holds no usable file, a bad override, an unknown recipe) is one line ``PROG: error: ...`` on stderr
and exit status 2, through ``python -m hydra_x.train.tokenizer`` and ``hydra-x train tokenizer`` alike."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from hydra_x.cli import main as hydra_main
from hydra_x.train.tokenizer.__main__ import main
from tests.media_fixtures import bad_image_bytes

ROOT = Path(__file__).resolve().parents[2]
MODULE, CLI = "python -m hydra_x.train.tokenizer", "hydra-x train tokenizer"


def source(kind: str, path) -> str:
    return "data.sources=" + json.dumps([{"kind": kind, "path": str(path)}])


def the_error(stderr: str, prog: str) -> str:
    """The one error line (a progress bar may stand before it on its line: tqdm ends lines with carriage returns)."""
    assert "Traceback" not in stderr, stderr
    found = re.findall(rf"{re.escape(prog)}: error: [^\r\n]*", stderr)
    assert len(found) == 1, stderr
    return found[0]


@pytest.fixture
def folders(tmp_path):
    made = {"missing": tmp_path / "missing", "empty": tmp_path / "empty", "bad": tmp_path / "bad"}
    made["empty"].mkdir()
    made["bad"].mkdir()
    for name, content in bad_image_bytes().items():
        if name != "bad_truncated.jpg":  # fail the header scan
            (made["bad"] / name).write_bytes(content)
    made["truncated"] = tmp_path / "truncated"  # pass the scan, never decode
    made["truncated"].mkdir()
    for i in range(2):
        (made["truncated"] / f"t{i}.jpg").write_bytes(bad_image_bytes()["bad_truncated.jpg"])
    return made


CASES = [
    ("missing", "image_folder", r"data source image_folder:\S*missing: no such folder$"),
    ("empty", "video_folder", r"data source video_folder:\S*empty: the folder holds no video files \(.*\.mp4.*\)$"),
    ("bad", "image_folder", r"data source image_folder:\S*bad: no usable image file, all 3 are unusable \(2 corrupt"),
    ("truncated", "image_folder", r"data source image_folder:\S*truncated: no usable sample in 100 tries"),
]


@pytest.mark.parametrize(("folder", "kind", "message"), CASES, ids=[c[0] for c in CASES])
def test_unusable_training_data_is_a_one_line_error(folders, folder, kind, message, tmp_path, capsys):
    args = ["--config", "tiny", source(kind, folders[folder]), f"out_dir={tmp_path / 'run'}", "steps=2"]
    args += ["heldout_images=0", "heldout_clips=0", "data.image_size=32", "data.clip_frames=5"]
    assert main(args) == 2
    line = the_error(capsys.readouterr().err, MODULE)
    assert re.search(message, line), line


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["steps=abc"], "steps=abc: steps takes an integer"),
        (["data.image_size=1.5"], "data.image_size=1.5: data.image_size takes an integer"),
        (["--config", "nope"], "unknown recipe 'nope'; choose one of"),
        (["steps"], "overrides are KEY=VALUE, got 'steps'"),
        (["optim.lr=fast"], "optim.lr=fast: optim.lr takes a number"),
    ],
)
def test_bad_settings_are_one_line_errors_through_both_commands(args, message, capsys):
    for run, prog in ((main, MODULE), (lambda a: hydra_main(["train", "tokenizer", *a]), CLI)):
        assert run(args) == 2
        err = capsys.readouterr().err
        assert err.splitlines() == [the_error(err, prog)] and message in err  # no usage block either


def test_a_text_field_takes_the_text_as_written(tmp_path):
    from hydra_x.train.tokenizer.__main__ import parse_config

    cfg = parse_config(["resume=123", f"out_dir={tmp_path}", "data.fps=12.5", "stop_at_step=null"])
    assert cfg.resume == "123" and cfg.data.fps == 12.5 and cfg.stop_at_step is None
    assert parse_config(["data.fps=null"]).data.fps is None


def test_the_module_command_as_a_process(tmp_path):
    args = [sys.executable, "-m", "hydra_x.train.tokenizer", "--config", "tiny"]
    args += [source("image_folder", tmp_path / "nope"), f"out_dir={tmp_path / 'run'}"]
    proc = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and proc.stdout == ""
    expected = f"{MODULE}: error: data source image_folder:{tmp_path / 'nope'}: no such folder"
    assert proc.stderr.splitlines() == [expected]


def test_a_missing_folder_is_refused_before_the_run_is_built(tmp_path, monkeypatch, capsys):
    """Before the model and teachers load (minutes for so400m): the folder check needs no scan."""
    monkeypatch.setattr("hydra_x.train.tokenizer.__main__.train", lambda cfg: pytest.fail("the run was built"))
    shards = source("video_shards", tmp_path / "none-*.tar")
    assert main([shards]) == 2
    assert the_error(capsys.readouterr().err, MODULE).endswith("none-*.tar: no shard file (.tar) matches")


def test_missing_lpips_weights_are_the_users_to_supply(tmp_path, monkeypatch, capsys):
    """The perceptual loss asked for and its weights absent (offline): one line naming the fix, exit 2, not 'a bug'."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HYDRA_X_LPIPS_WEIGHTS", str(tmp_path / "lpips_vgg.safetensors"))
    args = ["--config", "tiny", "loss.lpips=1.0", "loss.lpips_required=true", "steps=1", f"out_dir={tmp_path / 'run'}"]
    assert main(args) == 2
    error = the_error(capsys.readouterr().err, MODULE)
    assert "LPIPS" in error and "loss.lpips=0" in error and "this is a bug" not in error


def test_one_task_weight_of_a_unified_recipe_is_set_by_its_dotted_key(capsys):
    """As the GPU arms do (`data.task_ratios.edit=4`): that weight changes, the recipe's others stay."""
    from hydra_x.train.unified.__main__ import parse_config

    recipe = parse_config(["--config", "small"]).data.task_ratios
    assert parse_config(["--config", "small", "data.task_ratios.edit=4"]).data.task_ratios == {**recipe, "edit": 4}
    assert recipe["edit"] != 4
    with pytest.raises(SystemExit):
        parse_config(["--config", "small", "data.task_ratios.edits=4"])
    assert "unknown key 'edits'; known: ['edit'," in capsys.readouterr().err


def test_the_small_64_recipe_is_the_readme_best_run(monkeypatch):
    """`--config small-64` trains what the README's best run trained: `small` with the STI overrides its command
    names and the sizes benchmarks/shapes_world_run.py adds for SIZE=64 FRAMES=9 EXAMPLES=512 and --compile; only
    the job's own bookkeeping (folders, step count, checkpoints, workers) differs."""
    from dataclasses import replace

    from hydra_x.train.unified.__main__ import parse_config

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    best = readme[readme.index("The best rows (the last three) are") :]
    sti = re.search(r'^STI="([^"]+)"', best, re.M).group(1).split(",")
    job = ["data.image_size=64", "data.clip_frames=9", "model.image_size=64", "model.clip_frames=9"]
    job += ["compile=true", "data.examples_per_step=512", "time_budget_minutes=14", "budget_reserve_s=20"]
    job += ["steps=100000", "eval_every=0"]
    from_readme = parse_config(["--config", "small", *job, *sti])
    recipe = parse_config(["--config", "small-64"])

    def bookkeeping(cfg):
        return replace(cfg, out_dir="", ckpt_every=1, data=replace(cfg.data, num_workers=0))

    assert bookkeeping(recipe) == bookkeeping(from_readme)
    assert recipe != parse_config(["--config", "small"])
