"""Progress for loops a person waits for: bars on a terminal, a few log lines off one.

``bar(...)`` is what every such loop uses. On a terminal it is ``tqdm.auto.tqdm``. Off a
terminal (stderr piped to a file, CI logs, ``nohup``, Ray workers) a bar would write escape
codes nobody sees until the end, and nested bars garble a log; there ``bar`` returns a
:class:`LogProgress` instead, which writes plain INFO lines through ``logging`` (logger
``lpt_probe.progress``): one each time the loop passes another tenth of its length, at most
one every ``LOG_INTERVAL`` seconds, and one when it ends, so a short loop writes nothing and a
long one about ten lines. Only the outermost loop reports: a loop that starts while another
is running (a prompt's training inside a sweep cell) stays silent, so the log never nests.
``--quiet`` (or ``TQDM_DISABLE=1``, or ``enabled=False``) silences both kinds. Library code
also logs one INFO line per finished phase or piece; ``--verbose`` adds per-probe details at
DEBUG.
"""

from __future__ import annotations

import logging
import os
import sys
import time
import weakref
from typing import Iterable, Iterator

from tqdm.auto import tqdm

logger = logging.getLogger(__name__)

LOG_INTERVAL = 5.0  # seconds: the least time between two lines of one loop off a terminal
_active: "weakref.WeakSet[LogProgress]" = weakref.WeakSet()  # the log-line loops running now (one dropped unused is gone)


def _terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced or closed stderr
        return False


def _env_disabled() -> bool:
    return os.environ.get("TQDM_DISABLE", "").strip().lower() not in ("", "0", "false", "no")


def bar(iterable: Iterable | None = None, *, desc: str = "", total: int | None = None, enabled: bool = True,
        leave: bool = False, **kw):
    """A progress bar on a terminal, log lines off one (:class:`LogProgress`), nothing when
    ``enabled`` is False or ``TQDM_DISABLE`` is set. Both take ``update``, ``set_postfix``,
    ``close``, iteration and ``with``."""
    if not enabled or _env_disabled():
        return tqdm(iterable, desc=desc, total=total, leave=leave, disable=True, **kw)
    if _terminal():
        return tqdm(iterable, desc=desc, total=total, leave=leave, **kw)
    return LogProgress(iterable, desc=desc, total=total)


class LogProgress:
    """A loop's progress as INFO log lines: ``desc: 40% (4/10), 12 s, about 18 s left``
    when it passes each tenth (at most one line per ``interval`` seconds), ``desc: done
    (10/10) in 30 s`` at the end when it wrote a line before. Silent when another
    ``LogProgress`` is running (only the outermost loop reports)."""

    def __init__(self, iterable: Iterable | None = None, desc: str = "", total: int | None = None,
                 interval: float | None = None):
        self.iterable = iterable
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)
        self.desc = desc or "progress"
        self.total = total
        self.n = 0
        self.interval = LOG_INTERVAL if interval is None else interval
        self.postfix = ""
        self.lines = 0
        self.closed = False
        self.start = self.last = time.perf_counter()
        self.silent = bool(_active)  # nested in a running loop: that loop reports
        self.tenth = 0  # the last tenth reported
        _active.add(self)

    # -- the tqdm surface the package uses ------------------------------------------------
    def __iter__(self) -> Iterator:
        try:
            for item in self.iterable:
                yield item
                self.update(1)
        finally:
            self.close()

    def __enter__(self) -> "LogProgress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def set_postfix(self, **kw) -> None:
        self.postfix = ", ".join(f"{k} {v}" for k, v in kw.items())

    def update(self, n: int = 1) -> None:
        self.n += n
        if self.silent or not self.total:
            return
        tenth = min(10, int(10 * self.n / self.total))
        now = time.perf_counter()
        if tenth > self.tenth and tenth < 10 and now - self.last >= self.interval:
            self.tenth, self.last = tenth, now
            spent = now - self.start
            left = spent * (self.total - self.n) / max(self.n, 1)
            self._line(f"{100 * self.n // self.total}% ({self.n}/{self.total}), {spent:.0f} s, about {left:.0f} s left")

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        _active.discard(self)
        if not self.silent and self.lines:
            total = f"/{self.total}" if self.total else ""
            self._line(f"done ({self.n}{total}) in {time.perf_counter() - self.start:.0f} s")

    def _line(self, text: str) -> None:
        self.lines += 1
        logger.info("%s: %s%s", self.desc, text, f" [{self.postfix}]" if self.postfix else "")
