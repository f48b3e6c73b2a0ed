"""How long ``lpt-probe <command> --help`` takes, for every command (issue 33's goal: under 2 s
on the 2-core machine, with no torch imported).

    python benchmarks/bench_help.py --repeats 5 --before 2711392

Each command's ``--help`` runs ``--repeats`` times in a fresh Python process, as the
``lpt-probe`` console script runs it (``from lpt_probe.__main__ import main``, with this
checkout first on the path, one thread); the wall time of each run is recorded with the
load average before and after it, since on a shared machine a timing is only as good as
its quiet. ``lpt-probe --help`` (the command list) and a bare ``python -c pass`` (the
interpreter's own start, which every row includes) are measured the same way for
reference. ``--before COMMIT`` also times the commands at that commit (a clone in a
temporary folder, the same interpreter and packages), interleaved with this checkout's
runs so that both see the same load. Writes ``help_time.csv`` (one row per checkout and
command: median, min and max seconds, the load averages) and ``help_time.md`` into
``--out`` (default benchmarks/results).
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
from pathlib import Path

import harness
from harness import REPO, RESULTS

COMMANDS = ("train", "sweep", "mi", "influence", "section4", "project", "figures")
GOAL_SECONDS = 2.0
# what the console script runs (pyproject's [project.scripts] lpt-probe = "lpt_probe.__main__:main")
ENTRY = "import sys; from lpt_probe.__main__ import main; sys.argv[0] = 'lpt-probe'; sys.exit(main())"


def arms(commands=COMMANDS) -> list[tuple[str, list[str]]]:
    """(what is shown, the command line): the interpreter alone, the command list, each command's --help."""
    entry = [sys.executable, "-c", ENTRY]
    return ([("python -c pass", [sys.executable, "-c", "pass"]), ("lpt-probe --help", [*entry, "--help"])]
            + [(f"lpt-probe {c} --help", [*entry, c, "--help"]) for c in commands])


def timed(cmd: list[str], name: str, checkout: Path) -> harness.Timed:
    """One run of ``cmd`` with ``checkout`` first on the path (and as the working folder)."""
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = str(checkout)  # the package imports from this checkout only
    try:
        return harness.run_timed(cmd, name, cwd=checkout, threads=1)
    finally:
        os.environ.pop("PYTHONPATH") if old is None else os.environ.__setitem__("PYTHONPATH", old)


def row(checkout: str, name: str, runs: list[harness.Timed]) -> dict:
    seconds = [t.wall_seconds for t in runs]
    loads = [x for t in runs for x in (t.load_before, t.load_after)]
    return {"checkout": checkout, "command": name, "repeats": len(runs),
            "median_seconds": round(statistics.median(seconds), 3), "min_seconds": round(min(seconds), 3),
            "max_seconds": round(max(seconds), 3), "load_min": round(min(loads), 2), "load_max": round(max(loads), 2)}


def main(argv: list[str] | None = None) -> int:
    p = harness.parser(__doc__, data_dir=False)
    p.add_argument("--repeats", type=int, default=5, help="runs of each command (the median is reported)")
    p.add_argument("--before", default=None, metavar="COMMIT", help="also time the commands at this commit")
    p.add_argument("--commands", default=",".join(COMMANDS), help="comma list of the commands timed (default: all)")
    p.add_argument("--out", default=str(RESULTS))
    args = p.parse_args(argv)
    if args.repeats < 1:
        p.error(f"--repeats {args.repeats}: give at least 1")
    commands = [c.strip() for c in args.commands.split(",") if c.strip()]
    unknown = [c for c in commands if c not in COMMANDS]
    if unknown or not commands:
        p.error(f"--commands {args.commands}: choose from {','.join(COMMANDS)}")
    head = harness.run_timed(["git", "rev-parse", "--short", "HEAD"], cwd=REPO).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="lpt-probe-help-") as tmp:
        checkouts = {f"this ({head})": REPO}
        if args.before:
            clone = Path(tmp) / "before"
            harness.run_timed(["git", "clone", "--quiet", str(REPO), str(clone)])
            harness.run_timed(["git", "checkout", "--quiet", args.before], cwd=clone)
            checkouts[f"before ({args.before})"] = clone
        rows = []
        for name, cmd in arms(commands):
            if name == "python -c pass":  # the interpreter: no checkout involved
                runs = {label: [timed(cmd, name, REPO) for _ in range(args.repeats)] for label in list(checkouts)[:1]}
            else:
                runs = {label: [] for label in checkouts}
                for _ in range(args.repeats):  # interleaved: both checkouts see the same load
                    for label, folder in checkouts.items():
                        runs[label].append(timed(cmd, name, folder))
            for label, done in runs.items():
                rows.append(row(label, name, done))
                print(f"{label} {name}: {rows[-1]['median_seconds']:.2f} s (median of {args.repeats})", flush=True)
    import pandas as pd  # the table only (the timed commands import nothing of this process)

    out = Path(args.out)
    harness.store.write_csv(out / "help_time.csv", pd.DataFrame(rows))
    lines = harness.report_head("`--help` time per command", harness.command(__file__, argv))
    lines += [harness.machine_line(1), "",
              f"Goal: every command's `--help` under {GOAL_SECONDS:g} s. Wall time of a fresh process, "
              f"{args.repeats} run(s) each; load average (1 minute) before and after the runs.", "",
              "| checkout | command | median s | min s | max s | load average |", "|---|---|---:|---:|---:|---|"]
    lines += [f"| {r['checkout']} | `{r['command']}` | {r['median_seconds']:.2f} | {r['min_seconds']:.2f} | "
              f"{r['max_seconds']:.2f} | {r['load_min']:.1f} to {r['load_max']:.1f} |" for r in rows]
    mine = [r for r in rows if r["checkout"].startswith("this") and r["command"].split()[1] in COMMANDS]
    worst = max(mine, key=lambda r: r["median_seconds"])
    verdict = "met" if worst["median_seconds"] < GOAL_SECONDS else "missed"
    lines += ["", f"Slowest command of this checkout: `{worst['command']}`, {worst['median_seconds']:.2f} s "
                  f"(median): the goal is {verdict}."]
    harness.write_report(out / "help_time.md", "\n".join(lines + [""]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
