"""Training throughput and peak memory of every method: baselines vs late prompts.

    python benchmarks/bench_train.py --models minilm,smollm2 --data-dir ../shared/data

Every configuration trains on the same few-shot batches of one task (``--task``, default
RTE; same batch size, sequence cap, steps and seed) in a fresh subprocess, so peak memory
is that configuration's alone. Configurations: every baseline of ``lpt_probe.methods``
(model tuning, BitFit, LoRA, P-tuning v2, prefix tuning; ``--baselines``), prompt tuning
(PL=1), and LPT with each generator at 1/4, 1/2 and 3/4 of depth, with and without the
lower-layer cache (PL = L/4+1, L/2+1, 3L/4+1: at mid depth the prompt joins after half
the layers, the authors' ``add_prompt_layer = L/2``). Methods without a prompt layer have
an empty ``prompt_layer``. Measured, over the same planned batches (those ``Trainer.fit``
would draw) and only inside the optimiser steps (no evaluation, no best-state copies):
training tokens/s (text tokens / time in the steps; the cache is built before, its time
reported apart as ``cache_seconds``); training memory ``train_peak_mb``: the peak bytes
of tensors the steps allocate (saved activations, gradients, optimiser states,
temporaries; torch's profiler memory timeline over ``MEM_STEPS`` steps on the largest
planned batches with a fresh optimiser, the analogue of ``torch.cuda.max_memory_allocated``
above the loaded model) plus the lower-layer cache (``cache_mb``); and, cruder, the growth of the process's peak
resident memory once model and data are loaded (``train_rss_mb``: it also holds the
cache pass and what the C allocator keeps after frees).
Writes benchmarks/results/train_throughput.csv and train_throughput.md (run by hand, not
in CI). Goals (issue 3): LPT at mid depth with the cache >= 1.8x prompt tuning and
>= 2.7x model tuning tokens/s, training memory <= 35% of model tuning's.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
MEM_STEPS = 3  # optimiser steps profiled for tensor memory


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def one(cfg: dict) -> dict:
    """Run one configuration in this process; return its measurements."""
    import numpy as np
    import torch

    from lpt_probe.model.cache import LowerLayerCache
    from lpt_probe.model.late_prompt import LatePromptConfig, LatePromptModel
    from lpt_probe.model.loading import load_model
    from lpt_probe.runs.profiling import tensor_memory
    from lpt_probe.runs.run import prepare
    from lpt_probe.runs.trainer import TrainConfig, Trainer

    torch.set_num_threads(cfg["threads"])
    tc = TrainConfig(task=cfg.get("task", "rte"), model=cfg["model"], data_dir=cfg["data_dir"], shots=100, data_seed=13,
                     max_examples=600, max_length=cfg["max_length"], steps=cfg["steps"],
                     eval_every=10**9, batch_size=cfg["batch_size"], seed=13, cache=cfg["cache"])
    bundle = load_model(cfg["model"])
    prep = prepare(tc, bundle)
    backbone, data, encoded, words = prep.backbone, prep.data, prep.encoded, prep.label_word_ids
    base_rss = rss_mb()
    pc = LatePromptConfig(method=cfg["method"], prompt_layer=cfg["prompt_layer"] or 1, generator=cfg["generator"],
                          num_virtual_tokens=cfg["num_virtual_tokens"])
    torch.manual_seed(13)
    try:
        model = LatePromptModel(backbone, pc, len(data.task.label_names), words, copy_backbone=False)
    except ValueError as exc:  # e.g. BitFit on a model without biases: reported, not timed
        return {**cfg, "unsupported": str(exc)}
    t0 = time.perf_counter()
    cache = None
    if cfg["cache"]:
        cache = LowerLayerCache.build(backbone, encoded["train"], [cfg["prompt_layer"] - 1], progress=False)
    cache_seconds = time.perf_counter() - t0
    cache_mb = sum(t.numel() * t.element_size() for ts in cache.states.values() for t in ts) / 2**20 if cache else 0.0
    trainer, train = Trainer(model, tc), encoded["train"]
    rng, plan = np.random.RandomState(13), []
    while len(plan) < cfg["steps"]:  # the batches fit would draw: shuffled, length-bucketed
        plan += list(train.batches(tc.batch_size, list(rng.permutation(len(train))), bucket=tc.bucket))
    plan = plan[: cfg["steps"]]
    model.train()
    # 1) speed and resident memory: the optimiser steps alone (no evaluation, no best-state copies)
    opt, sched = trainer.optimizer(len(plan))
    seconds, tokens = 0.0, 0
    for i, idx in enumerate(plan):
        t = time.perf_counter()
        trainer.step(opt, sched, train, idx, cache, i)
        seconds += time.perf_counter() - t
        tokens += train.num_tokens(idx)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    # 2) tensor memory: a fresh optimiser and the MEM_STEPS largest planned batches (padded
    # size) under torch's profiler; the optimiser state is created inside the window, as in
    # training, and the cache counts.
    opt.zero_grad(set_to_none=True)
    del opt, sched
    opt, sched = trainer.optimizer(MEM_STEPS)
    largest = sorted(plan, key=lambda b: -len(b) * max(len(train.input_ids[i]) for i in b))[:MEM_STEPS]
    with tensor_memory() as mem:
        for i, idx in enumerate(largest):
            trainer.step(opt, sched, train, idx, cache, i)
    return {**cfg, "tokens_per_second": tokens / seconds, "train_seconds": seconds,
            "cache_seconds": cache_seconds, "tunable_params": model.num_trainable(),
            "peak_rss_mb": peak, "train_rss_mb": max(0.0, peak - base_rss),
            "cache_mb": cache_mb, "train_peak_mb": mem["peak_mb"] + cache_mb}


def grid(model: str, layers: int, args) -> list[dict]:
    # PL = f*L + 1: the prompt joins after a quarter, half, three quarters of the layers
    # (mid depth = the authors' add_prompt_layer = L/2, i.e. half the layers run above PL)
    q = [int(layers * f) + 1 for f in (0.25, 0.5, 0.75)]
    base = dict(model=model, task=args.task, data_dir=args.data_dir, steps=args.steps, batch_size=args.batch_size,
                max_length=args.max_length, threads=args.threads, num_virtual_tokens=args.num_virtual_tokens)
    cfgs = [dict(base, method=m, generator="none", prompt_layer=None, cache=False, num_virtual_tokens=None)
            for m in args.baselines.split(",") if m]
    cfgs.append(dict(base, method="prompt-tuning", generator="none", prompt_layer=1, cache=False))
    for gen in args.generators.split(","):
        for pl in q:
            for cache in (False, True):
                cfgs.append(dict(base, method="lpt", generator=gen, prompt_layer=pl, cache=cache))
    return cfgs


def markdown(rows: list[dict]) -> str:
    head = ("| model | batch x len, steps | method | generator | PL | cache | tokens/s | x PT | x MT | "
            "train mem MB | % of MT mem | RSS growth MB | tunable |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
    lines = []
    for r in rows:
        pl = "-" if r["prompt_layer"] is None or r["prompt_layer"] != r["prompt_layer"] else int(r["prompt_layer"])
        lines.append(f"| {r['model']} | {r['batch_size']} x {r['max_length']}, {r['steps']} | {r['method']} | {r['generator']} | {pl} | "
                     f"{'yes' if r['cache'] else 'no'} | {r['tokens_per_second']:.0f} | {r['x_pt']:.2f} | "
                     f"{r['x_mt']:.2f} | {r['train_peak_mb']:.0f} | {r['mem_vs_mt']:.0%} | {r['train_rss_mb']:.0f} | {r['tunable_params']:,} |")
    return head + "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", default="minilm,smollm2")
    p.add_argument("--data-dir", default="../shared/data")
    p.add_argument("--task", default="rte", help="the few-shot batches to time (100 shots, data seed 13)")
    p.add_argument("--baselines", default="model-tuning,bitfit,lora,p-tuning-v2,prefix-tuning",
                   help="methods without a prompt layer to time (comma list; '' for none)")
    p.add_argument("--generators", default="none,npg,appg,mppg")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--num-virtual-tokens", type=int, default=None)
    p.add_argument("--out", default=str(RESULTS))
    p.add_argument("--one", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.one:
        print("RESULT " + json.dumps(one(json.loads(args.one))))
        return 0
    import pandas as pd
    from transformers import AutoConfig

    from lpt_probe.model.loading import resolve

    rows, skipped = [], []
    for model in args.models.split(","):
        layers = AutoConfig.from_pretrained(resolve(model)[0]).num_hidden_layers
        for cfg in grid(model, layers, args):
            t = time.perf_counter()
            out = subprocess.run([sys.executable, __file__, "--one", json.dumps(cfg)], capture_output=True,
                                 text=True, env={**os.environ, "TQDM_DISABLE": "1"})
            line = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")]
            if out.returncode or not line:
                raise SystemExit(f"configuration {cfg} failed:\n{out.stderr[-3000:]}")
            r = json.loads(line[0][7:])
            if "unsupported" in r:
                skipped.append(f"{model} {r['method']}: {r['unsupported']}")
                print(f"{model} {r['method']}: not supported ({r['unsupported']})", flush=True)
                continue
            rows.append(r)
            print(f"{model} {r['method']} {r['generator']} PL={r['prompt_layer']} cache={r['cache']}: "
                  f"{r['tokens_per_second']:.0f} tok/s, +{r['train_peak_mb']:.0f} MB "
                  f"({time.perf_counter() - t:.0f} s)", flush=True)
    df = pd.DataFrame(rows)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    csv = out / "train_throughput.csv"
    if csv.exists():  # keep the other models' rows: each model can be benchmarked on its own
        old = pd.read_csv(csv)
        df = pd.concat([old[~old.model.isin(df.model.unique())], df], ignore_index=True)
    df["peak_memory_mb"] = df["train_peak_mb"]  # the column lpt_probe.figures efficiency plots
    for model, g in df.groupby("model"):
        mt = g[g.method == "model-tuning"]
        pt = g[g.method == "prompt-tuning"].iloc[0]
        mt_speed = mt.tokens_per_second.iloc[0] if len(mt) else float("nan")
        mt_mem = mt.train_peak_mb.iloc[0] if len(mt) else float("nan")
        df.loc[g.index, "x_mt"] = g.tokens_per_second / mt_speed
        df.loc[g.index, "x_pt"] = g.tokens_per_second / pt.tokens_per_second
        df.loc[g.index, "mem_vs_mt"] = g.train_peak_mb / mt_mem
    df.drop(columns=["data_dir"], errors="ignore").to_csv(csv, index=False)
    cmd = "python benchmarks/bench_train.py " + " ".join(argv if argv is not None else sys.argv[1:])
    cmds = out / "train_throughput.commands.txt"
    lines = [ln for ln in (cmds.read_text().splitlines() if cmds.exists() else [])
             if not any(f"--models {m}" in ln for m in args.models.split(","))]
    cmds.write_text("\n".join(lines + [cmd.strip()]) + "\n")
    import platform

    import torch

    text = ("# Training throughput\n\nCommands:\n\n" + "".join(f"    {c}\n" for c in cmds.read_text().splitlines())
            + f"\nMachine: {platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__}, "
            f"{args.threads} threads; {args.task.upper()} few-shot batches (batch x max tokens, steps per configuration as "
            f"listed). x PT / x MT: tokens/s relative to prompt tuning / model tuning of the same model; "
            f"train mem: peak tensor memory of the training steps (torch profiler, the {min(MEM_STEPS, args.steps)} "
            f"largest batches) plus the "
            f"lower-layer cache; RSS growth: peak resident memory growth of the process once model and data are "
            f"loaded (includes the cache pass and allocator slack).\n\n" + markdown(df.to_dict("records"))
            + "".join(f"\nNot timed: {s}\n" for s in skipped))
    (out / "train_throughput.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
