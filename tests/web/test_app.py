"""The page and the command without a browser: ``hydra-x serve``'s one-line errors (no Gradio, no demo checkpoint),
Gradio imported only by the app, the error contract of every event, per-session state, and a real launch on
127.0.0.1 answering HTTP."""

from __future__ import annotations

import ast
import copy
import dataclasses
import importlib
import pkgutil
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
import torch

import hydra_x.web
from hydra_x.cli import main
from hydra_x.errors import InputError
from hydra_x.web.checkpoint import DEFAULT_DEMO_CHECKPOINT
from hydra_x.web.session import SessionFiles


def one_error_line(capsys: pytest.CaptureFixture) -> str:
    err = [line for line in capsys.readouterr().err.strip().splitlines() if not line.startswith("hydra-x: note: ")]
    assert len(err) == 1 and err[0].startswith("hydra-x: error: "), err
    return err[0]


def test_serve_without_gradio_says_how_to_install_it(capsys, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "gradio", None)  # `import gradio` raises ImportError
    assert main(["serve", "--ckpt", str(tmp_path / "missing")]) == 2  # before the checkpoint is even looked at
    assert "pip install 'hydra-x[web]'" in one_error_line(capsys)


def test_serve_without_the_demo_checkpoint_names_it_and_the_fix(capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    assert main(["serve"]) == 2
    line = one_error_line(capsys)
    assert str(DEFAULT_DEMO_CHECKPOINT) in line and "run 'hydra-x demo' first" in line and "--ckpt" in line


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--ckpt", "{tmp}"], "cannot load the HydraX checkpoint"),
        (["--max-video-frames", "0"], "max_video_frames must be a positive whole number"),
        (["--port", "70000"], "--port must be 1 to 65535"),
    ],
)
def test_serve_option_errors_are_one_line(capsys, tmp_path, argv, message):
    assert main(["serve", *(a.format(tmp=tmp_path) for a in argv)]) == 2
    assert message in one_error_line(capsys)


def test_serve_on_a_busy_port_is_one_line_and_leaves_the_pixel_limit_as_it_was(capsys, tiny_ckpt, gradio):
    from hydra_x.data.media import max_image_pixels

    before = max_image_pixels()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["serve", "--ckpt", str(tiny_ckpt), "--port", str(port)]) == 2
    assert f"cannot serve on 127.0.0.1:{port}: the port is in use" in one_error_line(capsys)
    assert max_image_pixels() == before


def test_the_package_and_the_other_commands_never_import_gradio(gradio):
    code = (
        "import sys, hydra_x, hydra_x.cli, hydra_x.web.tasks, hydra_x.web.app, hydra_x.cli.serve\n"
        "hydra_x.cli.build_parser()\n"
        "assert 'gradio' not in sys.modules, 'gradio was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_no_module_of_the_web_package_holds_mutable_state():
    """What one user sends must live in their session, never in a module: no module-level list, dict, set or
    mutable dataclass instance in hydra_x.web (constants and frozen dataclasses only)."""
    for info in pkgutil.iter_modules(hydra_x.web.__path__, "hydra_x.web."):
        module = importlib.import_module(info.name)
        for name in _assigned_at_top_level(Path(module.__file__)):
            value = getattr(module, name)
            mutable = isinstance(value, (list, dict, set, bytearray)) or (
                dataclasses.is_dataclass(value) and not type(value).__dataclass_params__.frozen
            )
            assert not mutable, f"{info.name}.{name} is module-level mutable state"


def _assigned_at_top_level(path: Path) -> set[str]:
    """Names a module binds itself with ``=`` at top level (not what it imports, defines or decorates)."""
    names = set()
    for node in ast.parse(path.read_text()).body:
        targets = node.targets if isinstance(node, ast.Assign) else []
        targets = [node.target] if isinstance(node, ast.AnnAssign) else targets
        names.update(t.id for t in targets if isinstance(t, ast.Name) and not t.id.startswith("__"))
    return names


def test_each_session_gets_its_own_folder(tmp_path):
    """Gradio deep-copies a gr.State's initial value per session: each copy writes to its own folder."""
    initial = SessionFiles(tmp_path)
    a, b = copy.deepcopy(initial), copy.deepcopy(initial)
    path_a, path_b = a.new_path(".mp4"), b.new_path(".mp4")
    assert initial.folder is None and path_a.parent != path_b.parent and a.new_path(".mp4") != path_a
    path_a.write_bytes(b"a")
    path_b.write_bytes(b"b")
    a.cleanup()
    assert not path_a.parent.exists() and path_b.read_bytes() == b"b"
    assert a.new_path(".png").parent.is_dir()  # usable again after its folder went
    b.cleanup()
    a.cleanup()


def test_guarded_events_turn_errors_into_escaped_messages(gradio):
    from hydra_x.web.app import guarded

    def user_problem():
        raise InputError("<b>x.png</b>: not a readable image")

    def bug():
        raise RuntimeError("boom")

    with pytest.raises(gradio.Error) as err:
        guarded(user_problem)()
    assert err.value.message == "&lt;b&gt;x.png&lt;/b&gt;: not a readable image"
    with pytest.raises(gradio.Error, match="unexpected RuntimeError: boom \\(this is a bug"):
        guarded(bug)()

    def too_big():
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 400.00 MiB")

    with pytest.raises(gradio.Error) as err:
        guarded(too_big)()
    assert err.value.message.startswith("out of memory: CUDA out of memory. Tried to allocate 400.00 MiB (try a")
    assert "bug" not in err.value.message


def test_the_page_wires_every_model_job_to_one_slot(model, gradio):
    from hydra_x.web.app import MODEL_JOBS, build_app

    demo = build_app(model)
    fns = list(demo.fns.values()) if isinstance(demo.fns, dict) else list(demo.fns)
    jobs = [f for f in fns if f.concurrency_id == MODEL_JOBS]
    names = {f.name for f in jobs}
    assert {"reconstruct", "generate", "edit", "reply"} <= names and all(f.concurrency_limit == 1 for f in jobs)
    assert all(f.tracks_progress for f in jobs if f.name != "reply")  # gr.Progress seen through the guard
    labels = {block.label for block in demo.blocks.values() if isinstance(block, gradio.Tab)}
    assert labels == {"Reconstruct", "Text to image", "Text to video", "Chat", "Edit"}


def test_the_chat_tabs_size_starts_at_the_models_reading_size(model, gradio, monkeypatch):
    from hydra_x.web.app import build_app

    monkeypatch.setattr(model, "config", model.config.replace(understanding_image_size=32))
    demo = build_app(model)
    sizes = {b.label: b.value for b in demo.blocks.values() if isinstance(b, gradio.Slider) and "Size" in b.label}
    assert sizes == {
        "Size (short side the picture is resized to)": 32,  # chat
        "Size (short side; the image is resized and centre-cropped)": 64,  # edit: the generation size
    }


def test_a_chat_upload_moves_the_size_to_the_models_size_for_its_kind(model, gradio, monkeypatch, tmp_path):
    from hydra_x.web.app import build_app

    monkeypatch.setattr(model, "config", model.config.replace(understanding_image_size=32))
    demo = build_app(model)
    fns = list(demo.fns.values()) if isinstance(demo.fns, dict) else list(demo.fns)
    (restart,) = [f for f in fns if f.name == "restart"]
    slider = restart.outputs[-1]
    assert isinstance(slider, gradio.Slider) and slider.label == "Size (short side the picture is resized to)"
    picture, clip = tmp_path / "a.png", tmp_path / "a.mp4"  # only the names are read
    assert restart.fn(str(picture))[-1] == 32  # images are read at the understanding size
    assert restart.fn(str(clip))[-1] == 64  # clips at the image size, as the model was trained
    assert restart.fn(None)[:3] == ([], [], "Text only: upload an image or a video to ask about it.")


def test_launch_binds_to_localhost_and_serves_the_page(model, gradio):
    from hydra_x.web.app import build_app, launch_app

    demo = build_app(model, checkpoint="tiny")
    try:
        launch_app(demo, port=_free_port(), block=False)
        assert demo.server_name == "127.0.0.1"
        with urllib.request.urlopen(demo.local_url, timeout=30) as page:
            assert page.status == 200 and "HYDRA-X" in page.read().decode()
    finally:
        demo.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_binds_to_localhost_by_default():
    from hydra_x.cli import build_parser

    args = build_parser().parse_args(["serve"])
    assert args.host == "127.0.0.1" and args.ckpt is None
    assert Path(DEFAULT_DEMO_CHECKPOINT).parts[:2] == ("runs", "demo")
