"""How close ``mi --plan`` comes to the run it plans: time per phase and disk (issue 26).

    python benchmarks/bench_plan.py --data-dir ../shared/data

For each setting (``SETTINGS``; ``--settings`` picks some) on the embedded model: the plan
in a fresh process (``plan_mi``: counts, representation bytes, the calibrated time
estimate), then the command itself into a fresh folder (``python -m lpt_probe.mi``, timed
by ``harness.run_module``), and both side by side: seconds per phase (train, extract,
probe; the model and data loading before them are not part of the plan), their sum, and
the bytes of representations written. The goal: the sum and the disk within 30% of the
measured run. Results: benchmarks/results/plan_accuracy.{json,md} (one entry per setting,
replaced by a rerun). Run by hand on a quiet machine, never in CI.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import harness
from harness import RESULTS

SETTINGS = {
    "rte-default": ["--task", "rte"],
    "trec-pl1-4-6": ["--task", "trec", "--prompt-layers", "1,4,6"],
}
GOAL = 0.30
PLAN = ("import json, sys; from lpt_probe import mi; from lpt_probe.analysis.mi import MIConfig; "
        "from lpt_probe.analysis.plan import plan_mi; from lpt_probe.cli import config_from_args; "
        "args = mi.build_parser().parse_args(sys.argv[1:]); "
        "print(json.dumps(plan_mi(config_from_args(MIConfig, args, progress=False)).to_dict()))")


def measure(name: str, flags: list[str]) -> dict:
    out = Path(tempfile.mkdtemp(prefix="lpt_plan_bench_")) / "mi"
    flags = [*flags, "--out", str(out), "--no-progress"]
    planned = harness.run_timed([sys.executable, "-c", PLAN, *flags], f"plan {name}")
    plan = json.loads(planned.stdout.strip().splitlines()[-1])
    proc, run = harness.run_module("mi", [f for f in flags if f not in ("--no-progress",)], out)
    measured = {k: float(v) for k, v in (run.get("phase_seconds") or {}).items()}
    disk = sum(p.stat().st_size for p in (out / "reps").rglob("*.safetensors")) if (out / "reps").exists() else 0
    total_plan, total_measured = plan["total_seconds"], sum(measured.values())
    return {"command": "python -m lpt_probe.mi " + " ".join(flags[:-3]), "plan": plan,
            "plan_wall_seconds": planned.wall_seconds, "measured_seconds": measured,
            "measured_wall_seconds": proc.wall_seconds, "measured_disk_bytes": disk,
            "time_ratio": total_plan / total_measured if total_measured else float("nan"),
            "disk_ratio": plan["disk_bytes"] / disk if disk else float("nan"),
            "load_before": proc.load_before, "load_after": proc.load_after, **harness.machine(torch=True)}


def verdict(ratio: float) -> str:
    return "within" if abs(ratio - 1) <= GOAL else "OUTSIDE"


def render(entries: dict) -> str:
    lines = ["# `mi --plan` against the run it plans", "",
             (f"Each setting: the plan (a fresh process: counts, disk, a time estimate calibrated on this machine), "
              f"then the run into an empty folder. Goal: phases' total time and representation bytes within "
              f"{GOAL:.0%} of the measured run. Model and data loading (before the phases) are outside both."), "",
             "| setting | train plan / run [s] | extract plan / run [s] | probe plan / run [s] | total plan / run [s] "
             "| time | disk plan / run [MB] | disk | plan took [s] | load avg |",
             "| --- | ---: | ---: | ---: | ---: | --- | ---: | --- | ---: | ---: |"]
    for name, e in entries.items():
        p, m = e["plan"]["seconds"], e["measured_seconds"]
        cells = [f"{p.get(k, 0):.0f} / {m.get(k, 0):.0f}" for k in ("train", "extract", "probe")]
        lines.append(f"| `{e['command']}` | {' | '.join(cells)} | {e['plan']['total_seconds']:.0f} / "
                     f"{sum(m.values()):.0f} | {verdict(e['time_ratio'])} ({e['time_ratio']:.2f}) | "
                     f"{e['plan']['disk_bytes'] / 2**20:.0f} / {e['measured_disk_bytes'] / 2**20:.0f} | "
                     f"{verdict(e['disk_ratio'])} ({e['disk_ratio']:.3f}) | {e['plan_wall_seconds']:.0f} | "
                     f"{e['load_before']:.1f} |")
    first = next(iter(entries.values()))
    lines += ["", harness.machine_line("default", info=first), ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    p = harness.parser(__doc__)
    p.add_argument("--settings", default=",".join(SETTINGS), help=f"some of {', '.join(SETTINGS)}")
    p.add_argument("--results", default=str(RESULTS), help="where plan_accuracy.json / .md go")
    args, extra = p.parse_known_args(argv)
    entries = {}
    for name in args.settings.split(","):
        entries[name] = measure(name, [*SETTINGS[name], "--data-dir", args.data_dir, *extra])
        e = entries[name]
        print(f"{name}: plan {e['plan']['total_seconds']:.0f} s, run {sum(e['measured_seconds'].values()):.0f} s "
              f"({e['time_ratio']:.2f}); disk {e['disk_ratio']:.3f}", flush=True)
    merged = harness.merge_entries(Path(args.results) / "plan_accuracy.json", entries)
    harness.write_report(Path(args.results) / "plan_accuracy.md", render(merged))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
