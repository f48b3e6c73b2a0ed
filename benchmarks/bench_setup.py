"""Setup time on a fresh clone: ``bash scripts/setup.sh`` at a commit before the extras
(issue 33: ray, the GGUF reader and the docs tools became extras) against this checkout's
plain setup (what ``scripts/demo.sh`` needs) and its ``dev`` setup (what the tests need).

    python benchmarks/bench_setup.py --before b3e611e

Each arm clones the repository at its commit into a fresh temporary folder (no ``.venv``)
and times the setup command there, in the arms' order, ``--repeats`` times. pip takes its
wheels from this machine's cache and package index as any fresh setup would; the load
average before and after each arm is recorded, since on a shared machine a setup time is
only as good as its quiet. Writes ``setup_time.json`` and ``setup_time.md`` into ``--out``
(default benchmarks/results).
"""

from __future__ import annotations

import statistics
import sys
import tempfile
from pathlib import Path

import harness
from harness import REPO, RESULTS


def arms(before: str, after: str) -> list[tuple[str, str, list[str]]]:
    """(name, commit, setup command): the old setup (every dependency), the new plain and dev ones."""
    return [(f"before ({before}): bash scripts/setup.sh", before, ["bash", "scripts/setup.sh"]),
            (f"after ({after}): bash scripts/setup.sh", after, ["bash", "scripts/setup.sh"]),
            (f"after ({after}): bash scripts/setup.sh dev", after, ["bash", "scripts/setup.sh", "dev"])]


def main(argv: list[str] | None = None) -> int:
    p = harness.parser(__doc__, data_dir=False)
    p.add_argument("--before", default="b3e611e", help="the commit before the extras")
    p.add_argument("--after", default="HEAD", help="the commit with them (default: this checkout's HEAD)")
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--out", default=str(RESULTS))
    args = p.parse_args(argv)
    if args.repeats < 1:
        p.error(f"--repeats {args.repeats}: give at least 1")
    after = harness.run_timed(["git", "rev-parse", "--short", args.after], cwd=REPO).stdout.strip()
    rows = []
    for name, commit, cmd in arms(args.before, after):
        seconds, loads = [], []
        for _ in range(args.repeats):
            with tempfile.TemporaryDirectory(prefix="lpt-probe-setup-") as tmp:
                clone = Path(tmp) / "lpt_probe"
                harness.run_timed(["git", "clone", "--quiet", str(REPO), str(clone)])
                harness.run_timed(["git", "checkout", "--quiet", commit], cwd=clone)
                timed = harness.run_timed(cmd, name, cwd=clone)
                seconds.append(timed.wall_seconds)
                loads.append([timed.load_before, timed.load_after])
        rows.append({"arm": name, "commit": commit, "command": " ".join(cmd), "seconds": seconds,
                     "median_seconds": statistics.median(seconds), "load_average": loads})
        print(f"{name}: {statistics.median(seconds):.0f} s", flush=True)
    harness.write_json(Path(args.out) / "setup_time.json",
                       {"command": harness.command(__file__, argv), "machine": harness.machine(), "rows": rows})
    lines = harness.report_head("Setup time on a fresh clone", harness.command(__file__, argv))
    lines += ["| setup | seconds (median) | load average before, after |", "|---|---:|---|"]
    lines += [f"| {r['arm']} | {r['median_seconds']:.0f} | "
              + "; ".join(f"{a:.1f}, {b:.1f}" for a, b in r["load_average"]) + " |" for r in rows]
    harness.write_report(Path(args.out) / "setup_time.md", "\n".join(lines + [""]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
