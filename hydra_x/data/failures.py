"""Samples that cannot be used: the error, the categories they are counted under, the rule for truncated
videos, and what a source remembers so that a bad file is decoded (and reported) once.

Truncated videos, one rule for training, evaluation and ``hydra-x reconstruct``: a video's usable frames are
those that decode from its start, up to a decoding error or, when the container header announces a frame
count, up to where decoding stops. It is *truncated* when clearly fewer frames decode than the header
announces (:func:`falls_short`, the allowance of ``hydra-x reconstruct``). A clip that needs a frame past the
last usable one is a bad sample ("corrupt"): skipped and counted in training, listed in an evaluation report,
an error for the CLI, whose clip is the whole video. A clip drawn entirely from the frames before is used: its
frames are exactly what the complete file gives. Training never moves a clip of a truncated video to the
start to make it fit (it does so only for a video whose header overstates its duration, where no frame is
missing). A container that announces no frame count (Matroska, WebM) shows a cut only through decoder errors.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Hashable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from hydra_x.data.media import MediaError
from hydra_x.data.video import _frame_count_slack

# Categories a skipped sample is counted under (the text before ':' in Batch.skipped reasons).
SKIP_CATEGORIES = ("empty", "corrupt", "undecodable", "no_video_stream", "too_short", "no_media")


class SampleError(MediaError):
    """A sample that cannot be used; ``category`` is one of SKIP_CATEGORIES.

    ``whole_file``: no other draw of the file can succeed either (its header, its data, its length); False
    for a clip refused because of where it lies in the file (past a cut, across a decoding error).
    ``seen``: the file failed before in this process and was reported then.
    """

    def __init__(self, name: str | os.PathLike, problem: str, category: str, *, whole_file: bool = True):
        super().__init__(name, problem)
        self.category, self.whole_file = category, whole_file
        self.seen = False


def skip_category(err: MediaError) -> str:
    """The counter a failed sample goes to, from the error (media.py's messages or ours)."""
    if isinstance(err, SampleError):
        return err.category
    text = err.problem.lower()
    if "empty file" in text:
        return "empty"
    if "no video stream" in text:
        return "no_video_stream"
    if "decoder" in text or "codec" in text or "no frame size" in text:
        return "undecodable"
    return "corrupt"


def skip_entry(err: MediaError) -> tuple[str, str]:
    """(file or key, "category: problem") as it goes into Batch.skipped."""
    return str(err.path), f"{skip_category(err)}: {err.problem}"


def falls_short(decoded: int, announced: int | None) -> bool:
    """Whether ``decoded`` frames (from the start) are clearly fewer than the header's ``announced`` count."""
    return announced is not None and decoded < announced - _frame_count_slack(announced)


@dataclass
class VideoExtent:
    """What decoding a video from its start to its end showed; filled the first time a clip runs past the end."""

    frames: int | None = None  # frames that decode from the start (None: not decoded to the end yet)
    last_time: float = 0.0  # presentation time of the last one, seconds
    truncated: bool = False  # falls_short(frames, the header's count), or a decoding error stopped it


class FailureMemory:
    """What one source learnt, in one process (a DataLoader worker of one rank), about its samples that failed.

    Keys are the source's own sample ids (a file index; a (shard, sample number) pair). A file that failed for
    every draw (``SampleError.whole_file``, or any image error) is refused from then on without being read; a
    video decoded to its end keeps its :class:`VideoExtent`, so a clip past a cut is refused without decoding
    and the rest decode as usual. Either way each draw gets the outcome decoding would give it, so the memory
    changes no batch: the stream is the same for any worker count and across resumes, where it starts empty.
    Only a key's first failure goes unmarked; later ones have ``seen`` set and are not reported again.
    """

    def __init__(self) -> None:
        self._refused: dict[Hashable, tuple[str, str]] = {}  # key -> (problem, category)
        self._extents: dict[Hashable, VideoExtent] = {}  # only videos decoded to their end
        self._failed: set[Hashable] = set()

    def __len__(self) -> int:
        """Keys that failed at least once."""
        return len(self._failed)

    @contextmanager
    def watch(self, key: Hashable, name: str | os.PathLike) -> Iterator[VideoExtent]:
        """Decode sample ``key`` inside: a file refused before raises its SampleError (``seen``) at once; the
        extent yielded is the remembered one (fill it when decoding to the end); failures are learnt."""
        refused = self._refused.get(key)
        if refused is not None:
            err = SampleError(name, *refused)
            err.seen = True
            raise err
        extent = self._extents.get(key) or VideoExtent()
        try:
            yield extent
        except MediaError as err:
            self._learn(key, err)
            raise
        except OSError as err:  # the file vanished or became unreadable since the scan
            text = getattr(err, "strerror", None) or str(err)
            failure = SampleError(name, f"cannot read ({type(err).__name__}: {text})", "corrupt")
            self._learn(key, failure)
            raise failure from err
        finally:
            if extent.frames is not None:
                self._extents[key] = extent

    def _learn(self, key: Hashable, err: MediaError) -> None:
        err.seen = key in self._failed
        self._failed.add(key)
        if getattr(err, "whole_file", True):  # media.py's image errors are about the whole file
            self._refused[key] = (err.problem, skip_category(err))


def first_seen(
    skipped: list[tuple[str, str]], reported: set[str], counts: Counter, log: logging.Logger, log_it: bool = True
) -> list[tuple[str, str]]:
    """The entries of ``skipped`` whose file was not reported before, now added to ``reported`` and counted by
    category in ``counts`` (and logged): each bad file is reported once per run, whatever draws it again."""
    new = []
    for name, reason in skipped:
        if name in reported:
            continue
        reported.add(name)
        counts[reason.split(":", 1)[0]] += 1
        if log_it:
            log.warning("skipped %s (%s); each bad file is reported once", name, reason)
        new.append((name, reason))
    return new
