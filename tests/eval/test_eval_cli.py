"""`hydra-x eval recon` / `hydra-x eval table` end to end, and their one-line errors (exit 2)."""

import json

import pytest

from hydra_x.cli import main as hydra_main
from hydra_x.cli.eval import main
from tests.eval.recon_fixtures import tiny_nets
from tests.helpers import tiny


@pytest.fixture(scope="module")
def nets(tmp_path_factory):
    return tiny_nets(tmp_path_factory.mktemp("nets"))


def _recon(out, nets, *extra):
    base = ["recon", "--data", "embedded", "--size", "32", "--max-samples", "3", "--out", str(out)]
    return [*base, "--lpips-weights", nets["lpips"], *extra]


def test_recon_with_a_checkpoint_writes_every_output_and_the_table_merges(tmp_path, nets, capsys):
    ckpt = tiny().save_pretrained(tmp_path / "ckpt")
    args = _recon(tmp_path / "a", nets, "--ckpt", str(ckpt), "--feature-net", nets["image"], "--require-all")
    assert hydra_main(["eval", *args]) == 0  # through the main command
    out = capsys.readouterr().out
    assert "psnr" in out and "rfid" in out
    for name in ("report.json", "report.md", "per_sample.csv", "samples.png"):
        assert (tmp_path / "a" / name).is_file()
    report = json.loads((tmp_path / "a" / "report.json").read_text())
    assert report["model"]["checkpoint"] == str(ckpt.resolve()) and len(report["model"]["sha256"]) == 64
    assert all(m["available"] for m in report["metrics"].values())
    assert main(_recon(tmp_path / "b", nets, "--preset", "tiny", "--seed", "1", "--feature-net", nets["image"])) == 0
    capsys.readouterr()
    assert main(["table", str(tmp_path / "a" / "report.json"), str(tmp_path / "b" / "report.json")]) == 0
    text = capsys.readouterr().out
    assert "HYDRA-X ckpt" in text and "HYDRA-X tiny (random, seed 1)" in text


def test_video_protocol_via_the_command(tmp_path, nets):
    args = ["recon", "--data", "embedded", "--protocol", "video17x256", "--size", "32", "--frames", "5"]
    args += ["--max-samples", "2", "--out", str(tmp_path / "v"), "--feature-net", nets["video"], "--preset", "tiny"]
    assert main(args) == 0
    report = json.loads((tmp_path / "v" / "report.json").read_text())
    assert report["protocol"]["frames"] == 5 and report["metrics"]["rfvd"]["available"]
    assert not report["metrics"]["lpips"]["available"]  # no --lpips-weights: listed, with the reason
    assert (tmp_path / "v" / "samples.gif").is_file()


def test_real_features_without_weights_are_listed_or_exit_2(tmp_path, nets, monkeypatch, capsys):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setattr("hydra_x.eval.features.check_reachable", lambda url: (_ for _ in ()).throw(OSError("offline")))
    assert main(_recon(tmp_path / "r", nets, "--preset", "tiny")) == 0
    rfid = json.loads((tmp_path / "r" / "report.json").read_text())["metrics"]["rfid"]
    assert not rfid["available"] and "pt_inception-2015-12-05-6726825d.pth" in rfid["reason"]
    capsys.readouterr()
    assert main([*_recon(tmp_path / "s", nets, "--preset", "tiny"), "--require-all"]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("hydra-x eval:")]
    assert len(err) == 1 and err[0].startswith("hydra-x eval: error: rfid is unavailable and --require-all was given")
    assert "pt_inception-2015-12-05-6726825d.pth" in err[0] and "--fid-weights" in err[0]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["recon", "--data", "embedded", "--out", "o", "--protocol", "image512"], "invalid choice: 'image512'"),
        (["recon", "--data", "/no/such/dir", "--out", "o"], "--data /no/such/dir: no such folder"),
        (["recon", "--data", "embedded", "--out", "o", "--frames", "5"], "applies to video protocols only"),
        (["recon", "--data", "embedded", "--out", "o", "--model", "vae"], "--model takes diffusers:"),
        (["recon", "--data", "embedded", "--out", "o", "--model", "diffusers:x", "--ckpt", "c"], "not both"),
        (["recon", "--data", "embedded", "--out", "o", "--batch-size", "0"], "--batch-size must be at least 1"),
        (["recon", "--data", "embedded", "--out", "o", "--size", "40"], "not a multiple of the model's patch size 16"),
        (["recon", "--data", "embedded", "--out", "o", "--protocol", "video17x256", "--frames", "6"], "not 1 + k * 4"),
        (["table", "missing.json"], "cannot read the report missing.json"),
    ],
)
def test_user_errors_are_one_line_and_exit_2(args, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(args) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if not line.startswith("hydra-x: warning:")]
    assert len(err) == 1 and err[0].startswith("hydra-x eval: error:") and message in err[0], err


def test_empty_data_set_is_an_error(tmp_path, capsys):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "bad.png").write_bytes(b"junk")
    assert main(["recon", "--data", str(tmp_path / "d"), "--out", str(tmp_path / "o"), "--size", "32"]) == 2
    assert "no usable sample among 1 item" in capsys.readouterr().err


def test_recon_takes_a_training_run_folder_for_its_export(tmp_path, nets, capsys):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"steps": 10, "model": {}}))  # the training config, not a model's
    args = _recon(tmp_path / "a", nets, "--ckpt", str(run))
    assert main(args) == 2
    assert "is a training run without an export/ yet" in capsys.readouterr().err
    export = tiny().save_pretrained(run / "export")
    assert main(args) == 0
    report = json.loads((tmp_path / "a" / "report.json").read_text())
    assert report["model"]["checkpoint"] == str(export.resolve())
