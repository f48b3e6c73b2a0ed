"""Progress bars for loops a person waits for: bars on a terminal, nothing off one.

``bar(...)`` is ``tqdm.auto.tqdm`` with ``disable=None`` when progress is wanted, which
tqdm reads as "off unless stderr is a terminal": CI logs, ``nohup`` and Ray workers get
no nested bars and escape codes. Library code logs one INFO line per finished phase or
piece instead (``logging``), which ``--quiet`` silences and ``--verbose`` extends with
per-probe details at DEBUG.
"""

from __future__ import annotations

from typing import Iterable

from tqdm.auto import tqdm


def bar(iterable: Iterable | None = None, *, desc: str = "", total: int | None = None, enabled: bool = True,
        leave: bool = False, **kw) -> tqdm:
    """A progress bar that shows on a terminal only (and never when ``enabled`` is False)."""
    return tqdm(iterable, desc=desc, total=total, leave=leave, disable=None if enabled else True, **kw)
