"""Where the CLI's text goes: drawn by Rich on a terminal, plain text everywhere else.

``render`` builds Rich renderables; this module decides how they reach a
stream. A terminal gets colour, wrapping at its width and a live progress
display. A pipe, a file, a test's captured output or CI gets plain text: no
escape sequences, and no wrapping, so each table row stays one line for grep,
``awk`` and ``line.split()``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from io import StringIO
from typing import TextIO

from rich.console import Console, RenderableType
from rich.live import Live

# Plain text is not wrapped: a row or a message split over lines would hide
# what grep looks for. Rich needs some width; this one no line reaches.
UNWRAPPED = 100_000


def to_text(renderable: RenderableType, width: int = UNWRAPPED) -> str:
    """The renderable as plain text, lines without trailing blanks, no final newline."""
    console = Console(file=StringIO(), width=width, color_system=None, force_terminal=False,
                      highlight=False, markup=False, emoji=False, soft_wrap=False)
    with console.capture() as captured:
        console.print(renderable)
    return "\n".join(line.rstrip() for line in captured.get().splitlines())


def is_terminal(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def terminal_console(stream: TextIO) -> Console:
    # Data (VM names, error messages) is never read as markup or emoji codes.
    return Console(file=stream, highlight=False, markup=False, emoji=False)


def show(renderable: RenderableType, stream: TextIO | None = None) -> None:
    """Print to ``stream`` (default: the current stdout) as a terminal or a pipe needs."""
    out = sys.stdout if stream is None else stream
    if is_terminal(out):
        terminal_console(out).print(renderable)
    else:
        out.write(to_text(renderable) + "\n")
        out.flush()


class LiveStatus:
    """A job's progress while the CLI waits: redrawn in place on a terminal; elsewhere a
    line when the phase changes, and at most one every ``PLAIN_EVERY`` seconds otherwise.

    ``draw(terminal)`` makes the renderable: on a terminal it may hold a bar, which
    plain text cannot show.
    """

    PLAIN_EVERY = 5.0

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.tty = is_terminal(stream)
        self._live: Live | None = None
        self._last_key = ""
        self._last_plain = 0.0

    def update(self, key: str, draw: Callable[[bool], RenderableType]) -> None:
        """Show the status; ``key`` (the phase) changing forces a plain line out at once."""
        if self.tty:
            if self._live is None:
                self._live = Live(draw(True), console=terminal_console(self.stream),
                                  auto_refresh=False, transient=True,
                                  redirect_stdout=False, redirect_stderr=False)
                self._live.start(refresh=True)
            else:
                self._live.update(draw(True), refresh=True)
            return
        now = time.monotonic()
        if key != self._last_key or now - self._last_plain >= self.PLAIN_EVERY:
            self.stream.write(to_text(draw(False)) + "\n")
            self.stream.flush()
            self._last_key, self._last_plain = key, now

    def clear(self) -> None:
        """Take the live display off the terminal (before other output, or at the end)."""
        if self._live is not None:
            self._live.stop()
            self._live = None
