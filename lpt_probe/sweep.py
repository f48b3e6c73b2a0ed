"""A grid of training runs: ``python -m lpt_probe.sweep --task trec --prompt-layers all``.

The propagation-distance study of the paper's Section 4 (Figure 2 left and middle), and the
comparison with the methods LPT was measured against, as one resumable command. Every
cell of the grid is one training run with its own run folder under ``<out>/runs/``:

- ``--methods lpt``: (generator x prompt layer x seed), folders ``<generator>-pl<k>-s<seed>``;
- any baseline of ``lpt_probe.methods`` (``prompt-tuning``, ``model-tuning``, ``bitfit``,
  ``lora``, ``p-tuning-v2``, ``prefix-tuning``): one cell per seed, ``<method>-s<seed>``,
  with the same task, template, label words, splits, optimiser and step budget.

A finished cell is never recomputed (rerunning the command only collects it); a failed
cell is retried up to ``--retries`` times, then recorded as failed while the others go on.
The lower-layer cache is computed once per task, model and split for every prompt layer
the grid needs, and shared by all cells.

Executors (``--executor``):

- ``local`` (default): in this process, one cell after another; the model is loaded once.
- ``ray``: each cell is a Ray task on a Ray cluster (``lpt_probe.executors``) (``--address auto`` joins a running
  one, started with ``ray start --head``; no ``--address`` starts Ray on this machine).
  One task computes the lower-layer cache and every cell receives its layer by reference
  through Ray's object store; cells run as cluster resources allow (``--cpus-per-run``,
  ``--gpus-per-run``), with Ray's own task retries. ``--out`` must be storage every node
  sees: a shared disk or an fsspec URL (``s3://...``; see ``lpt_probe.io``).

The driver aggregates as cells finish: ``sweep.csv`` (one row per finished cell: task,
model, method, generator, prompt_layer, seed, shots, data_seed, dev and test metric,
steps, tunable params, tokens/s, peak memory, wall time, status), ``curves.csv`` (step,
train loss, dev metric per cell) and ``sweep.json`` (settings, versions, data
fingerprints, status) are rewritten after every cell; at the end it draws
``performance_vs_layer.pdf`` (baselines as reference lines) and ``convergence.pdf``
(``convergence_<generator>.pdf`` when the grid has several generators).
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from . import executors, io
from .executors import EXECUTORS
from .late_prompt import LatePromptConfig
from .methods import METHODS, get_method
from .mi import parse_prompt_layers
from .models import DEFAULT_MODEL, model_slug
from .train import (TrainConfig, add_lora_args, add_train_args, cli_start, is_task_file, load_data,
                    prompt_config_from_args, run_config, run_is_complete, train_config_from_args)

logger = logging.getLogger(__name__)
SWEEP_COLUMNS = ["task", "model", "method", "generator", "prompt_layer", "seed", "shots", "data_seed",
                 "dev_metric", "test_metric", "steps", "best_step", "tunable_params", "tokens_per_second",
                 "peak_memory_mb", "wall_seconds", "status", "error", "run_dir"]


@dataclass(frozen=True)
class Cell:
    """One training run of the grid."""

    method: str
    generator: str
    prompt_layer: int
    seed: int

    @property
    def name(self) -> str:
        if self.method == "lpt":
            return f"{self.generator}-pl{self.prompt_layer}-s{self.seed}"
        return f"{self.method}-s{self.seed}"


def build_grid(methods: list[str], generators: list[str], layers: list[int], seeds: list[int]) -> list[Cell]:
    cells = []
    for m in methods:
        if m == "lpt":
            cells += [Cell(m, g, k, s) for g in generators for k in layers for s in seeds]
        else:
            cells += [Cell(m, "none", 1, s) for s in seeds]
    return cells


def cell_configs(args: argparse.Namespace, cell: Cell, base: TrainConfig) -> tuple[LatePromptConfig, TrainConfig]:
    spec = get_method(cell.method)
    # --num-virtual-tokens is for the cells with a prompt or prefix; the others get none
    no_tokens = {} if spec.late_prompt or spec.full_forward else {"num_virtual_tokens": None}
    pc = prompt_config_from_args(args, cell.prompt_layer, cell.method, cell.generator, **no_tokens)
    lr = args.lr if args.lr is not None else spec.default_lr  # one --lr for all, or each method's own
    return pc, TrainConfig(**{**asdict(base), "seed": cell.seed, "lr": lr})


def collect_row(out: str | Path, cell: Cell, base_row: dict, result: dict) -> tuple[dict, pd.DataFrame | None]:
    """The sweep.csv row of a finished cell, read back from its run folder, and its curve."""
    run_dir = io.join(out, "runs", cell.name)
    row = {**base_row, "method": cell.method, "generator": cell.generator,
           "prompt_layer": cell.prompt_layer if get_method(cell.method).late_prompt else None,
           "seed": cell.seed, "run_dir": f"runs/{cell.name}", **result}
    if result["status"] != "complete":
        return row, None
    m, mt = io.read_json(io.join(run_dir, "metrics.json")), io.read_json(io.join(run_dir, "meta.json"))
    row.update(dev_metric=m["dev_metric"], test_metric=m["test_metric"], steps=m["steps"],
               best_step=m["best_step"], tunable_params=m["tunable_params"],
               tokens_per_second=m["tokens_per_second"],
               peak_memory_mb=mt.get("peak_cuda_mb", mt.get("peak_rss_mb")), wall_seconds=mt.get("wall_seconds"))
    curve = io.read_csv(io.join(run_dir, "curve.csv")).assign(
        task=row["task"], model=row["model"], method=cell.method, generator=cell.generator,
        prompt_layer=row["prompt_layer"], seed=cell.seed)
    return row, curve


# -- the sweep --------------------------------------------------------------------------------
def _absolute(path: str | None) -> str | None:
    return path if path is None or io.is_url(path) else os.path.abspath(path)


def run_sweep(args: argparse.Namespace) -> pd.DataFrame:
    out = args.out if io.is_url(args.out) else Path(args.out).resolve()
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    for m in methods:
        get_method(m)  # unknown method: fail before anything runs
    generators = [g.strip() for g in args.generators.split(",") if g.strip()]
    for g in generators:
        LatePromptConfig(generator=g)  # validates the name early
    seeds = [int(s) for s in args.seeds.split(",")]
    # workers may start elsewhere: every path absolute; "auto" devices resolve where a cell runs
    base = train_config_from_args(args, seed=seeds[0], data_dir=_absolute(args.data_dir),
                                  task=_absolute(args.task) if is_task_file(args.task) else args.task)
    from transformers import AutoConfig  # the grid needs the depth; data is read once for fingerprints

    from .models import resolve

    L = int(AutoConfig.from_pretrained(resolve(args.model)[0]).num_hidden_layers)
    layers = parse_prompt_layers(args.prompt_layers, L) if "lpt" in methods else []
    cells = build_grid(methods, generators, layers, seeds)
    configs = {c: cell_configs(args, c, base) for c in cells}
    data = load_data(base)
    settings = {k: v for k, v in vars(args).items() if k != "requested_device"}
    meta = io.run_meta(status="running", settings=settings, methods=methods, prompt_layers=layers,
                       cells=len(cells), data=data.to_meta())
    io.write_json(io.join(out, "sweep.json"), meta)
    base_row = {"task": data.task.name, "model": model_slug(args.model), "shots": args.shots,
                "data_seed": args.data_seed}
    rows: dict[Cell, dict] = {}
    curves: dict[Cell, pd.DataFrame] = {}

    def write_tables() -> pd.DataFrame:
        order = [c for c in cells if c in rows]
        sweep = pd.DataFrame([rows[c] for c in order]).reindex(columns=SWEEP_COLUMNS)
        io.write_csv(io.join(out, "sweep.csv"), sweep)
        io.write_csv(io.join(out, "curves.csv"), pd.concat([curves[c] for c in order if c in curves],
                                                          ignore_index=True) if curves else pd.DataFrame())
        return sweep

    bar = tqdm(total=len(cells), desc="sweep cells", disable=not args.progress)

    def on_done(cell: Cell, result: dict) -> None:
        rows[cell], curve = collect_row(out, cell, base_row, result)
        if curve is not None:
            curves[cell] = curve
        write_tables()  # aggregate as cells finish: a crash loses nothing that finished
        bar.update(1)
        bar.set_postfix(last=cell.name, failed=sum(r["status"] != "complete" for r in rows.values()))

    todo = []
    for cell in cells:  # finished cells are collected, never recomputed
        pc, tc = configs[cell]
        if run_is_complete(io.join(out, "runs", cell.name), run_config(pc, tc)):
            on_done(cell, {"status": "complete", "error": ""})
        else:
            todo.append(cell)
    logger.info("%d cells: %d finished before, %d to run (%s executor)", len(cells), len(cells) - len(todo),
                len(todo), args.executor)
    if todo:
        executors.run(args.executor, todo, configs, args, base, out, on_done, data)
    bar.close()
    sweep = write_tables()
    meta.update(status="complete", failed=int((sweep["status"] != "complete").sum()))
    io.write_json(io.join(out, "sweep.json"), meta)
    return sweep


def draw(out: str | Path) -> list[Path]:
    """performance_vs_layer.pdf and convergence*.pdf from the tables in ``out``."""
    from .plotting import paper_style, plot_convergence, plot_performance_vs_layer, save_figure

    sweep = io.read_csv(io.join(out, "sweep.csv"))
    done = sweep[sweep["status"] == "complete"]
    lpt = done[done["method"] == "lpt"]
    if lpt.empty:  # figures are about prompt layers: a baselines-only grid has none
        return []
    curves = io.read_csv(io.join(out, "curves.csv"))
    curves = curves[curves["method"] == "lpt"] if "method" in curves.columns else curves
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) if io.is_url(out) else Path(out)
        paths = []
        with paper_style():
            ax = plot_performance_vs_layer(done)
            paths += save_figure(ax.figure, local / "performance_vs_layer.pdf")
            generators = sorted(curves["generator"].unique())
            for g in generators:  # one convergence figure per generator
                ax = plot_convergence(curves, generator=g)
                name = "convergence.pdf" if len(generators) == 1 else f"convergence_{g}.pdf"
                paths += save_figure(ax.figure, local / name)
        if io.is_url(out):
            for p in paths:
                io.atomic_write_bytes(io.join(out, p.name), p.read_bytes())
            paths = [Path(p.name) for p in paths]
    return paths


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m lpt_probe.sweep", description=__doc__.split("\n")[0])
    add_train_args(p, task_default="trec")
    p.set_defaults(model=DEFAULT_MODEL)
    g = p.add_argument_group("grid")
    g.add_argument("--methods", "--method", default="lpt",
                   help="comma list of lpt and baselines: " + ", ".join(METHODS) + " (baselines: one cell per seed)")
    g.add_argument("--prompt-layers", default="default", help="lpt: 'default' (1, middle, last), 'all' or '1,4,6'")
    g.add_argument("--generators", default="none", help="lpt: comma list of none, npg, appg, mppg")
    g.add_argument("--seeds", default="13,21,42", help="comma list of training seeds")
    g.add_argument("--num-virtual-tokens", type=int, default=None,
                   help="prompt length (lpt, prompt-tuning) / prefix length (p-tuning-v2, prefix-tuning)")
    g.add_argument("--bottleneck", type=int, default=128)
    g.add_argument("--head", default="auto", choices=["auto", "lm", "classifier"])
    g.add_argument("--loss", default="vocab", choices=["vocab", "label_words"])
    add_lora_args(g)
    e = p.add_argument_group("execution")
    e.add_argument("--executor", default="local", choices=EXECUTORS,
                   help="local: in this process, one cell after another; ray: each cell a Ray task")
    e.add_argument("--address", default=None,
                   help="ray: cluster address ('auto' joins a running cluster, HOST:PORT a remote one); "
                        "default: start Ray on this machine")
    e.add_argument("--cpus-per-run", type=float, default=1, help="ray: CPUs each cell reserves")
    e.add_argument("--gpus-per-run", type=float, default=0, help="ray: GPUs each cell reserves (e.g. 1)")
    e.add_argument("--retries", type=int, default=1, help="retry a failing cell this many times, then record it")
    p.add_argument("--out", default=None, help="a folder or fsspec URL; default artifacts/sweeps/<task>/<model>/")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    return p


def main(argv: list[str] | None = None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    args.requested_device = args.device  # "auto" resolves on the machine that runs a cell
    cli_start(args)
    if args.retries < 0:
        p.error(f"--retries {args.retries}: give 0 or more")
    args.out = args.out or str(Path("artifacts") / "sweeps" / Path(args.task).stem / model_slug(args.model))
    t0 = time.perf_counter()
    try:
        sweep = run_sweep(args)
    except (ValueError, KeyError, FileNotFoundError) as exc:
        p.exit(2, f"error: {exc}\n")
    paths = draw(args.out)
    done = sweep[sweep["status"] == "complete"]
    if len(done):
        keys = ["method", "generator", "prompt_layer"]
        table = (done.astype({"prompt_layer": object}).fillna({"prompt_layer": "-"})
                 .groupby(keys)["test_metric"].agg(["mean", "std", "count"]))
        print(table.round(4).to_string())
    print(f"{len(done)}/{len(sweep)} cells complete in {time.perf_counter() - t0:.0f} s -> {args.out}/sweep.csv"
          + "".join(f", {p.name}" for p in paths))
    return 0 if len(done) == len(sweep) else 1


if __name__ == "__main__":
    raise SystemExit(main())
