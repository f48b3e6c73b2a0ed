"""``python -m lpt_probe.train``: the ``train`` command. Its code is
:mod:`lpt_probe.commands.train` (``lpt-probe train`` runs the same ``main``); this module
only keeps ``python -m lpt_probe.train`` working.

``lpt_probe.train`` the attribute is the function ``lpt_probe.runs.run.train`` (``from
lpt_probe import train``). Importing this module by name would make Python bind it over
that function, so it refuses to be imported other than as ``python -m``: import
``lpt_probe.commands.train`` for the command.
"""

from __future__ import annotations

if __name__ != "__main__":
    raise ImportError("lpt_probe.train is the function lpt_probe.runs.run.train (from lpt_probe import train); "
                      "the train command's module is lpt_probe.commands.train (python -m lpt_probe.train runs it)")

from .commands.train import main  # noqa: E402  (after the guard: python -m only)

raise SystemExit(main())
