"""What an ``mi`` invocation will do and cost, before doing it (``python -m lpt_probe.mi --plan``).

:func:`plan_mi` loads the model and the data as the run would, and counts what is still
missing in ``--out`` with the run's own content keys (a resumed run plans only the rest):
prompts to train and their steps, conditions to extract and the examples each frozen or
late-prompt pass reads, representation bytes written to disk (vector probes: float16
``[L+1, n, d]`` arrays per split; a transformer probe: the layer files its pieces read
from ``scratch/`` while they run), the states extraction holds (one batch: extraction
streams to disk, so this does not grow with the examples), and the probe pieces to fit.
It writes nothing and trains nothing.

Time is estimated from short measurements on this machine, with this model and these
settings (``calibrate``; ``lpt_probe.runs.planning``):

- one example through one frozen layer (``layer_seconds``);
- training a prompt: its steps at the seconds per step measured with real optimiser steps
  at the lowest and the highest prompt layer to train (linear in the prompt layer in
  between), plus its dev evaluations and test evaluation (examples x layers above PL);
  the lower-layer cache once (examples x start state);
- extraction: one frozen pass over every probe example for the frozen model and every
  prompt (one more per random-weights condition), and each late prompt's layers from PL
  up again;
- a probe piece: one piece fitted for real (the run's probe, controls, MDL and PVI) on the
  frozen model's hidden state 1 over the probe rows (a sequence probe: random states of
  the run's lengths), times the pieces to fit, over the worker processes, plus one worker
  process's start.

:func:`plan_influence` does the same for ``influence``: prompts to train (each builds its
own lower-layer cache, as ``influence`` trains them one by one), (prompt, checkpoint)
pieces to measure, and the time of one piece measured for real (the initial prompt of the
first prompt layer, into a temporary folder), scaled to each piece's prompt layer by its
layer passes (:func:`influence_layer_passes`: a piece at PL 1 runs about four times the
layers of one at the last layer, on a 6-layer model).

So the estimate is a model of the run, checked against measured runs in
``benchmarks/bench_plan.py`` (``benchmarks/results/plan_accuracy.md``), not a promise.
"""

from __future__ import annotations

import math
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from ..probing import Sequences
from ..probing.mdl import DEFAULT_FRACTIONS
from ..probing.training import torch_threads
from ..runs.folders import check_run
from ..runs.planning import Plan, layer_seconds, size, training_seconds, worker_start_seconds
from ..runs.run import SPLITS
from ..runs.sweep import SweepConfig
from ..runs.sweep_plan import plan_sweep
from .influence.study import InfluenceRun
from .mi.study import MIRun
from .engine.representations import EXTRACT_BATCH, frozen_vectors
from .engine.pieces import PieceJob, fit_piece

__all__ = ["plan_mi", "plan_influence", "plan_section4", "piece_seconds", "influence_layer_passes"]


def piece_seconds(run, jobs: int) -> float:
    """One piece of this run's probe fitted for real: vector probes on the frozen model's
    hidden state 1 (one layer's pass over the probe rows; real hidden states fit more
    slowly than random features), the transformer probe on random states of the run's
    sequence lengths."""
    cfg, d, k = run.cfg, run.backbone.hidden_size, run.n_classes
    g = np.random.default_rng(0)
    y = {s: np.asarray(run.encoded[s].labels) for s in SPLITS}
    if cfg.mi.sequence_probe:  # every example as long as it is, random states: the probe's own cost
        lengths = {s: np.asarray(run.encoded[s].lengths) for s in SPLITS}
        X = {s: Sequences(g.normal(size=(int(lengths[s].sum()), d)).astype(np.float32), lengths[s]) for s in SPLITS}
    else:
        layer = min(1, run.L)
        X = {s: frozen_vectors(run.backbone, run.encoded[s], layer, cfg.mi.representation) for s in SPLITS}
    settings = run.pieces.probe_settings(run.conditions()[0])
    with tempfile.TemporaryDirectory(prefix="lpt_plan_") as tmp:
        paths = {k: Path(tmp) / f"piece.{k}.csv" for k in ("mi", "mdl", "pvi")} | {"done": Path(tmp) / "p.json"}
        pieces = run.pieces
        job = PieceJob(key="plan", paths=paths, sidecar={}, layer=0, probe=cfg.mi.probe,
                       representation=pieces.representation_label, n_classes=k, probe_seeds=tuple(cfg.mi.probe_seeds),
                       bootstrap=cfg.bootstrap, controls=settings["controls"], permutations=cfg.mi.control_permutations,
                       mdl=cfg.mi.mdl, test_ids=list(run.encoded["test"].ids), X=X, y=y, factory=pieces.probe_factory())
        # a worker process fits with one thread (torch and BLAS), as the run's pool does
        with torch_threads(1 if jobs > 1 else None), threadpool_limits(limits=1 if jobs > 1 else None):
            t0 = time.perf_counter()
            fit_piece(job)
            return time.perf_counter() - t0


def plan_mi(cfg, command: str = "python -m lpt_probe.mi", calibrate: bool = True) -> Plan:
    """The plan of ``run_mi(cfg)`` in ``cfg.output.out`` (see the module docstring)."""
    cfg = replace(cfg, out=str(cfg.out_dir))
    run = MIRun(cfg)
    run.load_data()
    conds = run.conditions()
    L, d = run.L, run.backbone.hidden_size
    n = {s: len(run.encoded[s]) for s in SPLITS}
    n_all = sum(n.values())
    lpt = [c for c in conds if c.method == "lpt"]
    to_train = [c for c in lpt if not check_run(run.run_folder(c), run.model_key(c))[0]]
    tc = run.train_config(cfg.grid.seeds[0])
    pending = run.pieces.pending(conds)
    pieces = len({run.pieces.piece_paths(c, k)[1] for c in conds for k in range(L + 1)})
    fits = len(cfg.mi.probe_seeds) + (cfg.mi.control_permutations if cfg.mi.controls else 0) + (
        len(DEFAULT_FRACTIONS) if cfg.mi.mdl else 0)
    jobs = 1 if cfg.mi.probe_options.in_process else max(1, min(cfg.mi.jobs, len(pending) or 1))
    above = {c.name: L - run.prompt_config(c).start_state for c in lpt}  # layers PL..L
    tokens = {c.name: run.prompt_config(c).num_virtual_tokens for c in lpt}
    longest = int(max(max(run.encoded[s].lengths) for s in SPLITS)) + max(tokens.values(), default=0)
    batch = 4 * min(EXTRACT_BATCH, max(n.values())) * longest * d  # one float32 state of a batch
    scratch = 0
    if cfg.mi.sequence_probe:  # each condition's own pass, layer by layer, while its pieces are fitted
        to_extract = list(dict.fromkeys(c for c, _ in pending))
        disk = 0
        mean_tokens = {s: float(np.mean(run.encoded[s].lengths)) for s in SPLITS}
        # one hidden state of every example, float16, per split: a file in scratch/ for each
        # piece queued or running (up to 2 x processes) and the one being computed
        per_layer = sum(int(2 * n[s] * (mean_tokens[s] + max(tokens.values(), default=0)) * d) for s in SPLITS)
        scratch = per_layer * (2 * jobs + 1)
        memory = 2 * batch  # a batch's states in and out of one layer (the rest is on disk)
        extract_layers = n_all * L * len(to_extract)
    else:  # the frozen model and every prompt in one frozen pass; random weights alone
        to_extract = run.reps.missing_reps(conds)
        per_example = 2 * d * 3 * (L + 1)  # cls, mask, mean as float16
        disk = sum(n_all * (per_example + (2 * d * ((L + 1) + tokens[c.name]) if c.method == "lpt" else 0))
                   for c in to_extract)
        shared = [c for c in to_extract if c.method in ("frozen", "lpt")]
        memory = 2 * (L + 1) * batch  # a batch's frozen states at every layer, and one prompt's above PL
        passes = (1 if shared else 0) + sum(1 for c in to_extract if c.method == "random_weights")
        extract_layers = n_all * (L * passes + sum(above.get(c.name, 0) for c in to_extract))
    steps = tc.total_steps(len(run.prompt_prepared.encoded["train"])) if run.prompt_prepared else 0
    counts = {"prompts": len(lpt), "prompts_to_train": len(to_train), "train_steps": steps * len(to_train),
              "conditions": len(conds), "to_extract": len(to_extract),
              "forward_examples": n_all * len(to_extract), "pieces": pieces, "pieces_to_fit": len(pending),
              "fits_per_piece": fits, "jobs": jobs, "examples": n, "hidden_states": L + 1, "hidden_size": d,
              "scratch_bytes": scratch}
    rows = [("prompts to train", f"{len(to_train)} of {len(lpt)} ({steps * len(to_train)} steps in all)"),
            ("conditions", f"{len(conds)}: {len(to_extract)} to extract ({n_all * len(to_extract):,} example passes)"),
            ("probe pieces", f"{len(pending)} to fit of {pieces} ({fits} probe fits each, {jobs} process(es))"),
            ("disk", f"{size(disk)} of representations" + (
                f" (and up to {size(scratch)} of layer states in scratch/ while pieces run)" if scratch else "")),
            ("memory", f"{size(memory)} of states held at once by extraction (a batch)")]
    plan = Plan(command, rows, counts, disk, memory)
    if not calibrate:
        return plan
    t_layer = layer_seconds(run.backbone, run.encoded["train"])
    t_piece = piece_seconds(run, jobs) if pending else 0.0
    t_start = worker_start_seconds() if pending and jobs > 1 else 0.0
    plan.calibration = {"layer_seconds": t_layer, "piece_seconds": t_piece, "worker_start_seconds": t_start}
    train_s = 0.0
    if to_train:
        t0 = time.perf_counter()
        phases, steps_at = training_seconds(run.prompt_prepared, [(run.prompt_config(c), run.train_config(c.seed))
                                                                  for c in to_train], t_layer)
        train_s = phases["cache"] + phases["train"]
        plan.calibration.update(steps_at, calibration_seconds=time.perf_counter() - t0)
    plan.seconds = {"train": train_s, "extract": extract_layers * t_layer,
                    "probe": t_start + t_piece * math.ceil(len(pending) / jobs)}
    return plan


def plan_influence(cfg, command: str = "python -m lpt_probe.influence", calibrate: bool = True) -> Plan:
    """The plan of ``run_influence(cfg)`` in ``cfg.output.out`` (see the module docstring)."""
    cfg = replace(cfg, out=str(cfg.out_dir))
    run = InfluenceRun(cfg)
    run.load_data()
    conds = run.conditions()
    to_train = [c for c in conds if not check_run(run.run_folder(c), run.run_key(c))[0]]
    todo = [(c, k) for c in conds for k in cfg.influence.checkpoint_names if not run.piece_done(c, k)]
    steps = run.train_config(cfg.grid.seeds[0]).total_steps(len(run.prepared.encoded["train"]))
    counts = {"prompts": len(conds), "prompts_to_train": len(to_train), "train_steps": steps * len(to_train),
              "pieces": len(conds) * len(cfg.influence.checkpoint_names), "pieces_to_measure": len(todo),
              "examples": len(run.data), "checkpoints": list(cfg.influence.checkpoint_names)}
    rows = [("prompts to train", f"{len(to_train)} of {len(conds)} ({steps * len(to_train)} steps in all)"),
            ("pieces to measure", f"{len(todo)} of {counts['pieces']} (prompt x checkpoint: "
                                  f"{', '.join(cfg.influence.checkpoint_names)}), {len(run.data)} "
                                  f"{cfg.influence.split} examples each")]
    plan = Plan(command, rows, counts)
    if not calibrate:
        return plan
    t_layer = layer_seconds(run.backbone, run.prepared.encoded["train"])
    plan.calibration = {"layer_seconds": t_layer}
    train_s = 0.0
    if to_train:  # one lower-layer cache for every prompt to train (as a sweep: ``runs.executors.run_local``)
        phases, steps_at = training_seconds(run.prepared, [(run.prompt_config(c), run.train_config(c.seed))
                                                           for c in to_train], t_layer)
        train_s = phases["cache"] + phases["train"]
        plan.calibration.update(steps_at)
    t_piece = 0.0
    if todo:
        with tempfile.TemporaryDirectory(prefix="lpt_plan_") as tmp:
            probe = InfluenceRun(replace(cfg, out=tmp, progress=False), bundle=run.bundle)
            probe.load_data()
            t0 = time.perf_counter()
            probe.measure_piece(conds[0], "init")  # the initial prompt: nothing to train
            t_piece = time.perf_counter() - t0
        plan.calibration["piece_seconds"] = t_piece
    # a piece's cost follows its layer passes, which fall steeply with the prompt layer
    # (the log-prob drops rerun every layer above each j >= PL): the timed piece, scaled
    passes = sum(influence_layer_passes(run.L, c.prompt_layer) for c, _ in todo)
    plan.seconds = {"train": train_s, "measure": t_piece * passes / influence_layer_passes(run.L, conds[0].prompt_layer)
                    if todo else 0.0}
    return plan


def influence_layer_passes(L: int, prompt_layer: int) -> int:
    """Layer passes per batch of one influence piece at ``prompt_layer`` (``influence.measures``):
    the frozen reference (L), the prompt model's lower and upper pass (L), the two log-prob
    drops at every j >= PL (layers j..L each: ``above * (above + 1)`` with ``above = L - PL + 1``)
    and the gradient's forward and backward through the upper layers (about 3 x above)."""
    above = L - prompt_layer + 1
    return 2 * L + above * (above + 1) + 3 * above


def plan_section4(cfg, command: str = "python -m lpt_probe.section4", calibrate: bool = True) -> Plan:
    """The plan of ``run_section4(cfg)``: the sweep's (it trains every prompt), then mi's and
    influence's on the sweep's prompts (their training is the sweep's: not counted twice).
    With ``patience`` the steps are the cap, so the time is an upper bound."""
    cfg = replace(cfg, out=str(cfg.out_dir))
    mi_cfg = cfg.mi_config()
    base = mi_cfg.train_config(cfg.grid.seeds[0])
    sweep = plan_sweep(SweepConfig(methods=("lpt",), generators=(cfg.late_prompt.generator,), grid=cfg.grid,
                                   prompt=cfg.sweep_prompt(), out=str(Path(cfg.output.out) / "sweep"), progress=False),
                       base, calibrate=calibrate)
    mi = plan_mi(mi_cfg, calibrate=calibrate)
    influence = plan_influence(cfg.influence_config(), calibrate=calibrate)
    cap = " (the cap: --patience stops a prompt once it has learned)" if cfg.train.patience else ""
    rows = [(f"sweep: {k}", v + (cap if k == "runs to train" else "")) for k, v in sweep.rows]
    rows += [(f"mi: {k}", v) for k, v in mi.rows if k != "prompts to train"]
    rows += [(f"influence: {k}", v) for k, v in influence.rows if k != "prompts to train"]
    plan = Plan(command, rows, {"sweep": sweep.counts, "mi": mi.counts, "influence": influence.counts},
                mi.disk_bytes, max(mi.memory_bytes, influence.memory_bytes))
    if calibrate:
        plan.seconds = {"sweep": sweep.total_seconds, "mi extract": mi.seconds.get("extract", 0.0),
                        "mi probe": mi.seconds.get("probe", 0.0),
                        "influence measure": influence.seconds.get("measure", 0.0)}
        plan.calibration = {**sweep.calibration, **{f"mi_{k}": v for k, v in mi.calibration.items()
                                                    if k in ("piece_seconds",)},
                            **{f"influence_{k}": v for k, v in influence.calibration.items()
                               if k == "piece_seconds"}}
    return plan
