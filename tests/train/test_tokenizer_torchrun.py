"""Real multi-process training: torchrun with 2 processes (gloo, CPU), FSDP2, DCP checkpoints."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
COMMON = [
    "--config",
    "tiny",
    "steps=4",
    "log_every=1",
    "eval_every=0",
    "ckpt_every=2",
    "keep_last=5",
    "heldout_images=0",
    "heldout_clips=0",
    "device=cpu",
    "data.image_size=32",
    "data.clip_frames=5",
    "data.num_workers=0",
    "loss.gan=0.1",
    "loss.gan_start=1",
]


def run(args: list[str], processes: int) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if processes == 1:
        cmd = [sys.executable, "-m", "hydra_x.train.tokenizer", *args]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}"]
        cmd += ["-m", "hydra_x.train.tokenizer", *args]
    result = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]


def losses(run_dir: Path) -> dict[int, float]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss/total"] for r in rows if "loss/total" in r}


@pytest.mark.slow
def test_two_processes_match_one_and_a_two_process_checkpoint_resumes_on_one(tmp_path):
    two, one, moved = tmp_path / "two", tmp_path / "one", tmp_path / "moved"
    # The same global batch: 2 ranks x (2 images | 1 clip) against 1 rank x (4 images | 2 clips).
    run([*COMMON, f"out_dir={two}", "data.image_batch_size=2", "data.video_batch_size=1"], processes=2)
    run([*COMMON, f"out_dir={one}", "data.image_batch_size=4", "data.video_batch_size=2"], processes=1)
    a, b = losses(two), losses(one)
    assert sorted(a) == sorted(b) == [1, 2, 3, 4]
    for step in a:
        assert a[step] == pytest.approx(b[step], rel=1e-4), (step, a[step], b[step])
    checkpoints = sorted(p.name for p in (two / "checkpoints").iterdir())
    assert checkpoints == ["step_00000002", "step_00000004"]
    assert json.loads((two / "checkpoints" / "step_00000002" / "meta.json").read_text())["world_size"] == 2
    assert (two / "export" / "model.safetensors").is_file()

    # Resume the 2-process checkpoint of step 2 on 1 process: steps 3 and 4 follow the 1-process run.
    (moved / "checkpoints").mkdir(parents=True)
    shutil.copytree(two / "checkpoints" / "step_00000002", moved / "checkpoints" / "step_00000002")
    run([*COMMON, f"out_dir={moved}", "data.image_batch_size=4", "data.video_batch_size=2"], processes=1)
    c = losses(moved)
    assert sorted(c) == [3, 4]
    for step in c:
        assert c[step] == pytest.approx(b[step], rel=1e-4), (step, c[step], b[step])
