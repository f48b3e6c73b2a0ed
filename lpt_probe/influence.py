"""``python -m lpt_probe.influence``: the ``influence`` command. Its code is
:mod:`lpt_probe.commands.influence` (``lpt-probe influence`` runs the same ``main``); this module
only keeps ``python -m lpt_probe.influence`` working."""

from __future__ import annotations

from .commands.influence import main

__all__ = ["main"]

if __name__ == "__main__":
    raise SystemExit(main())
