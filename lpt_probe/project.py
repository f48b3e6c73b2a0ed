"""``python -m lpt_probe.project``: the ``project`` command. Its code is
:mod:`lpt_probe.commands.project` (``lpt-probe project`` runs the same ``main``); this module
only keeps ``python -m lpt_probe.project`` working."""

from __future__ import annotations

from .commands.project import main

__all__ = ["main"]

if __name__ == "__main__":
    raise SystemExit(main())
