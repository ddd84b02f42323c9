"""One browser session's files: a private temporary folder, created on first use and removed with the session.

The app keeps nothing about a user at module level: what a session owns lives in objects like this one, held in
that session's ``gr.State`` (Gradio creates one per page load and calls ``cleanup`` when the session ends). Each
file gets a fresh random name, so two requests of one session never write the same file either.
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from pathlib import Path

SESSION_PREFIX = "hydra-x-web-"


class SessionFiles:
    """A session's output folder (videos the app writes for the page); nothing is created until ``new_path``."""

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = None if root is None else Path(root)  # where the folder goes (default: the system temp dir)
        self.folder: Path | None = None

    def new_path(self, suffix: str) -> Path:
        """A fresh file name (not created) in this session's folder, e.g. ``new_path(".mp4")``."""
        if self.folder is None or not self.folder.is_dir():
            self.folder = Path(tempfile.mkdtemp(prefix=SESSION_PREFIX, dir=self.root))
        return self.folder / f"{uuid.uuid4().hex}{suffix}"

    def cleanup(self) -> None:
        """Remove the folder and everything in it (idempotent)."""
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None

    def __deepcopy__(self, memo: dict) -> SessionFiles:
        """Gradio copies a state's initial value per session: each copy gets its own folder, never a shared one."""
        return SessionFiles(self.root)
