"""Where does a unified training step's time go? Operators per part of the step, and on a GPU how busy it is.

    python benchmarks/unified_step_ops.py                        # CPU: operator counts, 32 and 96 examples
    python benchmarks/unified_step_ops.py --examples 16 64 --llm-layers 30
    python benchmarks/unified_step_ops.py --compile --warmup 3 --examples 512   # CPU: what a compiled step leaves
    python3 benchmarks/unified_step_ops.py --device cuda [--compile [--llm-only]] --examples 32 96   # GPU: times too
    python3 benchmarks/unified_step_ops.py --device cuda --compile --compile-mode reduce-overhead --top 15
    python3 benchmarks/unified_step_ops.py --device cuda --compile --examples 512 --threads 16 4 1   # host threads
    python3 benchmarks/unified_step_ops.py --device cuda --compile --attention flex --examples 512 \
        --set data.image_size=64 model.image_size=64 data.clip_frames=9 model.clip_frames=9 data.task_ratios.edit=4

A step whose GPU is mostly idle is bound by the host: every eager operator costs Python and a kernel launch,
whatever the tensor sizes. This runs steps of the `small` recipe (128 px, 17-frame clips, every shapes-world task,
rows of 2048 tokens; random weights; ``--set KEY=VALUE ...`` changes it as ``hydra-x train unified`` would). On the
CPU it keeps the structure at toy widths (the `small` tokenizer's depth, SmolLM2-135M's 30 layers, widths shrunk so
that it runs on a laptop); counts do not depend on widths, so they say how the host's share of a GPU step grows with
the number of examples. On a GPU it runs the real widths (the `small` tokenizer and an LLM of SmolLM2-135M's shape,
whose vocabulary is the test tokenizer's ~800 tokens; the LM head runs on predicted text positions only; ``--llm
smollm2-135m`` takes the real one), bf16, with the recipe's data workers.

Printed per ``--examples``: the outermost ATen operators of each part of ``train_step`` (data: next() of the
loader; batch: build_batch; forward; backward; optimizer: CPU runs AdamW's per-parameter loop, CUDA the fused
kernel), and the operators of the forward, losses and backward that read a value back to the host (each a
synchronisation on a GPU). Then the step time (median of ``--steps`` steps after warm-up, the host synchronised
only at their ends), on a GPU the GPU's kernel time per step and the share of the step it fills, and the host's
time per part (profiled; on a GPU enqueueing, plus any wait for it; on the CPU the work itself). The GPU's time
counts kernels, copies and sets only: the profiler also mirrors each record_function range onto the device's
timeline, and counting those made a step that was 30% busy look 98% busy.

``--top N`` also prints the profiled step's N most expensive operators on the device (CUDA) and on the host, each
host operator with the Python lines (hydra_x's or a library's) that spent the most host time calling it.
``--callers N`` prints the N Python lines that issue the most outer operators of the forward: a count that does not
depend on the device, so a CPU run says where a GPU step's eager launches come from (each also has its backward).
"""

from __future__ import annotations

import argparse
import collections
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile, record_function

from hydra_x.tokenizer import tokenizer_config
from hydra_x.train.command import override
from hydra_x.train.engine import Engine
from hydra_x.train.unified.build import build_run
from hydra_x.train.unified.loop import train_step
from hydra_x.train.unified.recipes import small
from hydra_x.unified import model as model_module
from hydra_x.unified.config import unified_config
from hydra_x.unified.llm import TinyLLMConfig, save_tiny_llm, smollm2_135m_shape

PARTS = ("data", "batch", "forward", "backward", "optimizer")
# Operators that copy a value to the host or size an output by data: each waits for the GPU.
SYNCS = {"aten::_local_scalar_dense", "aten::nonzero", "aten::masked_select", "aten::_unique2", "aten::is_nonzero"}
ON_DEVICE = ("forward", "losses", "backward")  # the parts whose tensors live on the GPU in a GPU run


# Parts of the model's forward timed on their own (host ms within the profiled forward): HydraX methods, the
# LLM's mask builders, and the flow head.
FORWARD_METHODS = {"encode": "encode_each", "visual embeddings": "_embed_visuals", "LLM": "llm_hidden"}
MASK_BUILDERS = ("flex_block_mask", "attention_mask", "additive_mask")
FORWARD_PARTS = (*FORWARD_METHODS, "mask", "flow head")
# Inside the visual embeddings: the Sem-ViT's calls, the projector's, and the one gather into placement order.
VISUAL_PARTS = ("Sem-ViT", "projector", "gather")


def timed(fn, label: str):
    def call(*args, **kwargs):
        with record_function(f"part/{label}"):
            return fn(*args, **kwargs)

    return call


def time_forward_parts(model) -> None:
    """Wrap the forward's parts of ``model`` (and the model module's mask builders) in profiler ranges; for this
    benchmark only (instance attributes shadow the methods)."""
    for label, name in FORWARD_METHODS.items():
        setattr(model, name, timed(getattr(model, name), label))
    model.flow_head.forward = timed(model.flow_head.forward, "flow head")
    model.tokenizer.semantic = timed(model.tokenizer.semantic, "Sem-ViT")
    model.projector.forward = timed(model.projector.forward, "projector")
    for name, label in [*((n, "mask") for n in MASK_BUILDERS), ("in_order", "gather")]:
        fn = getattr(model_module, name)
        if not hasattr(fn, "__wrapped_part__"):
            wrapped = timed(fn, label)
            wrapped.__wrapped_part__ = True
            setattr(model_module, name, wrapped)


def build(args, examples: int, root: Path):
    """A fresh `small` run (random weights) on ``args.device`` and its batch iterator, warmed up."""
    cuda = args.device == "cuda"
    if cuda:  # SmolLM2-135M's shape, Qwen2's architecture
        shape = smollm2_135m_shape(args.llm_layers)
        tokenizer = tokenizer_config("small")
    else:
        shape = TinyLLMConfig(num_layers=args.llm_layers)
        tokenizer = tokenizer_config("small").replace(width=64, heads=2, mlp_dim=128)
    llm = args.llm or str(save_tiny_llm(root / f"llm-{args.device}", seed=0, config=shape))
    cfg = small()
    cfg.model = unified_config("small", llm=llm, tokenizer=tokenizer, attention=args.attention)
    cfg.tokenizer_init, cfg.latent_stats_samples = None, 0
    cfg.device, cfg.precision = args.device, "bf16" if cuda else "fp32"
    cfg.compile, cfg.compile_tokenizer, cfg.compile_head = args.compile, not args.llm_only, not args.llm_only
    cfg.compile_mode = args.compile_mode
    cfg.data.num_workers = args.workers if cuda else 0
    cfg.data.examples_per_step = examples
    cfg.steps, cfg.out_dir = 1000, str(root / f"run-{examples}")
    cfg = override(cfg, args.set)
    engine = Engine(cfg)
    run = build_run(cfg, engine)
    time_forward_parts(run.model)
    engine.start(cfg.to_dict(), "step operators")
    batches = run.batches
    warm_up(run, batches, 0, args.warmup)  # lazily built state (optimizer moments, caches, compiled graphs)
    return run, batches


def warm_up(run, batches, step: int, steps: int) -> int:
    """Train ``steps`` steps from ``step``, unmeasured; the next step's number."""
    for number in range(step, step + steps):
        train_step(run, batches, number)
    return step + steps


def profile_step(run, batches, step: int, cuda: bool, top: int = 0, callers: int = 0) -> dict[str, float]:
    """Operator counts per part, read-backs, and (CUDA) host ms per part and kernel ms of one profiled step."""
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities, with_stack=bool(top or callers)) as prof:
        train_step(run, batches, step)
        if cuda:
            torch.cuda.synchronize()
    events = prof.events()
    # The host's ranges (on CUDA each record_function also leaves an annotation on the device's timeline).
    host = [e for e in events if e.device_type == DeviceType.CPU]
    spans = {e.name.removeprefix("step/"): e.time_range for e in host if e.name.startswith("step/")}
    row: dict[str, float] = collections.Counter()
    for part, span in spans.items():
        row[f"{part} ms"] = span.elapsed_us() / 1e3
    for e in host:
        if e.name.startswith("part/"):
            row[f"{e.name} ms"] += e.time_range.elapsed_us() / 1e3
    for e in host:
        if not e.name.startswith("aten::"):
            continue
        part = next((p for p, r in spans.items() if r.start <= e.time_range.start <= r.end), None)
        if part is None:
            continue
        if e.name in SYNCS and part in ON_DEVICE:
            row["syncs"] += 1
        if outer_operator(e):
            row[part] += 1
    if cuda:
        # Kernels, copies and sets; not the record_function ranges, which the device's timeline also carries.
        device = [e for e in events if e.device_type == DeviceType.CUDA and not on_host_only(e)]
        row["kernel ms"] = busy_us([e.time_range for e in device]) / 1e3
    if top:
        if cuda:
            print(prof.key_averages().table(sort_by="self_device_time_total", row_limit=top), flush=True)
        print_host_callers(host, top)
    if callers:
        print_forward_callers(host, spans["forward"], callers)
    return row


def print_forward_callers(host, forward, top: int) -> None:
    """The ``top`` Python lines by the outer operators of the forward they issue (the innermost line outside torch)."""
    counts: collections.Counter = collections.Counter()
    for e in host:
        if outer_operator(e) and forward.start <= e.time_range.start <= forward.end:
            counts[caller(e)] += 1
    print(f"\nThe {top} lines issuing the most outer operators of the forward (of {sum(counts.values())}; one step)")
    for where, n in counts.most_common(top):
        print(f"{n:7d}  {where}")


def print_host_callers(host, top: int) -> None:
    """The ``top`` operators by host time, each with the project or library lines that called it most."""
    ops: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for e in host:
        if outer_operator(e):
            ops[e.name][caller(e)] += e.cpu_time_total / 1e3
    ranked = sorted(ops.items(), key=lambda item: -sum(item[1].values()))[:top]
    print(f"\nHost ms of the {top} most expensive outer operators, by caller (one profiled step)")
    for name, by_caller in ranked:
        print(f"{sum(by_caller.values()):9.1f} ms  {name}")
        for where, ms in by_caller.most_common(3):
            print(f"{ms:18.1f} ms  {where}")


def outer_operator(event) -> bool:
    """An ATen operator not called by another one: what the Python code issued (one dispatch, on a GPU a launch)."""
    parent = event.cpu_parent
    return event.name.startswith("aten::") and (parent is None or not parent.name.startswith("aten::"))


def caller(event) -> str:
    """The innermost Python frame above ``event`` outside torch itself (a hydra_x or transformers line)."""
    parent = event.cpu_parent
    while parent is not None:
        if ".py(" in parent.name and "torch/" not in parent.name:
            return parent.name
        parent = parent.cpu_parent
    return "?"


def on_host_only(event) -> bool:
    """A record_function range mirrored on the device's timeline (a user annotation, not device work)."""
    return getattr(event, "is_user_annotation", False) or event.name.startswith(("step/", "part/"))


def busy_us(spans) -> float:
    """Microseconds covered by the union of the device's activity intervals (streams may overlap)."""
    total, end = 0.0, float("-inf")
    for span in sorted(spans, key=lambda r: r.start):
        if span.end > end:
            total += span.end - max(span.start, end)
            end = span.end
    return total


def step_ms(run, batches, first: int, steps: int) -> float:
    """Median wall time of ``steps`` steps, synchronised at each step's end only."""
    sync = torch.cuda.synchronize if run.engine.device.type == "cuda" else (lambda: None)
    times = []
    for step in range(first, first + steps):
        sync()
        start = time.perf_counter()
        train_step(run, batches, step)
        sync()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def measure(args, examples: int, root: Path) -> dict[str, dict[str, float]]:
    """A row per intra-op thread count of the training process (``--threads``; torch's default if not given),
    all on one built run: the host's small operators may split over every thread, and a process beside data
    workers and other runs then waits for them all to be scheduled."""
    run, batches = build(args, examples, root)
    cuda = args.device == "cuda"
    rows, step = {}, args.warmup
    default = torch.get_num_threads()
    for threads in args.threads or [default]:
        if threads != torch.get_num_threads():
            torch.set_num_threads(threads)
            # Compiled code guards on the thread count (dynamo's GLOBAL_STATE): a change recompiles every compiled
            # block at its next call, which must not fall in the measured steps.
            step = warm_up(run, batches, step, max(1, args.warmup))
        row = profile_step(run, batches, step, cuda, args.top, args.callers)
        row["step ms"] = step_ms(run, batches, step + 1, args.steps)
        step += 1 + args.steps
        if cuda:
            row["busy"] = row["kernel ms"] / row["step ms"]
        rows[f"{examples}" if not args.threads else f"{examples}, {threads} threads"] = row
    torch.set_num_threads(default)
    if cuda:
        torch.cuda.empty_cache()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--examples", type=int, nargs="+", default=[32, 96], help="examples per step")
    parser.add_argument("--llm-layers", type=int, default=30, help="SmolLM2-135M has 30")
    parser.add_argument("--llm", help="a real LLM instead (a preset such as smollm2-135m, a folder or a Hub id)")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument(
        "--compile",
        action="store_true",
        help="compile=true: the LLM's, the tokenizer's and the flow head's blocks (on the CPU too, to count what a "
        "compiled step leaves; its first step compiles for a minute)",
    )
    parser.add_argument(
        "--llm-only", action="store_true", help="with --compile, leave the tokenizer's and head's blocks eager"
    )
    parser.add_argument(
        "--compile-mode", default="default", help="with --compile: default | reduce-overhead (CUDA graphs) | ..."
    )
    parser.add_argument("--attention", default="sdpa", choices=("sdpa", "flex"), help="the LLM's attention")
    parser.add_argument("--workers", type=int, default=6, help="data workers (CUDA; the CPU loads in the main process)")
    parser.add_argument("--warmup", type=int, default=3, help="steps before measuring")
    parser.add_argument("--steps", type=int, default=5, help="timed steps")
    parser.add_argument("--top", type=int, default=0, help="print the profiled step's N most expensive operators")
    parser.add_argument(
        "--callers", type=int, default=0, help="print the N lines issuing the most operators of the forward"
    )
    parser.add_argument(
        "--threads", type=int, nargs="*", default=[], help="the training process's intra-op threads, one row each "
        "(default: torch's, one per core)",
    )  # fmt: skip
    parser.add_argument(
        "--set", nargs="*", default=[], metavar="KEY=VALUE", help="overrides of the `small` recipe's step, e.g. "
        "data.image_size=64 model.image_size=64 (head_attention_from_step=0 for a head's attention layers)",
    )  # fmt: skip
    args = parser.parse_args()
    torch.manual_seed(0)
    root = Path(tempfile.mkdtemp(prefix="hydra_x_step_ops_"))
    rows = {label: row for n in args.examples for label, row in measure(args, n, root).items()}
    where = "GPU, `small` widths, bf16" if args.device == "cuda" else "CPU, toy widths"
    compiled = ""
    if args.compile:
        compiled = ", LLM blocks compiled" if args.llm_only else ", LLM, tokenizer and flow head blocks compiled"
    print(f"\nOuter ATen operators of one `small` unified step ({where}{compiled}, {args.llm_layers} LLM layers)")
    print("| examples | " + " | ".join(PARTS) + " | total | host read-backs |\n|---:|" + "---:|" * (len(PARTS) + 2))
    for n, c in rows.items():
        total = sum(c[p] for p in PARTS)
        print(f"| {n} | " + " | ".join(str(int(c[p])) for p in PARTS) + f" | {int(total)} | {int(c['syncs'])} |")
    print(f"\nTimes per step (median of {args.steps}; host ms per part from one profiled step)")
    head = " | ".join(f"host {p} ms" for p in PARTS)
    print(f"| examples | step ms | GPU kernel ms | GPU busy | {head} |\n|---:|" + "---:|" * (len(PARTS) + 3))
    for n, c in rows.items():
        parts = " | ".join(f"{c[f'{p} ms']:.1f}" for p in PARTS)
        gpu = f"{c['kernel ms']:.1f} | {100 * c['busy']:.0f}%" if "busy" in c else "- | -"
        print(f"| {n} | {c['step ms']:.1f} | {gpu} | {parts} |")
    print("\nHost ms of the profiled forward by part (the mask is built inside the LLM's part; nested calls overlap)")
    print(
        "| examples | forward | "
        + " | ".join(FORWARD_PARTS)
        + " | rest |\n|---:|---:|"
        + "---:|" * (len(FORWARD_PARTS) + 1)
    )
    for n, c in rows.items():
        parts = [c[f"part/{p} ms"] for p in FORWARD_PARTS]
        rest = c["forward ms"] - sum(parts) + c["part/mask ms"]  # the mask lies inside the LLM's range
        print(f"| {n} | {c['forward ms']:.1f} | " + " | ".join(f"{v:.1f}" for v in parts) + f" | {rest:.1f} |")
    print("\nHost ms of the profiled visual embeddings by part")
    print("| examples | visual embeddings | " + " | ".join(VISUAL_PARTS) + " | rest |\n|---:|" + "---:|" * 5)
    for n, c in rows.items():
        parts = [c[f"part/{p} ms"] for p in VISUAL_PARTS]
        whole = c["part/visual embeddings ms"]
        print(f"| {n} | {whole:.1f} | " + " | ".join(f"{v:.1f}" for v in parts) + f" | {whole - sum(parts):.1f} |")


if __name__ == "__main__":
    main()
