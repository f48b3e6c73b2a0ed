"""The plan of a sweep (``python -m lpt_probe.sweep --plan``): cells, runs to train, steps, time.

:func:`plan_sweep` keys every cell as ``run_sweep`` does (the same grid, the same shared
runs, the same content keys in ``--out``: a resumed sweep plans only the runs it still
has to train) and estimates each run's time from measurements on this machine
(``lpt_probe.runs.planning``): real optimiser steps of each method (late prompts at the
lowest and the highest prompt layer of the grid, linear in the layers above PL between
them), its dev evaluations every ``--eval-every`` steps and its test evaluation (examples
x the layers the method runs x one frozen layer's time), and the lower-layer cache once
for the cached late prompts. Local executor: runs one after another; on Ray the sum is
the work, spread over the workers. Nothing is trained or written.
"""

from __future__ import annotations

import time

from .. import store
from .folders import check_run
from .planning import Plan, layer_seconds, training_seconds
from .run import SPLITS, prepare, run_config
from .sweep import SweepConfig, default_out, grid_of
from .trainer import TrainConfig

__all__ = ["plan_sweep"]


def plan_sweep(sweep: SweepConfig, base: TrainConfig, command: str = "python -m lpt_probe.sweep",
               calibrate: bool = True) -> Plan:
    """The plan of ``run_sweep(sweep, base)`` (see the module docstring)."""
    out_arg = sweep.output.out or default_out(base)
    out = out_arg if store.is_url(out_arg) else str(out_arg)
    prepared = prepare(base)
    layers, cells, configs, leaders = grid_of(sweep, base, prepared)
    runs = list(dict.fromkeys(leaders[c] for c in cells))
    todo = [r for r in runs if not check_run(store.join(out, "runs", r.name),
                                             run_config(*configs[r], prepared)["key"])[0]]
    n = {s: len(prepared.encoded[s]) for s in SPLITS}
    steps = {r: configs[r][1].total_steps(n["train"]) for r in todo}
    by_method: dict[str, int] = {}
    for r in todo:
        by_method[r.method] = by_method.get(r.method, 0) + 1
    counts = {"cells": len(cells), "runs": len(runs), "runs_to_train": len(todo), "steps": sum(steps.values()),
              "prompt_layers": layers, "by_method": by_method, "examples": n}
    rows = [("cells", f"{len(cells)} ({len(runs)} distinct runs: cells that train the same model share one)"),
            ("runs to train", f"{len(todo)} ({sum(steps.values())} steps in all)"
             + (": " + ", ".join(f"{m} {k}" for m, k in by_method.items()) if by_method else "")),
            ("examples", ", ".join(f"{s} {n[s]}" for s in SPLITS))]
    plan = Plan(command, rows, counts)
    if not calibrate or not todo:
        return plan
    t0 = time.perf_counter()
    t_layer = layer_seconds(prepared.backbone, prepared.encoded["train"])
    plan.seconds, steps_at = training_seconds(prepared, [configs[r] for r in todo], t_layer)
    plan.calibration = {"layer_seconds": t_layer, **steps_at, "calibration_seconds": time.perf_counter() - t0}
    return plan
