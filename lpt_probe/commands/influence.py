"""The prompt's influence and the label signal's path, layer by layer:
``python -m lpt_probe.influence --task trec``.

The command-line front of ``lpt_probe.analysis.influence.study`` (every flag is a field of
``InfluenceConfig``). It trains the prompts it needs (or reuses matching run folders),
measures, for every prompt layer, seed and checkpoint (init, ``--checkpoints`` steps,
trained), the attention mass the text puts on the prompt, the displacement of the text's
states from the frozen model's, the drop in the gold label's log-probability when the
prompt is hidden from a layer, and the norm and coherence of the loss gradient down to the
prompt; prints a summary per prompt layer and writes ``influence.csv``,
``influence_by_layer.pdf`` and ``run.json`` into ``--out`` (default
``artifacts/influence/<task>/<model>/``). Rerunning resumes; changed settings recompute
exactly what they change. ``--executor ray`` trains and measures as Ray tasks
(``lpt_probe.analysis.engine.executors``), with the same files and results.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from ..analysis.config import InfluenceConfig
from .cli import add_execution_args, add_plan_flag, draw_result, plan_or_run, study_main, study_parser

if TYPE_CHECKING:
    from ..analysis.results import InfluenceResult


def build_parser() -> argparse.ArgumentParser:
    p = study_parser("python -m lpt_probe.influence", __doc__, InfluenceConfig)
    add_execution_args(p)
    add_plan_flag(p._lpt_groups["hardware and output"])
    return p


def draw(res: InfluenceResult) -> Path:
    """``influence_by_layer.pdf``: the result's figure (``InfluenceResult.plot``), saved in its folder."""
    return draw_result(res, "influence_by_layer.pdf")


def report(cfg: InfluenceConfig, args) -> tuple[str, str]:
    from ..analysis.plan import plan_influence  # here: torch, only to run (--help and the parser need none)
    from ..analysis.influence.study import run_influence  # here: torch, only to run

    plan, res = plan_or_run(cfg, args, plan_influence, run_influence)
    if res is None:
        return plan, "nothing (--plan)"
    draw(res)
    pieces = f"{res.meta['pieces_measured']} piece(s) measured, {res.meta['pieces_reused']} reused"
    return res.summary(), f"{res.out}/influence.csv, influence_by_layer.pdf, run.json ({pieces})"


def main(argv: list[str] | None = None) -> int:
    return study_main(build_parser(), argv, InfluenceConfig, report)  # run, draw, print


if __name__ == "__main__":
    raise SystemExit(main())
