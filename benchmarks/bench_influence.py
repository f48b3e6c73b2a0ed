"""Wall time of ``influence`` against ``mi`` on the same settings, on the embedded model.

    python benchmarks/bench_influence.py --data-dir ../shared/data --task trec \\
        --prompt-layers 1,3,6 --steps 50 --max-examples 400 --influence-args "--influence-max 50"

Runs ``python -m lpt_probe.mi`` and ``python -m lpt_probe.influence`` with the same shared
flags (task, data, prompt layers, seeds, steps, ...: everything after the known options) into
fresh folders, one after the other, and records for each the wall time and the time per
phase (from its ``run.json``). Both train the same prompts (the same run keys), so the
comparison that matters is the analysis after training: ``mi``'s extraction plus probing
against ``influence``'s measurement (a frozen pass, the late-prompt pass with attention
captured, two passes with the prompt hidden per layer above PL, one backward pass).
``--mi-args`` / ``--influence-args`` add flags to one command only. Results accumulate in
benchmarks/results/influence_time.json (one entry per command pair; a rerun replaces its
entry) and influence_time.md. The load average at the start and the end is recorded: on a
shared machine a timing is only as good as its quiet. Run by hand, not in CI.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def timed(module: str, flags: list[str], out: Path) -> dict:
    cmd = [sys.executable, "-m", f"lpt_probe.{module}", "--out", str(out), "--no-progress", *flags]
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode:
        raise SystemExit(f"{module} failed:\n{proc.stderr[-3000:]}")
    run = json.loads((out / "run.json").read_text())
    phases = run.get("phase_seconds") or {}
    return {"command": " ".join(["python -m", f"lpt_probe.{module}", *flags]), "wall_seconds": wall,
            "phase_seconds": phases, "analysis_seconds": sum(v for k, v in phases.items() if k != "train"),
            "load_before": load, "load_after": os.getloadavg()[0], "status": run["status"],
            "stdout_tail": proc.stdout[-2000:]}


def render(entries: dict) -> str:
    lines = ["# `influence` against `mi`: wall time", "",
             ("Each entry: `mi` and `influence` with the same shared settings, each into an empty folder on this "
              "machine. Both train the same prompts; *analysis* is everything after training (mi: extracting "
              "representations and fitting every probe with its controls; influence: measuring every prompt at "
              "init and trained). Times in seconds."), ""]
    for key, r in entries.items():
        m, i = r["mi"], r["influence"]
        lines += [f"## `{key}`", "",
                  "| command | wall | train | analysis | load before / after |", "|---|---|---|---|---|"]
        for name, x in (("mi", m), ("influence", i)):
            lines.append(f"| {name} | {x['wall_seconds']:.0f} | {x['phase_seconds'].get('train', 0):.0f} | "
                         f"{x['analysis_seconds']:.0f} | {x['load_before']:.1f} / {x['load_after']:.1f} |")
        lines += ["", (f"influence / mi: {r['ratio_wall']:.2f}x the wall time, {r['ratio_analysis']:.2f}x the "
                       f"analysis time, on {r['cpu_count']} CPU cores ({r['machine']})."), "",
                  "```", i["stdout_tail"].rstrip(), "```", ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-dir", default="../shared/data")
    p.add_argument("--task", default="trec")
    p.add_argument("--mi-args", default="", help="flags for mi only, one string")
    p.add_argument("--influence-args", default="", help="flags for influence only, one string")
    p.add_argument("--results", default=str(RESULTS), help="where influence_time.json / .md go")
    args, extra = p.parse_known_args(argv)
    shared = ["--task", args.task, "--data-dir", args.data_dir, *extra]
    tmp = Path(tempfile.mkdtemp())
    mi = timed("mi", shared + shlex.split(args.mi_args), tmp / "mi")
    inf = timed("influence", shared + shlex.split(args.influence_args), tmp / "influence")
    result = {"mi": mi, "influence": inf, "ratio_wall": inf["wall_seconds"] / mi["wall_seconds"],
              "ratio_analysis": inf["analysis_seconds"] / max(mi["analysis_seconds"], 1e-9),
              "cpu_count": os.cpu_count(), "machine": platform.machine()}
    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    path = results / "influence_time.json"
    entries = json.loads(path.read_text()) if path.exists() else {}
    key = " ".join(shared + ([f"[mi: {args.mi_args}]"] if args.mi_args else [])
                   + ([f"[influence: {args.influence_args}]"] if args.influence_args else []))
    entries[key] = result
    tmp_file = path.with_suffix(".tmp")
    tmp_file.write_text(json.dumps(entries, indent=2) + "\n")
    tmp_file.replace(path)
    (results / "influence_time.md").write_text(render(entries))
    print(json.dumps({k: v for k, v in result.items() if k not in ("mi", "influence")}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
