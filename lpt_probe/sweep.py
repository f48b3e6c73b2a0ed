"""A grid of late-prompt runs: ``python -m lpt_probe.sweep --task trec --prompt-layers all``.

The propagation-distance study of the paper's Section 4 (Figure 2 left and middle) as one
resumable command: every (generator x prompt layer x seed) cell is one training run with
its own run folder under ``<out>/runs/``; a finished cell is reused, a failed one is
recorded as failed and the others go on. The model is loaded once and the lower-layer
cache is computed once for every prompt layer of the grid (one pass keeps all the layers
needed), so a cell only runs layers PL..L.

Writes ``sweep.csv`` (one row per cell: task, model, method, generator, prompt_layer,
seed, shots, data_seed, dev and test metric, steps, tunable params, tokens/s, peak
memory, wall time, status), ``curves.csv`` (step, train loss, dev metric per cell),
``sweep.json`` (settings, versions, data fingerprints) and the figures
``performance_vs_layer.pdf`` and ``convergence.pdf`` (``convergence_<generator>.pdf``
when the grid has several generators).
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from . import io
from .cache import LowerLayerCache
from .late_prompt import LatePromptConfig
from .mi import parse_prompt_layers
from .models import DEFAULT_MODEL, load_model, model_slug
from .train import (TrainConfig, TrainingDiverged, add_train_args, cli_start, prepare, run_config,
                    run_is_complete, train)

logger = logging.getLogger(__name__)
SWEEP_COLUMNS = ["task", "model", "method", "generator", "prompt_layer", "seed", "shots", "data_seed",
                 "dev_metric", "test_metric", "steps", "best_step", "tunable_params", "tokens_per_second",
                 "peak_memory_mb", "wall_seconds", "status", "error", "run_dir"]


def cell_prompt_config(args: argparse.Namespace, generator: str, prompt_layer: int) -> LatePromptConfig:
    return LatePromptConfig(prompt_layer=prompt_layer, generator=generator, num_virtual_tokens=args.num_virtual_tokens,
                            bottleneck=args.bottleneck, head=args.head, loss=args.loss)


def run_sweep(args: argparse.Namespace) -> pd.DataFrame:
    out = Path(args.out)
    bundle = load_model(args.model, device=args.device)
    L = int(bundle[0].config.num_hidden_layers)
    layers = parse_prompt_layers(args.prompt_layers, L)
    generators = [g.strip() for g in args.generators.split(",") if g.strip()]
    for g in generators:
        LatePromptConfig(generator=g)  # validates the name early
    seeds = [int(s) for s in args.seeds.split(",")]
    base = TrainConfig(task=args.task, model=args.model, data_dir=args.data_dir, source=args.source,
                       shots=args.shots, data_seed=args.data_seed, dev_size=args.dev_size,
                       max_examples=args.max_examples, max_length=args.max_length, lr=args.lr,
                       batch_size=args.batch_size, steps=args.steps, epochs=args.epochs,
                       eval_every=args.eval_every, cache=args.cache, backbone_dropout=args.backbone_dropout,
                       bucket=args.bucket, device=args.device)
    prepared = prepare(base, bundle)
    backbone, _, info, data, encoded, _ = prepared
    meta = io.run_meta(status="running", settings=vars(args), prompt_layers=layers, model=info,
                       data=data.to_meta())
    io.write_json(out / "sweep.json", meta)
    cells = [(g, k, s) for g in generators for k in layers for s in seeds]
    caches = None
    todo = [c for c in cells if not run_is_complete(out / "runs" / f"{c[0]}-pl{c[1]}-s{c[2]}", run_config(
        cell_prompt_config(args, c[0], c[1]), TrainConfig(**{**vars(base), "seed": c[2]})))]
    if base.cache and todo:  # finished cells need no cache: a rerun only collects them
        need = sorted({k - 1 for _, k, _ in todo})
        caches = {s: LowerLayerCache.build(backbone, encoded[s], need, base.eval_batch_size,
                                           desc=f"cache {s} (layers {need[0]}..{need[-1]})") for s in encoded}
    rows, curves = [], []
    bar = tqdm(cells, desc="sweep cells", disable=not args.progress)
    for g, k, s in bar:
        bar.set_postfix(cell=f"{g} PL={k} seed={s}")
        pc = cell_prompt_config(args, g, k)
        tc = TrainConfig(**{**vars(base), "seed": s})
        run_dir = out / "runs" / f"{g}-pl{k}-s{s}"
        row = {"task": data.task.name, "model": model_slug(args.model), "method": "lpt", "generator": g,
               "prompt_layer": k, "seed": s, "shots": args.shots, "data_seed": args.data_seed,
               "run_dir": str(run_dir.relative_to(out))}
        try:
            res = train(pc, tc, run_dir, prepared=prepared, caches=caches, progress=args.progress)
        except (TrainingDiverged, RuntimeError, ValueError) as exc:
            logger.error("cell %s PL=%d seed=%d failed: %s", g, k, s, exc)
            rows.append({**row, "status": "failed", "error": f"{type(exc).__name__}: {exc}"})
            continue
        m, mt = res.metrics, res.meta
        rows.append({**row, "dev_metric": m["dev_metric"], "test_metric": m["test_metric"],
                     "steps": m["steps"], "best_step": m["best_step"], "tunable_params": m["tunable_params"],
                     "tokens_per_second": m["tokens_per_second"],
                     "peak_memory_mb": mt.get("peak_cuda_mb", mt.get("peak_rss_mb")),
                     "wall_seconds": mt.get("wall_seconds"), "status": "complete", "error": ""})
        curve = res.curve.assign(task=data.task.name, model=row["model"], generator=g, prompt_layer=k, seed=s)
        curves.append(curve)
    sweep = pd.DataFrame(rows).reindex(columns=SWEEP_COLUMNS)
    io.write_csv(out / "sweep.csv", sweep)
    io.write_csv(out / "curves.csv", pd.concat(curves, ignore_index=True) if curves else pd.DataFrame())
    meta.update(status="complete", cells=len(cells), failed=int((sweep["status"] == "failed").sum()))
    io.write_json(out / "sweep.json", meta)
    return sweep


def draw(out: Path) -> list[Path]:
    from .plotting import paper_style, plot_convergence, plot_performance_vs_layer, save_figure

    sweep = pd.read_csv(out / "sweep.csv")
    curves = pd.read_csv(out / "curves.csv")
    paths = []
    if (sweep["status"] == "complete").any():
        with paper_style():
            ax = plot_performance_vs_layer(sweep)
            paths += save_figure(ax.figure, out / "performance_vs_layer.pdf")
            generators = sorted(curves["generator"].unique())
            for g in generators:  # one convergence figure per generator
                ax = plot_convergence(curves, generator=g)
                name = "convergence.pdf" if len(generators) == 1 else f"convergence_{g}.pdf"
                paths += save_figure(ax.figure, out / name)
    return paths


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m lpt_probe.sweep", description=__doc__.split("\n")[0])
    add_train_args(p, task_default="trec")
    p.set_defaults(model=DEFAULT_MODEL)
    g = p.add_argument_group("grid")
    g.add_argument("--prompt-layers", default="default", help="'default' (1, middle, last), 'all' or '1,4,6'")
    g.add_argument("--generators", default="none", help="comma list of none, npg, appg, mppg")
    g.add_argument("--seeds", default="13,21,42", help="comma list of training seeds")
    g.add_argument("--num-virtual-tokens", type=int, default=None)
    g.add_argument("--bottleneck", type=int, default=128)
    g.add_argument("--head", default="auto", choices=["auto", "lm", "classifier"])
    g.add_argument("--loss", default="vocab", choices=["vocab", "label_words"])
    p.add_argument("--out", default=None, help="default artifacts/sweeps/<task>/<model>/")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    return p


def main(argv: list[str] | None = None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    cli_start(args)
    args.out = args.out or str(Path("artifacts") / "sweeps" / args.task / model_slug(args.model))
    t0 = time.perf_counter()
    try:
        sweep = run_sweep(args)
    except (ValueError, KeyError, FileNotFoundError) as exc:
        p.exit(2, f"error: {exc}\n")
    paths = draw(Path(args.out))
    done = sweep[sweep["status"] == "complete"]
    if len(done):
        table = done.groupby(["generator", "prompt_layer"])["test_metric"].agg(["mean", "std", "count"])
        print(table.round(4).to_string())
    print(f"{len(done)}/{len(sweep)} cells complete in {time.perf_counter() - t0:.0f} s -> {args.out}/sweep.csv"
          + "".join(f", {p.name}" for p in paths))
    return 0 if len(done) == len(sweep) else 1


if __name__ == "__main__":
    raise SystemExit(main())
