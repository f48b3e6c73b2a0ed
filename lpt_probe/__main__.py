"""``lpt-probe <command> ...`` (and ``python -m lpt_probe <command> ...``): one entry point
for every command (``lpt_probe.commands.<command>``); each is also
``python -m lpt_probe.<command>`` (a shim, ``lpt_probe/<command>.py``)."""

from __future__ import annotations

import importlib
import sys

from . import __version__

COMMANDS = {
    "train": "train one late prompt (or a baseline) into a run folder",
    "sweep": "a grid of runs: prompt layers x generators x seeds, and the baselines",
    "mi": "per-layer I(h;y) with probes, with and without a late prompt",
    "influence": "the prompt's influence on the text and the label signal reaching it, per layer",
    "section4": "the paper's Section 4 for one task: sweep, mi and influence, claims and one figure",
    "project": "project sentence representations and generated prompts (Figure 6)",
    "figures": "paper figures from results on disk",
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: lpt-probe <command> [options]   (lpt-probe <command> --help for its options)", "", "commands:"]
    lines += [f"  {name:<{width}}  {text}" for name, text in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    if argv[0] in ("-V", "--version"):
        print(f"lpt-probe {__version__}")
        return 0
    name = argv[0]
    if name not in COMMANDS:
        sys.stderr.write(f"error: unknown command {name!r}; choose one of {', '.join(COMMANDS)}\n\n{usage()}\n")
        return 2
    module = importlib.import_module(f"lpt_probe.commands.{name}")
    sys.argv[0] = f"lpt-probe {name}"
    return module.main(argv[1:])


if __name__ == "__main__":
    raise SystemExit(main())
