"""The Gradio page: five tabs wired to hydra_x.web.tasks, and its launch. The only module that imports Gradio.

Choices a server needs, each for a reason:
- one model for everyone, and per-session everything else: the model is read-only and shared; uploads arrive as
  Gradio's per-request file paths, the chat conversation and the session's output folder live in ``gr.State``
  (one copy per browser session, the folder removed when the session ends); nothing user-made is kept at
  module level;
- model work runs one request at a time (one ``concurrency_id``): sampling switches the LLM's attention
  implementation for its duration, and one CPU / GPU is better used by one job than by several that share it;
  the queue holds at most ``MAX_QUEUE`` waiting requests, beyond that a request is refused, not stored;
- errors: an :class:`~hydra_x.errors.InputError` (a bad upload, a bad option) shows its one-line message in the
  page (``gr.Error``); anything else shows one line that says it is a bug, with the traceback in the server's log;
  either way the server keeps serving. Messages are HTML-escaped, since Gradio renders them as HTML and they can
  quote a file name the user chose;
- the page binds to 127.0.0.1 unless told otherwise, and files over the byte limit are refused by Gradio during
  the upload already (``max_file_size``), then again by the tasks (for calls through the API).
"""

from __future__ import annotations

import functools
import html
import inspect
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hydra_x.errors import InputError, out_of_memory
from hydra_x.nn.flow import SAMPLERS
from hydra_x.web import tasks
from hydra_x.web.session import SessionFiles
from hydra_x.web.uploads import Limits

log = logging.getLogger(__name__)
MODEL_JOBS = "model"  # the concurrency id every event that runs the model shares
MAX_QUEUE = 32
ERROR_SECONDS = 30  # how long an error stays on the page
# Small pictures (a 64 px reconstruction) fill their box, pixels kept sharp: what a comparison needs.
CSS = ".hx-picture img { width: 100%; height: 100%; object-fit: contain; image-rendering: pixelated; }"


@dataclass(frozen=True)
class Page:
    """What every tab's wiring needs: the served model, the limits, and the session's folder (a gr.State)."""

    model: Any
    limits: Limits
    files: Any  # gr.State holding a SessionFiles

    @property
    def patch(self) -> int:
        return self.model.config.tokenizer.patch_size

    @property
    def size(self) -> int:
        return self.model.config.image_size


def guarded(fn: Callable) -> Callable:
    """``fn`` with the app's error contract: a user's problem or a bug becomes a message on the page (gr.Error)."""
    import gradio as gr

    @functools.wraps(fn)
    def run(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except InputError as err:
            raise gr.Error(_escaped(err), duration=ERROR_SECONDS, print_exception=False) from None
        except Exception as err:
            if out_of_memory(err):  # a size that does not fit, not a bug; the next request is served as usual
                log.warning("hydra-x serve: out of memory in %s: %s", fn.__name__, err)
                message = f"out of memory: {err} (try a smaller picture, a shorter clip or fewer samples)"
                raise gr.Error(_escaped(message), duration=ERROR_SECONDS, print_exception=False) from None
            log.exception("hydra-x serve: unexpected error in %s", fn.__name__)
            message = f"unexpected {type(err).__name__}: {err} (this is a bug; the server's log has the traceback)"
            raise gr.Error(_escaped(message), duration=ERROR_SECONDS, print_exception=False) from None

    return run


def _escaped(message: object) -> str:
    return html.escape(" ".join(str(message).split()))


def _reporter(progress) -> tasks.Progress:
    """tasks' progress callback -> Gradio's progress bar."""
    return lambda done, total, what: progress((done, total), desc=what)


def _run(event, fn: Callable, inputs: list, outputs: list) -> None:
    """Wire ``fn`` (guarded) to ``event``; every model job shares one slot."""
    event(guarded(fn), inputs=inputs, outputs=outputs, concurrency_limit=1, concurrency_id=MODEL_JOBS)


def _sampling_controls(page: Page) -> list:
    """Steps, guidance, sampler and seed, with the CLI's defaults (tasks.Sampling's)."""
    import gradio as gr

    d = tasks.Sampling()
    with gr.Accordion("Sampling", open=False):
        with gr.Row():
            steps = gr.Slider(1, page.limits.max_steps, value=d.steps, step=1, label="Steps")
            guidance = gr.Slider(1.0, 15.0, value=d.guidance, step=0.5, label="Guidance (1: off)")
        with gr.Row():
            sampler = gr.Radio(list(SAMPLERS), value=d.sampler, label="Sampler")
            seed = gr.Number(value=d.seed, precision=0, label="Seed")
    return [steps, guidance, sampler, seed]


def _sampling(steps, guidance, sampler, seed) -> tasks.Sampling:
    return tasks.Sampling(int(steps), float(guidance), str(sampler), int(seed or 0))


def _side_slider(page: Page, label: str, value: int | None = None):
    """A slider of picture sides, at ``value`` (default: the model's image_size)."""
    import gradio as gr

    side = page.limits.max_output_side
    return gr.Slider(page.patch, side, value=min(value or page.size, side), step=page.patch, label=label)


def _header(model, checkpoint: str | None) -> str:
    cfg = model.config
    where = f"`{checkpoint}`" if checkpoint else "a model built in Python"
    llm_params = sum(p.numel() for p in model.llm.parameters()) / 1e6
    return (
        f"# HYDRA-X\nServing {where} on {model.device.type} ({str(model.dtype).removeprefix('torch.')}): "
        f"tokenizer width {cfg.tokenizer.width}, patch {cfg.tokenizer.patch_size}, {cfg.tokenizer.decoder} "
        f"decoder; LLM {type(model.llm).__name__} ({llm_params:.1f}M parameters); images of {cfg.image_size} px "
        f"and clips of {cfg.clip_frames} frames by default."
    )


# ---------------------------------------------------------------------------- the tabs


def _reconstruct_tab(page: Page) -> None:
    import gradio as gr

    bar = gr.Progress()  # Gradio's marker: each call gets its own tracker
    gr.Markdown(
        "Encode an image or a video with the checkpoint's tokenizer and decode it back; PSNR / SSIM as "
        f"`hydra-x reconstruct` prints them. Videos: the first {page.limits.max_video_frames} frames at most."
    )
    with gr.Row():
        upload = gr.File(label="Image or video", type="filepath", elem_id="recon-upload")
        with gr.Column():
            run = gr.Button("Reconstruct", variant="primary", elem_id="recon-run")
            metrics = gr.Textbox(label="PSNR / SSIM", interactive=False, elem_id="recon-metrics")
    with gr.Row():
        image_in = _picture("image", "Original", elem_id="recon-original")
        image_out = _picture("image", "Reconstruction", elem_id="recon-output")
    with gr.Row():
        video_in = _picture("video", "Original (the frames read)", visible=False, elem_id="recon-original-video")
        video_out = _picture("video", "Reconstruction", visible=False, elem_id="recon-output-video")

    def reconstruct(path, files: SessionFiles, progress=bar):
        if not path:
            raise InputError("upload an image or a video first")
        r = tasks.reconstruct(page.model, path, page.limits, files, _reporter(progress))
        image, video = r.kind == "image", r.kind == "video"
        return (
            r.summary,
            gr.update(value=r.original if image else None, visible=image),
            gr.update(value=r.reconstruction if image else None, visible=image),
            gr.update(value=str(r.original) if video else None, visible=video),
            gr.update(value=str(r.reconstruction) if video else None, visible=video),
            files,
        )

    outputs = [metrics, image_in, image_out, video_in, video_out, page.files]
    _run(run.click, reconstruct, [upload, page.files], outputs)


def _text_to_image_tab(page: Page) -> None:
    import gradio as gr

    bar = gr.Progress()  # Gradio's marker: each call gets its own tracker
    prompt = gr.Textbox(label="Prompt", value="two red circles left of a blue square", elem_id="t2i-prompt")
    with gr.Row():
        height, width = _side_slider(page, "Height"), _side_slider(page, "Width")
    controls = _sampling_controls(page)
    run = gr.Button("Generate", variant="primary", elem_id="t2i-run")
    info = gr.Textbox(label="Done", interactive=False, elem_id="t2i-info")
    image = _picture("image", "Generated", elem_id="t2i-output")

    def generate(text, h, w, steps, guidance, sampler, seed, progress=bar):
        start, options = time.perf_counter(), _sampling(steps, guidance, sampler, seed)
        out = tasks.text_to_image(page.model, text, options, int(h), int(w), page.limits, _reporter(progress))
        return _done(out.shape[1], out.shape[0], options, start), out

    _run(run.click, generate, [prompt, height, width, *controls], [info, image])


def _text_to_video_tab(page: Page) -> None:
    import gradio as gr

    bar = gr.Progress()  # Gradio's marker: each call gets its own tracker
    cfg = page.model.config
    factor = cfg.tokenizer.temporal_factor
    prompt = gr.Textbox(label="Prompt", value="a green triangle moving right", elem_id="t2v-prompt")
    with gr.Row():
        height, width = _side_slider(page, "Height"), _side_slider(page, "Width")
    with gr.Row():
        top = page.limits.max_output_frames
        frames = gr.Slider(1 + factor, top, value=min(cfg.clip_frames, top), step=factor, label="Frames (1 + 4k)")
        fps = gr.Slider(1, 60, value=tasks.GENERATED_FPS, step=1, label="Frames per second")
    controls = _sampling_controls(page)
    run = gr.Button("Generate", variant="primary", elem_id="t2v-run")
    info = gr.Textbox(label="Done", interactive=False, elem_id="t2v-info")
    video = _picture("video", "Generated", elem_id="t2v-output")

    def generate(text, h, w, n, rate, steps, guidance, sampler, seed, files: SessionFiles, progress=bar):
        start, options = time.perf_counter(), _sampling(steps, guidance, sampler, seed)
        out = tasks.text_to_video(
            page.model, text, options, int(h), int(w), int(n), page.limits, files, float(rate), _reporter(progress)
        )
        return _done(int(w), int(h), options, start, f", {int(n)} frames"), str(out), files

    _run(run.click, generate, [prompt, height, width, frames, fps, *controls, page.files], [info, video, page.files])


def _edit_tab(page: Page) -> None:
    import gradio as gr

    bar = gr.Progress()  # Gradio's marker: each call gets its own tracker
    with gr.Row():
        upload = gr.File(label="Image", type="filepath", elem_id="edit-upload")
        with gr.Column():
            instruction = gr.Textbox(label="Instruction", value="make the red circle blue", elem_id="edit-instruction")
            size = _side_slider(page, "Size (short side; the image is resized and centre-cropped)")
    controls = _sampling_controls(page)
    run = gr.Button("Edit", variant="primary", elem_id="edit-run")
    info = gr.Textbox(label="Done", interactive=False, elem_id="edit-info")
    with gr.Row():
        source = _picture("image", "Source (as the model sees it)", elem_id="edit-source")
        edited = _picture("image", "Edited", elem_id="edit-output")

    def edit(path, text, short, steps, guidance, sampler, seed, progress=bar):
        if not path:
            raise InputError("upload an image first")
        start, options = time.perf_counter(), _sampling(steps, guidance, sampler, seed)
        src, out = tasks.edit_image(page.model, path, text, options, page.limits, int(short), _reporter(progress))
        return _done(out.shape[1], out.shape[0], options, start), src, out

    _run(run.click, edit, [upload, instruction, size, *controls], [info, source, edited])


def _chat_tab(page: Page) -> None:
    import gradio as gr

    cfg, limits = page.model.config, page.limits
    factor = cfg.tokenizer.temporal_factor
    with gr.Row():
        media = gr.File(label="Image or video (optional)", type="filepath", elem_id="chat-upload")
        about = gr.Textbox(label="About", value=_about(None), interactive=False, elem_id="chat-about")
    chatbot = gr.Chatbot(label="Conversation", elem_id="chat-history", **_chatbot_options())
    message = gr.Textbox(label="Message", placeholder="What colour is the circle?", elem_id="chat-message")
    with gr.Row():
        send = gr.Button("Send", variant="primary", elem_id="chat-send")
        clear = gr.Button("Clear the conversation", elem_id="chat-clear")
    d = tasks.ChatOptions()
    with gr.Accordion("Options", open=False):
        with gr.Row():
            max_new = gr.Slider(1, limits.max_new_tokens, value=d.max_new_tokens, step=1, label="Max new tokens")
            sample = gr.Checkbox(value=d.top_p is not None, label="Sample (top-p); off: greedy")
            top_p = gr.Slider(0.05, 1.0, value=d.top_p or 0.9, step=0.05, label="Top-p")
            temperature = gr.Slider(0.1, 2.0, value=d.temperature, step=0.1, label="Temperature")
            seed = gr.Number(value=d.seed, precision=0, label="Seed")
        with gr.Row():
            size = _side_slider(page, "Size (short side the picture is resized to)", cfg.read_size)  # follows uploads
            top = limits.max_video_frames
            frames = gr.Slider(1 + factor, top, value=min(cfg.clip_frames, top), step=factor, label="Video frames read")
    conversation = gr.State([])  # this session's turns, plain text: the placeholder is added per call

    def reply(turns, text, path, n, sampled, p, temp, seed_, short, count):
        options = tasks.ChatOptions(int(n), float(p) if sampled else None, float(temp), int(seed_ or 0))
        _, turns = tasks.chat_reply(page.model, turns, text, path, options, limits, int(short), int(count))
        return list(turns), turns, ""

    inputs = [conversation, message, media, max_new, sample, top_p, temperature, seed, size, frames]
    for event in (send.click, message.submit):
        _run(event, reply, inputs, [chatbot, conversation, message])

    def restart(path):  # a new upload starts a new conversation, its size slider at the model's size for its kind
        return [], [], _about(path), min(_chat_side(cfg, path), page.limits.max_output_side)

    media.change(restart, [media], [chatbot, conversation, about, size])
    clear.click(lambda: ([], []), None, [chatbot, conversation])
    if hasattr(chatbot, "clear"):  # the chatbot's own bin icon must forget the conversation too
        chatbot.clear(lambda: [], None, conversation)


def _chat_side(cfg, path) -> int:
    """The side the model reads ``path`` at: a video at its image_size (clips), else its understanding size."""
    from pathlib import Path

    from hydra_x.data.inputs import media_kind

    return cfg.chat_side(media_kind(Path(path)) if path else "image")


def _about(path) -> str:
    if not path:
        return "Text only: upload an image or a video to ask about it."
    from pathlib import Path

    from hydra_x.data.inputs import media_kind

    return f"Asking about {Path(path).name} ({media_kind(Path(path))}); a new upload starts a new conversation."


def supported(fn: Callable, **options) -> dict:
    """``options`` less those ``fn`` does not take: the app runs on Gradio 5 and 6, whose signatures differ."""
    parameters = inspect.signature(fn).parameters
    return {k: v for k, v in options.items() if k in parameters}


def _no_share(cls: type, buttons: list[str]) -> dict:
    """No share button (it would send the picture or the chat to Hugging Face): ``buttons`` where the component
    takes a list (Gradio 6, late 5), else the older flag."""
    takes_list = "buttons" in inspect.signature(cls.__init__).parameters
    return {"buttons": buttons} if takes_list else {"show_share_button": False}


def _chatbot_options() -> dict:
    """Role / content dicts (Gradio 5 needs type="messages"; Gradio 6 has only those), no kept tags, no sharing."""
    import gradio as gr

    # allow_tags=False: tags in the model's text are sanitised like any HTML, not kept (Gradio 6's default).
    options = supported(gr.Chatbot.__init__, type="messages", allow_tags=False)
    return {**options, **_no_share(gr.Chatbot, ["copy", "copy_all"])}


def _picture(kind: str, label: str, **options):
    """An output image or video: shown 320 px high (a 64 px result is scaled up), with no share button (which
    would send it to Hugging Face)."""
    import gradio as gr

    cls = gr.Image if kind == "image" else gr.Video
    hidden = _no_share(cls, ["download", "fullscreen"] if kind == "image" else ["download"])
    picture = {"format": "png"} if kind == "image" else {}
    return cls(label=label, height=320, interactive=False, elem_classes=["hx-picture"], **picture, **hidden, **options)


def _done(width: int, height: int, options: tasks.Sampling, start: float, extra: str = "") -> str:
    return (
        f"{width}x{height}{extra}, {options.steps} {options.sampler} steps, guidance {options.guidance:g}, "
        f"seed {options.seed}: {time.perf_counter() - start:.1f} s"
    )


# ---------------------------------------------------------------------------- the page


def build_app(model, limits: Limits | None = None, checkpoint: str | None = None, files_root: str | None = None):
    """The gr.Blocks page over ``model`` (a HydraX in eval mode); ``checkpoint`` is only named in the header;
    ``files_root``: where the sessions' folders go (default: the system's temporary folder)."""
    import gradio as gr

    limits = limits or Limits()
    style = {} if "css" in inspect.signature(gr.Blocks.launch).parameters else {"css": CSS}  # Gradio 5: here
    with gr.Blocks(title="HYDRA-X", analytics_enabled=False, delete_cache=(3600, 3600), **style) as demo:
        gr.Markdown(_header(model, checkpoint))
        # Copied for each session (SessionFiles.__deepcopy__), removed an hour after its last use or its close.
        files = gr.State(SessionFiles(files_root), time_to_live=3600, delete_callback=SessionFiles.cleanup)
        page = Page(model, limits, files)
        with gr.Tabs():
            for name, tab in (
                ("Reconstruct", _reconstruct_tab),
                ("Text to image", _text_to_image_tab),
                ("Text to video", _text_to_video_tab),
                ("Chat", _chat_tab),
                ("Edit", _edit_tab),
            ):
                with gr.Tab(name, id=name.lower().replace(" ", "-")):
                    tab(page)
    demo.queue(max_size=MAX_QUEUE, default_concurrency_limit=1)
    return demo


def launch_app(demo, host: str = "127.0.0.1", port: int = 7860, limits: Limits | None = None, block: bool = True):
    """Serve ``demo`` on ``host``:``port`` (no share link, no telemetry); ``block``: until ^C / SIGTERM."""
    limits = limits or Limits()
    # run_history=False (Gradio 6): no copy of uploads and results in the browser's storage, which may be shared.
    options = supported(demo.launch, ssr_mode=False, run_history=False, css=CSS)
    return demo.launch(
        server_name=host,
        server_port=port,
        share=False,
        max_file_size=limits.max_upload_bytes,
        prevent_thread_lock=not block,
        **options,
    )
