"""A dependency-free progress display that reads well in a terminal and in a CI log.

On a terminal the bar redraws in place (carriage return); anywhere else (a pipe, a CI log, a file) it
prints a plain line at every 10 % of the work, so a log gets at most eleven progress lines plus
whatever :meth:`Progress.write` adds.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


def format_seconds(seconds: float) -> str:
    """``m:ss`` (or ``h:mm:ss``) for a duration in seconds."""
    seconds = int(round(max(seconds, 0.0)))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class Progress:
    """Count ``total`` units of work and show how far along it is.

    Parameters
    ----------
    total : int
        Units of work (e.g. epochs summed over every run).
    desc : str
        Label in front of the bar.
    stream : text stream, optional
        Where to draw (default ``sys.stderr``, so stdout stays clean for results).
    enabled : bool
        False silences everything, :meth:`write` included.
    inplace : bool, optional
        Redraw one line in place; default: only when ``stream`` is a terminal.
    width : int
        Characters of the bar.
    """

    def __init__(self, total: int, desc: str = "", stream: TextIO | None = None, enabled: bool = True,
                 inplace: bool | None = None, width: int = 24):
        if total < 0:
            raise ValueError(f"total must be >= 0; got {total}")
        self.total, self.desc, self.width = int(total), desc, width
        self.stream = sys.stderr if stream is None else stream
        self.enabled = enabled
        isatty = getattr(self.stream, "isatty", lambda: False)
        self.inplace = bool(isatty()) if inplace is None else inplace
        self.done = 0
        self.status = ""
        self.start = time.perf_counter()
        self._last_draw = 0.0
        self._last_decile = -1
        self._drawn = False

    # the line is built separately from the drawing so tests can read it
    def line(self) -> str:
        """The current progress line, e.g. ``demo [######------]  12/27  44%  0:12<0:15  bp s0``."""
        frac = self.done / self.total if self.total else 1.0
        filled = int(round(frac * self.width))
        elapsed = time.perf_counter() - self.start
        eta = elapsed / self.done * (self.total - self.done) if self.done else 0.0
        bar = "#" * filled + "-" * (self.width - filled)
        text = (f"{self.desc} [{bar}] {self.done:>{len(str(self.total))}}/{self.total} "
                f"{100 * frac:3.0f}%  {format_seconds(elapsed)}<{format_seconds(eta)}")
        return f"{text}  {self.status}" if self.status else text

    def update(self, n: int = 1, status: str | None = None) -> None:
        """Advance by ``n`` units; ``status`` replaces the text after the bar."""
        self.done = min(self.done + n, self.total)
        if status is not None:
            self.status = status
        if not self.enabled:
            return
        now = time.perf_counter()
        if self.inplace:
            # redraw at most 20 times a second: a terminal write per training step would cost time
            if now - self._last_draw > 0.05 or self.done == self.total:
                self._draw()
                self._last_draw = now
            return
        decile = int(10 * self.done / self.total) if self.total else 10
        if decile > self._last_decile:
            self._last_decile = decile
            self.stream.write(self.line() + "\n")
            self.stream.flush()

    def write(self, text: str) -> None:
        """Print a line of text without breaking the bar."""
        if not self.enabled:
            return
        if self.inplace and self._drawn:
            self.stream.write("\r\033[K")
        self.stream.write(text + "\n")
        if self.inplace and self._drawn:
            self._draw()
        self.stream.flush()

    def close(self) -> None:
        """Finish the in-place line with a newline."""
        if self.enabled and self.inplace and self._drawn:
            self._draw()
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False

    def _draw(self) -> None:
        self.stream.write("\r\033[K" + self.line())
        self.stream.flush()
        self._drawn = True

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


__all__ = ["Progress", "format_seconds"]
