"""Wall time of ``bash scripts/demo.sh`` after setup, as a new user sees it in a log.

    python benchmarks/bench_demo.py

Runs ``bash scripts/demo.sh --out <empty folder>`` from the repository root with its
standard output and error going to one pipe (not a terminal, as under ``nohup`` or in CI;
progress bars are left on, so the log lines a user would get off a terminal are what is
recorded), after ``.venv`` is set up (the script's own ``scripts/setup.sh`` check is part of
the time). Records the wall time against the 3-minute goal (issue 33), the time per phase
from the run's ``run.json``, the load average before and after (on a shared machine a
timing is only as good as its quiet), whether the printed difference table marks at least
one effect (``*``), and the whole log. Writes benchmarks/results/demo_time.json and
demo_time.md, and keeps the run's tables (``mi.csv``, ``mi_diff.csv``, ``run.json``) in
benchmarks/results/demo/ so the README quotes the intervals from a committed file. Run by hand, not in CI (the README test runs the demo at tiny settings).
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import harness
from harness import REPO, RESULTS
from lpt_probe import store

GOAL_SECONDS = 180


def effects(log: str) -> list[str]:
    """The rows of the printed difference table that mark an effect (``+0.123*``)."""
    return [line for line in log.splitlines() if re.match(r"^\d+\s", line) and "*" in line]


def render(r: dict) -> str:
    verdict = "within" if r["within_goal"] else "OVER"
    phases = ", ".join(f"{k} {v:.0f}" for k, v in (r.get("phase_seconds") or {}).items())
    return "\n".join([
        *harness.report_head("`bash scripts/demo.sh` wall time", r["command"]),
        (f"{r['wall_seconds']:.0f} s on {r['cpu_count']} CPU cores ({verdict} the {GOAL_SECONDS // 60}-minute goal), "
         f".venv already set up; phases of the `mi` run: {phases}; load average {r['load_before']:.1f} before, "
         f"{r['load_after']:.1f} after{'; ' + r['note'] if r.get('note') else ''}. Effects marked in the "
         f"difference table: {r['effect_rows']} hidden state row(s). Output (stdout and stderr in one pipe, not a "
         f"terminal):"),
        "", "```text", r["log"].rstrip(), "```", ""])


def main(argv=None) -> int:
    p = harness.parser(__doc__, data_dir=False)
    p.add_argument("--results", default=str(RESULTS), help="where demo_time.json / demo_time.md go")
    p.add_argument("--note", default="", help="a fact about the machine to record beside the time "
                                                "(e.g. 'another job kept one core busy')")
    args = p.parse_args(argv)
    out = Path(tempfile.mkdtemp()) / "demo"
    proc = harness.run_timed(["bash", "scripts/demo.sh", "--out", str(out)], "bash scripts/demo.sh", cwd=REPO,
                             progress=True, merge=True)
    wall = proc.wall_seconds
    run = store.read_json_object(out / "run.json")
    log = proc.stdout.replace(str(out), "OUT")
    result = {"command": "bash scripts/demo.sh", "wall_seconds": round(wall, 1), "goal_seconds": GOAL_SECONDS,
              "within_goal": wall <= GOAL_SECONDS, "phase_seconds": run.get("phase_seconds"),
              "effect_rows": len(effects(log)), **harness.machine(torch=True),
              "load_before": proc.load_before, "load_after": proc.load_after, "note": args.note,
              "status": run["status"], "log": log}
    results = Path(args.results)
    (results / "demo").mkdir(parents=True, exist_ok=True)
    for name in ("mi.csv", "mi_diff.csv", "run.json"):
        store.atomic_write_text(results / "demo" / name, (out / name).read_text())
    harness.write_json(results / "demo_time.json", result)
    harness.write_report(results / "demo_time.md", render(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
