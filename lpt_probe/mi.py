"""``python -m lpt_probe.mi``: the ``mi`` command. Its code is
:mod:`lpt_probe.commands.mi` (``lpt-probe mi`` runs the same ``main``); this module
only keeps ``python -m lpt_probe.mi`` working."""

from __future__ import annotations

from .commands.mi import main

__all__ = ["main"]

if __name__ == "__main__":
    raise SystemExit(main())
