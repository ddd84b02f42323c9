"""The reconstruction evaluation: stream the data through a model, score every sample, reduce exactly.

    items (index order, this rank's share) -> batches -> encode | decode (timed) -> per-sample PSNR, SSIM,
    LPIPS -> feature statistics of originals and reconstructions (rFID / rFVD) -> gather + reduce by index

Memory is constant in the number of samples: per sample only scalars are kept; pixels are kept only for
the few worst and best samples (running heaps), and the median ones are re-read and reconstructed once at
the end. Under torchrun, item i goes to rank i mod world; the per-sample values are gathered with their
indices and reduced in index order, the feature statistics are float64 sums all-reduced, so the figures
are those of one process (up to the float rounding of batched kernels).
"""

from __future__ import annotations

import heapq
import math
import time
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist

from hydra_x.eval.metrics import SSIM_RADIUS, psnr, ssim, video_psnr, video_ssim
from hydra_x.eval.models import ReconModel
from hydra_x.eval.protocols import Protocol
from hydra_x.eval.samples import EvalData, Sample, Skipped

DEFAULT_FEATURE_NETS = {"image": "inception", "video": "i3d"}


class MetricUnavailableError(RuntimeError):
    """A metric of the protocol cannot be computed and ``require_all`` was asked for."""


@dataclass
class ReconOptions:
    batch_size: int = 8
    require_all: bool = False
    lpips_weights: str | None = None  # a safetensors file or hf://repo/file, as in training
    feature_net: str | None = None  # None: inception (images) / i3d (videos); tests use "tiny-image:PATH"
    feature_weights: str | None = None  # --fid-weights / --fvd-weights
    picture_columns: int = 3  # samples per row of samples.png (worst / median / best)


@dataclass
class Record:
    index: int
    name: str
    psnr: float
    ssim: float | None
    lpips: float | None


@dataclass
class Picked:
    index: int
    name: str
    psnr: float
    x: torch.Tensor  # (3, [F,] H, W) original, CPU float32
    y: torch.Tensor  # reconstruction


@dataclass
class ReconResult:
    records: list[Record]  # every usable sample, by index
    skipped: list[Skipped]
    items: int  # items read (usable + skipped)
    metrics: dict[str, dict[str, Any]]
    throughput: dict[str, Any]
    pictures: dict[str, list[Picked]] = field(default_factory=dict)  # worst / median / best
    world_size: int = 1


def _psnr_key(value: float) -> float:
    return -math.inf if math.isnan(value) else value


class _Timer:
    """Encode and decode time and peak memory per batch (CUDA events on GPU, wall clock on CPU)."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.batches: list[tuple[int, float, float, int | None, int | None]] = []  # (n, enc s, dec s, peaks)

    def run(self, model: ReconModel, x: torch.Tensor) -> torch.Tensor:
        if not self.cuda:
            t0 = time.perf_counter()
            z = model.encode(x)
            t1 = time.perf_counter()
            y = model.decode(z, x)
            self.batches.append((x.shape[0], t1 - t0, time.perf_counter() - t1, None, None))
            return y
        events = [torch.cuda.Event(enable_timing=True) for _ in range(3)]
        torch.cuda.reset_peak_memory_stats(x.device)
        events[0].record()
        z = model.encode(x)
        events[1].record()
        peak_enc = torch.cuda.max_memory_allocated(x.device)
        torch.cuda.reset_peak_memory_stats(x.device)
        y = model.decode(z, x)
        events[2].record()
        peak_dec = torch.cuda.max_memory_allocated(x.device)
        events[2].synchronize()
        enc, dec = events[0].elapsed_time(events[1]) / 1e3, events[1].elapsed_time(events[2]) / 1e3
        self.batches.append((x.shape[0], enc, dec, peak_enc, peak_dec))
        return y

    def summary(self) -> dict[str, Any]:
        timed = self.batches[1:] if len(self.batches) > 1 else self.batches  # the first batch warms up
        n = sum(b[0] for b in timed)
        enc, dec = sum(b[1] for b in timed), sum(b[2] for b in timed)
        peaks = [b[3:] for b in self.batches if b[3] is not None]
        return {
            "samples_timed": n,
            "includes_warmup": len(self.batches) == 1,
            "encode_s": enc,
            "decode_s": dec,
            "encode_peak_bytes": max((p[0] for p in peaks), default=None),
            "decode_peak_bytes": max((p[1] for p in peaks), default=None),
        }


def _gather(obj: Any, world: int) -> list[Any]:
    if world == 1:
        return [obj]
    out: list[Any] = [None] * world
    dist.all_gather_object(out, obj)
    return out


class ReconEvaluator:
    def __init__(
        self,
        model: ReconModel,
        data: EvalData,
        protocol: Protocol,
        options: ReconOptions,
        rank: int = 0,
        world: int = 1,
    ) -> None:
        self.model, self.data, self.protocol, self.opt = model, data, protocol, options
        self.rank, self.world = rank, world
        self.device = model.device
        self.metrics: dict[str, dict[str, Any]] = {m: {"available": True, "reason": None} for m in protocol.metrics}
        self.lpips = self._load_lpips() if "lpips" in protocol.metrics else None
        self.feature_net = self._load_feature_net()
        self.stats = None
        if self.feature_net is not None:
            from hydra_x.eval.frechet import GaussianStats

            self.stats = (
                GaussianStats(self.feature_net.dim, self.device),
                GaussianStats(self.feature_net.dim, self.device),
            )
        if protocol.size < 2 * SSIM_RADIUS + 1 and "ssim" in self.metrics:
            self._unavailable(
                "ssim", f"SSIM needs at least {2 * SSIM_RADIUS + 1} px, the protocol size is {protocol.size}"
            )

    # ------------------------------------------------------------------ metric set-up

    def _unavailable(self, metric: str, reason: str) -> None:
        reason = " ".join(reason.split())
        if self.opt.require_all:
            raise MetricUnavailableError(f"{metric} is unavailable and --require-all was given: {reason}")
        self.metrics[metric] = {"available": False, "reason": reason}

    def _load_lpips(self):
        from hydra_x.losses.lpips import load_lpips

        spec = self.opt.lpips_weights
        if not spec:
            self._unavailable(
                "lpips",
                "no --lpips-weights given (a safetensors file or hf://REPO/FILE; build the file with "
                "`python -m hydra_x.losses.lpips convert --out lpips_vgg.safetensors`)",
            )
            return None
        try:  # the rule of training (hydra_x.train.tokenizer.objective.load_lpips_for): a file or hf://repo/file
            if spec.startswith("hf://"):
                repo, _, filename = spec[len("hf://") :].rpartition("/")
                net = load_lpips(repo_id=repo, filename=filename, required=True)
            else:
                net = load_lpips(spec, required=True)
        except FileNotFoundError as err:
            self._unavailable("lpips", str(err))
            return None
        self.metrics["lpips"]["weights"] = spec
        return net.to(self.device)

    def _load_feature_net(self):
        metric = self.protocol.frechet
        if metric not in self.metrics:
            return None
        from hydra_x.eval.features import FeatureWeightsError, load_feature_net

        name = self.opt.feature_net or DEFAULT_FEATURE_NETS[self.protocol.media]
        try:
            net = load_feature_net(name, weights=self.opt.feature_weights, device=self.device)
        except FeatureWeightsError as err:
            option = "--fid-weights" if self.protocol.media == "image" else "--fvd-weights"
            self._unavailable(metric, f"{err} [hydra-x eval recon: {option} PATH]")
            return None
        if net.kind != self.protocol.media:
            raise ValueError(
                f"feature network {net.name} takes {net.kind}s; "
                f"the {self.protocol.name} protocol needs {self.protocol.media}s"
            )
        self.metrics[metric].update(feature_net=net.name, feature_dim=net.dim)
        return net

    # ------------------------------------------------------------------ the pass

    @torch.inference_mode()
    def _score(self, x: torch.Tensor, y: torch.Tensor) -> tuple[list[float], list[float | None], list[float | None]]:
        video = x.ndim == 5
        p = (video_psnr if video else psnr)(x, y).tolist()
        s = (video_ssim if video else ssim)(x, y).tolist() if self.metrics["ssim"]["available"] else [None] * len(p)
        lp: list[float | None] = [None] * len(p)
        if self.lpips is not None:
            # One sample at a time for clips: VGG activations of 17 frames x batch would dominate memory.
            parts = [self.lpips(x[i : i + 1], y[i : i + 1]) for i in range(len(p))] if video else [self.lpips(x, y)]
            lp = [float(v) for v in torch.cat(parts).double().tolist()]
        if self.stats is not None:
            self.stats[0].update(self.feature_net(x))
            self.stats[1].update(self.feature_net(y))
        return p, s, lp

    @torch.inference_mode()
    def _batch(self, batch: list[Sample], timer: _Timer | None):
        x = torch.stack([s.x for s in batch]).to(self.device, torch.float32)  # (B, 3, [F,] S, S)
        y = timer.run(self.model, x) if timer is not None else self.model.decode(self.model.encode(x), x)
        return x, y

    def run(self) -> ReconResult:
        k = max(1, self.opt.picture_columns)
        worst: list[tuple] = []  # the k lowest (psnr, index), as a heap of (-psnr, -index, record, x, y)
        best: list[tuple] = []  # the k highest (psnr, index), as a heap of (psnr, index, ...)
        records: list[Record] = []
        skipped: list[Skipped] = []
        timer = _Timer(self.device)
        items = 0
        batch: list[Sample] = []

        def flush() -> None:
            x, y = self._batch(batch, timer)
            for sample, xi, yi, p, s, lp in zip(batch, x, y, *self._score(x, y)):
                rec = Record(sample.index, sample.name, p, s, lp)
                records.append(rec)
                key = _psnr_key(p)
                pair = (xi.float().cpu(), yi.float().cpu())
                entry_w, entry_b = (-key, -sample.index, rec, *pair), (key, sample.index, rec, *pair)
                (heapq.heappush if len(worst) < k else heapq.heappushpop)(worst, entry_w)
                (heapq.heappush if len(best) < k else heapq.heappushpop)(best, entry_b)
            batch.clear()

        for item in self.data.items(self.rank, self.world):
            items += 1 if item.index >= 0 else 0  # -1: a whole shard that failed (no item of its own)
            if isinstance(item, Skipped):
                skipped.append(item)
                continue
            batch.append(item)
            if len(batch) == self.opt.batch_size:
                flush()
        if batch:
            flush()
        return self._reduce(records, skipped, items, timer, worst, best, k)

    # ------------------------------------------------------------------ reduction

    def _reduce(self, records, skipped, items, timer, worst, best, k) -> ReconResult:
        w = self.world
        records = sorted((r for part in _gather(records, w) for r in part), key=lambda r: r.index)
        skipped = sorted((s for part in _gather(skipped, w) for s in part), key=lambda s: (s.index, s.name))
        items = sum(_gather(items, w))
        if not records:
            raise ValueError(
                f"--data {self.data.data}: no usable sample among {items} item(s)"
                + (f" ({len(skipped)} skipped, e.g. {skipped[0].name}: {skipped[0].reason})" if skipped else "")
            )
        candidates = [(e[2], e[3], e[4]) for part in _gather([*worst, *best], w) for e in part]
        order = sorted(records, key=lambda r: (_psnr_key(r.psnr), r.index))
        pictures = {"worst": order[:k], "median": _middle(order, k), "best": order[::-1][:k]}
        have = {r.index: (x, y) for r, x, y in candidates}
        missing = {r.index for r in pictures["median"] if r.index not in have}
        if missing and self.rank == 0:  # the median ones: re-read and reconstructed once, on rank 0
            found = self.data.load(missing)
            batch = [found[i] for i in sorted(found)]
            if batch:
                x, y = self._batch(batch, None)
                have.update({s.index: (xi.float().cpu(), yi.float().cpu()) for s, xi, yi in zip(batch, x, y)})
        picked = {
            row: [Picked(r.index, r.name, r.psnr, *have[r.index]) for r in rows if r.index in have]
            for row, rows in pictures.items()
        }
        metrics = self._summaries(records)
        return ReconResult(records, skipped, items, metrics, self._throughput(timer), picked, w)

    def _summaries(self, records: list[Record]) -> dict[str, dict[str, Any]]:
        out = {m: dict(v) for m, v in self.metrics.items()}
        for m in ("psnr", "ssim", "lpips"):
            if m in out and out[m]["available"]:
                values = [getattr(r, m) for r in records]  # index order: the same sum on any world size
                out[m].update(value=math.fsum(values) / len(values), count=len(values))
        f = self.protocol.frechet
        if self.stats is not None and out[f]["available"]:
            from hydra_x.eval.frechet import frechet_distance

            real, fake = self.stats
            real.all_reduce()
            fake.all_reduce()
            if real.count < 2:
                self._unavailable(f, f"a Frechet distance needs at least 2 samples, there are {real.count}")
                out[f] = dict(self.metrics[f])
            else:
                out[f].update(value=frechet_distance(real, fake), count=real.count)
        return out

    def _throughput(self, timer: _Timer) -> dict[str, Any]:
        parts = _gather(timer.summary(), self.world)
        out: dict[str, Any] = {"device": str(self.device.type), "world_size": self.world, "per_rank": parts}
        for stage in ("encode", "decode"):
            rates = [p["samples_timed"] / p[f"{stage}_s"] for p in parts if p[f"{stage}_s"] > 0]
            peaks = [p[f"{stage}_peak_bytes"] for p in parts if p[f"{stage}_peak_bytes"] is not None]
            out[stage] = {
                "samples_per_s": sum(rates) if rates else None,  # all ranks together
                "samples_per_s_per_process": sum(rates) / len(rates) if rates else None,
                "peak_memory_gib": max(peaks) / 2**30 if peaks else None,
            }
        out["includes_warmup"] = any(p["includes_warmup"] for p in parts)
        return out


def _middle(order: list[Record], k: int) -> list[Record]:
    start = max(0, (len(order) - 1) // 2 - (k - 1) // 2)
    return order[start : start + k]


def evaluate(
    model: ReconModel, data: EvalData, protocol: Protocol, options: ReconOptions, rank: int = 0, world: int = 1
) -> ReconResult:
    """Run the protocol's metrics over the data with this model (every rank calls it under torchrun)."""
    model.check(protocol.media, protocol.size, protocol.frames)
    return ReconEvaluator(model, data, protocol, options, rank, world).run()
