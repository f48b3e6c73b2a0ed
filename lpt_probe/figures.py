"""``python -m lpt_probe.figures``: the ``figures`` command. Its code is
:mod:`lpt_probe.commands.figures` (``lpt-probe figures`` runs the same ``main``); this module
only keeps ``python -m lpt_probe.figures`` working."""

from __future__ import annotations

from .commands.figures import main

__all__ = ["main"]

if __name__ == "__main__":
    raise SystemExit(main())
