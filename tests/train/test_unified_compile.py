"""compile=true in unified training: the LLM's layers, the tokenizer's Gen-ViT and Sem-ViT blocks and the flow head's
blocks compile, the tokenizer's and the head's with dynamic shapes (a step's number of images or clips of one shape,
and of generated tokens, changes every step), and the compiled model computes what the eager one does."""

from __future__ import annotations

import pytest
import torch
from torch._dynamo.utils import counters

from hydra_x.train.engine import Engine
from hydra_x.train.unified.build import build_run, compile_head_blocks, compile_tokenizer_blocks
from hydra_x.train.unified.recipes import tiny
from hydra_x.unified.model import HydraX


def compiled(module: torch.nn.Module) -> bool:
    return getattr(module, "_compiled_call_impl", None) is not None


@pytest.mark.parametrize("compile_tokenizer, compile_head", [(True, True), (False, True), (True, False)])
def test_compile_true_compiles_the_tokenizer_and_head_blocks_unless_told_not_to(
    tmp_path, compile_tokenizer, compile_head
) -> None:
    cfg = tiny()
    cfg.out_dir, cfg.latent_stats_samples = str(tmp_path), 0
    cfg.model = cfg.model.replace(head_attention_layers=1)
    cfg.compile, cfg.compile_tokenizer, cfg.compile_head = True, compile_tokenizer, compile_head
    run = build_run(cfg, Engine(cfg))  # nothing compiles before the first call
    tokenizer, head = run.model.tokenizer, run.model.flow_head
    assert all(compiled(layer) for layer in run.model.llm.get_decoder().layers)
    for blocks in (tokenizer.gen_vit.blocks, tokenizer.sem_vit.blocks):
        assert all(compiled(block) == compile_tokenizer for block in blocks)
    assert len(head.blocks) and len(head.attention)
    assert all(compiled(block) == compile_head for block in (*head.blocks, *head.attention))
    assert not any(compiled(block) for block in tokenizer.decoder.blocks)  # never runs in a unified step


@pytest.mark.slow
def test_tokenizer_blocks_compile_one_graph_for_every_batch_size() -> None:
    torch.compiler.reset()
    counters.clear()
    try:
        torch.manual_seed(0)
        model = HydraX.from_preset("tiny").eval()
        model.tokenizer.validate_inputs = False
        c = model.config.latent_channels
        latents = {b: torch.randn(b, c, 1, 4, 4) for b in (2, 3, 4, 5)}
        with torch.no_grad():
            eager = {b: model.visual_embeddings(z) for b, z in latents.items()}
            compile_tokenizer_blocks(model, "default")
            graphs = {}
            for b, z in latents.items():
                torch.testing.assert_close(model.visual_embeddings(z), eager[b], rtol=1e-4, atol=1e-4)
                graphs[b] = counters["stats"]["unique_graphs"]
        assert graphs[2] > 0  # the blocks compiled
        assert graphs[3] > graphs[2]  # a second batch size: recompiled, with the batch symbolic
        assert graphs[5] == graphs[4] == graphs[3]  # later sizes reuse that graph: no recompile per step
    finally:
        torch.compiler.reset()


@pytest.mark.slow
def test_head_blocks_compile_one_graph_for_every_token_count() -> None:
    torch.compiler.reset()
    counters.clear()
    try:
        torch.manual_seed(0)
        model = HydraX.from_config(HydraX.from_preset("tiny").config.replace(head_attention_layers=1), seed=0).eval()
        head = model.flow_head
        with torch.no_grad():  # a non-zero head (it starts at zero)
            for p in head.parameters():
                p.normal_(0, 0.05)
        hidden, c = head.cond_proj.in_features, model.config.latent_channels
        # blocks of a 4 x 4 grid: 2, 3, 4, 5 of them, each size's tokens in one call
        calls = {n: (torch.randn(16 * n, hidden), torch.randn(16 * n, c), torch.rand(16 * n)) for n in (2, 3, 4, 5)}
        grids = {n: [(1, 4, 4)] * n for n in calls}
        with torch.no_grad():
            eager = {n: head(*calls[n], grids[n]) for n in calls}
            compile_head_blocks(model, "default")
            graphs = {}
            for n in calls:
                torch.testing.assert_close(head(*calls[n], grids[n]), eager[n], rtol=1e-4, atol=1e-4)
                graphs[n] = counters["stats"]["unique_graphs"]
        assert graphs[2] > 0  # the blocks compiled
        assert graphs[3] > graphs[2]  # a second size: recompiled, with the sizes symbolic
        assert graphs[5] == graphs[4] == graphs[3]  # later sizes reuse those graphs: no recompile per step
    finally:
        torch.compiler.reset()


@pytest.mark.parametrize("mode", ["default", "reduce-overhead"])
def test_cuda_graph_generations_start_at_every_micro_step_with_reduce_overhead(tmp_path, mode) -> None:
    from hydra_x.train.unified.loop import train_step

    cfg = tiny()
    cfg.out_dir, cfg.latent_stats_samples, cfg.grad_accum = str(tmp_path), 0, 2
    cfg.compile, cfg.compile_mode = True, mode
    engine = Engine(cfg)
    run = build_run(cfg, engine)
    engine.start(cfg.to_dict(), "test")
    cuda_graphs = run.mark_graph_step is torch.compiler.cudagraph_mark_step_begin
    assert cuda_graphs == (mode == "reduce-overhead")
    # Each micro-step's forward must start a new generation, or its graphs' outputs would overwrite the last ones.
    for layer in run.model.llm.get_decoder().layers:
        layer._compiled_call_impl = None  # the step itself runs eager here: what is checked is where it marks
    head = run.model.flow_head
    for blocks in (run.model.tokenizer.gen_vit.blocks, run.model.tokenizer.sem_vit.blocks, head.blocks, head.attention):
        for block in blocks:
            block._compiled_call_impl = None
    marks = []
    run.mark_graph_step = lambda: marks.append(len(marks))
    try:
        train_step(run, run.batches, 0)
    finally:
        engine.logger.close()
    assert len(marks) == cfg.grad_accum


@pytest.mark.gpu
def test_a_compiled_cuda_run_trains_its_head_attention_from_the_step_it_joins(tmp_path) -> None:
    # What the GPU runs do: every block compiled, FlexAttention, bf16, the head's attention joining mid-run (its
    # blocks then compile), data workers drawing the noise.
    import math

    from hydra_x.train.unified import train

    from .test_unified_train import config, metric

    cfg = config(tmp_path / "run", steps=4, latent_stats_samples=0, head_attention_from_step=2)
    cfg.model = cfg.model.replace(head_attention_layers=1, attention="flex")
    cfg.device, cfg.precision, cfg.compile, cfg.data.num_workers = "cuda", "bf16", True, 2
    initial = HydraX.from_config(cfg.model, seed=cfg.seed).flow_head.attention.state_dict()
    train(cfg)
    losses = metric(tmp_path / "run", "loss/total")
    assert sorted(losses) == [1, 2, 3, 4] and all(math.isfinite(v) for v in losses.values())
    peaks = metric(tmp_path / "run", "gpu_memory_peak_gib")
    assert (
        sorted(peaks) == [1, 2, 3, 4]
        and 0 < peaks[1] <= peaks[4] < torch.cuda.get_device_properties(0).total_memory / 2**30
    )
    trained = HydraX.from_pretrained(tmp_path / "run" / "export").flow_head.attention.state_dict()
    assert any(not torch.equal(trained[k].cpu().float(), v.float()) for k, v in initial.items())  # it joined
