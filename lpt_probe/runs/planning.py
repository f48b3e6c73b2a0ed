"""Dry runs (``--plan``): what a command will do and cost, measured before it is done.

A plan is counts made with the command's own content keys (what is missing in its output
folder: a resumed folder plans only the rest), bytes it will write, and a time per phase
modelled from short measurements on this machine, with this model and these settings:

- :func:`layer_seconds`: one example through one frozen layer (no gradient), timed on a
  few real batches of similar lengths, as the run batches them, after a warm-up batch;
  evaluation and extraction passes are examples x layers x this;
- :func:`step_seconds`: a few real optimiser steps of the method at its prompt layer
  (``Trainer.step`` on the batches ``fit`` would draw, from the lower-layer cache when the
  run uses one), after a warm-up step;
- :func:`worker_start_seconds`: a fresh interpreter importing the code a worker process
  runs (paid once per worker, in parallel).

:class:`Plan` holds the rows a command prints and the numbers it records.
``lpt_probe.runs.sweep_plan`` plans a sweep, ``lpt_probe.analysis.plan`` an ``mi`` run;
``benchmarks/bench_plan.py`` compares plans with the runs they plan.
"""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..model.cache import LowerLayerCache
from ..model.late_prompt import LatePromptConfig, LatePromptModel
from ..model.methods import get_method
from .run import resolve_lr
from .trainer import TrainConfig, Trainer

__all__ = ["Plan", "layer_seconds", "timing_batches", "step_seconds", "training_seconds", "worker_start_seconds", "size",
           "duration"]

GB = 2**30


def size(n: float) -> str:
    for unit, f in (("GB", GB), ("MB", 2**20), ("kB", 2**10)):
        if n >= f:
            return f"{n / f:.1f} {unit}"
    return f"{int(n)} B"


def duration(s: float) -> str:
    return f"{s / 60:.1f} min" if s >= 90 else f"{s:.0f} s"


@dataclass
class Plan:
    """What a command will do (``counts``: exact, from its keys), the bytes it will write,
    the most it holds at once, and its time per phase (``seconds``: modelled from
    ``calibration``)."""

    command: str
    rows: list[tuple[str, str]] = field(default_factory=list)  # (what, how much) as printed
    counts: dict[str, Any] = field(default_factory=dict)
    disk_bytes: int = 0
    memory_bytes: int = 0
    seconds: dict[str, float] = field(default_factory=dict)
    calibration: dict[str, float] = field(default_factory=dict)

    @property
    def total_seconds(self) -> float:
        return float(sum(self.seconds.values()))

    def render(self) -> str:
        rows = list(self.rows)
        if self.seconds:
            rows.append(("time (estimate)", ", ".join(f"{k} {duration(v)}" for k, v in self.seconds.items())
                         + f"; total {duration(self.total_seconds)}"))
        if self.calibration:
            rows.append(("calibration", ", ".join(f"{k} {v:.3g}" for k, v in self.calibration.items())))
        width = max(len(k) for k, _ in rows)
        return "\n".join([f"plan for {self.command} (nothing was run)"] + [f"  {k:<{width}}  {v}" for k, v in rows])

    def to_dict(self) -> dict[str, Any]:
        return {"command": self.command, "counts": self.counts, "disk_bytes": self.disk_bytes,
                "memory_bytes": self.memory_bytes, "seconds": self.seconds, "total_seconds": self.total_seconds,
                "calibration": self.calibration}


@torch.inference_mode()
def layer_seconds(backbone, data, batch_size: int = 64, quantiles: tuple[float, ...] = (0.25, 0.75)) -> float:
    """Seconds for one example of ``data`` through one layer of the frozen ``backbone``, as
    evaluation and extraction run it: batches of ``batch_size`` (both use 64) in length
    order (``Encoded.batches``), so a batch carries little padding and its cost is about
    ``a + b x tokens``. ``a`` and ``b`` are fitted through batches of rows consecutive in
    length order at ``quantiles`` of the lengths (:func:`timing_batches`), timed after a
    warm-up pass of the longest; one example is then ``a / batch_size + b x`` the mean
    length. (Timing the first rows padded to their longest overstated tasks whose lengths
    vary: RTE's extract phase was planned at 1.6x the run.)"""
    batches = timing_batches(data.lengths, batch_size, quantiles)
    points = []  # (tokens, seconds) of each timed batch
    for i, b in enumerate([batches[-1]] + batches):  # the longest batch warms up
        t0 = time.perf_counter()
        x = data.collate(b, backbone.device)
        h = backbone.embed(x["input_ids"], x["attention_mask"])
        backbone.run_layers(h, x["attention_mask"], 0, backbone.num_hidden_layers)
        if backbone.device.type == "cuda":
            torch.cuda.synchronize()
        if i:
            points.append((int(x["input_ids"].numel()), time.perf_counter() - t0))
    tokens, seconds = (np.array(v, dtype=float) for v in zip(*points))
    slope = (seconds[-1] - seconds[0]) / (tokens[-1] - tokens[0]) if tokens[-1] > tokens[0] else 0.0
    fixed = seconds[0] - slope * tokens[0]
    if slope <= 0 or fixed < 0:  # timing noise: no fixed part, cost by tokens
        slope, fixed = seconds.sum() / tokens.sum(), 0.0
    size = min(batch_size, len(data))
    return (fixed / size + slope * float(np.mean(data.lengths))) / backbone.num_hidden_layers


def timing_batches(lengths, batch_size: int = 64, quantiles: tuple[float, ...] = (0.25, 0.75)) -> list[list[int]]:
    """The rows :func:`layer_seconds` times: for each quantile, ``batch_size`` rows (all of
    them if fewer) consecutive in length order, centred on that quantile of the lengths."""
    order = np.argsort(np.asarray(lengths), kind="stable")
    size = min(batch_size, len(order))
    starts = [min(max(int(q * len(order)) - size // 2, 0), len(order) - size) for q in quantiles]
    return [[int(j) for j in order[s:s + size]] for s in starts]


def step_seconds(prepared, pc: LatePromptConfig, tc: TrainConfig, timed: int = 3) -> float:
    """Seconds of one optimiser step of ``pc`` trained with ``tc`` (``Trainer.step`` on the
    batches ``fit`` draws first; from the lower-layer cache of the training split when the
    run uses one), the mean of ``timed`` steps after a warm-up step. A method that changes
    the backbone (LoRA, adapters, BitFit) works on a copy, as ``train`` does."""
    tc = resolve_lr(pc, tc)
    torch.manual_seed(tc.seed)
    model = LatePromptModel(prepared.backbone, pc, prepared.data.task.num_labels, prepared.label_word_ids,
                            copy_backbone=not get_method(pc.method).late_prompt).to(prepared.backbone.device)
    trainer = Trainer(model, tc)
    full = prepared.encoded["train"]
    drawn = trainer.batch_order(full, timed + 1)  # the batches fit draws first, on their own
    rows = list(dict.fromkeys(i for b in drawn for i in b))
    train = full.subset(rows)
    where = {i: k for k, i in enumerate(rows)}
    order = [[where[i] for i in b] for b in drawn]
    cache = None
    if tc.cache and model.method.cacheable:
        prepared.backbone.model.eval()
        cache = LowerLayerCache.build(prepared.backbone, train, [model.config.start_state], tc.eval_batch_size,
                                      progress=False)
    opt, sched = trainer.optimizer(len(order))
    model.train()
    seconds = 0.0
    for i, idx in enumerate(order):
        t0 = time.perf_counter()
        trainer.step(opt, sched, train, idx, cache, i)
        if model.backbone.device.type == "cuda":
            torch.cuda.synchronize()
        if i:
            seconds += time.perf_counter() - t0
    return seconds / timed


def training_seconds(prepared, runs: list[tuple[LatePromptConfig, TrainConfig]], t_layer: float,
                     shared_cache: bool = True) -> tuple[dict[str, float], dict[str, float]]:
    """({"cache": s, "train": s}, calibration) for training ``runs`` one after another on
    ``prepared``: each method (and generator) timed with :func:`step_seconds` at its lowest
    and highest prompt layer, linear in the prompt layer between them; every
    ``eval_every`` steps a dev evaluation and at the end a test evaluation (examples x the
    layers the run's forward runs x ``t_layer``); the lower-layer cache once for the runs
    that train from it (every split x the highest start state x ``t_layer``), or with
    ``shared_cache`` False one per run, as a run that builds its own (every split x its
    start state x ``t_layer``, summed)."""
    L = prepared.backbone.num_hidden_layers
    n = {s: len(data) for s, data in prepared.encoded.items()}
    groups: dict[tuple[str, str], list[tuple[LatePromptConfig, TrainConfig]]] = {}
    for pc, tc in runs:
        groups.setdefault((pc.method, pc.generator), []).append((pc, tc))
    at: dict[tuple[str, str, int], float] = {}
    for (m, g), members in groups.items():
        members = sorted(members, key=lambda r: r[0].prompt_layer)
        for pc, tc in (members[0], members[-1]):
            if (m, g, pc.prompt_layer) not in at:
                at[(m, g, pc.prompt_layer)] = step_seconds(prepared, pc, tc)
    train, cached = 0.0, []
    for pc, tc in runs:
        pls = sorted(pl for (m, g, pl) in at if (m, g) == (pc.method, pc.generator))
        lo, hi = at[(pc.method, pc.generator, pls[0])], at[(pc.method, pc.generator, pls[-1])]
        w = 0.0 if pls[0] == pls[-1] else (pc.prompt_layer - pls[0]) / (pls[-1] - pls[0])
        steps = tc.total_steps(n["train"])
        from_cache = tc.cache and get_method(pc.method).cacheable
        layers = L - pc.start_state if from_cache else L
        train += steps * (lo + w * (hi - lo)) + (steps // max(1, tc.eval_every) * n["dev"] + n["test"]) * layers * t_layer
        if from_cache:
            cached.append(pc.start_state)
    cache = sum(n.values()) * (max(cached, default=0) if shared_cache else sum(cached)) * t_layer
    return {"cache": cache, "train": train}, {f"step_seconds_{m}_{g}_pl{pl}": v for (m, g, pl), v in at.items()}


def worker_start_seconds(module: str = "lpt_probe.analysis.engine.pieces") -> float:
    """A fresh interpreter importing ``module``: what a worker process pays before its first task."""
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", f"import {module}"], check=True, capture_output=True)
    return time.perf_counter() - t0
