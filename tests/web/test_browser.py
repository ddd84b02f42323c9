"""``hydra-x serve`` driven by a real headless Chromium (Playwright): uploads, reconstruction numbers, generation,
chat, editing, bad files shown as messages while the server keeps serving, and two sessions kept apart.

Needs Debian's ``chromium`` (``apt-get install -y --no-install-recommends chromium``) and the ``web`` extra
(Gradio and Playwright); Playwright's own browser download (``playwright install``) is not used. Without them
the tests skip, except under CI=true, where they fail: CI must not pass by skipping them. Screenshots go to
``$HYDRA_X_TEST_ARTIFACTS`` (else a pytest temporary folder); their paths are printed (``pytest -rP`` shows them).
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from hydra_x.web import tasks
from hydra_x.web.session import SessionFiles
from hydra_x.web.uploads import Limits
from tests.web.optional import skip_or_fail

try:
    from playwright.sync_api import expect, sync_playwright
except ImportError:  # require_browser() skips the tests (or fails them under CI=true)
    expect = sync_playwright = None

ARTIFACTS_ENV = "HYDRA_X_TEST_ARTIFACTS"
START_SECONDS = 180  # importing torch, transformers and Gradio and loading the model, on a slow CI machine
WAIT_MS = 60_000  # one model job in the page


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def require_browser() -> None:
    """Skip without Chromium, Playwright or Gradio; fail instead under CI=true."""
    missing = []
    if chromium() is None:
        missing.append("no chromium on PATH (apt-get install -y --no-install-recommends chromium)")
    for module, how in (("playwright", "pip install playwright"), ("gradio", "pip install 'hydra-x[web]'")):
        if importlib.util.find_spec(module) is None:
            missing.append(f"no {module} ({how})")
    if missing:
        skip_or_fail("the browser tests cannot run: " + "; ".join(missing))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def tools() -> None:
    require_browser()


@dataclass(frozen=True)
class Server:
    url: str
    tmp: Path  # the server's TMPDIR: its own folder of session folders, and Gradio's cache


@pytest.fixture(scope="module")
def server(tools: None, tiny_ckpt: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """``hydra-x serve --ckpt TINY`` in a child process on a free port of 127.0.0.1, with its own TMPDIR.

    Stopped by SIGTERM, it must exit as the error contract says (143) and leave no session folder behind."""
    folder = tmp_path_factory.mktemp("serve")
    (folder / "tmp").mkdir()
    port = free_port()
    argv = [sys.executable, "-m", "hydra_x.cli", "serve", "--ckpt", str(tiny_ckpt), "--port", str(port)]
    argv += ["--device", "cpu"]
    env = {**os.environ, "TMPDIR": str(folder / "tmp"), "GRADIO_ANALYTICS_ENABLED": "False", "HYDRA_X_DEBUG": "0"}
    env.pop("GRADIO_TEMP_DIR", None)
    with open(folder / "serve.log", "w") as log:
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=folder, env=env)
    url = f"http://127.0.0.1:{port}/"
    try:
        _wait_until_up(url, process, folder / "serve.log")
        yield Server(url, folder / "tmp")
    finally:
        process.terminate()  # SIGTERM: the command's error contract unwinds and exits
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    log = (folder / "serve.log").read_text()
    assert f"Running on local URL:  {url.rstrip('/')}" in log and process.returncode == 143, log
    assert list((folder / "tmp").glob("hydra-x-serve-*")) == []


def _wait_until_up(url: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"hydra-x serve exited with {process.returncode}:\n{log.read_text()}", pytrace=False)
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"hydra-x serve did not answer within {START_SECONDS} s:\n{log.read_text()}", pytrace=False)


@pytest.fixture(scope="module")
def browser(server: Server):
    with sync_playwright() as p:
        # --no-sandbox: CI containers run as root, where Chromium's sandbox refuses to start.
        b = p.chromium.launch(executable_path=chromium(), args=["--no-sandbox", "--disable-dev-shm-usage"])
        yield b
        b.close()


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = Path(os.environ.get(ARTIFACTS_ENV) or tmp_path_factory.mktemp("browser-artifacts"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def open_page(browser, url: str):
    page = browser.new_context(viewport={"width": 1280, "height": 1100}).new_page()
    page.set_default_timeout(WAIT_MS)
    page.goto(url)
    page.locator("#recon-upload").wait_for()
    return page


def screenshot(page, artifacts: Path, name: str) -> Path:
    path = artifacts / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    print(f"screenshot: {path}")
    return path


def upload(page, elem_id: str, path: Path) -> None:
    """Upload ``path`` into the gr.File ``elem_id``, removing the file it holds first (as a user clicks its x)."""
    clear = page.locator(f"#{elem_id} button[aria-label=Clear]")
    if clear.count():
        clear.first.click()
    page.locator(f"#{elem_id} input[type=file]").set_input_files(str(path))
    page.locator(f'#{elem_id} a[download="{path.name}"]').wait_for()  # uploaded: the server's copy is linked


def expect_error(page, text: str) -> None:
    expect(page.get_by_text(re.compile(re.escape(text))).first).to_be_visible()


def image_src(page, elem_id: str) -> str:
    src = page.locator(f"#{elem_id} img").first.get_attribute("src")
    assert src and src.startswith("http://127.0.0.1:"), src
    return src


def test_reconstruction_shows_the_numbers_and_bad_files_are_messages(browser, server, model, uploads, artifacts):
    page = open_page(browser, server.url)
    upload(page, "recon-upload", uploads["image"])
    page.click("#recon-run")
    expected = tasks.reconstruct(model, uploads["image"], Limits(), SessionFiles()).summary  # the library's line
    expect(page.locator("#recon-metrics textarea")).to_have_value(expected)
    response = page.request.get(image_src(page, "recon-output"))
    assert response.ok and response.headers["content-type"] == "image/png"
    image_src(page, "recon-original")
    screenshot(page, artifacts, "reconstruct-image")

    for name, message in (("text_png", "text.png: not a readable image"), ("truncated_mp4", "bad_truncated.mp4: ")):
        upload(page, "recon-upload", uploads[name])
        page.click("#recon-run")
        expect_error(page, message)
    screenshot(page, artifacts, "reconstruct-bad-upload")

    upload(page, "recon-upload", uploads["video"])  # the server still serves, now a video
    page.click("#recon-run")
    expect(page.locator("#recon-metrics textarea")).to_have_value(re.compile(r"^PSNR [\d.]+ dB .*mean over 9 frames"))
    src = page.locator("#recon-output-video video").first.get_attribute("src")
    assert src and page.request.get(src).ok
    assert len(list(server.tmp.glob("hydra-x-serve-*/hydra-x-web-*/*.mp4"))) == 2  # in this session's folder
    screenshot(page, artifacts, "reconstruct-video")


def test_generation_chat_and_editing(browser, server, uploads, artifacts):
    page = open_page(browser, server.url)
    page.get_by_role("tab", name="Text to image").click()
    page.click("#t2i-run")
    expect(page.locator("#t2i-info textarea")).to_have_value(re.compile(r"^64x64, 50 euler steps, guidance 4, seed 0"))
    assert page.request.get(image_src(page, "t2i-output")).ok
    screenshot(page, artifacts, "text-to-image")

    page.get_by_role("tab", name="Text to video").click()
    page.click("#t2v-run")
    expect(page.locator("#t2v-info textarea")).to_have_value(re.compile(r"^64x64, 5 frames, 50 euler steps"))
    assert page.locator("#t2v-output video").first.get_attribute("src")

    page.get_by_role("tab", name="Chat").click()
    upload(page, "chat-upload", uploads["image"])
    expect(page.locator("#chat-about textarea")).to_have_value(re.compile("Asking about astronaut.png"))
    page.locator("#chat-message textarea").fill("What colour is the circle?")
    page.click("#chat-send")
    expect(page.locator("#chat-history [data-testid=bot]")).to_have_count(1)
    expect(page.locator("#chat-history [data-testid=user]")).to_have_text("What colour is the circle?")
    page.locator("#chat-message textarea").fill("an <image> in the text")
    page.click("#chat-send")
    expect_error(page, "reserves for pictures")
    screenshot(page, artifacts, "chat")

    page.get_by_role("tab", name="Edit").click()
    upload(page, "edit-upload", uploads["image"])
    page.click("#edit-run")
    expect(page.locator("#edit-info textarea")).to_have_value(re.compile(r"^96x64, 50 euler steps"))
    image_src(page, "edit-output")
    screenshot(page, artifacts, "edit")


def test_two_sessions_keep_their_own_conversations(browser, server, uploads):
    a, b = open_page(browser, server.url), open_page(browser, server.url)  # two browser contexts: two sessions
    for page in (a, b):
        page.get_by_role("tab", name="Chat").click()
    upload(a, "chat-upload", uploads["image"])
    a.locator("#chat-message textarea").fill("first question from A")
    a.click("#chat-send")
    expect(a.locator("#chat-history [data-testid=bot]")).to_have_count(1)

    expect(b.locator("#chat-about textarea")).to_have_value(re.compile("^Text only"))  # A's upload is not B's
    b.locator("#chat-message textarea").fill("a question from B")
    b.click("#chat-send")
    expect(b.locator("#chat-history [data-testid=bot]")).to_have_count(1)
    expect(b.locator("#chat-history [data-testid=user]")).to_have_text(["a question from B"])

    a.locator("#chat-message textarea").fill("second question from A")
    a.click("#chat-send")
    expect(a.locator("#chat-history [data-testid=user]")).to_have_text(
        ["first question from A", "second question from A"]
    )
    expect(b.locator("#chat-history [data-testid=user]")).to_have_count(1)
