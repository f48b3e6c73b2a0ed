"""``python -m lpt_probe.section4``: the ``section4`` command. Its code is
:mod:`lpt_probe.commands.section4` (``lpt-probe section4`` runs the same ``main``); this module
only keeps ``python -m lpt_probe.section4`` working."""

from __future__ import annotations

from .commands.section4 import main

__all__ = ["main"]

if __name__ == "__main__":
    raise SystemExit(main())
