"""The plain prompt's learning rate for the SmolLM2 Section 4 studies, chosen on dev at the
paper's three prompt layers (issue 32).

    python benchmarks/bench_prompt_lr.py --data-dir ../shared/data

One ``python -m lpt_probe.sweep`` per learning rate (``--lrs``, default 1e-3, 1e-2, 3e-2, 1e-1, 3e-1),
otherwise the settings of ``bench_prompt_init.py`` (SmolLM2, TREC, 100 shots, prompt layers
1, the middle and the last, trained until learned with ``--patience``), into ``--work``
(default ``artifacts/bench_prompt_lr``; a rerun resumes the finished cells). Adam moves each
coordinate by about the learning rate per step, so at 1e-3 an N(0, 1) prompt barely moves in
a few hundred steps. The rate is chosen on **dev** (mean best dev accuracy over the layers
and the seeds); test accuracy is reported beside it, not used. Writes ``prompt_lr.csv`` (one
row per run) and ``prompt_lr.md`` into ``--out`` (default benchmarks/results).
"""

from __future__ import annotations

import sys
from pathlib import Path

from bench_prompt_init import report, run_arms, study_parser
from harness import REPO
import harness
from lpt_probe import store


def main(argv: list[str] | None = None) -> int:
    p = study_parser(__doc__)
    p.add_argument("--lrs", default="1e-3,1e-2,3e-2,1e-1,3e-1", help="comma list of learning rates")
    p.add_argument("--work", default=str(REPO / "artifacts" / "bench_prompt_lr"))
    args = p.parse_args(argv)
    lrs = [v.strip() for v in args.lrs.split(",") if v.strip()]
    bad = [v for v in lrs if not _positive(v)]
    if bad or len(set(lrs)) != len(lrs):
        p.error(f"--lrs {args.lrs!r}: give distinct positive numbers, e.g. 1e-3,1e-2")
    table = run_arms(args, {f"lr{v}": ["--lr", v] for v in lrs}, "arm")
    table["prompt_lr"] = table["arm"].str.removeprefix("lr").astype(float)
    cols = ["task", "model", "prompt_lr", "prompt_layer", "seed", "dev_metric", "test_metric", "stopped_step",
            "best_step", "steps"]
    store.write_csv(Path(args.out) / "prompt_lr.csv", table[cols])
    lines = report(args, argv, table, "prompt_lr", "Prompt learning rate, chosen on dev", "learning rate")
    harness.write_report(Path(args.out) / "prompt_lr.md", "\n".join(lines))
    return 0


def _positive(text: str) -> bool:
    try:
        return float(text) > 0
    except ValueError:
        return False


if __name__ == "__main__":
    sys.exit(main())
