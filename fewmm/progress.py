"""Progress display that suits where the output goes.

On a terminal: a tqdm bar (redrawn in place with carriage returns). Anywhere else (a log file, a
pipe, CI): plain lines, one every ``interval`` seconds at most (default 30 s, or
``$FEWMM_PROGRESS_INTERVAL``) plus one at the end, so a log holds a few readable lines instead of
one enormous line of carriage-return redraws.

    bar = progress_bar(total=1000, desc="whisper-tiny-en fsdd", unit="item")
    bar.update(64); bar.set_postfix(loss="0.31"); bar.close()
"""

from __future__ import annotations

import os
import sys
import time


def format_seconds(s: float) -> str:
    """Seconds as a short duration: ``75.3 -> '1m15s'``, ``4000 -> '1h06m'``, ``9.2 -> '9s'``."""
    s = max(0, int(round(s)))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


def is_terminal(stream=None) -> bool:
    """True when ``stream`` (default ``sys.stderr``) is an interactive terminal."""
    stream = sys.stderr if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


class PlainProgress:
    """A tqdm look-alike for non-terminals: prints ``desc: n/total unit (p%), elapsed, ~left, rate``
    lines, at most one per ``interval`` seconds, and a last line on :meth:`close`.

    Supports the subset of tqdm used in fewmm: ``update``, ``set_postfix``, ``write``, ``close``,
    ``n``, ``total``.
    """

    def __init__(self, total: int | None = None, desc: str = "", unit: str = "it", initial: int = 0,
                 disable: bool = False, interval: float | None = None, stream=None, **_ignored):
        self.total, self.desc, self.unit, self.n, self.disable = total, desc, unit, int(initial), disable
        self.interval = float(os.environ.get("FEWMM_PROGRESS_INTERVAL", 30)) if interval is None else float(interval)
        self.stream = stream
        self._t0 = self._last = time.monotonic()
        self._n0 = self.n
        self._postfix = ""
        self._closed = False

    def _out(self):
        return self.stream if self.stream is not None else sys.stderr

    def line(self) -> str:
        el = time.monotonic() - self._t0
        s = f"{self.desc}: {self.n}" + (f"/{self.total}" if self.total else "") + f" {self.unit}"
        if self.total:
            s += f" ({100 * self.n / self.total:.0f}%)"
        s += f", {format_seconds(el)} elapsed"
        done = self.n - self._n0
        if self.total and 0 < done and self.n < self.total:
            s += f", ~{format_seconds(el / done * (self.total - self.n))} left"
        if done > 0 and el > 0:
            rate = done / el
            s += f", {rate:.3g} {self.unit}/s" if rate >= 1 else f", {format_seconds(1 / rate)}/{self.unit}"
        return s + (f", {self._postfix}" if self._postfix else "")

    def _emit(self) -> None:
        if not self.disable:
            print(self.line(), file=self._out(), flush=True)
        self._last = time.monotonic()

    def update(self, n: int = 1) -> None:
        self.n += int(n)
        if time.monotonic() - self._last >= self.interval:
            self._emit()

    def set_postfix(self, **kw) -> None:
        self._postfix = ", ".join(f"{k}={v}" for k, v in kw.items())

    def write(self, msg: str) -> None:
        print(msg, file=self._out(), flush=True)

    def close(self) -> None:
        if not self._closed and self.n > self._n0:
            self._emit()
        self._closed = True


def progress_bar(total: int | None = None, desc: str = "", unit: str = "it", initial: int = 0,
                 disable: bool = False, leave: bool = True, **kw):
    """A tqdm bar on a terminal, else a :class:`PlainProgress` (periodic plain lines).

    Parameters
    ----------
    total : int, optional
        Number of units expected.
    desc, unit : str
        Label and unit name shown on each line.
    initial : int
        Units already done (resumed work).
    disable : bool
        Show nothing.
    leave : bool
        tqdm only: keep the bar after closing.
    """
    if is_terminal():
        from tqdm.auto import tqdm

        return tqdm(total=total, desc=desc, unit=unit, initial=initial, disable=disable, leave=leave, **kw)
    return PlainProgress(total=total, desc=desc, unit=unit, initial=initial, disable=disable)
