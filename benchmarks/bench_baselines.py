"""LPT against the methods it was measured against, in one harness: accuracy, size, speed, memory.

    python benchmarks/bench_baselines.py --data-dir ../shared/data

For each task (``--tasks``, default TREC and RTE) it runs one sweep (``python -m
lpt_probe.sweep``) over every method: model tuning, BitFit, LoRA, P-tuning v2, prompt
tuning and LPT (no generator and NPG) at mid depth (PL = L/2+1, the authors'
``add_prompt_layer = L/2``), all with the same 100-shot training set (data seed 13), dev
set, template, label words, optimiser, step budget and the training seeds 13, 21 and 42;
each method keeps its own learning rate (``lpt_probe.methods``). Then it times each
method with ``bench_train.py``'s harness on the same task (a fresh subprocess per method,
the same batches for all: training tokens/s and training memory, the peak tensor memory
of the optimiser steps plus the lower-layer cache), the way the method trains in the sweep (LPT and prompt tuning from the
lower-layer cache).

Writes ``benchmarks/results/baselines.csv`` (one row per task x method) and
``baselines.md`` (the table with the command and machine). Sweep run folders go to
``artifacts/baselines/<task>/`` and are reused by a rerun. Run by hand, not in CI.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
METHODS = "model-tuning,bitfit,lora,p-tuning-v2,prompt-tuning,lpt"
LABELS = {"model-tuning": "model tuning", "bitfit": "BitFit", "lora": "LoRA", "p-tuning-v2": "P-tuning v2",
          "prompt-tuning": "prompt tuning", "lpt": "LPT"}


def run(cmd: list[str]) -> None:
    print("+", " ".join(cmd), flush=True)
    proc = subprocess.run(cmd, cwd=REPO, env={**os.environ, "TQDM_DISABLE": "1"})
    if proc.returncode not in (0,):
        raise SystemExit(f"command failed ({proc.returncode}): {' '.join(cmd)}")


def timing(task: str, method: str, generator: str, pl: int | None, args) -> dict:
    cfg = dict(model=args.model, task=task, data_dir=os.path.abspath(args.data_dir), steps=args.time_steps,
               batch_size=16, max_length=args.max_length, threads=args.threads, num_virtual_tokens=None,
               method=method, generator=generator, prompt_layer=pl, cache=pl is not None)
    out = subprocess.run([sys.executable, str(HERE / "bench_train.py"), "--one", json.dumps(cfg)], cwd=REPO,
                         capture_output=True, text=True, env={**os.environ, "TQDM_DISABLE": "1"})
    line = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")]
    if out.returncode or not line:
        raise SystemExit(f"timing {cfg} failed:\n{out.stderr[-3000:]}")
    return json.loads(line[0][7:])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-dir", default="../shared/data")
    p.add_argument("--tasks", default="trec,rte")
    p.add_argument("--model", default="minilm")
    p.add_argument("--seeds", default="13,21,42")
    p.add_argument("--steps", type=int, default=200, help="training steps of every method")
    p.add_argument("--eval-every", type=int, default=50)
    p.add_argument("--dev-size", type=int, default=500)
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--time-steps", type=int, default=30, help="steps timed per method")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--max-examples", type=int, default=None, help="cap every split (smoke runs)")
    p.add_argument("--out", default=str(HERE / "results"))
    p.add_argument("--runs", default=str(REPO / "artifacts" / "baselines"))
    args = p.parse_args(argv)
    from transformers import AutoConfig

    from lpt_probe.model.loading import resolve

    L = AutoConfig.from_pretrained(resolve(args.model)[0]).num_hidden_layers
    pl = L // 2 + 1
    sweeps = {}
    for task in args.tasks.split(","):  # accuracy first (deterministic) ...
        t0 = time.perf_counter()
        sweep_dir = Path(args.runs) / task / args.model
        cmd = [sys.executable, "-m", "lpt_probe.sweep", "--task", task, "--model", args.model,
               "--data-dir", args.data_dir, "--shots", "100", "--dev-size", str(args.dev_size),
               "--methods", METHODS, "--generators", "none,npg", "--prompt-layers", str(pl),
               "--seeds", args.seeds, "--steps", str(args.steps), "--eval-every", str(args.eval_every),
               "--max-length", str(args.max_length), "--out", str(sweep_dir), "--no-progress"]
        if args.max_examples:
            cmd += ["--max-examples", str(args.max_examples)]
        run(cmd)
        sweep = pd.read_csv(sweep_dir / "sweep.csv")
        sweeps[task] = sweep[sweep.status == "complete"]
        print(f"{task}: sweep {time.perf_counter() - t0:.0f} s", flush=True)
    rows = []
    for task, sweep in sweeps.items():  # ... then timings, back to back on a quiet machine
        for (method, generator), g in sweep.groupby(["method", "generator"], sort=False):
            layer = pl if method == "lpt" else 1 if method == "prompt-tuning" else None
            t = timing(task, method, generator, layer, args)
            rows.append({"task": task, "model": args.model, "method": method, "generator": generator,
                         "prompt_layer": layer, "seeds": len(g), "test_mean": g.test_metric.mean(),
                         "test_std": g.test_metric.std(), "dev_mean": g.dev_metric.mean(),
                         "tunable_params": int(g.tunable_params.iloc[0]), "steps": args.steps,
                         "tokens_per_second": t["tokens_per_second"], "train_peak_mb": t["train_peak_mb"],
                         "train_rss_mb": t["train_rss_mb"]})
            print(f"{task} {method} {generator}: test {rows[-1]['test_mean']:.4f} ± {rows[-1]['test_std']:.4f}, "
                  f"{t['tokens_per_second']:.0f} tok/s, +{t['train_peak_mb']:.0f} MB", flush=True)
    df = pd.DataFrame(rows)
    for task, g in df.groupby("task"):
        pt = g[g.method == "prompt-tuning"].tokens_per_second.mean()
        mt = g[g.method == "model-tuning"].train_peak_mb.mean()
        df.loc[g.index, "x_pt"] = g.tokens_per_second / pt
        df.loc[g.index, "mem_vs_mt"] = g.train_peak_mb / mt
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    df.to_csv(out / "baselines.csv", index=False)
    cmd = "python benchmarks/bench_baselines.py " + " ".join(argv if argv is not None else sys.argv[1:])
    import torch

    lines = ["# Baselines in one harness", "", "Command:", "", f"    {cmd.strip()}", "",
             f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__}, "
             f"{args.threads} threads. {args.model}, 100 shots (data seed 13), dev {args.dev_size}, "
             f"{args.steps} steps, batch 16, max length {args.max_length}; test metric mean ± std over training "
             f"seeds {args.seeds}. Tokens/s from {args.time_steps} timed steps per method on the same batches; "
             f"train mem: peak tensor memory of the training steps (torch profiler) plus the lower-layer cache "
             f"(see bench_train.py); x PT: tokens/s relative to prompt tuning.", "",
             "| task | method | PL | tunable params | test accuracy | tokens/s | x PT | train mem MB | % of MT mem |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in df.itertuples(index=False):
        name = LABELS[r.method] + (f" {r.generator.upper()}" if r.method == "lpt" and r.generator != "none" else "")
        pl_ = "-" if pd.isna(r.prompt_layer) else str(int(r.prompt_layer))
        lines.append(f"| {r.task.upper()} | {name} | {pl_} | {r.tunable_params:,} | {r.test_mean:.3f} ± "
                     f"{r.test_std:.3f} | {r.tokens_per_second:,.0f} | {r.x_pt:.2f} | {r.train_peak_mb:,.0f} | "
                     f"{r.mem_vs_mt:.0%} |")
    (out / "baselines.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
