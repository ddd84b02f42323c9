"""The web app's tab functions without a browser: outputs' shapes and types, the reconstruction's numbers against the
library path and the CLI, progress, every bad upload's message, and the next good request after a bad one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hydra_x.cli import main
from hydra_x.data.media import read_image, to_uint8
from hydra_x.data.video import read_video
from hydra_x.errors import InputError
from hydra_x.eval.metrics import FrameMetrics
from hydra_x.tokenizer.io import DEFAULT_CLIP_FRAMES, reconstruct_chunks, reconstruct_image
from hydra_x.web import tasks
from hydra_x.web.session import SessionFiles
from hydra_x.web.uploads import Limits

FAST = tasks.Sampling(steps=2, guidance=3.0, seed=0)


@pytest.fixture
def files(tmp_path: Path):
    session = SessionFiles(tmp_path)
    yield session
    session.cleanup()


class Calls:
    """A progress callback that records its calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, int | None, str]] = []

    def __call__(self, done: int, total: int | None, what: str) -> None:
        self.calls.append((done, total, what))


def test_image_reconstruction_is_the_library_path_and_prints_what_the_cli_prints(
    model, tiny_ckpt, uploads, files, tmp_path, capsys
):
    progress = Calls()
    r = tasks.reconstruct(model, uploads["image"], Limits(), files, progress)
    x = read_image(uploads["image"])
    y = reconstruct_image(model.tokenizer, x)
    expected = FrameMetrics()
    expected.add(x[:, None], y[:, None])
    assert r.kind == "image" and r.original.dtype == np.uint8 and r.original.shape == (48, 80, 3)
    np.testing.assert_array_equal(r.original, to_uint8(x))
    np.testing.assert_array_equal(r.reconstruction, to_uint8(y))
    assert (r.psnr, r.ssim) == (expected.psnr, expected.ssim) and 0 < r.ssim < 1
    assert progress.calls[-1] == (1, 1, "reconstruct")
    # `hydra-x reconstruct` with the checkpoint's tokenizer prints the same numbers.
    argv = ["reconstruct", str(uploads["image"]), str(tmp_path / "rec.png"), "--ckpt", str(tiny_ckpt / "tokenizer")]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert printed.startswith(expected.summary()) and r.summary.startswith(expected.summary())
    assert r.summary == f"{expected.summary()}  (image 80x48)"


def test_video_reconstruction_is_the_library_path(model, uploads, files):
    progress = Calls()
    r = tasks.reconstruct(model, uploads["video"], Limits(), files, progress)
    clip, _ = read_video(uploads["video"])
    expected = FrameMetrics()
    for chunk, y in reconstruct_chunks(model.tokenizer, clip.unbind(1), DEFAULT_CLIP_FRAMES, 32, 48):
        expected.add(chunk, y)
    assert r.kind == "video" and (r.psnr, r.ssim) == (expected.psnr, expected.ssim)
    assert "mean over 9 frames, 48x32 at 8 fps" in r.summary
    for path in (r.original, r.reconstruction):
        frames, fps = read_video(path)
        assert path.parent == files.folder and frames.shape == (3, 9, 32, 48) and fps == 8
    assert progress.calls == [(0, 1, "reconstruct"), (1, 1, "reconstruct")]


def test_a_long_video_is_read_up_to_the_frame_limit(model, uploads, files):
    r = tasks.reconstruct(model, uploads["video"], Limits(max_video_frames=5), files)
    assert "mean over 5 frames" in r.summary and "the first 5 frames only" in r.summary
    assert read_video(r.reconstruction)[0].shape[1] == 5


def test_text_to_image_and_video(model, files):
    progress = Calls()
    image = tasks.text_to_image(model, "a red circle", FAST, 64, 32, Limits(), progress)
    assert image.dtype == np.uint8 and image.shape == (64, 32, 3)
    assert progress.calls == [(1, 2, "generate"), (2, 2, "generate")]
    heun = Calls()
    tasks.text_to_image(model, "a red circle", tasks.Sampling(steps=3, sampler="heun"), 32, 32, Limits(), heun)
    assert [c[0] for c in heun.calls] == [1, 2, 3, 4, 5] and {c[1] for c in heun.calls} == {5}  # 2 x 3 - 1 calls
    video = tasks.text_to_video(model, "a green triangle", FAST, 32, 48, 5, Limits(), files, fps=4)
    frames, fps = read_video(video)
    assert video.suffix == ".mp4" and frames.shape == (3, 5, 32, 48) and fps == 4


def test_the_same_seed_gives_the_same_image(model):
    a, b = (tasks.text_to_image(model, "a blue square", FAST, 32, 32, Limits()) for _ in range(2))
    np.testing.assert_array_equal(a, b)


def test_edit_returns_the_source_as_the_model_sees_it_and_the_edit(model, uploads):
    source, edited = tasks.edit_image(model, uploads["image"], "make it blue", FAST, Limits(), size=32)
    assert source.shape == edited.shape == (32, 48, 3) and edited.dtype == np.uint8  # 48x80 -> short side 32, crop


def test_chat_puts_the_picture_in_the_first_user_turn(model, uploads, monkeypatch):
    seen = []

    def spy(messages, **kwargs):
        seen.append(([dict(m) for m in messages], kwargs))
        return f"answer {len(seen)}"

    monkeypatch.setattr(model, "chat", spy)
    options = tasks.ChatOptions(max_new_tokens=4)
    reply, turns = tasks.chat_reply(model, [], "What is it?", uploads["image"], options, Limits())
    reply2, turns2 = tasks.chat_reply(model, turns, "And the colour?", uploads["image"], options, Limits())
    assert (reply, reply2) == ("answer 1", "answer 2") and len(turns2) == 4
    assert turns2[0] == {"role": "user", "content": "What is it?"}  # the conversation stays plain text
    messages, kwargs = seen[1]
    assert messages[0]["content"] == "<image>\nWhat is it?" and messages[2]["content"] == "And the colour?"
    assert kwargs["image"].shape == (3, 64, 96) and kwargs["video"] is None and kwargs["top_p"] is None
    tasks.chat_reply(model, [], "Which way?", uploads["video"], options, Limits(), size=32)
    messages, kwargs = seen[2]
    assert messages[0]["content"].startswith("<video>\n") and kwargs["video"].shape == (3, 5, 32, 48)
    # A model whose image understanding learnt another size is asked at that size; clips at its image_size, 64.
    monkeypatch.setattr(model, "config", model.config.replace(understanding_image_size=32))
    tasks.chat_reply(model, [], "What is it?", uploads["image"], options, Limits())
    assert seen[3][1]["image"].shape == (3, 32, 48)
    tasks.chat_reply(model, [], "Which way?", uploads["video"], options, Limits())
    assert seen[4][1]["video"].shape == (3, 5, 64, 96)


def test_chat_runs_the_model_with_and_without_a_picture(model, uploads):
    options = tasks.ChatOptions(max_new_tokens=3)
    for media in (None, uploads["image"], uploads["video"]):
        reply, turns = tasks.chat_reply(model, [], "What is it?", media, options, Limits())
        assert isinstance(reply, str) and turns[-1] == {"role": "assistant", "content": reply}


BAD = [
    ("text_png", "text.png: not a readable image"),
    ("empty_png", "empty.png: empty file"),
    ("huge_png", "huge.png: the image is 20000x20000 = 400,000,000 pixels"),
    ("truncated_mp4", "bad_truncated.mp4: .*truncated or corrupt"),
    ("text_mp4", "bad_text.mp4: not a readable video"),
]


@pytest.mark.parametrize(("name", "message"), BAD)
def test_a_bad_upload_is_a_clear_error_and_the_next_request_works(model, uploads, files, name, message):
    with pytest.raises(InputError, match=message) as err:
        tasks.reconstruct(model, uploads[name], Limits(), files)
    assert str(uploads[name].parent) not in str(err.value)  # the upload's name, not the server's temporary path
    assert "\n" not in str(err.value)
    assert tasks.reconstruct(model, uploads["image"], Limits(), files).psnr > 0


def test_the_app_limits_come_before_decoding(model, uploads, files):
    with pytest.raises(InputError, match=r"astronaut.png: 0\.0 MB, over this app's upload limit of 0\.0001 MB"):
        tasks.reconstruct(model, uploads["image"], Limits(max_upload_bytes=100), files)
    with pytest.raises(InputError, match="the image is 80x48 = 3,840 pixels, over this app's limit of 1,000"):
        tasks.reconstruct(model, uploads["image"], Limits(max_image_pixels=1000), files)
    with pytest.raises(InputError, match="video frame is 48x32 = 1,536 pixels, over this app's limit of 1,000"):
        tasks.reconstruct(model, uploads["video"], Limits(max_video_pixels=1000), files)
    with pytest.raises(InputError, match="the image is 20000x20000"):
        tasks.chat_reply(model, [], "What is it?", uploads["huge_png"], tasks.ChatOptions(), Limits())
    with pytest.raises(InputError, match="clip.mp4: not an image file"):
        tasks.edit_image(model, uploads["video"], "make it blue", FAST, Limits())


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda m, f: tasks.text_to_image(m, "  ", FAST, 32, 32, Limits()), "the prompt is empty"),
        (lambda m, f: tasks.text_to_image(m, "x" * 3000, FAST, 32, 32, Limits()), "3,000 characters"),
        (lambda m, f: tasks.text_to_image(m, "an <image> here", FAST, 32, 32, Limits()), "reserves for pictures"),
        (lambda m, f: tasks.text_to_image(m, "a", FAST, 4096, 32, Limits()), "1 to 1024 pixels"),
        (lambda m, f: tasks.text_to_image(m, "a", FAST, 40, 32, Limits()), "multiples of the patch size 16"),
        (lambda m, f: tasks.text_to_image(m, "a", tasks.Sampling(steps=0), 32, 32, Limits()), "steps must be 1 to"),
        (lambda m, f: tasks.text_to_video(m, "a", FAST, 32, 32, 6, Limits(), f), r"1 \+ k \* 4 frames"),
        (lambda m, f: tasks.text_to_video(m, "a", FAST, 32, 32, 129, Limits(), f), "at most 65 frames"),
        (lambda m, f: tasks.chat_reply(m, [], "hi", None, tasks.ChatOptions(top_p=2.0), Limits()), "top-p"),
        (lambda m, f: tasks.chat_reply(m, [], "hi", None, tasks.ChatOptions(seed=2**64), Limits()), "the seed"),
        (lambda m, f: tasks.text_to_image(m, "a", tasks.Sampling(seed=-1), 32, 32, Limits()), "the seed"),
        (lambda m, f: tasks.edit_image(m, "x.png", "a", FAST, Limits(), size=5000), "the size must be 16"),
        (lambda m, f: tasks.chat_reply(m, [], "hi", None, tasks.ChatOptions(max_new_tokens=10**4), Limits()), "tokens"),
    ],
)
def test_bad_options_are_clear_errors(model, files, call, message):
    with pytest.raises(InputError, match=message):
        call(model, files)


def test_defaults_are_the_clis():
    from hydra_x.cli import build_parser

    parser = build_parser()
    gen = parser.parse_args(["generate", "a red circle"])
    assert tasks.Sampling() == tasks.Sampling(gen.steps, gen.guidance, gen.sampler, gen.seed)
    assert gen.fps == tasks.GENERATED_FPS and gen.shift is None  # the app never sets a shift: the model's own
    chat = parser.parse_args(["chat", "What is it?"])
    assert tasks.ChatOptions() == tasks.ChatOptions(chat.max_new_tokens, chat.top_p, chat.temperature, chat.seed)
