"""Training throughput and peak memory of every method, and each late prompt against its limit.

    python benchmarks/bench_train.py --models minilm,smollm2 --data-dir ../shared/data

What is timed. Every configuration trains on the same few-shot batches of one task
(``--task``, default RTE; same batch size, sequence cap, steps and seed): every baseline
of ``lpt_probe.methods`` (model tuning, BitFit, LoRA, P-tuning v2, prefix tuning, Adapter,
AdapterDrop and S-IDPG-PHM; ``--baselines``; AdapterDrop and S-IDPG from the lower-layer
cache, as they train, S-IDPG with its bare loop), prompt tuning (PL=1), and LPT with each
generator at 1/4, 1/2 and 3/4 of depth, with and without the lower-layer cache (PL = L/4+1,
L/2+1, 3L/4+1: at mid depth the prompt joins after half the layers, the authors'
``add_prompt_layer = L/2``). Methods
without a prompt layer have an empty ``prompt_layer``. Each configuration runs
``Trainer.step`` over the batches ``Trainer.fit`` would draw: ``--warmup`` untimed steps,
then ``--steps`` timed ones (no evaluation, no best-state copies): training tokens/s is
text tokens / time in the timed steps (the cache is built before, its time reported apart
as ``cache_seconds``).

How it holds still. Each measurement is a fresh subprocess (peak memory is that
configuration's alone), and configurations are interleaved round-robin: repeat r of
every configuration, then repeat r+1 (``--repeats``; odd repeats run the list backwards,
so a drift of the machine favours neither end). Per configuration the table gives the
median and the min-max of tokens/s; each ratio is computed within one repeat (from
measurements of the same round) and given as median and min-max over repeats. A ratio
whose range straddles its goal is "undecided", not met.

The limit beside the trainer. For every late prompt timed from its cache (and prompt
tuning) the same subprocess then times ``lpt_probe.runs.bare`` on the same batches:
layers PL..L forward and backward to the prompt, from hidden states collated, padded and
moved beforehand (no collation, optimiser, clipping or logging). ``trainer / bare`` is how
close the training loop runs to that limit (goal >= 0.9); ``bare / PT bare`` is the
architectural speed-up alone (the paper's Table 10 is about it).

Memory (first repeat only: it counts tensor bytes, the same in every repeat):
``train_peak_mb`` is the peak bytes of tensors the steps allocate (saved activations,
gradients, optimiser states, temporaries; torch's profiler memory timeline over
``MEM_STEPS`` steps on the largest planned batches with a fresh optimiser, the analogue of
``torch.cuda.max_memory_allocated`` above the loaded model) plus the lower-layer cache
(``cache_mb``); cruder, ``train_rss_mb`` is the growth of the process's peak resident
memory once model and data are loaded (the cache pass and allocator slack included;
median over repeats).

Writes ``train_throughput.csv`` (one row per configuration: medians and ranges; the table
``lpt_probe.figures efficiency`` draws), ``train_throughput_repeats.csv`` (one row per
configuration x repeat) and ``train_throughput.md`` into ``--out`` (default
benchmarks/results; run by hand, not in CI). Goals (issues 3 and 14): LPT at mid depth with
the cache >= 1.8x prompt tuning and >= 2.7x model tuning tokens/s, training memory <= 35%
of model tuning's, trainer >= 0.9x its bare loop.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

import harness
from harness import cache_cell, prompt_layer_cell, span
from lpt_probe import store
from lpt_probe.layers import middle_prompt_layer

RESULTS = harness.RESULTS
MEM_STEPS = 3  # optimiser steps profiled for tensor memory
KEYS = ["model", "method", "generator", "prompt_layer", "cache"]  # one configuration
RATIOS = ("x_pt", "x_mt", "trainer_vs_bare", "bare_vs_pt_bare")
GOALS = {"x_pt": 1.8, "x_mt": 2.7, "trainer_vs_bare": 0.9}  # ratio >= goal
MEM_GOAL = 0.35  # mid-depth cached LPT: training memory <= 35% of model tuning's
BASELINES = "model-tuning,bitfit,lora,p-tuning-v2,prefix-tuning,adapter,adapterdrop,s-idpg"


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def one(cfg: dict) -> dict:
    """Run one configuration in this process; return its measurements."""
    import torch

    from lpt_probe.model.cache import LowerLayerCache
    from lpt_probe.model.late_prompt import LatePromptConfig, LatePromptModel
    from lpt_probe.model.loading import load_model
    from lpt_probe.runs.bare import bare_batches, synchronize, time_bare
    from lpt_probe.runs.profiling import tensor_memory
    from lpt_probe.runs.run import prepare
    from lpt_probe.runs.trainer import TrainConfig, Trainer

    torch.set_num_threads(cfg["threads"])
    warmup = cfg.get("warmup", 0)
    total = warmup + cfg["steps"]
    tc = TrainConfig(task=cfg.get("task", "rte"), model=cfg["model"], data_dir=cfg["data_dir"], shots=100,
                     data_seed=13, max_examples=600, max_length=cfg["max_length"], steps=total,
                     eval_every=10**9, batch_size=cfg["batch_size"], seed=13, cache=cfg["cache"],
                     bucket=False)  # the batches of the committed tables (0.2.0's order); bucketing: bench_study_speed
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
    if cfg["cache"]:  # hidden state PL-1 (AdapterDrop: the input of its first adapted layer)
        cache = LowerLayerCache.build(backbone, encoded["train"], [model.config.start_state], progress=False)
    cache_seconds = time.perf_counter() - t0
    cache_mb = sum(t.numel() * t.element_size() for ts in cache.states.values() for t in ts) / 2**20 if cache else 0.0
    trainer, train = Trainer(model, tc), encoded["train"]
    plan = trainer.batch_order(train, total)  # the batches fit would draw
    model.train()
    # 1) speed and resident memory: the optimiser steps alone (no evaluation, no best-state copies)
    opt, sched = trainer.optimizer(len(plan))
    seconds, tokens = 0.0, 0
    for i, idx in enumerate(plan):
        t = time.perf_counter()
        trainer.step(opt, sched, train, idx, cache, i)
        synchronize(backbone.device)  # a GPU's optimiser update is queued, not done, when step returns
        if i >= warmup:
            seconds += time.perf_counter() - t
            tokens += train.num_tokens(idx)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out = {**cfg, "tokens_per_second": tokens / seconds, "train_seconds": seconds, "cache_seconds": cache_seconds,
           "tunable_params": model.num_trainable(), "peak_rss_mb": peak, "train_rss_mb": max(0.0, peak - base_rss),
           "cache_mb": cache_mb}
    opt.zero_grad(set_to_none=True)
    del opt, sched
    # 2) the bare loop on the same batches: layers PL..L forward and backward, nothing else
    if cfg.get("bare"):
        batches = bare_batches(model, train, plan, cache)
        bare = time_bare(model, batches, warmup)
        out.update(bare_tokens_per_second=bare["tokens_per_second"], bare_seconds=bare["seconds"])
        del batches
    # 3) tensor memory: a fresh optimiser and the MEM_STEPS largest planned batches (padded
    # size) under torch's profiler; the optimiser state is created inside the window, as in
    # training, and the cache counts.
    if cfg.get("memory", True):
        opt, sched = trainer.optimizer(MEM_STEPS)
        largest = sorted(plan, key=lambda b: -len(b) * max(len(train.input_ids[i]) for i in b))[:MEM_STEPS]
        with tensor_memory() as mem:
            for i, idx in enumerate(largest):
                trainer.step(opt, sched, train, idx, cache, i)
        out["train_peak_mb"] = mem["peak_mb"] + cache_mb
    return out


def method_config(base: dict, method: str, generator: str = "none", prompt_layer: int | None = None,
                  cache: bool | None = None) -> dict:
    """``method``'s configuration over the shared settings ``base``, as it trains in a sweep
    unless ``cache`` is given: from the lower-layer cache where the method can use one
    (LPT, prompt tuning, AdapterDrop, S-IDPG), an input prompt at PL 1, no prompt layer for
    methods without a prompt. Late prompts get the bare loop when timed from the cache, or
    at PL 1 (where the layers below are only the embeddings); S-IDPG's includes its first
    pass. A prompt length in ``base`` applies to LPT and prompt tuning only."""
    from lpt_probe.model.methods import get_method

    spec = get_method(method)
    pl = 1 if spec.input_prompt else prompt_layer if spec.late_prompt else None
    cache = spec.cacheable if cache is None else bool(cache) and spec.cacheable
    plain_prompt = spec.late_prompt and spec.make_generator is None
    return dict(base, method=method, generator=generator, prompt_layer=pl, cache=cache,
                num_virtual_tokens=base.get("num_virtual_tokens") if plain_prompt else None,
                bare=spec.late_prompt and (cache or pl == 1))


def grid(model: str, layers: int, args) -> list[dict]:
    # PL = f*L + 1: the prompt joins after a quarter, half, three quarters of the layers
    # (mid depth = the authors' add_prompt_layer = L/2, i.e. half the layers run above PL)
    q = [int(layers * 0.25) + 1, middle_prompt_layer(layers), int(layers * 0.75) + 1]
    base = dict(model=model, task=args.task, data_dir=args.data_dir, steps=args.steps, warmup=args.warmup,
                batch_size=args.batch_size, max_length=args.max_length, threads=args.threads,
                num_virtual_tokens=args.num_virtual_tokens)
    # each baseline as it trains in a sweep (AdapterDrop and S-IDPG from the cache); prompt
    # tuning without the cache, as the paper trains it; LPT with and without
    cfgs = [method_config(base, m) for m in args.baselines.split(",") if m]
    cfgs.append(method_config(base, "prompt-tuning", cache=False))
    for gen in args.generators.split(","):
        for pl in q:
            for cache in (False, True):
                cfgs.append(method_config(base, "lpt", gen, pl, cache))
    return cfgs


def measure(cfg: dict) -> dict:
    """One configuration in a fresh subprocess."""
    out = harness.run_timed([sys.executable, __file__, "--one", json.dumps(cfg)], f"configuration {cfg}")
    line = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")]
    if not line:
        raise SystemExit(f"configuration {cfg} failed: it printed no RESULT line:\n{out.stderr[-harness.TAIL:]}")
    return {**json.loads(line[0][7:]), "wall_seconds": out.wall_seconds}


def interleaved(cfgs: list[dict], repeats: int, t_all: float | None = None) -> tuple[list[dict], list[str]]:
    """Measure ``cfgs`` round-robin: repeat r of every configuration, then r+1 (odd rounds
    backwards; tensor memory in the first round only). Returns one row per configuration
    x repeat, and a line for each configuration its model cannot serve (measured once)."""
    t_all = time.perf_counter() if t_all is None else t_all
    rows, skipped = [], []
    for rep in range(repeats):
        order = cfgs if rep % 2 == 0 else cfgs[::-1]
        for pos, cfg in enumerate(order):
            r = measure(dict(cfg, memory=rep == 0))
            if "unsupported" in r:
                skipped.append(f"{cfg['model']} {r['method']}: {r['unsupported']}")
                print(f"{cfg['model']} {r['method']}: not supported ({r['unsupported']})", flush=True)
                continue
            rows.append({**r, "repeat": rep, "position": pos})
            bare = f", bare {r['bare_tokens_per_second']:.0f}" if "bare_tokens_per_second" in r else ""
            print(f"[{rep + 1}/{repeats}] {cfg['model']} {cfg.get('task', '')} {r['method']} {r['generator']} "
                  f"PL={r['prompt_layer']} cache={r['cache']}: {r['tokens_per_second']:.0f} tok/s{bare} "
                  f"({r['wall_seconds']:.0f} s, {time.perf_counter() - t_all:.0f} s in all)", flush=True)
        cfgs = [c for c in cfgs if not any(s.startswith(f"{c['model']} {c['method']}:") for s in skipped)]
    return rows, skipped


def with_ratios(reps):
    """Per repeat: x PT, x MT (tokens/s over prompt / model tuning's in the same round),
    trainer / bare and bare / prompt tuning's bare."""
    import numpy as np

    reps = reps.copy()
    for col in ("bare_tokens_per_second", *RATIOS):
        if col not in reps:
            reps[col] = np.nan
    for _, g in reps.groupby(["model", "repeat"]):
        pt = g[g.method == "prompt-tuning"]
        mt = g[g.method == "model-tuning"]
        pt_tps = pt.tokens_per_second.iloc[0] if len(pt) else np.nan
        mt_tps = mt.tokens_per_second.iloc[0] if len(mt) else np.nan
        pt_bare = pt.bare_tokens_per_second.iloc[0] if len(pt) else np.nan
        reps.loc[g.index, "x_pt"] = g.tokens_per_second / pt_tps
        reps.loc[g.index, "x_mt"] = g.tokens_per_second / mt_tps
        reps.loc[g.index, "bare_vs_pt_bare"] = g.bare_tokens_per_second / pt_bare
    reps["trainer_vs_bare"] = reps.tokens_per_second / reps.bare_tokens_per_second
    return reps


def summarise(reps):
    """One row per configuration: medians and min-max over repeats; memory from repeat 0."""
    import pandas as pd

    reps = with_ratios(reps)
    rows = []
    for _, g in reps.groupby(KEYS, dropna=False, sort=False):
        first = g.sort_values("repeat").iloc[0]
        row = {c: first[c] for c in ("model", "task", "steps", "warmup", "batch_size", "max_length", "threads",
                                     "num_virtual_tokens", "method", "generator", "prompt_layer", "cache",
                                     "tunable_params", "cache_mb", "train_peak_mb") if c in g}
        row["repeats"] = len(g)
        for col in ("tokens_per_second", "bare_tokens_per_second", *RATIOS):
            v = g[col].dropna()
            row[col] = v.median() if len(v) else float("nan")
            row[f"{col}_min"] = v.min() if len(v) else float("nan")
            row[f"{col}_max"] = v.max() if len(v) else float("nan")
        for col in ("train_rss_mb", "peak_rss_mb", "cache_seconds"):
            row[col] = g[col].median()
        rows.append(row)
    df = pd.DataFrame(rows)
    df["peak_memory_mb"] = df["train_peak_mb"]  # the column lpt_probe.figures efficiency plots
    for _, g in df.groupby("model"):
        mt = g[g.method == "model-tuning"]
        df.loc[g.index, "mem_vs_mt"] = g.train_peak_mb / (mt.train_peak_mb.iloc[0] if len(mt) else float("nan"))
    return df


def verdict(lo: float, hi: float, goal: float) -> str:
    """met: the whole range reaches the goal; missed: none of it; undecided: it straddles."""
    if lo != lo or hi != hi:
        return "-"
    return "met" if lo >= goal else "missed" if hi < goal else "undecided"


def markdown(rows: list[dict]) -> str:
    head = ("| model | batch x len, steps (+warm-up) x repeats | method | generator | PL | cache | tokens/s | x PT | "
            "x MT | bare tokens/s | trainer / bare | bare / PT bare | train mem MB | % of MT mem | RSS growth MB | "
            "tunable |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
    lines = []
    for r in rows:
        warm = r.get("warmup")
        warm = "" if harness.missing(warm) else f" (+{int(warm)})"
        reps = r.get("repeats")
        reps = "" if harness.missing(reps) else f" x {int(reps)}"
        lines.append(
            f"| {r['model']} | {r['batch_size']} x {r['max_length']}, {r['steps']}{warm}{reps} | {r['method']} | "
            f"{r['generator']} | {prompt_layer_cell(r)} | {cache_cell(r)} | {span(r, 'tokens_per_second', '{:.0f}')} | "
            f"{span(r, 'x_pt')} | {span(r, 'x_mt')} | {span(r, 'bare_tokens_per_second', '{:.0f}')} | "
            f"{span(r, 'trainer_vs_bare')} | {span(r, 'bare_vs_pt_bare')} | "
            f"{harness.cell(r.get('train_peak_mb'), '{:.0f}')} | {r['mem_vs_mt']:.0%} | "
            f"{r['train_rss_mb']:.0f} | {int(r['tunable_params']):,} |")
    return head + "\n".join(lines) + "\n"


def goals(df, mid: dict[str, int]) -> list[dict]:
    """The goals, judged on the ranges: mid-depth cached LPT against prompt and model
    tuning and in memory, and every bare-timed late prompt's trainer / bare."""
    out = []
    for r in df.to_dict("records"):
        model, cached = r["model"], cache_cell(r) == "yes"
        name = f"{r['method']} {r['generator']} PL {prompt_layer_cell(r)}" + (" cache" if cached else "")
        checks = []
        if r["method"] == "lpt" and cached and r["prompt_layer"] == mid.get(model):
            checks += [("x_pt", "x prompt tuning"), ("x_mt", "x model tuning")]
            m = r.get("mem_vs_mt")
            if m == m:
                out.append({"model": model, "configuration": name, "ratio": "memory, share of model tuning's",
                            "goal": f"<= {MEM_GOAL:.0%}", "value": f"{m:.0%}",
                            "verdict": "met" if m <= MEM_GOAL else "missed"})
        if r.get("trainer_vs_bare") == r.get("trainer_vs_bare"):
            checks.append(("trainer_vs_bare", "trainer / bare"))
        for col, label in checks:
            out.append({"model": model, "configuration": name, "ratio": label, "goal": f">= {GOALS[col]}",
                        "value": span(r, col),
                        "verdict": verdict(r.get(f"{col}_min", r.get(col)), r.get(f"{col}_max", r.get(col)),
                                           GOALS[col])})
    return out


def goals_markdown(items: list[dict]) -> str:
    lines = ["| model | configuration | ratio | goal | median (min-max) | verdict |", "|---|---|---|---|---|---|"]
    lines += [f"| {g['model']} | {g['configuration']} | {g['ratio']} | {g['goal']} | {g['value']} | {g['verdict']} |"
              for g in items]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = harness.parser(__doc__)
    p.add_argument("--models", default="minilm,smollm2")
    p.add_argument("--task", default="rte", help="the few-shot batches to time (100 shots, data seed 13)")
    p.add_argument("--baselines", default=BASELINES,
                   help="the other methods to time (comma list; '' for none): AdapterDrop and S-IDPG from the "
                        "lower-layer cache, as they train")
    p.add_argument("--generators", default="none,npg,appg,mppg")
    p.add_argument("--steps", type=int, default=30, help="timed steps per measurement")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps before them")
    p.add_argument("--repeats", type=int, default=3, help="interleaved rounds over every configuration")
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
    if args.repeats < 1 or args.steps < 1 or args.warmup < 0:
        p.error(f"--repeats {args.repeats} and --steps {args.steps} must be >= 1, --warmup {args.warmup} >= 0")
    import pandas as pd
    from transformers import AutoConfig

    from lpt_probe.model.loading import resolve

    rows, skipped, mid = [], [], {}
    t_all = time.perf_counter()
    for model in args.models.split(","):
        layers = AutoConfig.from_pretrained(resolve(model)[0]).num_hidden_layers
        mid[model] = int(layers * 0.5) + 1
        got, lost = interleaved(grid(model, layers, args), args.repeats, t_all)
        rows += got
        skipped += lost
    reps = pd.DataFrame(rows).drop(columns=["data_dir", "memory"], errors="ignore")
    out = Path(args.out)
    rep_csv, csv = out / "train_throughput_repeats.csv", out / "train_throughput.csv"
    if rep_csv.exists():  # keep the other models' rows: each model can be benchmarked on its own
        old = pd.read_csv(rep_csv)
        reps = pd.concat([old[~old.model.isin(reps.model.unique())], reps], ignore_index=True)
    reps = with_ratios(reps)
    df = summarise(reps)
    if csv.exists():
        old = pd.read_csv(csv)
        df = pd.concat([old[~old.model.isin(df.model.unique())], df], ignore_index=True)
    store.write_csv(rep_csv, reps)
    store.write_csv(csv, df)
    cmds = out / "train_throughput.commands.txt"
    lines = [ln for ln in (cmds.read_text().splitlines() if cmds.exists() else [])
             if not any(f"--models {m}" in ln for m in args.models.split(","))]
    store.atomic_write_text(cmds, "\n".join(lines + [harness.command(__file__, argv)]) + "\n")
    for m in df.model.unique():  # rows kept from an earlier run: their mid depth
        if m not in mid:
            mid[m] = int(AutoConfig.from_pretrained(resolve(m)[0]).num_hidden_layers * 0.5) + 1
    head = harness.report_head("Training throughput", cmds.read_text().splitlines())
    text = ("\n".join(head) + f"\n{harness.machine_line(args.threads)}; {args.task.upper()} few-shot batches "
            f"(batch x max tokens, timed steps per measurement, untimed warm-up steps before them, repeats as "
            f"listed). Each measurement is a fresh subprocess; the repeats are interleaved round-robin (every "
            f"configuration once, then again, odd rounds backwards). Speeds and ratios: median (min-max) over the "
            f"repeats, each ratio computed within a repeat. x PT / x MT: tokens/s relative to prompt tuning / model "
            f"tuning of the same model; bare: layers PL..L forward and backward to the prompt alone, on the same "
            f"batches prepared beforehand (lpt_probe.runs.bare); trainer / bare: Trainer.step's tokens/s over the "
            f"bare loop's; bare / PT bare: the bare loop against prompt tuning's. train mem: peak tensor memory of "
            f"the training steps (torch profiler, the {min(MEM_STEPS, args.steps + args.warmup)} largest batches, "
            f"first repeat) plus the lower-layer cache; RSS growth: peak resident memory growth of the process once "
            f"model and data are loaded (includes the cache pass and allocator slack; median).\n\n"
            + markdown(df.to_dict("records"))
            + "\n## Goals\n\nmet: the whole range reaches the goal; missed: none of it; undecided: the range "
              "straddles the goal (the machine's noise does not decide it).\n\n"
            + goals_markdown(goals(df, mid))
            + harness.not_timed(skipped))
    harness.write_report(out / "train_throughput.md", text)
    print(f"{time.perf_counter() - t_all:.0f} s in all")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
