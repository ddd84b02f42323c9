"""Do the wiring tests catch wrong wiring? Inject each bug of a list into the tokenizer and its losses, run the
tests that should see it, and print which test caught it.

    python benchmarks/wiring_mutations.py                  # every mutation; exit 1 if one is not caught
    python benchmarks/wiring_mutations.py --only kl_drops_logvar lpips_self
    python benchmarks/wiring_mutations.py --list

Everything happens in this process, nothing is written to disk: a mutation is a string replacement in one
function's source (it must match exactly once, so a mutation that an edit of the code made stale is reported,
never silently skipped), compiled in the function's own module and installed in its place (the class attribute
for a method; for a module-level function every module attribute that held it, so ``from x import f`` copies
are replaced too). pytest then runs the mutation's test files here, and the original is restored. The tests
run unmutated first: a failure there makes the table meaningless and is reported as such.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import io
import sys
import textwrap
import time
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
OBJECTIVE = "tests/train/test_objective_values.py"
WIRING = "tests/tokenizer/test_wiring.py"
GAN = "tests/losses/test_gan.py"
MODEL = "hydra_x.tokenizer.model:HydraXTokenizer.forward"
GENERATOR = "hydra_x.train.tokenizer.objective:TokenizerObjective.generator"
DISTILLATION = "hydra_x.train.tokenizer.objective:TokenizerObjective._distillation"


@dataclass(frozen=True)
class Mutation:
    name: str
    target: str  # "module:qualified.name" of a function or method
    old: str  # replaced by `new` in its source; must occur exactly once
    new: str
    tests: tuple[str, ...]  # the test files that should catch it


MUTATIONS = (
    # --- the loss terms
    Mutation("lpips_self", GENERATOR, "self.lpips(pair[0].float(), pair[1].float())",
             "self.lpips(pair[1].float(), pair[1].float())", (OBJECTIVE,)),
    Mutation("lpips_args_swapped", GENERATOR, "self.lpips(pair[0].float(), pair[1].float())",
             "self.lpips(pair[1].float(), pair[0].float())", (OBJECTIVE,)),
    Mutation("lpips_frames_floor", "hydra_x.train.tokenizer.objective:frames_for_lpips", ".round().long()",
             ".floor().long()", (OBJECTIVE,)),
    Mutation("l1_is_mse", GENERATOR, "F.l1_loss(x_rec.float(), x.float())", "F.mse_loss(x_rec.float(), x.float())",
             (OBJECTIVE,)),
    Mutation("flow_target_sign", GENERATOR, "out.velocity_target.float()", "-out.velocity_target.float()",
             (OBJECTIVE,)),
    Mutation("kl_drops_logvar", "hydra_x.tokenizer.bottleneck:DiagonalGaussian.kl", "- 1.0 - logvar).mean()",
             "- 1.0).mean()", (OBJECTIVE,)),
    Mutation("g_hinge_sign", "hydra_x.losses.gan:g_hinge_loss", "return -fake_logits", "return fake_logits",
             (OBJECTIVE, GAN)),
    Mutation("d_hinge_real_fake_swapped", "hydra_x.train.tokenizer.objective:TokenizerObjective.discriminator_loss",
             "d_hinge_loss(real, fake)", "d_hinge_loss(fake, real)", (OBJECTIVE,)),
    Mutation("gan_judges_the_input", GENERATOR, "g_hinge_loss(self.discriminator(x_rec))",
             "g_hinge_loss(self.discriminator(x))", (OBJECTIVE,)),
    Mutation("adaptive_weight_sign", GENERATOR, "weight * float(adaptive_gan_weight(",
             "weight * -float(adaptive_gan_weight(", (OBJECTIVE,)),
    Mutation("adaptive_weight_squared", "hydra_x.losses.gan:adaptive_gan_weight", "rec_norm / (gan_norm + eps)",
             "rec_norm.square() / (gan_norm.square() + eps)", (OBJECTIVE, GAN)),
    Mutation("flow_gan_weight_at_x_rec", GENERATOR, "at = out.velocity if flow else x_rec", "at = x_rec",
             (OBJECTIVE,)),
    Mutation("distill_cosine_sign", "hydra_x.losses.distill:per_sample_cosine_distance", "(1.0 - (a * b)",
             "(1.0 + (a * b)", (OBJECTIVE,)),
    Mutation("consistency_args_swapped", DISTILLATION, "consistency_loss(out.h_restored, out.h)",
             "consistency_loss(out.h, out.h_restored)", (OBJECTIVE,)),
    Mutation("layers_last_step", DISTILLATION, "out.layer_features[k][:, 0]", "out.layer_features[k][:, -1]",
             (OBJECTIVE,)),
    # --- which step each teacher sees
    Mutation("image_teacher_last_frame", DISTILLATION, "x[:, :, 0]", "x[:, :, -1]", (OBJECTIVE,)),
    Mutation("video_teacher_gets_frame_0", DISTILLATION, "self.video_teacher(x[:, :, 1:])",
             "self.video_teacher(x[:, :, :-1])", (OBJECTIVE,)),
    Mutation("image_features_last_step_of_s", MODEL, "self.image_head(s[:, 0])", "self.image_head(s[:, -1])",
             (WIRING,)),
    Mutation("decompressor_gets_the_anchor", MODEL, "self.decompressor(s[:, 1:], grid)",
             "self.decompressor(s[:, :-1], grid)", (WIRING,)),
    Mutation("decompressor_time_reversed", "hydra_x.tokenizer.decompressor:Decompressor.forward",
             "\n    return x\n", "\n    return x.flip(1)\n", (WIRING,)),
    # --- folds and their inverses
    Mutation("anchor_padded_after", "hydra_x.tokenizer.folds:pad_anchor", "torch.cat((x.new_zeros(shape), x), dim=dim)",
             "torch.cat((x, x.new_zeros(shape)), dim=dim)", (WIRING,)),
    Mutation("fold1_off_by_one", "hydra_x.tokenizer.folds:PatchFold.forward", "x = pad_anchor(x, self.factor, dim=2)",
             "x = torch.cat((pad_anchor(x, self.factor - 1, dim=2), x[:, :, :1] * 0), dim=2)", (WIRING,)),
    Mutation("fold2_strided_pairs", "hydra_x.tokenizer.folds:TokenFold.forward", '"b (s f) n d -> b s n (f d)"',
             '"b (f s) n d -> b s n (f d)"', (WIRING,)),
    Mutation("unfold_drops_the_last_frames", "hydra_x.tokenizer.folds:PatchUnfold.forward", "return x[:, :, f - 1 :]",
             "return x[:, :, : x.shape[2] - (f - 1)]", (WIRING,)),
    Mutation("token_unfold_drops_the_last_steps", "hydra_x.tokenizer.folds:TokenUnfold.forward",
             "return x[:, self.factor - 1 :]", "return x[:, : x.shape[1] - (self.factor - 1)]", (WIRING,)),
    # --- latent normalisation
    Mutation("forward_skips_normalisation", MODEL, "z_tokens = (z_raw - mean) / std", "z_tokens = z_raw", (WIRING,)),
    Mutation("decoder_fed_the_raw_latent", MODEL, "self._reconstruct(z_tokens, grid,", "self._reconstruct(z_raw, grid,",
             (WIRING,)),
)  # fmt: skip


class StaleMutationError(RuntimeError):
    """The mutation's text is not (or not once) in the current source."""


def _resolve(target: str):
    module_name, qualname = target.split(":")
    module = importlib.import_module(module_name)
    *parents, attr = qualname.split(".")
    owner = module
    for part in parents:
        owner = getattr(owner, part)
    return module, owner, attr


def compile_mutant(mutation: Mutation):
    """(owner, attribute, original, mutant): the mutant compiled from the edited source in the original's module."""
    module, owner, attr = _resolve(mutation.target)
    original = inspect.getattr_static(owner, attr)
    source = textwrap.dedent(inspect.getsource(original))
    count = source.count(mutation.old)
    if count != 1:
        raise StaleMutationError(f"{mutation.target}: {mutation.old!r} occurs {count} times (the code changed?)")
    namespace: dict = {}
    code = compile(source.replace(mutation.old, mutation.new), f"<mutant {mutation.name}>", "exec")
    exec(code, module.__dict__, namespace)  # the function's globals are its module's
    return owner, attr, original, namespace[original.__name__]


@contextmanager
def installed(mutation: Mutation):
    owner, attr, original, mutant = compile_mutant(mutation)
    replaced = [(owner, attr)]
    if inspect.ismodule(owner):  # a module-level function: every `from ... import f` copy too
        modules = [m for m in list(sys.modules.values()) if inspect.ismodule(m)]
        replaced += [(m, k) for m in modules for k, v in list(vars(m).items()) if v is original and m is not owner]
    for place, name in replaced:
        setattr(place, name, mutant)
    try:
        yield
    finally:
        for place, name in replaced:
            setattr(place, name, original)


class Failures:
    """A pytest plugin collecting the tests that failed (in any phase) or could not be collected."""

    def __init__(self) -> None:
        self.failed: list[str] = []

    def pytest_runtest_logreport(self, report) -> None:
        if report.failed and report.nodeid not in self.failed:
            self.failed.append(report.nodeid)

    def pytest_collectreport(self, report) -> None:
        if report.failed:
            self.failed.append(f"{report.nodeid} (collection)")


def run_tests(files: tuple[str, ...]) -> list[str]:
    """Run the test files in this process; the short names of the failed tests."""
    failures = Failures()
    args = ["-q", "-p", "no:cacheprovider", "--no-header", "-o", "addopts=", "--tb=no", "-W", "ignore", *files]
    with redirect_stdout(io.StringIO()):  # the table is the output
        pytest.main([str(ROOT / a) if a.endswith(".py") else a for a in args], plugins=[failures])
    return [name.rpartition("::")[2] for name in failures.failed]


def check(mutations: tuple[Mutation, ...], quiet: bool = True) -> tuple[list[tuple[str, str, str]], bool]:
    """Rows (mutation, target, caught by) and whether every mutation was caught with the tests passing unmutated."""
    files = tuple(sorted({f for m in mutations for f in m.tests}))
    baseline = run_tests(files)
    rows = [("(none: baseline)", ", ".join(files), "FAILING: " + ", ".join(baseline) if baseline else "all pass")]
    ok = not baseline
    for mutation in mutations:
        try:
            with installed(mutation):
                failed = run_tests(mutation.tests)
        except StaleMutationError as err:
            failed, ok = [], False
            rows.append((mutation.name, mutation.target, f"NOT APPLIED: {err}"))
            continue
        ok = ok and bool(failed)
        rows.append((mutation.name, mutation.target, ", ".join(failed) if failed else "NOT CAUGHT"))
    return rows, ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", nargs="*", help="mutation names (default: all)")
    parser.add_argument("--list", action="store_true", help="list the mutations and exit")
    args = parser.parse_args(argv)
    if args.list:
        for m in MUTATIONS:
            print(f"{m.name:36} {m.target}: {m.old!r} -> {m.new!r}")
        return 0
    unknown = set(args.only or ()) - {m.name for m in MUTATIONS}
    if unknown:
        parser.error(f"unknown mutations {sorted(unknown)}")
    chosen = tuple(m for m in MUTATIONS if not args.only or m.name in args.only)
    sys.path.insert(0, str(ROOT))  # `tests` as a package, as pytest run from the repository root sees it
    torch.set_num_threads(1)  # tiny tensors: threads only add synchronisation (and contention on a shared machine)
    start = time.perf_counter()
    rows, ok = check(chosen)
    print("\n| mutation | target | caught by |\n|---|---|---|")
    for name, target, caught in rows:
        print(f"| {name} | `{target}` | {caught} |")
    print(f"\n{len(chosen)} mutations, {time.perf_counter() - start:.0f} s: {'all caught' if ok else 'NOT ALL CAUGHT'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
