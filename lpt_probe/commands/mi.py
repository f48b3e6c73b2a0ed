"""Per-layer I(h;y) with and without a late prompt: ``python -m lpt_probe.mi --task rte``.

The command-line front of ``lpt_probe.analysis.mi.study`` (every flag is a field of
``MIConfig``). It trains the prompts it needs (or reuses matching run folders), probes
every hidden state with the chosen probe family and its controls, prints I(h;y) in bits
per hidden state (rows) and condition (columns), and writes ``mi.csv``, ``mdl.csv``,
``pvi.csv``, ``mi_diff.csv`` (each prompt minus the frozen model, paired bootstrap),
``mi_by_layer.pdf`` and ``run.json`` into ``--out`` (default
``artifacts/mi/<task>/<model>/``). Rerunning resumes; changed settings recompute exactly
what they change. ``--executor ray`` trains, extracts and probes as Ray tasks
(``lpt_probe.analysis.engine.executors``), with the same files and results.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from ..analysis.config import MIConfig
from .cli import add_execution_args, add_plan_flag, draw_result, plan_or_run, study_main, study_parser

if TYPE_CHECKING:
    from ..analysis.results import MIResult


def build_parser() -> argparse.ArgumentParser:
    p = study_parser("python -m lpt_probe.mi", __doc__, MIConfig)
    g = p._lpt_groups["probes (mi)"].add_mutually_exclusive_group()
    g.add_argument("--mdl", dest="mdl", action="store_true", default=None,
                   help="MDL online codelength of every probe (default: on for linear and mlp probes, off for the "
                        "transformer probe, which an online code refits ten times per layer)")
    g.add_argument("--no-mdl", dest="mdl", action="store_false", help="skip MDL online codelength")
    add_execution_args(p)
    add_plan_flag(p._lpt_groups["hardware and output"])
    return p


def draw(res: MIResult) -> Path:
    """``mi_by_layer.pdf``: the result's figure (``MIResult.plot``), saved in its folder."""
    return draw_result(res, "mi_by_layer.pdf")


def report(cfg: MIConfig, args) -> tuple[str, str]:
    from ..analysis.plan import plan_mi  # here: torch, only to run (--help and the parser need none)
    from ..analysis.mi.study import run_mi  # here: torch, only to run

    plan, res = plan_or_run(cfg, args, plan_mi, run_mi)
    if res is None:
        return plan, "nothing (--plan)"
    draw(res)
    return res.summary(), f"{res.out}/mi.csv, mdl.csv, pvi.csv, mi_diff.csv, mi_by_layer.pdf, run.json"


def main(argv: list[str] | None = None) -> int:
    return study_main(build_parser(), argv, MIConfig, report)


if __name__ == "__main__":
    raise SystemExit(main())
