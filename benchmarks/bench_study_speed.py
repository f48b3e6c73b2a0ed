"""Studies before and after issue 36's speed work, side by side: a Section 4 study and ``mi --task rte``.

    python benchmarks/bench_study_speed.py --data-dir ../shared/data                  # guide-scale: hours
    python benchmarks/bench_study_speed.py --data-dir ../shared/data --small --repeats 1

Issue 36 made length-bucketed training the default (the studies' prompts were bucketed
already) and runs every frozen pass (cache, evaluation, extraction) under
``torch.inference_mode``; the linear probe stays on float64 features
(``bench_probe_dtype.py`` says why). "Before" is the code of ``--before`` (default: the
commit before the issue's first change), exported with ``git archive`` into a scratch folder
and run from there; "after" is this checkout. Each round runs every command once per version
into a fresh folder, the versions in alternating order (interleaved, so a change in the
machine's load falls on both), and records the wall time and the phases each command
reports (``run.json`` of ``mi``: train, extract, probe; ``section4.json``: sweep, mi,
influence). The commands: ``mi --task rte`` with its defaults, and a Section 4 study of TREC
with MiniLM at the guide's settings (``SECTION4``); ``--small`` runs both at small settings
(``SMALL_MI``, ``SMALL_SECTION4``) so that a round fits in minutes. Results:
benchmarks/results/study_speed.json and study_speed.md (medians over rounds, the after/before
ratio, the load average of each run). Run by hand, not in CI; on a shared machine a timing is
only as good as its quiet, and the report says what the load was.
"""

from __future__ import annotations

import os
import shlex
import shutil
import statistics
import sys
import tarfile
import tempfile
from pathlib import Path

import harness
from harness import REPO, RESULTS

BEFORE = "b3e611e"  # the last commit before issue 36's changes
MI = ["mi", "--task", "rte"]
SECTION4 = ["section4", "--task", "trec", "--prompt-layers", "1,4,6", "--seeds", "13,21", "--dev-size", "200",
            "--max-length", "64", "--probe-train-max", "1000", "--influence-max", "100", "--gradient-loss",
            "label_words"]
SMALL_MI = ["mi", "--task", "rte", "--steps", "60", "--eval-every", "30", "--probe-train-max", "500",
            "--probe-dev-size", "200", "--dev-size", "200"]
SMALL_SECTION4 = ["section4", "--task", "trec", "--prompt-layers", "1,4,6", "--seeds", "13", "--dev-size", "100",
                  "--max-length", "64", "--steps", "60", "--eval-every", "20", "--patience", "0",
                  "--probe-train-max", "300", "--probe-dev-size", "200", "--influence-max", "30", "--gradient-loss",
                  "label_words"]
RECORD = {"mi": "run.json", "section4": "section4.json"}


def export(ref: str, into: Path) -> Path:
    """The package as it was at ``ref``, in ``into`` (``git archive``)."""
    into.mkdir(parents=True, exist_ok=True)
    tar = into / "lpt_probe.tar"
    harness.run_timed(["git", "-C", str(REPO), "archive", "-o", str(tar), ref, "lpt_probe"], f"git archive {ref}")
    with tarfile.open(tar) as archive:
        archive.extractall(into, filter="data")
    tar.unlink()
    return into


def run_one(command: list[str], root: Path, data_dir: str, out: Path) -> dict:
    """``python -m lpt_probe.<command>`` run from ``root`` (whose ``lpt_probe`` it imports)."""
    cmd = [sys.executable, "-m", f"lpt_probe.{command[0]}", *command[1:], "--data-dir", data_dir, "--out", str(out),
           "--no-progress", "--quiet"]
    timed = harness.run_timed(cmd, " ".join(command), cwd=root)
    from lpt_probe import store

    record = store.read_json_object(out / RECORD[command[0]])
    phases = record.get("phase_seconds") or record.get("stage_seconds") or {}
    return {"wall_seconds": timed.wall_seconds, "load_before": timed.load_before, "load_after": timed.load_after,
            "phases": {k: float(v) for k, v in phases.items()}}


def report(args, argv, commands: dict, runs: list[dict]) -> None:
    """study_speed.json and study_speed.md from the ``runs`` so far (a command counts once both
    versions ran it in a round)."""
    summary = {}
    for name in commands:
        paired = {r for r in {x["round"] for x in runs}
                  if {x["version"] for x in runs if x["command"] == name and x["round"] == r} == {"before", "after"}}
        mine = [x for x in runs if x["command"] == name and x["round"] in paired]
        if not mine:
            continue
        pairs = len(paired)
        med = {v: statistics.median(x["wall_seconds"] for x in mine if x["version"] == v) for v in ("before", "after")}
        phases = {v: {k: statistics.median(x["phases"].get(k, float("nan")) for x in mine if x["version"] == v)
                      for k in mine[0]["phases"]}
                  for v in ("before", "after")}
        summary[name] = {"command": "python -m lpt_probe." + " ".join(commands[name]), "pairs": pairs,
                         "median_seconds": med, "speedup": med["before"] / med["after"], "median_phases": phases}
    loads = [x["load_before"] for x in runs] + [x["load_after"] for x in runs]
    threads = os.environ.get("OMP_NUM_THREADS", "default")
    result = {"command": harness.command(__file__, argv), "before": args.before, "repeats": args.repeats,
              "small": args.small, "threads": threads, **harness.machine(torch=True),
              "load_min": min(loads), "load_max": max(loads), "summary": summary, "runs": runs}
    out = Path(args.results)
    harness.write_json(out / "study_speed.json", result)
    lines = [*harness.report_head("Studies before and after issue 36 (bucketed training, inference mode)",
                                  result["command"]),
             (f"Before = `{args.before}`, after = this checkout; {args.repeats} interleaved round(s) asked for, the "
              "versions' order alternating by round; medians over the rounds each command finished (rounds). "
              f"{harness.machine_line(threads, 'threads', result)}; load average {min(loads):.1f} to {max(loads):.1f} "
              "during the runs" + (" (measured under load: other jobs shared the cores)" if max(loads) > 1.5 else "")
              + "."), "",
             "| command | rounds | before (s) | after (s) | before / after | phases before (s) | phases after (s) |",
             "|---|---:|---:|---:|---:|---|---|"]
    for name, s in summary.items():
        ph = {v: ", ".join(f"{k} {t:.0f}" for k, t in s["median_phases"][v].items()) for v in ("before", "after")}
        lines.append(f"| `{s['command']}` | {s['pairs']} | {s['median_seconds']['before']:.0f} | "
                     f"{s['median_seconds']['after']:.0f} | {s['speedup']:.2f}x | {ph['before']} | {ph['after']} |")
    lines += ["", "Every run (seconds, load average at its start):", "",
              "| round | command | version | wall | load |", "|---:|---|---|---:|---:|"]
    lines += [f"| {x['round']} | {x['command']} | {x['version']} | {x['wall_seconds']:.0f} | {x['load_before']:.1f} |"
              for x in runs]
    harness.write_report(out / "study_speed.md", "\n".join(lines) + "\n")
    print("\n".join(lines), flush=True)


def main(argv=None) -> int:
    p = harness.parser(__doc__)
    p.add_argument("--before", default=BEFORE, help="the git revision measured as 'before'")
    p.add_argument("--repeats", type=int, default=3, help="rounds (each runs every command once per version)")
    p.add_argument("--small", action="store_true", help="both commands at small settings (minutes, not hours)")
    p.add_argument("--only", choices=("mi", "section4"), default=None, help="one of the two commands")
    p.add_argument("--mi-args", default="", help="more flags for the mi command (override its settings)")
    p.add_argument("--section4-args", default="", help="more flags for the section4 command")
    p.add_argument("--results", default=str(RESULTS))
    args = p.parse_args(argv)
    data_dir = str(Path(args.data_dir).resolve())
    commands = {"mi": [*(SMALL_MI if args.small else MI), *shlex.split(args.mi_args)],
                "section4": [*(SMALL_SECTION4 if args.small else SECTION4), *shlex.split(args.section4_args)]}
    if args.only:
        commands = {args.only: commands[args.only]}
    scratch = Path(tempfile.mkdtemp(prefix="bench_study_speed_"))
    roots = {"before": export(args.before, scratch / "before"), "after": REPO}
    runs: list[dict] = []
    try:
        for r in range(args.repeats):
            order = ["before", "after"] if r % 2 == 0 else ["after", "before"]
            for name, command in commands.items():
                for version in order:
                    out = scratch / f"{name}-{version}-{r}"
                    res = run_one(command, roots[version], data_dir, out)
                    shutil.rmtree(out, ignore_errors=True)
                    runs.append({"round": r, "command": name, "version": version, **res})
                    print(f"round {r} {name} {version}: {res['wall_seconds']:.0f} s (load {res['load_before']:.1f})",
                          flush=True)
                if all(any(x["command"] == name and x["version"] == v for x in runs) for v in order):
                    report(args, argv, commands, runs)  # after every pair: an interrupted run keeps what it measured
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
