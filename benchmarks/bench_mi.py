"""Wall time of ``mi`` commands on the embedded model, against their budgets.

    python benchmarks/bench_mi.py --data-dir ../shared/data                       # default RTE run, 15 min
    python benchmarks/bench_mi.py --data-dir ../shared/data --task trec --prompt-layers all --seeds 13,21,42 \\
        --budget 1200                                                             # full Figure 2, 20 min

Runs ``python -m lpt_probe.mi --task TASK`` with the given extra flags into a fresh folder
and records its wall time, time per phase (from the run's ``run.json``), the machine and
the printed table. Results accumulate in benchmarks/results/mi_time.json (one entry per
command, keyed by it; a rerun of the same command replaces its entry) and mi_time.md.
``--keep DIR`` copies the output folder (for figures). The load average at the start and
the end is recorded: on a shared machine a timing is only as good as its quiet. Run by
hand, not in CI.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import harness
from harness import RESULTS


def render(entries: dict) -> str:
    lines = ["# `mi` wall time", "",
             ("Each entry: one `mi` command into an empty folder on this machine (budget in brackets). Time per "
             "phase in seconds: training the prompts, extracting representations, fitting and scoring every "
             "probe with its controls, MDL and PVI."), ""]
    for cmd, r in entries.items():
        verdict = "within" if r["within_budget"] else "OVER"
        phases = ", ".join(f"{k} {v:.0f}" for k, v in (r.get("phase_seconds") or {}).items())
        lines += [f"## `{cmd}`", "",
                  (f"{r['wall_seconds']:.0f} s on {r['cpu_count']} CPU cores ({verdict} the "
                  f"{r['budget_seconds'] / 60:.0f}-minute budget); phases: {phases}; load average "
                  f"{r.get('load_before', float('nan')):.1f} before, {r.get('load_after', float('nan')):.1f} after."),
                  "",
                  "```", r["stdout_tail"].rstrip(), "```", ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    p = harness.parser(__doc__)
    p.add_argument("--task", default="rte")
    p.add_argument("--budget", type=float, default=900, help="seconds (default 900: the default command's 15 min)")
    p.add_argument("--keep", default=None, help="copy the mi output folder here")
    p.add_argument("--results", default=str(RESULTS), help="where mi_time.json / mi_time.md go")
    args, extra = p.parse_known_args(argv)
    out = Path(tempfile.mkdtemp()) / "mi"
    flags = ["--task", args.task, "--data-dir", args.data_dir, *extra]
    shown = " ".join(["python -m lpt_probe.mi", *flags])
    proc, run = harness.run_module("mi", flags, out)
    wall = proc.wall_seconds
    result = {"wall_seconds": wall, "budget_seconds": args.budget, "within_budget": wall <= args.budget,
              "phase_seconds": run.get("phase_seconds"), **harness.machine(), "load_before": proc.load_before,
              "load_after": proc.load_after, "status": run["status"], "stdout_tail": proc.stdout[-2500:]}
    results = Path(args.results)
    # one entry of an earlier version (and an earlier estimator) is dropped
    entries = harness.merge_entries(results / "mi_time.json", {shown: result}, reset=lambda old: "command" in old)
    harness.write_report(results / "mi_time.md", render(entries), echo=False)
    if args.keep:
        shutil.copytree(out, args.keep, dirs_exist_ok=True)
    print(json.dumps({k: v for k, v in result.items() if k != "stdout_tail"}, indent=2))
    print(result["stdout_tail"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
