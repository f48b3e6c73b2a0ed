"""What an ``mi`` invocation will do and cost, before doing it (``python -m lpt_probe.mi --plan``).

:func:`plan_mi` loads the model and the data as the run would, and counts what is still
missing in ``--out`` with the run's own content keys (a resumed run plans only the rest):
prompts to train and their steps, conditions to extract and the examples each frozen or
late-prompt pass reads, representation bytes written to disk (vector probes: float16
``[L+1, n, d]`` arrays per split), the sequence states a transformer probe holds per
hidden state, and the probe pieces to fit. It writes nothing and trains nothing.

Time is estimated from three short measurements on this machine, with this model and
these settings (``calibrate``):

- ``layer_seconds``: one example through one layer, timed on a few probe-train examples
  (no gradient), after a warm-up batch;
- training a prompt at PL: ``steps x batch x 3 x layers above`` (forward and backward,
  backward taken as twice the forward) plus its dev evaluations and test evaluation; the
  lower-layer cache once (``examples x start state``);
- extraction: a frozen pass over every probe example for each group of conditions, and
  each late prompt's layers from PL up again;
- a probe piece: one piece fitted for real (the run's probe, controls, MDL and PVI) on
  random features of the run's shape (n, d, classes) with a weak class signal, times the
  pieces to fit, over the worker processes, plus one worker process's start.

So the estimate is a model of the run, checked against measured runs in
``benchmarks/bench_plan.py`` (``benchmarks/results/plan_accuracy.md``), not a promise.
"""

from __future__ import annotations

import math
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..model.late_prompt import LatePromptModel
from ..probing import Sequences
from ..probing.mdl import DEFAULT_FRACTIONS
from ..runs.bare import bare_batches, time_bare
from ..runs.folders import check_run
from ..runs.run import SPLITS
from .mi import MIRun
from .mi_store import JOINT_BYTES
from .pieces import PieceJob, fit_piece

__all__ = ["Plan", "plan_mi"]

GB = 2**30


@dataclass
class Plan:
    """Counts (exact, from the run's own keys) and an estimate of time (seconds, modelled)."""

    command: str
    counts: dict[str, Any] = field(default_factory=dict)
    disk_bytes: int = 0
    memory_bytes: int = 0  # the largest set of arrays one step holds (see ``render``)
    seconds: dict[str, float] = field(default_factory=dict)
    calibration: dict[str, float] = field(default_factory=dict)

    @property
    def total_seconds(self) -> float:
        return float(sum(self.seconds.values()))

    def render(self) -> str:
        c = self.counts
        lines = [f"plan for {self.command} (nothing was run)",
                 f"  prompts to train   {c['prompts_to_train']} of {c['prompts']} ({c['train_steps']} steps in all)",
                 f"  conditions         {c['conditions']}: {c['to_extract']} to extract "
                 f"({c['forward_examples']:,} example passes)",
                 f"  probe pieces       {c['pieces_to_fit']} to fit of {c['pieces']} "
                 f"({c['fits_per_piece']} probe fits each, {c['jobs']} process(es))",
                 f"  disk               {_size(self.disk_bytes)} of representations",
                 f"  memory             {_size(self.memory_bytes)} held at once by the largest step",
                 "  time (estimate)    " + ", ".join(f"{k} {_dur(v)}" for k, v in self.seconds.items())
                 + f"; total {_dur(self.total_seconds)}",
                 "  calibration        " + ", ".join(f"{k} {v:.3g}" for k, v in self.calibration.items())]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {"command": self.command, "counts": self.counts, "disk_bytes": self.disk_bytes,
                "memory_bytes": self.memory_bytes, "seconds": self.seconds, "total_seconds": self.total_seconds,
                "calibration": self.calibration}


def _size(n: float) -> str:
    for unit, f in (("GB", GB), ("MB", 2**20), ("kB", 2**10)):
        if n >= f:
            return f"{n / f:.1f} {unit}"
    return f"{int(n)} B"


def _dur(s: float) -> str:
    return f"{s / 60:.1f} min" if s >= 90 else f"{s:.0f} s"


@torch.no_grad()
def layer_seconds(run, n: int = 32, batch_size: int = 16) -> float:
    """Seconds for one example through one layer of the frozen backbone (no gradient)."""
    enc, bb = run.encoded["train"], run.backbone
    idx = list(range(min(n, len(enc))))
    batches = [idx[i:i + batch_size] for i in range(0, len(idx), batch_size)]
    timed = 0.0
    for i, b in enumerate([batches[0]] + batches):  # the first batch warms up
        t0 = time.perf_counter()
        x = enc.collate(b, bb.device)
        h = bb.embed(x["input_ids"], x["attention_mask"])
        bb.run_layers(h, x["attention_mask"], 0, bb.num_hidden_layers)
        if bb.device.type == "cuda":
            torch.cuda.synchronize()
        if i:
            timed += time.perf_counter() - t0
    return timed / (len(idx) * bb.num_hidden_layers)


def step_seconds(run, conds, timed: int = 3) -> tuple[dict[int, float], float]:
    """Seconds of one training step (layers PL..L forward and backward on a training batch,
    ``lpt_probe.runs.bare``: the trainer runs at that speed within a few per cent) at the
    lowest and the highest prompt layer of ``conds``; and the calibration's own wall time."""
    t_all = time.perf_counter()
    prep = run.prompt_prepared
    train = prep.encoded["train"]
    pls = sorted({c.prompt_layer for c in conds})
    out = {}
    for pl in dict.fromkeys((pls[0], pls[-1])):
        cond = next(c for c in conds if c.prompt_layer == pl)
        tc = run.train_config(cond.seed)
        torch.manual_seed(tc.seed)
        model = LatePromptModel(prep.backbone, run.prompt_config(cond), run.n_classes, prep.label_word_ids,
                                copy_backbone=False).to(prep.backbone.device)
        order = np.random.default_rng(tc.seed).permutation(len(train))
        batches = [order[(i * tc.batch_size) % len(train):][:tc.batch_size].tolist() for i in range(timed + 1)]
        timing = time_bare(model, bare_batches(model, train, batches, device=prep.backbone.device), warmup=1)
        out[pl] = timing["seconds"] / timed
    return out, time.perf_counter() - t_all


def _interpolate(at: dict[int, float], x: float, xs: dict[int, float]) -> float:
    """Seconds per step at ``x`` layers above PL, linear between the two calibrated PLs."""
    (p0, v0), (p1, v1) = (sorted(at.items())[0], sorted(at.items())[-1])
    a0, a1 = xs[p0], xs[p1]
    return v0 if a0 == a1 else v0 + (x - a0) / (a1 - a0) * (v1 - v0)


def piece_seconds(run, jobs: int) -> float:
    """One piece of this run's probe fitted for real on random features of its shape."""
    cfg, d, k = run.cfg, run.backbone.hidden_size, run.n_classes
    g = np.random.default_rng(0)
    direction = g.normal(size=(k, d)) / math.sqrt(d)
    X, y = {}, {}
    for s in SPLITS:
        y[s] = np.asarray(run.encoded[s].labels)
        X[s] = (g.normal(size=(len(y[s]), d)) + 0.5 * direction[y[s]]).astype(np.float32)
    if cfg.sequence_probe:  # every example as long as it is, random states: the probe's own cost
        lengths = {s: np.asarray(run.encoded[s].lengths) for s in SPLITS}
        X = {s: Sequences(np.repeat(X[s], lengths[s], axis=0) + g.normal(size=(int(lengths[s].sum()), d))
                          .astype(np.float32), lengths[s]) for s in SPLITS}
    settings = run.probe_settings(run.conditions()[0])
    with tempfile.TemporaryDirectory(prefix="lpt_plan_") as tmp:
        paths = {k: Path(tmp) / f"piece.{k}.csv" for k in ("mi", "mdl", "pvi")} | {"done": Path(tmp) / "p.json"}
        job = PieceJob(key="plan", paths=paths, sidecar={}, layer=0, probe=cfg.probe,
                       representation=run.representation_label, n_classes=k, probe_seeds=tuple(cfg.probe_seeds),
                       bootstrap=cfg.bootstrap, controls=settings["controls"], permutations=cfg.control_permutations,
                       mdl=cfg.mdl, test_ids=list(run.encoded["test"].ids), X=X, y=y, factory=run.probe_factory())
        with _threads(1 if jobs > 1 else None):
            t0 = time.perf_counter()
            fit_piece(job)
            return time.perf_counter() - t0


def worker_start_seconds() -> float:
    """A probe worker process's start: a fresh interpreter importing the piece code (the
    run's process pool pays it once per worker, in parallel)."""
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import lpt_probe.analysis.pieces"], check=True, capture_output=True)
    return time.perf_counter() - t0


class _threads:
    """One torch thread while timing a piece that the run fits in one of several processes."""

    def __init__(self, n: int | None):
        self.n, self.old = n, torch.get_num_threads()

    def __enter__(self):
        if self.n:
            torch.set_num_threads(self.n)

    def __exit__(self, *exc):
        torch.set_num_threads(self.old)


def plan_mi(cfg, command: str = "python -m lpt_probe.mi", calibrate: bool = True) -> Plan:
    """The plan of ``run_mi(cfg)`` in ``cfg.out`` (see the module docstring)."""
    cfg = replace(cfg, out=str(cfg.out_dir))
    run = MIRun(cfg)
    run.load_data()
    conds = run.conditions()
    L, d = run.L, run.backbone.hidden_size
    n = {s: len(run.encoded[s]) for s in SPLITS}
    n_all = sum(n.values())
    lpt = [c for c in conds if c.method == "lpt"]
    to_train = [c for c in lpt if not check_run(run.run_folder(c), run.model_key(c))[0]]
    tc = run.train_config(cfg.seeds[0])
    pending = run.pending(conds)
    pieces = len({run.piece_paths(c, k)[1] for c in conds for k in range(L + 1)})
    fits = len(cfg.probe_seeds) + (cfg.control_permutations if cfg.controls else 0) + (
        len(DEFAULT_FRACTIONS) if cfg.mdl else 0)
    jobs = 1 if cfg.probe_options.in_process else max(1, min(cfg.jobs, len(pending) or 1))
    above = {c.name: L - run.prompt_config(c).start_state for c in lpt}  # layers PL..L
    tokens = {c.name: run.prompt_config(c).num_virtual_tokens for c in lpt}
    if cfg.sequence_probe:
        to_extract = list(dict.fromkeys(c for c, _ in pending))
        disk = 0
        mean_tokens = {s: float(np.mean(run.encoded[s].lengths)) for s in SPLITS}
        # one hidden state of every example as float16 Sequences (built from parts: twice), per split
        memory = sum(int(2 * 2 * n[s] * (mean_tokens[s] + max(tokens.values(), default=0)) * d) for s in SPLITS)
    else:
        to_extract = run.missing_reps(conds)
        per_example = 2 * d * 3 * (L + 1)  # cls, mask, mean as float16
        disk = sum(n_all * (per_example + (2 * d * ((L + 1) + tokens[c.name]) if c.method == "lpt" else 0))
                   for c in to_extract)
    shared = [c for c in to_extract if c.method in ("frozen", "lpt")]
    per_model = 4 * (4 * (L + 1) + 8) * max(n.values()) * d  # float32 arrays one extraction pass fills
    group = max(1, JOINT_BYTES // per_model)
    if cfg.sequence_probe:  # each condition's own pass, layer by layer, while its pieces are fitted
        passes = len(to_extract)
    else:
        passes = math.ceil(len(shared) / group) + sum(1 for c in to_extract if c.method == "random_weights")
        memory = per_model * max(1, min(group, len(shared)))
    extract_layers = n_all * (L * passes + (0 if cfg.sequence_probe else sum(above.get(c.name, 0)
                                                                               for c in to_extract)))
    dev_n = len(run.prompt_prepared.data.dev) if run.prompt_prepared else 0
    test_n = len(run.prompt_prepared.data.test) if run.prompt_prepared else 0
    steps = tc.steps or 0
    evals = steps // max(1, tc.eval_every)
    counts = {"prompts": len(lpt), "prompts_to_train": len(to_train), "train_steps": steps * len(to_train),
              "conditions": len(conds), "to_extract": len(to_extract),
              "forward_examples": n_all * len(to_extract), "pieces": pieces, "pieces_to_fit": len(pending),
              "fits_per_piece": fits, "jobs": jobs, "examples": n, "hidden_states": L + 1, "hidden_size": d}
    plan = Plan(command, counts, disk, memory)
    if calibrate:
        t_layer = layer_seconds(run)
        t_piece = piece_seconds(run, jobs) if pending else 0.0
        t_start = worker_start_seconds() if pending and jobs > 1 else 0.0
        train_s = 0.0
        plan.calibration = {"layer_seconds": t_layer, "piece_seconds": t_piece, "worker_start_seconds": t_start}
        if to_train:
            at, took = step_seconds(run, to_train)
            by_pl = {c.prompt_layer: above[c.name] for c in to_train}
            for c in to_train:  # its steps, its dev evaluations and the test evaluation
                train_s += steps * _interpolate(at, above[c.name], by_pl) + (
                    (evals * dev_n + test_n) * above[c.name] * t_layer)
            if tc.cache:  # the lower-layer cache: every split of the prompt's data, once
                fewshot = sum(len(run.prompt_prepared.encoded[s]) for s in SPLITS)
                train_s += fewshot * max(run.prompt_config(c).start_state for c in to_train) * t_layer
            plan.calibration.update({f"step_seconds_pl{pl}": v for pl, v in at.items()}, calibration_seconds=took)
        plan.seconds = {"train": train_s, "extract": extract_layers * t_layer,
                        "probe": t_start + t_piece * math.ceil(len(pending) / jobs)}
    return plan
