"""Where the cells of a sweep run: in this process, or as tasks on a Ray cluster.

``execute_cell`` trains one cell into its run folder, wherever it runs (a local folder,
or an fsspec URL: trained in a local folder, then uploaded with ``meta.json`` last).
Deterministic failures (divergence, a bad configuration) come back as a failed result;
anything else raises, and the executor retries it ``--retries`` times before recording it.

- ``run_local``: one cell after another in this process; the model, the data and one
  lower-layer cache (every prompt layer the grid needs, computed in one pass) are shared.
- ``run_ray``: Ray is the scheduler. One task computes the lower-layer cache and returns
  one object per layer; each cell is a task that receives its layer by reference through
  Ray's object store, reserves ``--cpus-per-run`` / ``--gpus-per-run`` and is retried by
  Ray itself (``max_retries``, ``retry_exceptions``). Workers keep the last model and data
  they loaded, so a worker's next cell on the same task and model does not load them again.

Both call ``on_done(cell, result)`` as each cell finishes; ``lpt_probe.sweep`` aggregates.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

from . import io
from .cache import LowerLayerCache
from .late_prompt import LatePromptConfig
from .methods import get_method
from .train import TrainConfig, TrainingDiverged, prepare, train

logger = logging.getLogger(__name__)
EXECUTORS = ("local", "ray")


def execute_cell(pc: LatePromptConfig, tc: TrainConfig, run_dir: str | Path, prepared=None,
                 caches: dict | None = None, progress: bool = False) -> dict[str, str]:
    """Train one cell into ``run_dir`` (a local folder or a URL: then trained in a local
    folder and uploaded, ``meta.json`` last). Deterministic failures (divergence, a bad
    configuration) come back as a failed result; anything else raises, so that the
    executor retries it."""
    staging = tempfile.TemporaryDirectory(prefix="lpt_cell_") if io.is_url(run_dir) else None
    target = staging.name if staging else run_dir
    try:
        train(pc, tc, target, prepared=prepared, caches=caches, progress=progress, reuse=staging is None)
        return {"status": "complete", "error": ""}
    except (TrainingDiverged, ValueError) as exc:  # a retry would fail the same way
        logger.error("cell %s failed: %s", Path(str(run_dir)).name, exc)
        return {"status": "failed", "error": f"{type(exc).__name__}: {exc}"}
    finally:
        if staging is not None:
            if any(Path(staging.name).iterdir()):
                io.upload_dir(staging.name, str(run_dir))  # failed runs too: meta.json says so
            staging.cleanup()


def _cache_layer(cell, base: TrainConfig) -> int | None:
    """The cached hidden state (PL-1) a cell starts from; None if it runs the lower layers."""
    return cell.prompt_layer - 1 if base.cache and get_method(cell.method).cacheable else None


def _cache_layers(cells: list, base: TrainConfig) -> list[int]:
    """The hidden states that the cells of ``cells`` start from."""
    return sorted({k for k in (_cache_layer(c, base) for c in cells) if k is not None})


def _retrying(fn: Callable[[], dict], retries: int, what: str) -> dict:
    for attempt in range(retries + 1):
        try:
            return fn()
        except Exception as exc:  # noqa: BLE001 - unexpected errors are retried, then recorded
            logger.error("%s: attempt %d/%d failed: %s: %s", what, attempt + 1, retries + 1, type(exc).__name__, exc)
            error = f"{type(exc).__name__}: {exc} (after {retries + 1} attempts)"
    return {"status": "failed", "error": error}


def run_local(todo: list, configs: dict, args, base: TrainConfig, out, on_done, data=None) -> None:
    """In this process, one cell after another, sharing the model and one cache."""
    prepared = prepare(base, data=data)
    backbone, _, _, _, encoded, _ = prepared
    need = _cache_layers(todo, base)
    caches = None
    if need:
        backbone.model.eval()
        caches = {s: LowerLayerCache.build(backbone, encoded[s], need, base.eval_batch_size,
                                           desc=f"cache {s} (layers {need[0]}..{need[-1]})",
                                           progress=args.progress) for s in encoded}
    for cell in todo:
        pc, tc = configs[cell]
        run_dir = io.join(out, "runs", cell.name)
        on_done(cell, _retrying(lambda: execute_cell(pc, tc, run_dir, prepared, caches, args.progress),
                                args.retries, cell.name))


# What ``prepare`` depends on: a Ray worker keeps the last model and data it loaded and
# reuses them for the next cell that needs the same (workers live across tasks).
PREPARE_KEYS = ("task", "model", "data_dir", "source", "shots", "data_seed", "dev_size", "max_examples",
                "max_length", "device", "dtype")
_WORKER_PREPARED: dict[tuple, tuple] = {}


def _prepared_in_worker(tc: TrainConfig):
    key = tuple(getattr(tc, k) for k in PREPARE_KEYS)
    if key not in _WORKER_PREPARED:
        _WORKER_PREPARED.clear()  # one model per worker at a time
        _WORKER_PREPARED[key] = prepare(tc)
    return _WORKER_PREPARED[key]


def _ray_build_caches(tc_dict: dict, layers: list[int], device: str):
    """Ray task: hidden states ``layers`` of every split, one return value per layer."""
    tc = TrainConfig(**{**tc_dict, "device": device})
    backbone, _, _, _, encoded, _ = _prepared_in_worker(tc)
    backbone.model.eval()
    full = {s: LowerLayerCache.build(backbone, encoded[s], layers, tc.eval_batch_size, progress=False)
            for s in encoded}
    per_layer = tuple({s: LowerLayerCache({k: full[s].states[k]}) for s in full} for k in layers)
    return per_layer if len(layers) > 1 else per_layer[0]


def _ray_cell(pc_dict: dict, tc_dict: dict, run_dir: str, caches: dict | None, device: str) -> dict:
    """Ray task: load the model and data in the worker, train one cell (``device`` "auto"
    resolves on the worker: CUDA where Ray gave it a GPU)."""
    tc = TrainConfig(**{**tc_dict, "device": device})
    pc = LatePromptConfig(**pc_dict)
    return execute_cell(pc, tc, run_dir, _prepared_in_worker(tc), caches, progress=False)


def run_ray(todo: list, configs: dict, args, base: TrainConfig, out, on_done, data=None) -> None:
    """Each cell a Ray task; the cache computed by one task and passed by reference."""
    import ray

    if not ray.is_initialized():
        ray.init(address=args.address, ignore_reinit_error=True, log_to_driver=False)
    resources = {"num_cpus": args.cpus_per_run, "num_gpus": args.gpus_per_run}
    need = _cache_layers(todo, base)
    cache_refs: dict[int, Any] = {}
    if need:
        task = ray.remote(_ray_build_caches).options(num_returns=len(need), max_retries=args.retries,
                                                      retry_exceptions=True, **resources)
        refs = task.remote(asdict(base), need, args.requested_device)
        cache_refs = dict(zip(need, refs if len(need) > 1 else [refs]))
    cell_task = ray.remote(_ray_cell).options(max_retries=args.retries, retry_exceptions=True, **resources)
    pending = {}
    for cell in todo:
        pc, tc = configs[cell]
        ref = cell_task.remote(pc.to_dict(), asdict(tc), str(io.join(out, "runs", cell.name)),
                               cache_refs.get(_cache_layer(cell, base)), args.requested_device)
        pending[ref] = cell
    while pending:
        done, _ = ray.wait(list(pending), num_returns=1)
        cell = pending.pop(done[0])
        try:
            result = ray.get(done[0])
        except ray.exceptions.RayError as exc:  # retries exhausted (or the cache task failed)
            cause = getattr(exc, "cause", None) or exc
            result = {"status": "failed",
                      "error": f"{type(cause).__name__}: {str(cause).strip().splitlines()[-1][:300]} "
                               f"(after {args.retries + 1} attempts)"}
            logger.error("cell %s failed: %s", cell.name, result["error"])
        on_done(cell, result)


def run(executor: str, *a, **kw) -> None:
    """Run ``todo`` cells with the named executor (see the module docstring)."""
    if executor not in EXECUTORS:
        raise ValueError(f"executor={executor!r}: choose one of {', '.join(EXECUTORS)}")
    (run_ray if executor == "ray" else run_local)(*a, **kw)
