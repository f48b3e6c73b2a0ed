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

import json
import shlex
import tempfile
from pathlib import Path

import harness
from harness import RESULTS


def timed(module: str, flags: list[str], out: Path) -> dict:
    proc, run = harness.run_module(module, flags, out)
    phases = run.get("phase_seconds") or {}
    return {"command": " ".join(["python -m", f"lpt_probe.{module}", *flags]), "wall_seconds": proc.wall_seconds,
            "phase_seconds": phases, "analysis_seconds": sum(v for k, v in phases.items() if k != "train"),
            "load_before": proc.load_before, "load_after": proc.load_after, "status": run["status"],
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
    p = harness.parser(__doc__)
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
              **harness.machine()}
    results = Path(args.results)
    key = " ".join(shared + ([f"[mi: {args.mi_args}]"] if args.mi_args else [])
                   + ([f"[influence: {args.influence_args}]"] if args.influence_args else []))
    entries = harness.merge_entries(results / "influence_time.json", {key: result})
    harness.write_report(results / "influence_time.md", render(entries), echo=False)
    print(json.dumps({k: v for k, v in result.items() if k not in ("mi", "influence")}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
