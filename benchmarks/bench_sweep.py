"""A layer sweep's wall time against its ideal cost, measured in the same run (issue 14).

    python benchmarks/bench_sweep.py --data-dir ../shared/data

The sweep: every prompt layer x seeds 13, 21 x generators none, NPG, few steps, TREC
(100 shots), the embedded MiniLM, timed as one ``python -m lpt_probe.sweep`` command (a
subprocess, into a fresh folder: nothing is reused). Flags shrink it (``--prompt-layers``,
``--seeds``, ``--generators``, ``--steps``, ``--dev-size``, ``--max-examples``).

Its ideal cost, measured afterwards in this process on the same data and the same cells
(the sweep's own flags parsed by the sweep's own parser, so the configs are the same;
``floor.bare_work`` does the timing, as for ``bench_study_speed.py``'s floor):

- ``extract_train``: one lower-layer pass over the training split that keeps every hidden
  state the grid starts from (``LowerLayerCache.build`` of layers PL-1 for all PL);
- ``bare_train``: for each cell, ``lpt_probe.runs.bare`` over exactly the batches its
  trainer draws (``Trainer.batch_order``, same seed): layers PL..L forward and backward to
  the prompt, nothing else; summed over the cells.

``ideal = extract_train + bare_train`` is issue 14's ideal; goal: sweep wall <= 1.1 x
ideal. Work the sweep must also do, timed here the same bare way and reported beside it
(``ideal_all``): loading the model and encoding the data (``load``), the lower-layer pass
over dev and test (``extract_eval``), and each cell's evaluations (``bare_eval``: layers
PL..L forward without gradients on the cached dev states at every ``--eval-every`` and at
the end, and on test once). The rest of the wall time is the sweep's overhead (process
start and imports, optimiser, collation, bookkeeping, run folders, figures).

Memory per cell: ``sweep.csv``'s ``rss_mb`` (the sweep process's resident memory when the
cell finished) and ``peak_memory_mb`` (its peak resident memory so far: a running
maximum over the sweep, not the cell's own), with each cell's train seconds (from its
``metrics.json``) against its bare seconds.

Writes ``sweep_vs_ideal.json`` and ``sweep_vs_ideal.md`` into ``--out`` (default
benchmarks/results) with the command that made them. Run by hand on a quiet machine.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import harness
from harness import REPO, RESULTS
from lpt_probe import store

GOAL = 1.1  # sweep wall <= GOAL x ideal


def sweep_argv(args, out: str) -> list[str]:
    argv = ["--task", args.task, "--model", args.model, "--data-dir", os.path.abspath(args.data_dir),
            "--shots", "100", "--dev-size", str(args.dev_size), "--methods", "lpt",
            "--prompt-layers", args.prompt_layers, "--generators", args.generators, "--seeds", args.seeds,
            "--steps", str(args.steps), "--eval-every", str(args.eval_every or args.steps),
            "--max-length", str(args.max_length), "--out", out, "--no-progress",
            "--no-bucket"]  # the batch order of the committed results (0.2.0's); bucketing: bench_study_speed
    return argv + (["--max-examples", str(args.max_examples)] if args.max_examples else [])


def ideal(argv: list[str]) -> dict:
    """Time the necessary work of the sweep ``argv`` describes, bare, in this process
    (``floor.bare_work`` over its cells, each for its ``--steps``)."""
    import torch

    from floor import BareRun, bare_work
    from lpt_probe.commands.cli import config_from_args
    from lpt_probe.layers import parse_prompt_layers
    from lpt_probe.runs.run import prepare
    from lpt_probe.runs.sweep import (
        PROMPT_OPTIONS,
        SweepConfig,
        build_grid,
        cell_configs,
    )
    from lpt_probe.runs.trainer import TrainConfig
    from lpt_probe.commands.sweep import build_parser

    args = build_parser().parse_args(argv)
    base = config_from_args(TrainConfig, args, seed=args.seeds[0])
    sweep = config_from_args(SweepConfig, args, prompt={k: getattr(args, k) for k in PROMPT_OPTIONS},
                             progress=False)
    t = time.perf_counter()
    prepared = prepare(base)
    load = time.perf_counter() - t
    L = prepared.backbone.num_hidden_layers
    grid = sweep.grid
    cells = build_grid(sweep.methods, sweep.generators, parse_prompt_layers(grid.prompt_layers, L), grid.seeds)
    runs = []
    for cell in cells:
        pc, tc = cell_configs(sweep, cell, base, L)
        total = tc.total_steps(len(prepared.encoded["train"]))
        # evaluations: dev at every eval_every and at the last step (fit), then dev and test once more
        dev = len({s for s in range(1, total + 1) if s % tc.eval_every == 0 or s == total}) + 1
        runs.append(BareRun(cell.name, pc, tc, total, dev))
    work = bare_work(prepared, runs, base.eval_batch_size, label="ideal")
    extract, need = work["extract"], work["cached_states"]
    rows = [{"cell": cell.name, "prompt_layer": cell.prompt_layer, "generator": cell.generator, "seed": cell.seed,
             "steps": r["steps"], "bare_train_seconds": r["bare_train_seconds"],
             "bare_tokens_per_second": r["bare_tokens_per_second"], "bare_eval_seconds": r["bare_eval_seconds"]}
            for cell, r in zip(cells, work["runs"])]
    bare_train = sum(r["bare_train_seconds"] for r in rows)
    bare_eval = sum(r["bare_eval_seconds"] for r in rows)
    parts = {"load": load, "extract_train": extract["train"], "extract_eval": extract["dev"] + extract["test"],
             "bare_train": bare_train, "bare_eval": bare_eval}
    return {"cells": rows, "parts": parts, "cached_states": need, "num_hidden_layers": L,
            "ideal": parts["extract_train"] + bare_train, "ideal_all": sum(parts.values()),
            "torch_threads": torch.get_num_threads()}


def verdict(ratio: float) -> str:
    return "met" if ratio <= GOAL else "missed"


def markdown(res: dict) -> str:
    p, w = res["parts"], res["sweep_wall_seconds"]
    lines = [
        *harness.report_head("A layer sweep against its ideal cost", res["command"]),
        f"The sweep it timed (one subprocess, fresh folder): `{res['sweep_command']}`", "",
        f"{harness.machine_line(res['torch_threads'], 'torch threads', res)}. {len(res['cells'])} cells (prompt "
        f"layers x generators x seeds), cached hidden states "
        f"{res['cached_states'][0]}..{res['cached_states'][-1]} of a {res['num_hidden_layers']}-layer model. "
        "One measurement of each (no repeats): on a busy machine the ratio moves with the load.", "",
        "| | seconds |", "|---|---:|",
        f"| sweep wall time (`python -m lpt_probe.sweep`, start to exit) | {w:.1f} |",
        f"| extract_train: one lower-layer pass over train, every state the grid needs | {p['extract_train']:.1f} |",
        f"| bare_train: layers PL..L forward + backward, the cells' own batches, summed | {p['bare_train']:.1f} |",
        f"| **ideal** (issue 14: extract_train + bare_train) | **{res['ideal']:.1f}** |",
        f"| load: model and data, encoded | {p['load']:.1f} |",
        f"| extract_eval: the same pass over dev and test | {p['extract_eval']:.1f} |",
        f"| bare_eval: layers PL..L forward on dev at every evaluation and test once, summed | {p['bare_eval']:.1f} |",
        f"| ideal_all (everything above but the wall time) | {res['ideal_all']:.1f} |", "",
        f"**sweep / ideal = {res['ratio']:.2f}** (goal <= {GOAL}: {verdict(res['ratio'])}); sweep / ideal_all = "
        f"{res['ratio_all']:.2f} (what the sweep spends beyond all the necessary work: process start and imports, "
        f"optimiser, collation, bookkeeping, run folders and figures).", "",
        "## Per cell", "",
        "rss_mb: the sweep process's resident memory when the cell finished; peak_memory_mb: its peak resident "
        "memory so far (a running maximum over the sweep, not the cell's own). train s: the cell's training-step "
        "time (metrics.json train_seconds); bare s: its bare loop on the same batches.", "",
        "| cell | PL | generator | seed | train s | bare s | train s / bare s | wall s | rss_mb | peak_memory_mb |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in res["cells"]:
        tr = r.get("train_seconds")
        ratio = f"{tr / r['bare_train_seconds']:.2f}" if tr and r["bare_train_seconds"] > 0 else "-"
        f = harness.cell
        lines.append(f"| {r['cell']} | {r['prompt_layer']} | {r['generator']} | {r['seed']} | {f(tr, '{:.2f}')} | "
                     f"{r['bare_train_seconds']:.2f} | {ratio} | {f(r.get('wall_seconds'))} | "
                     f"{f(r.get('rss_mb'), '{:.0f}')} | {f(r.get('peak_memory_mb'), '{:.0f}')} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = harness.parser(__doc__)
    p.add_argument("--task", default="trec")
    p.add_argument("--model", default="minilm")
    p.add_argument("--prompt-layers", default="all")
    p.add_argument("--generators", default="none,npg")
    p.add_argument("--seeds", default="13,21")
    p.add_argument("--steps", type=int, default=20, help="training steps of every cell")
    p.add_argument("--eval-every", type=int, default=None, help="default: once, at the last step")
    p.add_argument("--dev-size", type=int, default=200)
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--max-examples", type=int, default=None, help="cap every split (smoke runs)")
    p.add_argument("--threads", type=int, default=None, help="torch threads in both (default: torch's)")
    p.add_argument("--keep", default=None, help="the sweep's folder (default: a fresh temporary one)")
    p.add_argument("--out", default=str(RESULTS))
    args = p.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    folder = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench_sweep_")) / "sweep"
    if folder.exists() and any(folder.iterdir()):
        raise SystemExit(f"{folder} is not empty: the sweep must train every cell (give a fresh --keep)")
    s_argv = sweep_argv(args, str(folder))
    wall = harness.run_timed([sys.executable, "-m", "lpt_probe.sweep", *s_argv], "the sweep", cwd=REPO,
                             threads=args.threads).wall_seconds
    print(f"sweep: {wall:.1f} s", flush=True)
    res = ideal(s_argv)
    import pandas as pd

    table = pd.read_csv(folder / "sweep.csv")
    for r in res["cells"]:
        row = table[table.run_dir == f"runs/{r['cell']}"].iloc[0]
        metrics = store.read_json_object(folder / "runs" / r["cell"] / "metrics.json")
        r.update(train_seconds=metrics["train_seconds"], wall_seconds=float(row.wall_seconds),
                 rss_mb=float(row.rss_mb), peak_memory_mb=float(row.peak_memory_mb),
                 tokens_per_second=float(row.tokens_per_second), test_metric=float(row.test_metric))
    shown = [a if a != os.path.abspath(args.data_dir) else args.data_dir for a in s_argv]
    shown[shown.index("--out") + 1] = "<fresh folder>"
    res.update(command=harness.command(__file__, argv), sweep_command="python -m lpt_probe.sweep " + " ".join(shown),
               sweep_wall_seconds=wall, ratio=wall / res["ideal"], ratio_all=wall / res["ideal_all"], goal=GOAL,
               verdict=verdict(wall / res["ideal"]), **harness.machine(torch=True))
    out = Path(args.out)
    harness.write_json(out / "sweep_vs_ideal.json", res)
    harness.write_report(out / "sweep_vs_ideal.md", markdown(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
