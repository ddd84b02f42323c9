"""A 2-process torchrun evaluation (gloo, CPU) reports the figures of a 1-process one.

Why the two runs can differ, and so what the comparison may allow. Rank r evaluates items r, r + 2, ... in
its own batches, so a sample's batch differs between the runs. CPU matmul / convolution kernels pick their
blocking by shape, so a sample's float32 reconstruction and features can differ by an ulp with its batch
(measured here: the tiny feature net's features of a sample evaluated alone and in a batch of 3 differ by
1.5e-8). The feature nets quantise pixels to 8-bit levels, as FID does, so an ulp on a reconstruction pixel
that sits on a level boundary becomes a whole level (1 / 127.5): one such pixel moves this 5-sample rFID by
up to 6e-6 relative, 2e-6 in the median of 8 pixels (`test_one_pixel_level_moves_rfid_past_any_float_
tolerance`), which is the 3.2e-6 seen on some machines against the old 1e-6 tolerance with batches of 2 and
3 (where the reconstructions' kernels depend on the batch). No tolerance bounds such a jump, so both runs
now evaluate one sample per batch: every per-sample value is then bitwise the same in both runs (the same
kernels on the same shapes, one thread each). What is left is the reduction:

- PSNR, SSIM, LPIPS: per-sample values gathered and summed in index order (math.fsum): exactly equal.
- rFID: float64 sums of the features and of their outer products, one running sum in one process, two rank
  partial sums and one all-reduce addition in two. Each entry is a sum of n = 5 non-negative terms (ReLU
  features; a product of float32 values is exact in float64), so each order is within (n - 1) 2^-53 of the
  exact sum, relatively (Higham, Accuracy and Stability of Numerical Algorithms, 2nd ed., eq. 4.4): the
  runs' statistics differ by at most 8.9e-16 relative. The Frechet distance moves by as little (every order
  and split of the 5 samples: within 2.2e-16, asserted below 1e-14 in `test_the_summation_order_moves_rfid_
  by_rounding_only`); rel=1e-12 leaves it a condition number of 1000.
"""

import contextlib
import io
import json
import os
import subprocess
import sys
from itertools import permutations
from pathlib import Path

import pytest
import torch

from hydra_x.eval.features import load_feature_net
from hydra_x.eval.frechet import GaussianStats, frechet_distance
from hydra_x.eval.models import load_hydra_x
from hydra_x.eval.protocols import resolve_protocol
from hydra_x.eval.samples import EvalData, Sample
from hydra_x.tokenizer.io import resolve_source
from tests.eval.recon_fixtures import image_folder, tiny_nets

ROOT = Path(__file__).resolve().parents[2]
RFID_RTOL = 1e-12  # float64 summation order only: see the module docstring


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
    common = ["recon", "--data", str(data), "--size", "32", "--device", "cpu", "--preset", "tiny", "--batch-size", "1"]
    common += ["--lpips-weights", nets["lpips"], "--feature-net", nets["image"], "--require-all"]
    _run([*common, "--out", str(tmp_path / "two")], processes=2)
    _run([*common, "--out", str(tmp_path / "one")], processes=1)
    two, one = (json.loads((tmp_path / d / "report.json").read_text()) for d in ("two", "one"))
    assert two["device"]["world_size"] == 2 and one["device"]["world_size"] == 1
    for k in ("psnr", "ssim", "lpips"):  # per-sample values bitwise equal, summed in index order
        assert two["metrics"][k]["value"] == one["metrics"][k]["value"], k
    assert two["metrics"]["rfid"]["value"] == pytest.approx(one["metrics"]["rfid"]["value"], rel=RFID_RTOL, abs=0)
    assert two["data"]["skipped_files"] == one["data"]["skipped_files"] and two["data"]["skipped"] == 3
    assert (
        (two["data"]["items"], two["data"]["evaluated"]) == (one["data"]["items"], one["data"]["evaluated"]) == (8, 5)
    )
    assert two["pictures"] == one["pictures"]
    rows = [(tmp_path / d / "per_sample.csv").read_text().splitlines() for d in ("two", "one")]
    assert rows[0] == rows[1]  # every per-sample figure, bit for bit, in index order


@pytest.fixture(scope="module")
def features(tmp_path_factory):
    """The torchrun test's 5 samples at 32 px, their tiny-model reconstructions and the feature net."""
    root = tmp_path_factory.mktemp("why")
    nets = tiny_nets(root / "nets")
    data = str(image_folder(root / "images"))
    with contextlib.redirect_stderr(io.StringIO()):  # the random-weights warning
        model = load_hydra_x(resolve_source(None, "tiny", 0, "tiny"), torch.device("cpu"), torch.float32)
    items = EvalData(data, resolve_protocol("image256", size=32)).items(0, 1)
    x = torch.stack([s.x for s in items if isinstance(s, Sample)]).float()
    with torch.no_grad():
        y = model.decode(model.encode(x), x)
    return x, y, load_feature_net(nets["image"])


def rfid(fx: torch.Tensor, fy: torch.Tensor, order=None, split: int | None = None) -> float:
    """rFID of features with the samples accumulated in ``order``, as two partial sums merged at ``split`` (the
    two ranks' sums and the all-reduce)."""
    order = list(order or range(len(fx)))
    parts = [order[:split], order[split:]] if split else [order]
    stats = []
    for f in (fx, fy):
        total = GaussianStats(f.shape[1])
        for part in parts:
            s = GaussianStats(f.shape[1])
            for i in part:
                s.update(f[i : i + 1])
            total.merge(s)
        stats.append(total)
    return frechet_distance(*stats)


def test_one_pixel_level_moves_rfid_past_any_float_tolerance(features):
    x, y, net = features
    fx, base = net(x), rfid(net(x), net(y))
    g = torch.Generator().manual_seed(0)
    moves = []
    for _ in range(8):
        i, c, h, w = (int(torch.randint(0, n, (1,), generator=g)) for n in (len(y), 3, y.shape[-2], y.shape[-1]))
        bumped = y.clone()
        bumped[i, c, h, w] += 1 / 127.5  # one 8-bit level: what an ulp does to a pixel on a level boundary
        moves.append(abs(rfid(fx, net(bumped)) - base) / base)
    assert max(moves) > 1e-6  # why the runs must batch alike: no small tolerance covers a level flip


def test_the_summation_order_moves_rfid_by_rounding_only(features):
    x, y, net = features
    fx, fy = net(x), net(y)
    base = rfid(fx, fy)
    values = [rfid(fx, fy, order, split) for order in permutations(range(len(x))) for split in (None, 2)]
    assert max(abs(v - base) / base for v in values) < 1e-14 < RFID_RTOL
