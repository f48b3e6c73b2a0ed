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

    python benchmarks/bench_study_speed.py --data-dir ../shared/data --after-only --repeats 1   # the floor alone

The floor (``--floor``, the default; ``--no-floor`` skips it): what each command could not do
faster than, timed in this process, on this machine, from the *after* version's output folder of
round 0 (before it is deleted; ``study_floor``):

- ``cache_pass``: one lower-layer pass over the prompts' train, dev and test splits keeping
  every hidden state PL-1 the prompts start from;
- ``bare_train``: for every prompt the command trained (its run folders: ``mi``'s ``runs``;
  a Section 4 study's ``sweep/runs/*`` and what its ``mi`` and ``influence`` stages name),
  ``lpt_probe.runs.bare.time_bare`` over the batches its trainer drew for the steps it
  *actually ran* (``metrics.json`` ``stopped_step``: patience may stop it before ``--steps``),
  from its own ``config.json`` (train and prompt configs);
- ``bare_eval``: its evaluations bare, layers PL..L forward on the cached states, dev as
  many times as it evaluated (its ``curve.csv`` rows), test once;
- ``forward``: one frozen forward pass (embeddings, every layer, final norm) over the
  examples the ``mi`` stage extracts (probe train + probe dev + test, rebuilt from its
  ``run.json`` settings and checked against its probe fingerprints), timed once and counted
  once per condition (frozen, each prompt, random weights);
- ``probes``: the ``mi`` stage's own recorded ``probe`` phase seconds (no floor is timed);
- ``influence`` (``section4`` only): its recorded stage seconds (no smaller floor is known).

``floor`` is their sum; the report gives each command's wall time (the run the floor was
read from), floor, parts and wall / floor, and each prompt's recorded training seconds
against its bare seconds. Loading the model and data is not in the floor (reported beside
it as ``load``). ``--after-only`` runs this checkout alone (no ``git archive``, no before
column): a floor without the old code.
"""

from __future__ import annotations

import argparse
import gc
import os
import shlex
import shutil
import statistics
import sys
import tarfile
import tempfile
import time
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


# -- the floor ------------------------------------------------------------------------------------
FLOOR_PARTS = ("cache_pass", "bare_train", "bare_eval", "forward", "probes", "influence")
MI_RECORD = {"mi": ".", "section4": "mi"}  # where the command's mi record (run.json) is


def study_runs(out: Path, command: str) -> list[Path]:
    """The run folders of the prompts the command in ``out`` trained, each once: ``mi``'s
    ``run.json`` ``runs``; for ``section4`` its sweep's ``sweep/runs/*`` and the runs its
    ``mi`` and ``influence`` stages name (they reuse the sweep's). Only finished runs
    (``meta.json`` status complete) count: a failed cell trained nothing to time."""
    from lpt_probe import store

    out = Path(out)
    if command not in MI_RECORD:
        raise ValueError(f"command={command!r}: the floor knows {sorted(MI_RECORD)}")
    records = [out / MI_RECORD[command] / "run.json"]
    found: list[Path] = []
    if command == "section4":
        records.append(out / "influence" / "run.json")
        found += sorted(p.parent for p in (out / "sweep" / "runs").glob("*/meta.json"))
    for record in records:
        if record.exists():
            found += [record.parent / rel for rel in store.read_json_object(record).get("runs", {}).values()]
    unique: dict[Path, Path] = {}
    for folder in found:
        unique.setdefault(folder.resolve(), folder)
    return [f for f in unique.values()
            if store.read_json_object(f / "meta.json").get("status") == "complete"]


def bare_runs(folders: list[Path]) -> tuple[list, list[dict]]:
    """``floor.BareRun`` of each run folder (its configs from ``config.json``, the steps it
    ran from ``metrics.json`` ``stopped_step``, its dev evaluations from ``curve.csv``) and
    each one's facts: what it recorded (steps cap, stopped step, train seconds and tokens)."""
    import pandas as pd

    from floor import BareRun
    from lpt_probe import store
    from lpt_probe.model.late_prompt import LatePromptConfig
    from lpt_probe.runs.folders import read_config
    from lpt_probe.runs.trainer import TrainConfig

    runs, facts = [], []
    for folder in folders:
        config = read_config(folder)
        metrics = store.read_json_object(folder / "metrics.json")
        tc, pc = TrainConfig(**config["train"]), LatePromptConfig(**config["prompt"])
        stopped = int(metrics.get("stopped_step", metrics["steps"]))
        runs.append(BareRun(folder.name, pc, tc, stopped, len(pd.read_csv(folder / "curve.csv"))))
        facts.append({"run": folder.name, "config": config, "cap_steps": int(metrics["steps"]),
                      "stopped_step": stopped, "train_seconds": float(metrics["train_seconds"]),
                      "train_tokens": int(metrics["train_tokens"])})
    return runs, facts


def study_floor(out: Path, command: str, wall_seconds: float | None = None) -> dict:
    """The floor of the finished ``command`` (``mi`` or ``section4``) in ``out``, timed here
    (the module docstring defines it): ``parts`` (seconds of each of ``FLOOR_PARTS`` that
    the command has), ``floor_seconds`` (their sum), ``load_seconds`` (the model and data,
    not in the floor), the frozen pass and its examples, the number of conditions, and one
    row per trained prompt (steps run and cap, dev evaluations, recorded train seconds and
    tokens, bare seconds and tokens). With ``wall_seconds``, ``wall_over_floor`` too."""
    import torch

    from floor import bare_work, frozen_pass
    from lpt_probe import store
    from lpt_probe.analysis.mi.study import MIConfig, MIRun
    from lpt_probe.runs.run import prepare

    out = Path(out)
    mi_record = store.read_json_object(out / MI_RECORD[command] / "run.json")
    folders = study_runs(out, command)
    if not folders:
        raise ValueError(f"{out}: no finished prompt run to time (the {command} command trained none?)")
    runs, facts = bare_runs(folders)
    base = runs[0].train
    t = time.perf_counter()
    prepared = prepare(base)
    load = time.perf_counter() - t
    for f in facts:  # the batches timed are the run's only if its data and model are the ones loaded here
        if f["config"]["data"] != prepared.fingerprints():
            raise ValueError(f"{f['run']}: its encoded data differ from the first run's ({runs[0].name}); the floor "
                             f"times one study's prompts, on one data set")
        if f["config"]["model_identity"] != prepared.model_info["identity"]:
            raise ValueError(f"{f['run']}: trained on another model than {base.model!r} loaded here")
    work = bare_work(prepared, runs, base.eval_batch_size, label=f"floor {command}")
    study = MIRun(MIConfig.from_settings(mi_record["settings"]), bundle=prepared.bundle)
    study.load_data()
    if study.fingerprints != mi_record["probe_fingerprints"]:
        raise ValueError(f"{out}: the probe data rebuilt from its settings differ from the ones its mi stage "
                         f"extracted (probe fingerprints); the forward floor would time other examples")
    passed = frozen_pass(study.backbone, study.encoded)
    conditions = len(mi_record["conditions"])
    rows = [{"run": f["run"], "prompt_layer": r.prompt.prompt_layer, "seed": r.train.seed,
             "cap_steps": f["cap_steps"], "stopped_step": f["stopped_step"], "dev_evals": w["dev_evals"],
             "train_seconds": f["train_seconds"], "train_tokens": f["train_tokens"],
             "bare_train_seconds": w["bare_train_seconds"], "bare_tokens": w["bare_tokens"],
             "bare_eval_seconds": w["bare_eval_seconds"]}
            for r, f, w in zip(runs, facts, work["runs"])]
    parts = {"cache_pass": sum(work["extract"].values()),
             "bare_train": sum(r["bare_train_seconds"] for r in rows),
             "bare_eval": sum(r["bare_eval_seconds"] for r in rows),
             "forward": passed["seconds"] * conditions,
             "probes": float(mi_record["phase_seconds"]["probe"])}
    if command == "section4":
        parts["influence"] = float(store.read_json_object(out / "section4.json")["stage_seconds"]["influence"])
    res = {"parts": parts, "floor_seconds": sum(parts.values()), "load_seconds": load,
           "cache_pass_splits": work["extract"], "cached_states": work["cached_states"],
           "frozen_pass_seconds": passed["seconds"], "frozen_pass_examples": passed["examples"],
           "conditions": conditions, "torch_threads": torch.get_num_threads(), "runs": rows}
    if wall_seconds is not None:
        res.update(wall_seconds=wall_seconds, wall_over_floor=wall_seconds / res["floor_seconds"])
    return res


def floor_or_error(out: Path, command: str, wall_seconds: float) -> dict:
    """``study_floor``, or ``{"error": ...}`` naming why it could not be timed: the wall times
    measured so far are kept (a floor that fails does not cost the rounds), and the report
    says the floor failed and why."""
    try:
        res = study_floor(out, command, wall_seconds)
    except Exception as exc:  # noqa: BLE001 (any failure of the floor: recorded, the benchmark goes on)
        print(f"floor {command} failed: {type(exc).__name__}: {exc}", flush=True)
        return {"error": f"{type(exc).__name__}: {exc}", "wall_seconds": wall_seconds}
    print(f"floor {command}: {res['floor_seconds']:.0f} s (wall / floor {res['wall_over_floor']:.2f})", flush=True)
    return res


def floor_lines(floors: dict) -> list[str]:
    """The report's floor section: one row per command, then one per trained prompt."""
    if not floors:
        return []
    lines = ["", "## Against the floor", "",
             "The floor of each command, timed in the benchmark process from the after version's round-0 output "
             "(the script's docstring defines it): cache_pass = one lower-layer pass over the prompts' splits; "
             "bare_train = the bare loop (layers PL..L forward and backward) over each trained prompt's own batches "
             "for the steps it actually ran; bare_eval = its dev evaluations and one test evaluation, bare; "
             "forward = one frozen forward pass over the mi stage's probe train + probe dev + test examples, timed "
             "once, times the number of conditions (frozen, each prompt, random weights); probes = the mi stage's "
             "recorded probe phase; influence = section4's recorded influence stage (no smaller floor is known). "
             "Wall = the run the floor was read from; load (model and data) is not in the floor.", "",
             "| command | wall (s) | floor (s) | wall / floor | " + " | ".join(FLOOR_PARTS)
             + " | conditions | load (s) |",
             "|---|---:|---:|---:|" + "---:|" * len(FLOOR_PARTS) + "---:|---:|"]
    for name, f in floors.items():
        if "error" in f:
            lines.append(f"| {name} | {harness.cell(f.get('wall_seconds'), '{:.0f}')} | not timed: {f['error']} |")
            continue
        parts = " | ".join(harness.cell(f["parts"].get(k)) for k in FLOOR_PARTS)
        lines.append(f"| {name} | {harness.cell(f.get('wall_seconds'), '{:.0f}')} | {f['floor_seconds']:.1f} | "
                     f"{harness.cell(f.get('wall_over_floor'), '{:.2f}')} | {parts} | {f['conditions']} | "
                     f"{f['load_seconds']:.1f} |")
    lines += ["", "Each trained prompt: steps it ran (of the cap), dev evaluations, its recorded training-step "
                  "seconds (metrics.json train_seconds) against the bare loop's on the same batches.", "",
              "| command | run | PL | seed | steps (cap) | dev evals | train s | bare s | train / bare | bare eval s |",
              "|---|---|---:|---:|---|---:|---:|---:|---:|---:|"]
    for name, f in floors.items():
        for r in f.get("runs", []):
            ratio = r["train_seconds"] / r["bare_train_seconds"] if r["bare_train_seconds"] > 0 else None
            lines.append(f"| {name} | {r['run']} | {r['prompt_layer']} | {r['seed']} | {r['stopped_step']} "
                         f"({r['cap_steps']}) | {r['dev_evals']} | {r['train_seconds']:.1f} | "
                         f"{r['bare_train_seconds']:.1f} | {harness.cell(ratio, '{:.2f}')} | "
                         f"{r['bare_eval_seconds']:.1f} |")
    return lines


def report(args, argv, commands: dict, runs: list[dict], floors: dict | None = None) -> None:
    """study_speed.json and study_speed.md from the ``runs`` so far (a command counts once every
    version ran it in a round: both, or after alone with ``--after-only``) and the ``floors``."""
    versions = ("after",) if args.after_only else ("before", "after")
    floors = floors or {}
    summary = {}
    for name in commands:
        paired = {r for r in {x["round"] for x in runs}
                  if {x["version"] for x in runs if x["command"] == name and x["round"] == r} == set(versions)}
        mine = [x for x in runs if x["command"] == name and x["round"] in paired]
        if not mine:
            continue
        pairs = len(paired)
        med = {v: statistics.median(x["wall_seconds"] for x in mine if x["version"] == v) for v in versions}
        phases = {v: {k: statistics.median(x["phases"].get(k, float("nan")) for x in mine if x["version"] == v)
                      for k in mine[0]["phases"]}
                  for v in versions}
        speedup = {} if args.after_only else {"speedup": med["before"] / med["after"]}
        summary[name] = {"command": "python -m lpt_probe." + " ".join(commands[name]), "pairs": pairs,
                         "median_seconds": med, **speedup, "median_phases": phases}
    loads = [x["load_before"] for x in runs] + [x["load_after"] for x in runs]
    threads = os.environ.get("OMP_NUM_THREADS", "default")
    result = {"command": harness.command(__file__, argv), "before": None if args.after_only else args.before,
              "after_only": args.after_only, "repeats": args.repeats,
              "small": args.small, "threads": threads, **harness.machine(torch=True),
              "load_min": min(loads), "load_max": max(loads), "summary": summary, "floor": floors, "runs": runs}
    out = Path(args.results)
    harness.write_json(out / "study_speed.json", result)
    if args.after_only:
        title = "Studies at this checkout, against their floor (issue 36)"
        how = (f"This checkout alone (--after-only); {args.repeats} round(s) asked for; medians over the rounds each "
               "command finished (rounds). ")
        head = ["| command | rounds | after (s) | phases after (s) |", "|---|---:|---:|---|"]
    else:
        title = "Studies before and after issue 36 (bucketed training, inference mode)"
        how = (f"Before = `{args.before}`, after = this checkout; {args.repeats} interleaved round(s) asked for, the "
               "versions' order alternating by round; medians over the rounds each command finished (rounds). ")
        head = ["| command | rounds | before (s) | after (s) | before / after | phases before (s) | phases after (s) |",
                "|---|---:|---:|---:|---:|---|---|"]
    lines = [*harness.report_head(title, result["command"]),
             (how + f"{harness.machine_line(threads, 'threads', result)}; load average {min(loads):.1f} to "
              f"{max(loads):.1f} during the runs" + (" (measured under load: other jobs shared the cores)"
                                                     if max(loads) > 1.5 else "") + "."), "", *head]
    for name, s in summary.items():
        ph = {v: ", ".join(f"{k} {t:.0f}" for k, t in s["median_phases"][v].items()) for v in versions}
        if args.after_only:
            lines.append(f"| `{s['command']}` | {s['pairs']} | {s['median_seconds']['after']:.0f} | {ph['after']} |")
        else:
            lines.append(f"| `{s['command']}` | {s['pairs']} | {s['median_seconds']['before']:.0f} | "
                         f"{s['median_seconds']['after']:.0f} | {s['speedup']:.2f}x | {ph['before']} | {ph['after']} |")
    lines += floor_lines(floors)
    lines += ["", "Every run (seconds, load average at its start):", "",
              "| round | command | version | wall | load |", "|---:|---|---|---:|---:|"]
    lines += [f"| {x['round']} | {x['command']} | {x['version']} | {x['wall_seconds']:.0f} | {x['load_before']:.1f} |"
              for x in runs]
    harness.write_report(out / "study_speed.md", "\n".join(lines) + "\n")
    print("\n".join(lines), flush=True)


def main(argv=None) -> int:
    p = harness.parser(__doc__)
    p.add_argument("--before", default=BEFORE, help="the git revision measured as 'before'")
    p.add_argument("--after-only", action="store_true",
                   help="run this checkout alone (no before version): its times and its floor")
    p.add_argument("--floor", action=argparse.BooleanOptionalAction, default=True,
                   help="time each command's floor from the after version's round-0 output (default: on)")
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
    roots = {"after": REPO} if args.after_only else {"before": export(args.before, scratch / "before"), "after": REPO}
    runs: list[dict] = []
    floors: dict[str, dict] = {}
    try:
        for r in range(args.repeats):
            order = ["after"] if args.after_only else (["before", "after"] if r % 2 == 0 else ["after", "before"])
            for name, command in commands.items():
                for version in order:
                    out = scratch / f"{name}-{version}-{r}"
                    res = run_one(command, roots[version], data_dir, out)
                    print(f"round {r} {name} {version}: {res['wall_seconds']:.0f} s (load {res['load_before']:.1f})",
                          flush=True)
                    if args.floor and version == "after" and r == 0:  # the after version's output, before it goes
                        floors[name] = floor_or_error(out, name, res["wall_seconds"])
                        gc.collect()  # the floor's model and data leave before the next command runs
                    shutil.rmtree(out, ignore_errors=True)
                    runs.append({"round": r, "command": name, "version": version, **res})
                if all(any(x["command"] == name and x["version"] == v for x in runs) for v in order):
                    report(args, argv, commands, runs, floors)  # after every pair: an interrupted run keeps it
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
