"""The command-line fronts: ``lpt-probe <command>`` and ``python -m lpt_probe.<command>``.

One module per command (``train``, ``sweep``, ``mi``, ``influence``, ``section4``,
``project``, ``figures``), each a thin ``main(argv=None)`` that builds its ``argparse``
parser from config dataclasses, calls the library and prints or draws the result, and
``cli`` (what turns a config dataclass's field metadata into flags, the shared parsers,
exits on user errors). The library below never imports this package: it declares its
settings (dataclass fields with ``help`` / ``choices`` metadata, ``EXECUTION_HELP``) and
the commands turn them into flags. ``lpt_probe/<command>.py`` is a shim that keeps
``python -m lpt_probe.<command>`` working; ``lpt_probe.__main__`` dispatches to the modules
here. No command imports another (``tests/unit/test_cli.py``).
"""
