"""Optional tools of the web tests (Gradio, Playwright, Chromium): a skip where they are missing, but not in CI."""

from __future__ import annotations

import os

import pytest


def skip_or_fail(reason: str) -> None:
    """Skip a test that lacks an optional tool, except under CI=true: CI must not pass by skipping it."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}; CI=true, so this is a failure, not a skip", pytrace=False)
    pytest.skip(reason)
