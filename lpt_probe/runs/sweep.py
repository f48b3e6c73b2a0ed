"""A grid of training runs: the propagation-distance study and the baselines, resumable.

``run_sweep(sweep, base, execution)`` trains every cell of the grid that ``SweepConfig``
describes, each into its own run folder under ``<out>/runs/``:

- ``methods`` containing ``lpt``: (generator x prompt layer x seed), ``<generator>-pl<k>-s<seed>``;
- any baseline of ``lpt_probe.model.methods``: one cell per seed, ``<method>-s<seed>``, with
  the same task, template, label words, splits, optimiser and step budget.

Cells that are the same model are trained once: ``prompt-tuning`` and ``lpt`` with no
generator at prompt layer 1 (same prompt length, same learning rate) are one run, whose
folder both rows of ``sweep.csv`` name. A finished cell is reused (the rules of
``lpt_probe.runs.folders``: complete, same key, intact files); a failed cell is retried
``execution.retries`` times, then recorded as failed while the others go on.

The driver aggregates as cells finish: ``sweep.csv`` (one row per cell: task, model,
method, generator, prompt_layer, seed, shots, data_seed, dev and test metric, steps,
tunable params, tokens/s, peak memory, resident memory when the cell finished, wall time,
status, error, run folder), ``curves.csv`` and ``sweep.json`` (the three configs, versions,
data fingerprints, status; with the local executor ``phase_seconds``: this invocation's
lower-layer cache and cells, the phases ``--plan`` estimates) are rewritten after every
cell. The command draws the figures (``lpt_probe.commands.sweep.draw``).
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import pandas as pd

from .. import store
from ..data.sources import is_task_file, task_slug
from ..layers import parse_prompt_layers
from ..model.late_prompt import LatePromptConfig
from ..model.loading import model_slug, resolve_device
from ..model.methods import METHOD_OPTIONS, get_method
from ..outputs import ResumableOutput
from ..progress import bar
from .config import PROMPT_OPTIONS, SweepConfig  # noqa: F401  (re-exported: the settings live there)
from .executors import ExecutorConfig, run
from .folders import check_run
from .run import Prepared, prepare, resolve_lr, run_config
from .trainer import TrainConfig

logger = logging.getLogger(__name__)
SWEEP_COLUMNS = ["task", "model", "method", "generator", "prompt_layer", "seed", "shots", "data_seed",
                 "metric_name", "dev_metric", "test_metric", "steps", "stopped_step", "best_step", "tunable_params",
                 "tokens_per_second",
                 "peak_memory_mb", "rss_mb", "wall_seconds", "status", "error", "run_dir"]
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


def build_grid(methods, generators, layers, seeds) -> list[Cell]:
    cells = []
    for m in methods:
        if m == "lpt":
            cells += [Cell(m, g, k, s) for g in generators for k in layers for s in seeds]
        else:
            cells += [Cell(m, "none", 1, s) for s in seeds]
    names = [c.name for c in cells]
    assert len(set(names)) == len(names), f"sweep cells share a run folder name: {names}"
    return cells


def cell_configs(sweep: SweepConfig, cell: Cell, base: TrainConfig,
                 num_hidden_layers: int | None = None) -> tuple[LatePromptConfig, TrainConfig]:
    """A cell's two configs: the shared options less those its method does not take (a
    prompt length, other methods' options), depth-relative settings pinned for a model of
    ``num_hidden_layers`` layers (as training pins them, so keys agree)."""
    spec = get_method(cell.method)
    options = dict(sweep.prompt)
    if not (spec.late_prompt or spec.full_forward):  # a prompt or prefix length means nothing here
        options["num_virtual_tokens"] = None
    if not spec.late_prompt or cell.generator != "none":  # only a plain late prompt has an initialisation
        options.pop("prompt_init", None)
    for name in METHOD_OPTIONS:  # other methods' options mean nothing here (LoRA's rank to a prompt, ...)
        if name not in spec.option_defaults:
            options[name] = None
    pc = LatePromptConfig(method=cell.method, prompt_layer=cell.prompt_layer, generator=cell.generator, **options)
    if num_hidden_layers is not None:
        pc.pin(num_hidden_layers)
    return pc, resolve_lr(pc, replace(base, seed=cell.seed))


def same_model(configs: dict[Cell, tuple]) -> dict[Cell, Cell]:
    """Each cell -> the cell whose run it shares: prompt tuning is LPT at PL 1 without a
    generator, so cells whose configs are equal up to that name train one model (led by
    the ``lpt`` cell, whose folder name the rows then share)."""
    groups: dict[str, list[Cell]] = {}
    for cell, (pc, tc) in configs.items():
        p = pc.to_dict()
        if p["method"] == "prompt-tuning":
            p["method"] = "lpt"
        groups.setdefault(store.content_key({"prompt": p, "train": asdict(tc)}), []).append(cell)
    out = {}
    for members in groups.values():
        lead = next((c for c in members if c.method == "lpt"), members[0])
        out.update({c: lead for c in members})
    return out


def collect_row(out, cell: Cell, leader: Cell, base_row: dict, result: dict) -> tuple[dict, pd.DataFrame | None]:
    """The sweep.csv row of a finished cell, read back from its run folder, and its curve."""
    run_dir = store.join(out, "runs", leader.name)
    row = {**base_row, "method": cell.method, "generator": cell.generator,
           "prompt_layer": cell.prompt_layer if get_method(cell.method).late_prompt else None,
           "seed": cell.seed, "run_dir": f"runs/{leader.name}", **result}
    if result["status"] != "complete":
        return row, None
    m = store.read_json_object(store.join(run_dir, "metrics.json"))
    mt = store.read_json_object(store.join(run_dir, "meta.json"))
    row.update(metric_name=m.get("metric_name"), dev_metric=m["dev_metric"], test_metric=m["test_metric"],
               steps=m["steps"], stopped_step=m.get("stopped_step", m["steps"]),
               best_step=m["best_step"], tunable_params=m["tunable_params"],
               tokens_per_second=m["tokens_per_second"],
               peak_memory_mb=mt.get("peak_cuda_mb", mt.get("peak_rss_mb")), rss_mb=mt.get("rss_mb"),
               wall_seconds=mt.get("wall_seconds"))
    curve = store.read_csv(store.join(run_dir, "curve.csv")).assign(
        task=row["task"], model=row["model"], method=cell.method, generator=cell.generator,
        prompt_layer=row["prompt_layer"], seed=cell.seed, metric_name=row["metric_name"])
    return row, curve


def _absolute(path: str | None) -> str | None:
    return path if path is None or store.is_url(path) else os.path.abspath(path)


def grid_of(sweep: SweepConfig, base: TrainConfig, prepared: Prepared
            ) -> tuple[list[int], list[Cell], dict[Cell, tuple[LatePromptConfig, TrainConfig]], dict[Cell, Cell]]:
    """The sweep's prompt layers, cells, each cell's configs and the cell whose run it shares."""
    L = prepared.backbone.num_hidden_layers
    layers = parse_prompt_layers(sweep.grid.prompt_layers, L) if "lpt" in sweep.methods else []
    cells = build_grid(sweep.methods, sweep.generators, layers, sweep.grid.seeds)
    configs = {c: cell_configs(sweep, c, base, L) for c in cells}
    return layers, cells, configs, same_model(configs)


def default_out(base: TrainConfig) -> str:
    return str(Path("artifacts") / "sweeps" / task_slug(base.task) / model_slug(base.model))


def run_sweep(sweep: SweepConfig, base: TrainConfig, execution: ExecutorConfig | None = None,
              prepared: Prepared | None = None, release_weights: bool | None = None) -> pd.DataFrame:
    """Train (or collect) every cell of the grid; returns the ``sweep.csv`` table.

    ``release_weights`` (default: when ``prepared`` is not given, i.e. the sweep loads the
    model itself): the local executor drops the weights of layers no remaining cell runs
    (see ``lpt_probe.runs.executors.run_local``); a ``prepared`` passed in is left whole."""
    release_weights = prepared is None if release_weights is None else release_weights
    execution = execution or ExecutorConfig()
    out_arg = sweep.output.out or default_out(base)
    out = out_arg if store.is_url(out_arg) else Path(out_arg).resolve()
    store.check_output_folder(out)
    # workers may start elsewhere: every path absolute; the device resolves where the cells run (here: now,
    # so a device this machine lacks is one error before anything is written; on Ray: on each worker)
    base = replace(base, data_dir=_absolute(base.data_dir),
                   task=_absolute(base.task) if is_task_file(base.task) else base.task,
                   device=resolve_device(base.device) if execution.executor == "local" else base.device)
    # sweep.json: "running" before any table; "complete" (with the failed cells' count) last
    with ResumableOutput(out, "sweep.json", timed=False, list_outputs=False,
                               overwrite=sweep.output.overwrite) as output:
        prepared = prepared or prepare(base)  # the driver keys every cell: it needs the model and data
        layers, cells, configs, leaders = grid_of(sweep, base, prepared)
        twins = sorted(c.name for c in cells if leaders[c] is not c)
        if twins:
            logger.info("%d cell(s) train the same model as another and share its run: %s", len(twins),
                        ", ".join(f"{c} = {leaders[next(x for x in cells if x.name == c)].name}" for c in twins))
        settings = {"sweep": asdict(replace(sweep, out=str(out_arg))), "train": asdict(base),
                    "execution": asdict(execution)}
        meta = output.start(store.run_meta(status="running", settings=settings, prompt_layers=layers,
                                           cells=len(cells), data=prepared.data.to_meta()))
        base_row = {"task": prepared.data.task.name, "model": model_slug(base.model), "shots": base.shots,
                    "data_seed": base.data_seed}
        rows: dict[Cell, dict] = {}
        curves: dict[Cell, pd.DataFrame] = {}

        def write_tables() -> pd.DataFrame:
            order = [c for c in cells if c in rows]
            table = pd.DataFrame([rows[c] for c in order]).reindex(columns=SWEEP_COLUMNS)
            store.write_csv(store.join(out, "sweep.csv"), table)
            store.write_csv(store.join(out, "curves.csv"), pd.concat([curves[c] for c in order if c in curves],
                                                                     ignore_index=True) if curves else pd.DataFrame())
            return table

        pbar = bar(total=len(cells), desc="sweep cells", enabled=sweep.output.progress)

        def on_done(leader: Cell, result: dict) -> None:
            for cell in (c for c in cells if leaders[c] is leader):
                rows[cell], curve = collect_row(out, cell, leader, base_row, result)
                if curve is not None:
                    curves[cell] = curve
                pbar.update(1)
                logger.info("cell %s: %s%s", cell.name, result["status"],
                            f" (test {rows[cell]['test_metric']:.4f})" if result["status"] == "complete" else
                            f" ({result.get('error', '')})")
            write_tables()  # aggregate as cells finish: a crash loses nothing that finished

        todo = []
        for leader in dict.fromkeys(leaders[c] for c in cells):  # finished cells are collected, not retrained
            pc, tc = configs[leader]
            ok, _ = check_run(store.join(out, "runs", leader.name), run_config(pc, tc, prepared)["key"])
            if ok:
                on_done(leader, {"status": "complete", "error": ""})
            else:
                todo.append(leader)
        logger.info("%d cells: %d finished before, %d runs to train (%s executor)", len(cells),
                    len(cells) - sum(1 for c in cells if leaders[c] in todo), len(todo), execution.executor)
        seconds = None
        if execution.executor == "local":  # filled as the phases run, kept if one fails
            seconds = meta["phase_seconds"] = {"cache": 0.0, "train": 0.0}
        try:
            if todo:
                run(execution, todo, configs, base, out, on_done, prepared, sweep.output.progress,
                    release_weights=release_weights, seconds=seconds)
            table = write_tables()
            meta["failed"] = int((table["status"] != "complete").sum())
        finally:
            pbar.close()
    return table
