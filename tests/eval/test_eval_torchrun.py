"""A 2-process torchrun evaluation (gloo, CPU) reports the figures of a 1-process one."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.eval.recon_fixtures import image_folder, tiny_nets

ROOT = Path(__file__).resolve().parents[2]


def _run(args: list[str], processes: int) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "hydra_x.cli.eval", *args]
    if processes > 1:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}", *cmd[1:]]
    result = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]


@pytest.mark.slow
def test_two_processes_report_the_figures_of_one(tmp_path):
    nets = tiny_nets(tmp_path / "nets")
    data = image_folder(tmp_path / "images")  # 5 good files, 3 bad ones: spread over both ranks
    common = ["recon", "--data", str(data), "--size", "32", "--device", "cpu", "--preset", "tiny"]
    common += ["--lpips-weights", nets["lpips"], "--feature-net", nets["image"], "--require-all"]
    _run([*common, "--out", str(tmp_path / "two"), "--batch-size", "2"], processes=2)
    _run([*common, "--out", str(tmp_path / "one"), "--batch-size", "3"], processes=1)
    two, one = (json.loads((tmp_path / d / "report.json").read_text()) for d in ("two", "one"))
    assert two["device"]["world_size"] == 2 and one["device"]["world_size"] == 1
    for k in ("psnr", "ssim", "lpips", "rfid"):
        assert two["metrics"][k]["value"] == pytest.approx(one["metrics"][k]["value"], rel=1e-6, abs=1e-9), k
    assert two["data"]["skipped_files"] == one["data"]["skipped_files"] and two["data"]["skipped"] == 3
    assert (
        (two["data"]["items"], two["data"]["evaluated"]) == (one["data"]["items"], one["data"]["evaluated"]) == (8, 5)
    )
    assert two["pictures"] == one["pictures"]
    rows = [(tmp_path / d / "per_sample.csv").read_text().splitlines() for d in ("two", "one")]
    assert [r.split(",")[:2] for r in rows[0]] == [r.split(",")[:2] for r in rows[1]]  # same samples, index order
