"""The one error type a user can act on.

Library code raises :class:`InputError` (or a subclass) for what the caller gave: an unreadable file, a bad
option, an unloadable checkpoint, an input of the wrong shape or size. Its message names the problem on one
line, so every front end (the CLI, the web demo) shows it as it is; anything else that escapes is a bug.
"""

from __future__ import annotations


class InputError(ValueError):
    """A problem with the caller's input; the message says what and, where it can, how to fix it."""
