"""The errors a user can act on.

Library code raises :class:`InputError` (or a subclass) for what the caller gave: an unreadable file, a bad
option, an unloadable checkpoint, an input of the wrong shape or size. Its message names the problem on one
line, so every front end (the CLI, the web demo) shows it as it is. Running out of memory (:func:`out_of_memory`)
is the other: not a bug but a size that does not fit, which the user can lower. Anything else that escapes is a bug.
"""

from __future__ import annotations

import sys


class InputError(ValueError):
    """A problem with the caller's input; the message says what and, where it can, how to fix it."""


def out_of_memory(err: BaseException) -> bool:
    """Whether ``err`` is running out of GPU (``torch.OutOfMemoryError``) or host (``MemoryError``) memory, raised
    as it is or as the cause or context of another error (torch.compile wraps what its compiled code raises; a
    cleanup can fail while the error unwinds)."""
    torch = sys.modules.get("torch")  # an error raised by torch means torch is loaded; nothing is imported here
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, MemoryError) or (torch is not None and isinstance(err, torch.OutOfMemoryError)):
            return True
        err = err.__cause__ or err.__context__
    return False
