"""benchmarks/shapes_world_job.sh, run with a python3 that records its calls: the size, frames and examples reach
every phase, the tokenizer trains for a number of steps and the unified run for what it left of 19.5 minutes, an
empty DIT_POSITIONS runs no DiT, ARM2 trains and scores a second arm, and the results archive holds the figures
without the weights and names the phase it was written after."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

JOB = Path(__file__).resolve().parents[1] / "benchmarks" / "shapes_world_job.sh"


def clock(tmp_path: Path, *answers: int) -> Path:
    """A folder whose `date` answers `date +%s` with ANSWERS in turn (then the last), for the job's budgets."""
    folder, count = tmp_path / "clock", tmp_path / "clock-calls"
    folder.mkdir()
    cases = " ".join(str(a) for a in answers)
    (folder / "date").write_text(
        f"#!/bin/bash\nn=$(cat {count} 2>/dev/null || echo 0); echo $((n + 1)) > {count}\n"
        f"a=({cases}); i=$(( n < ${{#a[@]}} ? n : ${{#a[@]}} - 1 )); echo ${{a[$i]}}\n"
    )
    (folder / "date").chmod(0o755)
    return folder


def calls(tmp_path: Path, bin_first: Path | None = None, **env: str) -> list[str]:
    fake = tmp_path / "bin" / "python3"
    fake.parent.mkdir()
    # `python3 -c` (the job's one inline script) runs for real; every other call is recorded
    run_inline = f'if [ "$1" = "-c" ]; then exec {sys.executable} "$@"; fi'
    # FAIL_INSTRUCTION_EFFECT=1: that diagnostic fails, as one that hung would be stopped by its timeout
    failing = 'if [ -n "$FAIL_INSTRUCTION_EFFECT" ] && [[ "$*" == *edit_instruction_effect* ]]; then exit 124; fi'
    # SmolLM2's conversion prints the converted folder last; FAIL_CONVERT=1: it fails instead
    convert = 'if [[ "$*" == *convert-smollm2* ]]; then [ -n "$FAIL_CONVERT" ] && exit 1; echo /converted/llm; fi'
    # SNAPSHOT=path: the results archive as a watcher would copy it when the scoring starts
    snapshot = 'if [ -n "$SNAPSHOT" ] && [[ "$*" == *"--phases eval"* ]]; then cp "$R/results.tgz" "$SNAPSHOT"; fi'
    # SLOW_WARM=1: the warm-up outlasts the tokenizer phase, which ends only once the warm-up has begun
    warm = 'if [ -n "$SLOW_WARM" ] && [[ "$*" == *"--phases warm"* ]]; then sleep 30; fi'
    wait_warm = (
        'if [ -n "$SLOW_WARM" ] && [[ "$*" == *"--phases tokenizer"* ]]; then '
        f"until grep -q -- '--phases warm' {tmp_path}/calls; do sleep 0.1; done; fi"
    )
    job_id = f'echo "$TORCH_COMPILE_JOB_ID $1 $2" >> {tmp_path}/job-ids'  # the compile caches' job id, by call
    fake.write_text(
        f'#!/bin/bash\n{run_inline}\necho "$*" >> {tmp_path}/calls\n{job_id}\n{failing}\n{convert}\n{snapshot}\n'
        f"{warm}\n{wait_warm}\n"
    )
    fake.chmod(0o755)
    # TAR_EXIT=N: tar archives for real, then exits N, as GNU tar does with 1 for a file that changed as it read it
    tar = fake.parent / "tar"
    tar.write_text(f'#!/bin/bash\n{shutil.which("tar")} "$@"; rc=$?\nexit ${{TAR_EXIT:-$rc}}\n')
    tar.chmod(0o755)
    path = f"{fake.parent}:{f'{bin_first}:' if bin_first else ''}{os.environ['PATH']}"
    # No compile warm-up unless asked (WARM=1): it runs beside the tokenizer phase, so whether a fake one is
    # recorded before that phase ends would be a race
    env = {**os.environ, "PATH": path, "R": str(tmp_path / "r"), "WARM": "0", **env}
    done = subprocess.run(["bash", str(JOB)], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == (1 if env.get("FAIL_CONVERT") else 0), done.stdout + done.stderr
    (tmp_path / "job.out").write_text(done.stdout)
    return (tmp_path / "calls").read_text().splitlines()


def test_the_compile_warm_up_runs_each_arm_beside_the_tokenizer_and_is_stopped_when_the_tokenizer_is_done(tmp_path):
    import time

    start = time.monotonic()
    lines = calls(tmp_path, WARM="1", SLOW_WARM="1", SIZE="64", FRAMES="9", EXAMPLES="512", ARM2="sti")
    assert time.monotonic() - start < 25  # the 30-second warm-up was stopped, not waited for
    order = [line.split("--phases ")[1].split()[0] for line in lines if "--phases" in line]
    assert order[:2] in (["warm", "tokenizer"], ["tokenizer", "warm"]) and order[2] == "unified"
    warm = next(line for line in lines if "--phases warm" in line)
    unified = next(line for line in lines if "--phases unified" in line)
    assert "--compile --workers 2 --examples 512 --size 64 --frames 9" in warm
    assert warm.split("--arms ")[1] == unified.split("--arms ")[1]  # the same arms, the same overrides
    assert lines.index(next(line for line in lines if "convert-smollm2" in line)) < lines.index(warm)
    assert "warm-up stopped at" in (tmp_path / "job.out").read_text()
    # one job id for the warm-up and the timed runs, and none for the rest: torch.compile keeps which sizes turned
    # dynamic under it
    ids = {}
    for line in (tmp_path / "job-ids").read_text().splitlines():
        if "shapes_world_run" in line:
            ids.setdefault(line.split(" benchmarks/")[0] or "none", []).append(line)
    assert set(ids) == {"hydra-x-shapes-world", "none"}
    assert len(ids["hydra-x-shapes-world"]) == 2  # the warm-up and the timed runs; the tokenizer and scoring: none
    # WARM=first: the first arm alone (arms of one architecture share their graphs); no instruction effect asked
    (tmp_path / "first").mkdir()
    lines = calls(tmp_path / "first", WARM="first", SLOW_WARM="1", ARM2="sti", INSTRUCTION_EFFECT="0")
    warm = next(line for line in lines if "--phases warm" in line)
    assert warm.split("--arms ")[1] == unified.split("--arms ")[1].split(" two=")[0]
    assert not any("edit_instruction_effect.py" in line for line in lines)


def test_size_frames_and_examples_reach_every_phase_and_one_sincos_dit_runs_by_default(tmp_path):
    lines = calls(tmp_path, SIZE="64", FRAMES="9", EXAMPLES="512")
    runs = [line for line in lines if "shapes_world_run.py" in line]
    assert len(runs) == 3 and all("--size 64 --frames 9" in line for line in runs)
    assert "--examples 512" in runs[1] and "--phases unified" in runs[1]
    dits = [line for line in lines if "latent_dit_baseline.py" in line]
    assert len(dits) == 1 and "--positions sincos" in dits[0] and "--size 64" in dits[0]
    assert "--text-tokenizer /converted/llm" in dits[0]  # the folder the conversion beside the tokenizer printed
    effects = [line for line in lines if "edit_instruction_effect.py" in line]
    assert len(effects) == 1 and "unified-one/export --size 64" in effects[0]


def test_the_tokenizer_trains_for_2400_steps_and_the_unified_run_gets_what_it_left_of_19_5_minutes(tmp_path):
    lines = calls(tmp_path, clock(tmp_path, 1000, 1300))  # the tokenizer phase took 5 minutes
    tokenizer = next(line for line in lines if "--phases tokenizer" in line)
    assert "--tokenizer-steps 2400" in tokenizer and "--tokenizer-minutes" not in tokenizer
    assert "--unified-minutes 14.5 " in next(line for line in lines if "--phases unified" in line)
    assert "--minutes 10.5 " in next(line for line in lines if "latent_dit_baseline.py" in line)  # 4 fewer
    (tmp_path / "long").mkdir()  # a phase that took all of it leaves the unified run its minimum, a minute
    lines = calls(tmp_path / "long", clock(tmp_path / "long", 0, 1200), DIT_POSITIONS="")
    assert "--unified-minutes 1.0 " in next(line for line in lines if "--phases unified" in line)
    assert "--clips-weight" not in tokenizer  # the script's default: half the images' weight
    (tmp_path / "given").mkdir()
    given = dict(TOKENIZER_STEPS="", UNIFIED_MINUTES="12", CLIPS_WEIGHT="3")
    lines = calls(tmp_path / "given", clock(tmp_path / "given", 0, 300), **given)
    tokenizer = next(line for line in lines if "--phases tokenizer" in line)
    assert "--tokenizer-minutes 3.5" in tokenizer and "--clips-weight 3 " in tokenizer
    assert "--tokenizer-extra" not in tokenizer
    assert "--unified-minutes 12 " in next(line for line in lines if "--phases unified" in line)
    (tmp_path / "extra").mkdir()
    extra = dict(TOKENIZER_EXTRA="model.temporal_unfold=shared seed=1")
    lines = calls(tmp_path / "extra", clock(tmp_path / "extra", 0, 300), **extra)
    tokenizer = next(line for line in lines if "--phases tokenizer" in line)
    assert "--tokenizer-extra model.temporal_unfold=shared seed=1 --size" in tokenizer


def test_no_dit_when_asked_and_a_second_arm_is_trained_and_scored(tmp_path):
    lines = calls(tmp_path, DIT_POSITIONS="", ARM2="model.edit_layout=sti")
    assert not any("latent_dit_baseline.py" in line for line in lines)
    unified = next(line for line in lines if "--phases unified" in line)
    assert unified.endswith("two=model.edit_layout=sti") and "--workers 4" in unified
    scored = next(line for line in lines if "--phases eval" in line)
    assert scored.endswith("--arms one=model.edit_layout=independent two=model.edit_layout=sti")
    assert sum("edit_instruction_effect.py" in line for line in lines) == 2


def test_arm2_sti_trains_the_first_arm_again_with_the_sti_layout(tmp_path):
    lines = calls(tmp_path, DIT_POSITIONS="", ARM="model.edit_layout=independent,row_multiple=1", ARM2="sti")
    unified = next(line for line in lines if "--phases unified" in line)
    arms = "one=model.edit_layout=independent,row_multiple=1 two=model.edit_layout=sti,row_multiple=1"
    assert unified.endswith(f"--arms {arms}")
    scored = next(line for line in lines if "--phases eval" in line)
    assert scored.endswith("--arms one=model.edit_layout=independent two=model.edit_layout=sti")
    # an arm that names no layout (the recipe's, independent) gets STI added
    (tmp_path / "b").mkdir()
    lines = calls(tmp_path / "b", DIT_POSITIONS="", ARM="row_multiple=1", ARM2="sti")
    unified = next(line for line in lines if "--phases unified" in line)
    assert unified.endswith("--arms one=row_multiple=1 two=row_multiple=1,model.edit_layout=sti")


def test_the_results_archive_holds_what_was_written_without_weights_or_renders(tmp_path):
    run = tmp_path / "r" / "A" / "unified-one"
    for name in ("summary.json", "checkpoints/step-100/model.bin", "export/model.safetensors", "tensorboard/ev"):
        (run / name).parent.mkdir(parents=True, exist_ok=True)
        (run / name).write_text("x")
    (tmp_path / "r" / "A" / "shapes-images").mkdir()
    (tmp_path / "r" / "A" / "shapes-images" / "0.png").write_text("x")
    calls(tmp_path, DIT_POSITIONS="")
    with tarfile.open(tmp_path / "r" / "results.tgz") as archive:
        names = {n.removeprefix("./") for n in archive.getnames()}
    assert {"A/unified-one/summary.json", "instr-one.txt", "convert.log"} <= names
    assert not any(k in n for n in names for k in ("checkpoints", "safetensors", "tensorboard", "shapes-images"))
    assert not any("results.tgz" in n for n in names) and not (tmp_path / "r" / ".results.tgz").exists()


def packed_phase(archive_path: Path) -> str:
    with tarfile.open(archive_path) as archive:
        return archive.extractfile("./PACKED").read().decode().split(" at ")[0]


def test_each_archive_names_the_phase_it_was_written_after(tmp_path):
    calls(tmp_path, DIT_POSITIONS="", SNAPSHOT=str(tmp_path / "during-scoring.tgz"))
    assert packed_phase(tmp_path / "during-scoring.tgz") == "trained"  # no scores in it yet, and it says so
    assert packed_phase(tmp_path / "r" / "results.tgz") == "done"


def test_a_failed_instruction_effect_is_noted_and_the_job_still_ends(tmp_path):
    calls(tmp_path, DIT_POSITIONS="", FAIL_INSTRUCTION_EFFECT="1")
    assert "instruction effect: exit 124" in (tmp_path / "r" / "instr-one.txt").read_text()
    assert (tmp_path / "r" / "DONE").exists() and (tmp_path / "r" / "results.tgz").exists()


def test_an_archive_tar_read_with_a_changed_file_still_replaces_the_last_one_and_a_failed_one_does_not(tmp_path):
    ok, failed = tmp_path / "ok", tmp_path / "failed"
    ok.mkdir()
    failed.mkdir()
    calls(ok, DIT_POSITIONS="", TAR_EXIT="1")
    with tarfile.open(ok / "r" / "results.tgz") as archive:
        assert "./instr-one.txt" in archive.getnames()  # the last pack's archive, not an earlier one
    assert not (ok / "r.pack.tgz").exists() and not (ok / "r" / ".results.tgz").exists()
    calls(failed, DIT_POSITIONS="", TAR_EXIT="2")
    assert not (failed / "r" / "results.tgz").exists()


def test_a_failed_smollm2_conversion_stops_the_job_before_the_unified_phase(tmp_path):
    lines = calls(tmp_path, DIT_POSITIONS="", FAIL_CONVERT="1")
    assert any("--phases tokenizer" in line for line in lines)
    assert not any("--phases unified" in line or "--phases eval" in line for line in lines)
