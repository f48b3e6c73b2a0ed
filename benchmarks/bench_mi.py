"""Wall time of the default ``mi`` command on the embedded model (issue 4's budget).

    python benchmarks/bench_mi.py --data-dir ../shared/data

Runs ``python -m lpt_probe.mi --task rte`` with its defaults into a fresh folder and
writes benchmarks/results/mi_time.json and mi_time.md (budget: 15 minutes on a 2-core
CPU machine). Run by hand, not in CI.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-dir", default="../shared/data")
    p.add_argument("--task", default="rte")
    p.add_argument("--keep", default=None, help="copy the mi output folder here")
    p.add_argument("--results", default=str(RESULTS), help="where mi_time.json / mi_time.md go")
    args, extra = p.parse_known_args(argv)
    out = Path(tempfile.mkdtemp()) / "mi"
    cmd = [sys.executable, "-m", "lpt_probe.mi", "--task", args.task, "--data-dir", args.data_dir,
           "--out", str(out), "--no-progress", *extra]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode:
        raise SystemExit(proc.stderr[-3000:])
    run = json.loads((out / "run.json").read_text())
    result = {"command": "python -m lpt_probe.mi --task " + args.task + " --data-dir " + args.data_dir
              + "".join(" " + x for x in extra),
              "wall_seconds": wall, "budget_seconds": 900, "within_budget": wall <= 900,
              "phase_seconds": run.get("phase_seconds"), "cpu_count": os.cpu_count(),
              "machine": platform.machine(), "status": run["status"],
              "stdout_tail": proc.stdout[-2500:]}
    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    (results / "mi_time.json").write_text(json.dumps(result, indent=2) + "\n")
    (results / "mi_time.md").write_text(
        f"# `mi` wall time\n\n`{result['command']}` took {wall:.0f} s on {os.cpu_count()} CPU cores "
        f"({'within' if result['within_budget'] else 'OVER'} the 15-minute budget). Time per phase "
        f"(seconds; training the prompts, extracting every layer's representations of every split, "
        f"fitting and scoring every probe with controls, MDL and PVI): {result['phase_seconds']}.\n\n```\n"
        f"{result['stdout_tail']}\n```\n")
    if args.keep:
        shutil.copytree(out, args.keep, dirs_exist_ok=True)
    print(json.dumps({k: v for k, v in result.items() if k != "stdout_tail"}, indent=2))
    print(result["stdout_tail"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
