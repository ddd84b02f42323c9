"""Frechet distance and streaming Gaussian statistics: closed forms, pytorch-fid / torch-fidelity formulas."""

import math
import os
import socket

import numpy as np
import pytest
import scipy.linalg
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from hydra_x.eval.frechet import GaussianStats, frechet_distance


def _random_orthogonal(d: int, rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(d, d)))
    return q * np.sign(np.diag(r))


def _pytorch_fid(mu1, s1, mu2, s2, eps=1e-6) -> float:
    """pytorch-fid's calculate_frechet_distance (scipy sqrtm, eps retry, imaginary check), as the reference."""
    diff = mu1 - mu2
    covmean = scipy.linalg.sqrtm(s1.dot(s2))
    if not np.isfinite(covmean).all():
        offset = np.eye(s1.shape[0]) * eps
        covmean = scipy.linalg.sqrtm((s1 + offset).dot(s2 + offset))
    if np.iscomplexobj(covmean):
        assert np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3)
        covmean = covmean.real
    return float(diff.dot(diff) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def _torch_fidelity(mu1, s1, mu2, s2) -> float:
    """torch-fidelity 0.4's fid_statistics_to_metric (eigenvalues of the product), as the reference."""
    diff = mu1 - mu2
    tr_covmean = np.sum(np.sqrt(np.linalg.eigvals(s1.dot(s2)).astype("complex128")).real)
    return float(diff.dot(diff) + np.trace(s1) + np.trace(s2) - 2 * tr_covmean)


def _features(n: int, d: int, seed: int, shift: float = 0.0) -> np.ndarray:
    """Correlated, non-centred features (N, D) float32, like a network's."""
    rng = np.random.default_rng(seed)
    mix = rng.normal(size=(d, d)) / math.sqrt(d)
    return (rng.normal(size=(n, d)) @ mix + rng.uniform(0, 2, d) + shift).astype(np.float32)


def _stats(x: np.ndarray) -> GaussianStats:
    s = GaussianStats(x.shape[1])
    s.update(torch.from_numpy(x))
    return s


def test_one_dimensional_closed_form():
    # N(m1, v1) vs N(m2, v2): (m1 - m2)^2 + (sqrt v1 - sqrt v2)^2
    d = frechet_distance((torch.tensor([1.5]), torch.tensor([[4.0]])), (np.array([-0.5]), np.array([[0.25]])))
    assert d == pytest.approx(2.0**2 + (2.0 - 0.5) ** 2, rel=1e-12)


def test_commuting_covariances_closed_form():
    # S_a = Q diag(a) Q^T, S_b = Q diag(b) Q^T commute (non-diagonal): the trace term is sum (sqrt a - sqrt b)^2.
    rng = np.random.default_rng(1)
    q = _random_orthogonal(12, rng)
    a, b = rng.uniform(0.1, 5, 12), rng.uniform(0.1, 5, 12)
    mu_a, mu_b = rng.normal(size=12), rng.normal(size=12)
    s_a, s_b = (q * a) @ q.T, (q * b) @ q.T
    assert np.abs(s_a - np.diag(np.diag(s_a))).max() > 0.1  # really not diagonal
    expected = np.sum((mu_a - mu_b) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    assert frechet_distance((mu_a, s_a), (mu_b, s_b)) == pytest.approx(expected, rel=1e-10)
    assert frechet_distance((mu_b, s_b), (mu_a, s_a)) == pytest.approx(expected, rel=1e-10)


def test_matches_pytorch_fid_and_torch_fidelity_on_sample_statistics():
    x, y = _features(400, 48, seed=2), _features(300, 48, seed=3, shift=0.3)
    mu1, s1, mu2, s2 = x.mean(0), np.cov(x, rowvar=False), y.mean(0), np.cov(y, rowvar=False)
    ours = frechet_distance(_stats(x), _stats(y))
    assert ours == pytest.approx(_pytorch_fid(mu1, s1, mu2, s2), rel=1e-6)
    assert ours == pytest.approx(_torch_fidelity(mu1, s1, mu2, s2), rel=1e-6)


def test_rank_deficient_covariances_match_torch_fidelity():
    # Fewer samples than dimensions (a small evaluation): singular covariances, no NaN, no imaginary parts.
    x, y = _features(20, 48, seed=4), _features(25, 48, seed=5, shift=0.1)
    ours = frechet_distance(_stats(x), _stats(y))
    ref = _torch_fidelity(x.mean(0), np.cov(x, rowvar=False), y.mean(0), np.cov(y, rowvar=False))
    assert math.isfinite(ours) and ours == pytest.approx(ref, rel=1e-6)


def test_a_set_against_itself_is_zero():
    x = _features(500, 64, seed=6, shift=3.0)
    assert abs(frechet_distance(_stats(x), _stats(x))) < 1e-6
    y = _features(10, 64, seed=7)  # rank-deficient too
    assert abs(frechet_distance(_stats(y), _stats(y))) < 1e-6


def test_streaming_equals_one_shot_numpy():
    x = _features(257, 16, seed=8, shift=1.0)
    s = GaussianStats(16)
    sizes = [0, 1, 5, 0, 64, 3, 0, 100, 84]
    assert sum(sizes) == len(x)
    start = 0
    for i, n in enumerate(sizes):
        chunk = torch.from_numpy(x[start : start + n])
        s.update(chunk.double() if i % 2 else chunk)  # any float dtype
        start += n
    assert s.count == 257
    np.testing.assert_allclose(s.mean.numpy(), x.astype(np.float64).mean(0), rtol=0, atol=1e-12)
    np.testing.assert_allclose(s.cov.numpy(), np.cov(x.astype(np.float64), rowvar=False), rtol=0, atol=1e-10)
    assert s.mean.dtype == s.cov.dtype == torch.float64


def test_merge_of_halves_equals_whole_and_state_round_trip():
    x = torch.from_numpy(_features(101, 8, seed=9))
    whole, a, b = GaussianStats(8), GaussianStats(8), GaussianStats(8)
    whole.update(x)
    a.update(x[:37])
    b.update(x[37:])
    a.merge(b)
    assert a.count == whole.count == 101
    torch.testing.assert_close(a.mean, whole.mean, rtol=0, atol=1e-12)
    torch.testing.assert_close(a.cov, whole.cov, rtol=0, atol=1e-12)
    c = GaussianStats(8)
    c.load_state_dict(a.state_dict())
    assert c.count == 101 and torch.equal(c.cov, a.cov)
    with pytest.raises(ValueError, match="dimension"):
        GaussianStats(9).load_state_dict(a.state_dict())
    with pytest.raises(ValueError, match="dimension"):
        a.merge(GaussianStats(9))


def test_too_few_samples_and_bad_input_are_clear_errors():
    one = GaussianStats(4)
    one.update(torch.ones(1, 4))
    many = _stats(_features(10, 4, seed=10))
    with pytest.raises(ValueError, match="set a has 1 sample"):
        frechet_distance(one, many)
    with pytest.raises(ValueError, match="set b has 0 sample"):
        frechet_distance(many, GaussianStats(4))
    with pytest.raises(ValueError, match="at least 2 samples"):
        _ = one.cov
    with pytest.raises(ValueError, match=r"shape \(N, 4\)"):
        one.update(torch.ones(3, 5))
    with pytest.raises(ValueError, match="NaN"):
        one.update(torch.tensor([[0.0, float("nan"), 0.0, 0.0]]))
    with pytest.raises(ValueError, match="different feature dimensions"):
        frechet_distance(many, _stats(_features(10, 5, seed=11)))
    one.all_reduce()  # not distributed: a no-op
    assert one.count == 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _all_reduce_worker(rank: int, world: int, port: int, x: torch.Tensor, out: dict) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        s = GaussianStats(x.shape[1])
        s.update(x[rank::world])  # uneven shards
        s.all_reduce()
        out[rank] = (s.count, s.mean.clone(), s.cov.clone())
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_all_reduce_over_two_processes_equals_one():
    x = torch.from_numpy(_features(31, 6, seed=12))
    with mp.Manager() as manager:
        out = manager.dict()
        mp.spawn(_all_reduce_worker, args=(2, _free_port(), x, out), nprocs=2, join=True)
        results = dict(out)
    whole = GaussianStats(6)
    whole.update(x)
    for rank in (0, 1):
        count, mean, cov = results[rank]
        assert count == 31
        torch.testing.assert_close(mean, whole.mean, rtol=0, atol=1e-12)
        torch.testing.assert_close(cov, whole.cov, rtol=0, atol=1e-12)
