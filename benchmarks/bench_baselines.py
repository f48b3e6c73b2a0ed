"""LPT against the methods it was measured against, in one harness: the paper's Table 2 shape, and speed.

    python benchmarks/bench_baselines.py --data-dir ../shared/data

Accuracy (the shape of the paper's Table 2: few-shot, 100 training examples, mean ± std
over three seeds, tunable parameters). For each task with local data (``--tasks``, default
TREC, RTE, Subj, MR, MPQA: SST-2 aside) one sweep (``python -m lpt_probe.sweep``) trains
every method of ``--methods``: model tuning, Adapter, AdapterDrop, BitFit, LoRA, prompt
tuning, P-tuning v2, S-IDPG-PHM and LPT (``--generators``: no generator and NPG) at mid
depth (PL = L/2+1, the authors' ``add_prompt_layer = L/2``; AdapterDrop keeps its adapters
in the same upper half, layers L/2+1..L), all with the same 100-shot training set (data
seed 13), dev set, template, label words, optimiser, step budget and the training seeds
13, 21 and 42; each method keeps its own learning rate (``lpt_probe.methods``).
``table2.csv`` / ``table2.md``: one row per task x method (test accuracy mean and std over
the seeds, dev mean, tunable parameters), and beside it the paper's RoBERTa-large number
for the same row when ``--paper FILE`` gives them (a CSV with columns task, method,
generator, mean, std, in percent as the paper prints them, transcribed from Table 2 of
arXiv 2210.11292; generator ``none`` or ``npg`` for LPT's rows); this script carries no
numbers of its own for the paper: without the file that column stays empty).

Speed and memory (``baselines.csv`` / ``baselines.md``). Each method of the accuracy grid
is then timed with ``bench_train.py``'s harness on each task, the way it trains in the
sweep (LPT, prompt tuning, AdapterDrop and S-IDPG from the lower-layer cache): a fresh
subprocess per measurement on the same batches for all, interleaved round-robin over
``--repeats`` rounds (every method once, then again, odd rounds backwards), ``--warmup``
untimed steps excluded; tokens/s and x PT (within a round, over prompt tuning's) as median
and min-max over the rounds; training memory (peak tensor memory of the optimiser steps
plus the lower-layer cache, first round) and its share of model tuning's.

``--no-table2`` keeps table2.csv/.md as they are: for timing a subset of the tasks after
the full table was written (the accuracy of the timed tasks is still read from their sweeps).

Sweep run folders go to ``artifacts/baselines/<task>/<model>/`` and are reused by a rerun
(only missing cells train). Run by hand on a quiet machine, not in CI.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pandas as pd

import bench_train  # the throughput measurement: one configuration per subprocess, rounds, medians
import harness
from harness import REPO, RESULTS, cache_cell, prompt_layer_cell, span
from lpt_probe import store
from lpt_probe.layers import middle_prompt_layer

TASKS = "trec,rte,subj,mr,mpqa"  # every task with local data but SST-2
# the paper's row order (model tuning, then the PETuning methods, LPT last)
METHODS = "model-tuning,adapter,adapterdrop,bitfit,lora,prompt-tuning,p-tuning-v2,s-idpg,lpt"
LABELS = {"model-tuning": "model tuning", "adapter": "Adapter", "adapterdrop": "AdapterDrop", "bitfit": "BitFit",
          "lora": "LoRA", "prompt-tuning": "prompt tuning", "p-tuning-v2": "P-tuning v2",
          "prefix-tuning": "prefix tuning", "s-idpg": "S-IDPG-PHM", "lpt": "LPT"}
PAPER_COLUMNS = ["task", "method", "generator", "mean", "std"]
# the paper's method names (../shared/paper/lpt_paper_tables_1_3.csv) -> (method, generator) here
PAPER_METHODS = {"Model Tuning": ("model-tuning", "none"), "Adapter": ("adapter", "none"),
                 "AdapterDrop": ("adapterdrop", "none"), "BitFit": ("bitfit", "none"), "LoRA": ("lora", "none"),
                 "Prompt Tuning": ("prompt-tuning", "none"), "P-tuning v2": ("p-tuning-v2", "none"),
                 "S-IDPG-PHM": ("s-idpg", "none"), "LPT w/o PG": ("lpt", "none"), "LPT w/ NPG": ("lpt", "npg"),
                 "LPT w/ APPG": ("lpt", "appg"), "LPT w/ MPPG": ("lpt", "mppg")}


def label(method: str, generator: str) -> str:
    name = LABELS.get(method, method)
    if method == "lpt":
        name += " (no generator)" if generator == "none" else f" {generator.upper()}"
    return name


def configurations(methods: list[str], generators: list[str]) -> list[tuple[str, str]]:
    """(method, generator) rows of the table: LPT once per generator, the others once."""
    return [(m, g) for m in methods for g in (generators if m == "lpt" else ["none"])]


def sweep_task(task: str, args, pl: int) -> pd.DataFrame:
    """The accuracy grid of one task (a rerun reuses its finished cells)."""
    sweep_dir = Path(args.runs) / task / args.model
    cmd = [sys.executable, "-m", "lpt_probe.sweep", "--task", task, "--model", args.model,
           "--data-dir", args.data_dir, "--shots", "100", "--dev-size", str(args.dev_size),
           "--methods", args.methods, "--generators", args.generators, "--prompt-layers", str(pl),
           "--seeds", args.seeds, "--steps", str(args.steps), "--eval-every", str(args.eval_every),
           "--max-length", str(args.max_length), "--out", str(sweep_dir), "--no-progress",
           "--no-bucket"]  # the batch order (and run keys) of the committed tables
    if args.max_examples:
        cmd += ["--max-examples", str(args.max_examples)]
    harness.run_timed(cmd, cwd=REPO, threads=args.threads, capture=False, echo=True)
    sweep = pd.read_csv(sweep_dir / "sweep.csv")
    failed = sweep[sweep.status != "complete"]
    if len(failed):
        cells = failed[["method", "generator", "seed", "error"]].to_dict("records")
        print(f"{task}: {len(failed)} cell(s) failed: {cells}", flush=True)
    return sweep[sweep.status == "complete"]


def accuracy_rows(task: str, sweep: pd.DataFrame, rows: list[tuple[str, str]], args) -> list[dict]:
    out = []
    for method, generator in rows:
        g = sweep[(sweep.method == method) & (sweep.generator == generator)]
        if g.empty:
            continue
        pl = g.prompt_layer.iloc[0]
        out.append({"task": task, "model": args.model, "method": method, "generator": generator,
                    "label": label(method, generator), "prompt_layer": None if pd.isna(pl) else int(pl),
                    "shots": 100, "steps": args.steps, "seeds": len(g), "test_mean": g.test_metric.mean(),
                    "test_std": g.test_metric.std(), "dev_mean": g.dev_metric.mean(),
                    "tunable_params": int(g.tunable_params.iloc[0])})
    return out


def read_paper(path: str, table: str = "Table 2") -> pd.DataFrame:
    """The paper's numbers as (task, method, generator, mean, std, tunable_params): either
    the paper's own tables (``../shared/paper/lpt_paper_tables_1_3.csv``: one row per table,
    method and task, the paper's method names; ``table`` picks Table 2 = 100 shots) or a
    file with the columns of ``PAPER_COLUMNS``."""
    paper = pd.read_csv(path)
    if {"source", "method", "task", "mean"} <= set(paper.columns):  # the paper's own transcription
        paper = paper[paper["source"] == table]
        if paper.empty:
            raise SystemExit(f"--paper {path}: no rows of {table!r}")
        known = paper["method"].isin(list(PAPER_METHODS))
        if not known.all():
            raise SystemExit(f"--paper {path}: unknown method name(s) {sorted(set(paper.method[~known]))}; "
                             f"known: {sorted(PAPER_METHODS)}")
        pairs = paper["method"].map(PAPER_METHODS)
        return paper.assign(method=[m for m, _ in pairs], generator=[g for _, g in pairs],
                            task=paper["task"].str.lower())[PAPER_COLUMNS + ["tunable_params"]]
    missing = sorted(set(PAPER_COLUMNS) - set(paper.columns))
    if missing:
        raise SystemExit(f"--paper {path}: columns {missing} missing (need {PAPER_COLUMNS}, or the paper's own "
                         "tables with source, method, task, mean, std)")
    return paper


def with_paper(df: pd.DataFrame, path: str | None, table: str = "Table 2") -> pd.DataFrame:
    """Join the paper's numbers for the same rows from ``path`` (none: empty columns)."""
    df = df.drop(columns=[c for c in ("paper_mean", "paper_std", "paper_tunable") if c in df.columns])
    df["paper_mean"], df["paper_std"], df["paper_tunable"] = float("nan"), float("nan"), ""
    if not path:
        return df
    paper = read_paper(path, table)
    paper = paper.assign(generator=paper.generator.fillna("none")).set_index(["task", "method", "generator"])
    for i, r in df.iterrows():
        key = (r.task, r.method, r.generator)
        if key in paper.index:
            df.loc[i, "paper_mean"], df.loc[i, "paper_std"] = paper.loc[key, "mean"], paper.loc[key, "std"]
            if "tunable_params" in paper.columns:
                df.loc[i, "paper_tunable"] = str(paper.loc[key, "tunable_params"])
    return df


def pm(mean: float, std: float, scale: float = 100.0) -> str:
    if mean != mean:
        return "-"
    return f"{mean * scale:.1f}" + ("" if std != std else f" ± {std * scale:.1f}")


def table2_markdown(df: pd.DataFrame, header: list[str], paper_path: str | None) -> str:
    tasks = list(dict.fromkeys(df.task))
    lines = header + [
        "Test accuracy (%), mean ± std over the training seeds; Avg: the mean over the tasks of the row. Tunable: "
        "trainable parameters (with this model's classifier head, which differs by number of labels: min-max over "
        "the tasks).", "",
        "| method | tunable | " + " | ".join(t.upper() for t in tasks) + " | Avg |",
        "|---|---:|" + "---:|" * (len(tasks) + 1)]
    for name, g in df.groupby("label", sort=False):
        cells = {r.task: pm(r.test_mean, r.test_std) for r in g.itertuples()}
        lo, hi = g.tunable_params.min(), g.tunable_params.max()
        tunable = f"{lo:,}" if lo == hi else f"{lo:,}-{hi:,}"
        avg = f"{g.test_mean.mean() * 100:.1f}" if len(g) == len(tasks) else "-"
        lines.append(f"| {name} | {tunable} | " + " | ".join(cells.get(t, "-") for t in tasks) + f" | {avg} |")
    lines += ["", "## The paper's numbers for the same rows (RoBERTa-large, Table 2 of arXiv 2210.11292)", ""]
    if df.paper_mean.notna().any():
        lines += [f"From `{paper_path}` (the paper's RoBERTa-large, 100 training samples, 4 data splits).", "",
                  "| method | tunable | " + " | ".join(t.upper() for t in tasks) + " | Avg |",
                  "|---|---:|" + "---:|" * (len(tasks) + 1)]
        for name, g in df.groupby("label", sort=False):
            cells = {r.task: pm(r.paper_mean, r.paper_std, 1.0) for r in g.itertuples()}
            tun = next((t for t in g.paper_tunable if isinstance(t, str) and t), "-")
            avg = f"{g.paper_mean.mean():.1f}" if g.paper_mean.notna().sum() == len(tasks) else "-"
            lines.append(f"| {name} | {tun} | " + " | ".join(cells.get(t, "-") for t in tasks) + f" | {avg} |")
        lines += ["", "Side by side (test accuracy %, ours / the paper's; Avg over these five tasks only, not the "
                  "paper's ten):", "", beside_markdown(df, tasks)]
    else:
        lines.append("Not filled in: this run was given no transcription of the paper's Table 2 (`--paper FILE`, "
                     "columns task, method, generator, mean, std). No paper number appears here that was not "
                     "read from such a file.")
    return "\n".join(lines) + "\n"


def beside_markdown(df: pd.DataFrame, tasks: list[str]) -> str:
    """One row per method, each task's cell "ours / paper" (means, %)."""
    lines = ["| method | " + " | ".join(t.upper() for t in tasks) + " | Avg |", "|---|" + "---:|" * (len(tasks) + 1)]
    for name, g in df.groupby("label", sort=False):
        by = g.set_index("task")
        cell = {t: f"{pm(by.loc[t, 'test_mean'], float('nan'))} / {pm(by.loc[t, 'paper_mean'], float('nan'), 1.0)}"
                for t in tasks if t in by.index}
        ours = f"{g.test_mean.mean() * 100:.1f}" if len(g) == len(tasks) else "-"
        theirs = f"{g.paper_mean.mean():.1f}" if g.paper_mean.notna().sum() == len(tasks) else "-"
        lines.append(f"| {name} | " + " | ".join(cell.get(t, "-") for t in tasks) + f" | {ours} / {theirs} |")
    return "\n".join(lines)


def rerender(args) -> int:
    """table2.md / .csv again from a written table2.csv (our numbers as they are) with the
    paper's column: no training. The header keeps how the accuracy was measured."""
    src = Path(args.from_table)
    table2 = with_paper(pd.read_csv(src), args.paper, args.paper_table)
    old_md = src.with_suffix(".md")
    header = old_md.read_text().split("\nTest accuracy (%)")[0].rstrip("\n").splitlines() if old_md.is_file() else \
        ["# Table 2 shape: few-shot baselines in one harness"]
    cmd = harness.command(__file__, args.argv)
    header += ["", f"Paper's column added without retraining by: `{cmd}` (our numbers read from {src.name}).", ""]
    out = Path(args.out)
    store.write_csv(out / "table2.csv", table2)
    harness.write_report(out / "table2.md", table2_markdown(table2, header, args.paper))
    return 0


def timing(args, pl: int, rows: list[tuple[str, str]]) -> tuple[pd.DataFrame, list[str]]:
    """Every (method, generator) of the grid, timed per task, interleaved round-robin."""
    frames, skipped = [], []
    t_all = time.perf_counter()
    for task in args.tasks.split(","):
        base = dict(model=args.model, task=task, data_dir=os.path.abspath(args.data_dir), steps=args.time_steps,
                    warmup=args.warmup, batch_size=16, max_length=args.max_length, threads=args.threads,
                    num_virtual_tokens=None)
        cfgs = [bench_train.method_config(base, m, g, pl) for m, g in rows]
        got, lost = bench_train.interleaved(cfgs, args.repeats, t_all)
        skipped += lost
        if got:
            reps = pd.DataFrame(got).drop(columns=["data_dir", "memory"], errors="ignore")
            frames.append(bench_train.summarise(reps))  # medians, ranges, ratios within a round
    return (pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()), skipped


def timing_markdown(df: pd.DataFrame, header: list[str]) -> str:
    lines = header + ["| task | method | PL | cache | tunable | tokens/s | x PT | train mem MB | % of MT mem |",
                      "|---|---|---|---|---:|---:|---:|---:|---:|"]
    for r in df.to_dict("records"):
        lines.append(f"| {r['task'].upper()} | {label(r['method'], r['generator'])} | {prompt_layer_cell(r)} | "
                     f"{cache_cell(r)} | {int(r['tunable_params']):,} | {span(r, 'tokens_per_second', '{:.0f}')} | "
                     f"{span(r, 'x_pt')} | {harness.cell(r.get('train_peak_mb'), '{:,.0f}')} | "
                     f"{harness.cell(r.get('mem_vs_mt'), '{:.0%}')} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = harness.parser(__doc__)
    p.add_argument("--tasks", default=TASKS, help="comma list of tasks")
    p.add_argument("--model", default="minilm")
    p.add_argument("--methods", default=METHODS, help="comma list of methods (the rows, in this order)")
    p.add_argument("--generators", default="none,npg", help="LPT's generators (one row each)")
    p.add_argument("--seeds", default="13,21,42", help="training seeds")
    p.add_argument("--steps", type=int, default=200, help="training steps of every method")
    p.add_argument("--eval-every", type=int, default=50)
    p.add_argument("--dev-size", type=int, default=500)
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--paper", default=None, help="the paper's numbers to show beside ours: its own tables "
                   "(../shared/paper/lpt_paper_tables_1_3.csv) or a CSV with task, method, generator, mean, std (%%)")
    p.add_argument("--paper-table", default="Table 2", help="which of the paper's tables (Table 2: 100 shots)")
    p.add_argument("--from-table", default=None, metavar="CSV",
                   help="no training: write table2.md/.csv again from this table2.csv with the paper's column")
    p.add_argument("--time-steps", type=int, default=30, help="timed steps per measurement")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps before them")
    p.add_argument("--repeats", type=int, default=3, help="interleaved timing rounds (0: no timing)")
    p.add_argument("--threads", type=int, default=2, help="torch threads of the sweep's training and of the timing")
    p.add_argument("--max-examples", type=int, default=None, help="cap every split (smoke runs)")
    p.add_argument("--no-table2", action="store_true",
                   help="leave table2.csv/.md as they are (e.g. timing a subset of the tasks after the full table)")
    p.add_argument("--out", default=str(RESULTS))
    p.add_argument("--runs", default=str(REPO / "artifacts" / "baselines"))
    args = p.parse_args(argv)
    args.argv = list(argv if argv is not None else sys.argv[1:])
    if args.repeats < 0 or args.time_steps < 1 or args.warmup < 0:
        p.error("--repeats >= 0, --time-steps >= 1 and --warmup >= 0")
    if args.from_table:
        return rerender(args)
    from transformers import AutoConfig

    from lpt_probe.model.loading import resolve

    L = AutoConfig.from_pretrained(resolve(args.model)[0]).num_hidden_layers
    pl = middle_prompt_layer(L)
    rows = configurations(args.methods.split(","), args.generators.split(","))
    t0 = time.perf_counter()
    acc, cell_seconds = [], 0.0
    for task in args.tasks.split(","):  # accuracy first (deterministic) ...
        t = time.perf_counter()
        sweep = sweep_task(task, args, pl)
        cell_seconds += float(sweep.wall_seconds.sum())
        acc += accuracy_rows(task, sweep, rows, args)
        print(f"{task}: sweep {time.perf_counter() - t:.0f} s", flush=True)
    table2 = with_paper(pd.DataFrame(acc), args.paper, args.paper_table)
    out = Path(args.out)
    cmd = harness.command(__file__, args.argv)
    machine = harness.machine_line(args.threads) + "."
    text = table2_markdown(table2, [
        *harness.report_head("Table 2 shape: few-shot baselines in one harness", cmd),
        f"{machine} {args.model} ({L} layers), 100 training examples (data seed 13), dev {args.dev_size}, "
        f"{args.steps} steps, batch 16, max length {args.max_length}, training seeds {args.seeds}; LPT and "
        f"AdapterDrop at layer {pl} (= L/2+1) and above; each method's own learning rate. Sweep wall time "
        f"{time.perf_counter() - t0:.0f} s for this invocation; the cells' own wall time, as each run folder "
        f"recorded it when it trained (a rerun reuses finished cells): {cell_seconds:.0f} s in all.", ""],
        args.paper)
    if not args.no_table2:
        store.write_csv(out / "table2.csv", table2)
        store.atomic_write_text(out / "table2.md", text)
    print(text)
    if args.repeats == 0:
        return 0
    df, skipped = timing(args, pl, rows)  # ... then timings, interleaved, on a quiet machine
    if not df.empty:
        acc_cols = table2.set_index(["task", "method", "generator"])[["test_mean", "test_std", "seeds"]]
        df = df.join(acc_cols, on=["task", "method", "generator"])
    store.write_csv(out / "baselines.csv", df)
    text = timing_markdown(df, [
        *harness.report_head("Baselines in one harness: speed and memory", cmd),
        f"{machine} {args.model}, each method as it trains in the sweep above (LPT and AdapterDrop at layer {pl}; "
        f"LPT, prompt tuning, AdapterDrop and S-IDPG from the lower-layer cache), 100-shot batches of 16, max "
        f"length {args.max_length}: {args.time_steps} timed steps after {args.warmup} untimed ones per "
        f"measurement, a fresh subprocess each, {args.repeats} round(s) interleaved round-robin. tokens/s and "
        f"x PT (over prompt tuning in the same round): median (min-max) over the rounds; train mem: peak tensor "
        f"memory of the training steps (torch profiler) plus the lower-layer cache, first round (see "
        f"bench_train.py).", ""])
    harness.write_report(out / "baselines.md", text + harness.not_timed(skipped))
    print(f"{time.perf_counter() - t0:.0f} s in all")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
