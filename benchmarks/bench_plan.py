"""How close ``--plan`` comes to the run it plans (mi, sweep, influence): time per phase and disk (issue 26).

    python benchmarks/bench_plan.py --data-dir ../shared/data
    python benchmarks/bench_plan.py --settings sweep-rte-pl3-6,influence-trec-pl1-3-6 --data-dir ../shared/data

A setting (``SETTINGS``; ``--settings`` picks some) is a command, ``mi``, ``sweep`` or
``influence``, and its flags, on the embedded model. For each: the plan in a fresh process,
built from the flags as the command's own ``--plan`` builds it (``PLAN``: ``plan_mi``,
``plan_sweep``, ``plan_influence``; counts, bytes, the calibrated time estimate), then the
command itself into a fresh folder (``python -m lpt_probe.<command>``, timed by
``harness.run_module``), and both side by side per phase, as the run records its phases
(``phase_seconds``):

- ``mi`` (``run.json``): train, extract, probe; and the bytes of representations written
  (``reps/``) against the plan's disk;
- ``sweep`` (``sweep.json``, local executor): cache (the lower-layer cache, one pass over
  every split) and train (every cell: steps, dev and test evaluations, its run folder);
- ``influence`` (``run.json``): train (each prompt: its cache, steps, evaluations, run
  folder) and measure (every prompt x checkpoint).

What comes before the phases (imports, model and data loading, the sweep's keying of its
cells) and after them (tables, figures) is in neither the plan nor the compared sum; the
run's wall time is recorded beside it. The sweep and influence plans estimate no disk: their
rows show the bytes the run wrote and no ratio. The goal: the phases' sum (and mi's disk)
within 30% of the measured run. Flags after the known ones go to every chosen setting's
command (pick flags they all take); ``--mi-args`` / ``--sweep-args`` / ``--influence-args``
add flags to one command's settings only. Results: benchmarks/results/plan_accuracy.{json,md}
(one entry per setting, replaced by a rerun; other entries kept). Run by hand on a quiet
machine, one setting after another, never in CI.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
import tempfile
from pathlib import Path

import harness
from harness import RESULTS

SETTINGS = {  # name: (command, its flags)
    "rte-default": ("mi", ["--task", "rte"]),
    "trec-pl1-4-6": ("mi", ["--task", "trec", "--prompt-layers", "1,4,6"]),
    "sweep-rte-pl3-6": ("sweep", ["--task", "rte", "--shots", "100", "--prompt-layers", "3,6", "--seeds", "13",
                                  "--steps", "200"]),
    "influence-trec-pl1-3-6": ("influence", ["--task", "trec", "--prompt-layers", "1,3,6", "--seeds", "13",
                                             "--influence-max", "50", "--bootstrap", "500"]),
}
GOAL = 0.30
# the plan as each command's --plan builds it from its flags, printed as JSON
PLAN = {
    "mi": ("from lpt_probe.commands import mi as command; from lpt_probe.analysis.mi.study import MIConfig; "
           "from lpt_probe.analysis.plan import plan_mi; from lpt_probe.commands.cli import config_from_args; "
           "args = command.build_parser().parse_args(sys.argv[1:]); "
           "plan = plan_mi(config_from_args(MIConfig, args, progress=False))"),
    "sweep": ("from lpt_probe.commands import sweep as command; from lpt_probe.runs.sweep_plan import plan_sweep; "
              "args = command.build_parser().parse_args(sys.argv[1:]); plan = plan_sweep(*command.configs(args))"),
    "influence": ("from lpt_probe.commands import influence as command; from lpt_probe.analysis.influence.study import "
                  "InfluenceConfig; from lpt_probe.analysis.plan import plan_influence; "
                  "from lpt_probe.commands.cli import config_from_args; args = command.build_parser().parse_args(sys.argv[1:]); "
                  "plan = plan_influence(config_from_args(InfluenceConfig, args, progress=False))"),
}
RECORD = {"mi": "run.json", "sweep": "sweep.json", "influence": "run.json"}  # where the run's phase_seconds are
COMPARED = {  # what the time columns hold, per command (the report's words)
    "mi": ("phases from `run.json`: train (prompts), extract (representations), probe (pieces); disk: "
           "representation bytes (`reps/`)"),
    "sweep": ("phases from `sweep.json` (local executor): cache (the lower-layer cache, one pass over every "
              "split), train (every cell: steps, dev and test evaluations, run folder); the plans estimate no "
              "disk (*run*: every byte the sweep wrote)"),
    "influence": ("phases from `run.json`: train (each prompt: its cache, steps, evaluations, run folder), "
                  "measure (every prompt x checkpoint); the plans estimate no disk (*run*: every byte written)"),
}


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0


def measure(name: str, module: str, flags: list[str]) -> dict:
    out = Path(tempfile.mkdtemp(prefix="lpt_plan_bench_")) / module
    planned = harness.run_timed([sys.executable, "-c", f"import json, sys; {PLAN[module]}; "
                                 "print(json.dumps(plan.to_dict()))", *flags, "--out", str(out), "--no-progress"],
                                f"plan {name}")
    plan = json.loads(planned.stdout.strip().splitlines()[-1])
    proc, run = harness.run_module(module, flags, out, record=RECORD[module])
    measured = {k: float(v) for k, v in (run.get("phase_seconds") or {}).items()}
    if module == "mi":  # what the plan's disk counts: the representations
        disk = sum(p.stat().st_size for p in (out / "reps").rglob("*.safetensors")) if (out / "reps").exists() else 0
    else:
        disk = folder_bytes(out)
    total_plan, total_measured = plan["total_seconds"], sum(measured.values())
    planned_disk = plan["disk_bytes"] if module == "mi" else None
    return {"module": module, "command": f"python -m lpt_probe.{module} " + " ".join(flags), "plan": plan,
            "plan_wall_seconds": planned.wall_seconds, "measured_seconds": measured,
            "measured_wall_seconds": proc.wall_seconds, "measured_disk_bytes": disk,
            "time_ratio": total_plan / total_measured if total_measured else float("nan"),
            "disk_ratio": planned_disk / disk if planned_disk is not None and disk else None,
            "load_before": proc.load_before, "load_after": proc.load_after,
            "threads": os.environ.get("OMP_NUM_THREADS", "default"), **harness.machine(torch=True)}


def verdict(ratio: float) -> str:
    return "within" if abs(ratio - 1) <= GOAL else "OUTSIDE"


def module_of(entry: dict) -> str:
    """The command of an entry (entries written before sweep and influence were compared: mi)."""
    return entry.get("module") or entry["command"].split()[2].rsplit(".", 1)[-1]


def render(entries: dict) -> str:
    lines = ["# `--plan` against the run it plans", "",
             (f"Each setting: the plan (a fresh process: counts, disk, a time estimate calibrated on this machine), "
              f"then the run into an empty folder. Goal: the phases' total time (and `mi`'s representation bytes) "
              f"within {GOAL:.0%} of the measured run. What comes before the phases (model and data loading, "
              f"keying) and after them (tables, figures) is outside both; *run wall* is the whole command."), ""]
    for module in ("mi", "sweep", "influence"):
        mine = {k: e for k, e in entries.items() if module_of(e) == module}
        if not mine:
            continue
        phases = list(dict.fromkeys(p for e in mine.values() for p in [*e["plan"]["seconds"], *e["measured_seconds"]]))
        lines += [f"## `{module} --plan`", "", f"Compared: {COMPARED[module]}.", "",
                  "| setting | " + " | ".join(f"{p} plan / run [s]" for p in phases) + " | total plan / run [s] | time "
                  "| disk plan / run [MB] | disk | plan took [s] | run wall [s] | threads | load avg before / after |",
                  "| --- | " + " | ".join("---:" for _ in phases)
                  + " | ---: | --- | ---: | --- | ---: | ---: | --- | ---: |"]
        for e in mine.values():
            p, m = e["plan"]["seconds"], e["measured_seconds"]
            cells = [f"{p.get(k, 0):.0f} / {m.get(k, 0):.0f}" for k in phases]
            ratio = e.get("disk_ratio")
            planned_disk = "-" if ratio is None else f"{e['plan']['disk_bytes'] / 2**20:.1f}"
            disk = "not planned" if ratio is None else f"{verdict(ratio)} ({ratio:.3f})"
            lines.append(f"| `{e['command']}` | {' | '.join(cells)} | {e['plan']['total_seconds']:.0f} / "
                         f"{sum(m.values()):.0f} | {verdict(e['time_ratio'])} ({e['time_ratio']:.2f}) | "
                         f"{planned_disk} / {e['measured_disk_bytes'] / 2**20:.1f} | {disk} | "
                         f"{e['plan_wall_seconds']:.0f} | {e['measured_wall_seconds']:.0f} | "
                         f"{e.get('threads', 'default')} | {e['load_before']:.1f} / {e['load_after']:.1f} |")
        lines.append("")
    threads = {str(e.get("threads", "default")) for e in entries.values()}  # OMP_NUM_THREADS of the runs
    first = next(iter(entries.values()))
    lines += [harness.machine_line(threads.pop() if len(threads) == 1 else "each row's", info=first), ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    p = harness.parser(__doc__)
    p.add_argument("--settings", default=",".join(SETTINGS), help=f"some of {', '.join(SETTINGS)}")
    p.add_argument("--results", default=str(RESULTS), help="where plan_accuracy.json / .md go")
    for module in PLAN:
        p.add_argument(f"--{module}-args", default="", help=f"flags for the {module} settings only, one string")
    args, extra = p.parse_known_args(argv)
    names = args.settings.split(",")
    unknown = [n for n in names if n not in SETTINGS]
    if unknown:
        p.error(f"--settings {','.join(unknown)}: unknown; choose from {', '.join(SETTINGS)}")
    entries = {}
    for name in names:
        module, flags = SETTINGS[name]
        own = shlex.split(getattr(args, f"{module}_args"))
        entries[name] = e = measure(name, module, [*flags, "--data-dir", args.data_dir, *extra, *own])
        print(f"{name}: plan {e['plan']['total_seconds']:.0f} s, run {sum(e['measured_seconds'].values()):.0f} s "
              f"({e['time_ratio']:.2f})" + (f"; disk {e['disk_ratio']:.3f}" if e["disk_ratio"] is not None else ""),
              flush=True)
        # each setting's result kept as soon as it is measured: a later failure loses nothing
        merged = harness.merge_entries(Path(args.results) / "plan_accuracy.json", {name: e})
    harness.write_report(Path(args.results) / "plan_accuracy.md", render(merged))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
