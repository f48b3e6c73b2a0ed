"""``python -m lpt_probe.sweep``: the ``sweep`` command. Its code is
:mod:`lpt_probe.commands.sweep` (``lpt-probe sweep`` runs the same ``main``); this module
only keeps ``python -m lpt_probe.sweep`` working."""

from __future__ import annotations

from .commands.sweep import main

__all__ = ["main"]

if __name__ == "__main__":
    raise SystemExit(main())
