"""Where the cells of a sweep run: in this process, or as tasks on a Ray cluster.

``ExecutorConfig`` holds how (``executor``, Ray's ``address``, ``cpus_per_run``,
``gpus_per_run``, ``retries``). ``execute_cell`` trains one cell into its run folder,
wherever it runs (a local folder, or an fsspec URL: trained in a local folder, then
uploaded with ``meta.json`` last). Deterministic failures (divergence, a bad
configuration) come back as a failed result; anything else raises, and the executor
retries it ``retries`` times before recording it.

- ``run_local``: one cell after another in this process; the model, the data and one
  lower-layer cache (every hidden state the grid starts from, computed in one pass) are
  shared. Cells run in order of their start layer, and a cached layer is released as soon
  as no remaining cell needs it, so a cell holds no hidden states it cannot use; when the
  sweep loaded the model itself, the weights of the layers below a cell's prompt layer are
  dropped too (no later cell runs them). Given a ``seconds`` dict, it adds the time of the
  cache (``cache``) and of the cells (``train``) to it, the phases ``--plan`` estimates.
- ``run_ray``: Ray is the scheduler. One task computes the lower-layer cache and returns
  one object per layer; each cell is a task that receives its layer by reference through
  Ray's object store, reserves ``cpus_per_run`` / ``gpus_per_run`` and is retried by Ray
  itself (``max_retries``, ``retry_exceptions``). Workers keep the last model and data
  they loaded, so a worker's next cell on the same task and model does not load them again.

Both call ``on_done(cell, result)`` as each cell finishes; ``lpt_probe.runs.sweep``
aggregates. ``result`` carries ``status`` and ``error``; the run folder's ``meta.json``
the rest (``rss_mb``: the process's resident memory when the cell finished).
``mi`` and ``influence`` train their prompts through ``run_ray`` too and build on
``connect`` and ``prepared_in_worker`` (``lpt_probe.analysis.engine.executors``). Ray's settings
given with the local executor are an error naming the flag, not silently ignored.
"""

from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

from .. import store
from ..model.cache import LowerLayerCache
from ..model.late_prompt import LatePromptConfig
from ..model.methods import get_method
from ..outputs import upload_dir
from .config import EXECUTORS, ExecutorConfig, require_ray  # noqa: F401  (re-exported: the settings live there)
from .run import Prepared, prepare, train
from .trainer import TrainConfig, TrainingDiverged

logger = logging.getLogger(__name__)
def connect(execution: ExecutorConfig):
    """The ``ray`` module, connected: to ``execution.address``, or a Ray started on this
    machine; a Ray already initialised in this process (a notebook, a test) is used as it is."""
    ray = require_ray()
    if not ray.is_initialized():
        try:
            ray.init(address=execution.address, ignore_reinit_error=True, log_to_driver=False)
        except Exception as exc:  # Ray raises ConnectionError, RuntimeError, ValueError ... as it sees fit
            first = (str(exc).strip().splitlines() or [""])[0][:200]
            where = f"--address {execution.address}" if execution.address else "a Ray on this machine"
            raise ValueError(f"--executor ray: could not connect to {where} ({type(exc).__name__}: {first}); "
                             f"start a cluster first (ray start --head), give its HOST:PORT, or leave --address "
                             f"out (or use --executor local)") from None
    return ray


def execute_cell(pc: LatePromptConfig, tc: TrainConfig, run_dir: str | Path, prepared: Prepared | None = None,
                 caches: dict | None = None, progress: bool = False) -> dict[str, Any]:
    """Train one cell into ``run_dir`` (a local folder or a URL: then trained in a local
    folder and uploaded, ``meta.json`` last). Deterministic failures (divergence, a bad
    configuration) come back as a failed result; anything else raises, so that the
    executor retries it."""
    staging = tempfile.TemporaryDirectory(prefix="lpt_cell_") if store.is_url(run_dir) else None
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
                upload_dir(staging.name, str(run_dir))  # failed runs too: meta.json says so
            staging.cleanup()


def cache_layer(pc: LatePromptConfig, base: TrainConfig) -> int | None:
    """The cached hidden state (PL-1) a cell starts from; None if it runs the lower layers."""
    return pc.start_state if base.cache and get_method(pc.method).cacheable else None


def _retrying(fn: Callable[[], dict], retries: int, what: str) -> dict:
    for attempt in range(retries + 1):
        try:
            return fn()
        except Exception as exc:  # noqa: BLE001 - unexpected errors are retried, then recorded
            logger.error("%s: attempt %d/%d failed: %s: %s", what, attempt + 1, retries + 1, type(exc).__name__, exc)
            error = f"{type(exc).__name__}: {exc} (after {retries + 1} attempts)"
    return {"status": "failed", "error": error}


def run_local(todo: list, configs: dict, execution: ExecutorConfig, base: TrainConfig, out, on_done,
              prepared: Prepared, progress: bool = True, release_weights: bool = False,
              seconds: dict[str, float] | None = None) -> None:
    """In this process, one cell after another, sharing the model and one cache whose
    layers are released once no remaining cell starts from them. With ``release_weights``
    (the sweep owns ``prepared``) and every cell training from the cache, the weights of
    the layers below the current cell's prompt layer are dropped too: cells run in order of
    their start layer, so no later cell runs them. ``seconds``: the cache's and the cells'
    time are added to its ``cache`` and ``train`` (``on_done`` is in neither)."""
    seconds = {} if seconds is None else seconds
    layer_of = {c: cache_layer(configs[c][0], base) for c in todo}
    need = sorted({k for k in layer_of.values() if k is not None})
    full = None
    if need:
        t0 = time.perf_counter()
        prepared.backbone.model.eval()
        full = {s: LowerLayerCache.build(prepared.backbone, prepared.encoded[s], need, base.eval_batch_size,
                                         desc=f"cache {s} (hidden states {need[0]}..{need[-1]})",
                                         progress=progress) for s in prepared.encoded}
        seconds["cache"] = seconds.get("cache", 0.0) + time.perf_counter() - t0
    order = sorted(todo, key=lambda c: (layer_of[c] is None, layer_of[c] or 0))
    remaining = {k: sum(1 for c in order if layer_of[c] == k) for k in need}
    release_weights = release_weights and all(layer_of[c] is not None for c in order)
    for cell in order:
        pc, tc = configs[cell]
        k = layer_of[cell]
        if release_weights and k:
            freed = prepared.backbone.release_layers(k)
            if freed:
                logger.debug("released the weights of layers 1..%d (%d parameters): no remaining cell runs them",
                             k, freed)
        caches = {s: full[s].only(k) for s in full} if k is not None else None
        run_dir = store.join(out, "runs", cell.name)
        t0 = time.perf_counter()
        result = _retrying(lambda: execute_cell(pc, tc, run_dir, prepared, caches, progress),
                           execution.retries, cell.name)
        seconds["train"] = seconds.get("train", 0.0) + time.perf_counter() - t0
        caches = None  # the cell is done with its layer
        if k is not None:
            remaining[k] -= 1
            if remaining[k] == 0:  # nobody else starts from hidden state k: free it
                for s in full:
                    full[s].states.pop(k, None)
        on_done(cell, result)


# What ``prepare`` depends on: a Ray worker keeps the last model and data it loaded and
# reuses them for the next cell that needs the same (workers live across tasks).
PREPARE_KEYS = ("task", "model", "data_dir", "source", "shots", "data_seed", "dev_size", "max_examples",
                "max_length", "drop_overlap", "device", "dtype")
_WORKER_PREPARED: dict[tuple, Prepared] = {}


def prepared_in_worker(tc: TrainConfig) -> Prepared:
    """In a Ray worker: the model and data ``tc`` needs, loaded once per worker (the last
    one loaded is kept; ``lpt_probe.analysis.engine.executors`` builds its studies on it too)."""
    key = tuple(getattr(tc, k) for k in PREPARE_KEYS)
    if key not in _WORKER_PREPARED:
        _WORKER_PREPARED.clear()  # one model per worker at a time
        _WORKER_PREPARED[key] = prepare(tc)
    return _WORKER_PREPARED[key]


def _ray_build_caches(tc_dict: dict, layers: list[int], device: str):
    """Ray task: hidden states ``layers`` of every split, one return value per layer."""
    tc = TrainConfig(**{**tc_dict, "device": device})
    prepared = prepared_in_worker(tc)
    prepared.backbone.model.eval()
    full = {s: LowerLayerCache.build(prepared.backbone, prepared.encoded[s], layers, tc.eval_batch_size,
                                     progress=False) for s in prepared.encoded}
    per_layer = tuple({s: full[s].only(k) for s in full} for k in layers)
    return per_layer if len(layers) > 1 else per_layer[0]


def _ray_cell(pc_dict: dict, tc_dict: dict, run_dir: str, caches: dict | None, device: str) -> dict:
    """Ray task: load the model and data in the worker, train one cell (``device`` "auto"
    resolves on the worker: CUDA where Ray gave it a GPU)."""
    tc = TrainConfig(**{**tc_dict, "device": device})
    pc = LatePromptConfig(**pc_dict)
    return execute_cell(pc, tc, run_dir, prepared_in_worker(tc), caches, progress=False)


def run_ray(todo: list, configs: dict, execution: ExecutorConfig, base: TrainConfig, out, on_done,
            prepared: Prepared | None = None, progress: bool = True, device: str | None = None) -> None:
    """Each cell a Ray task; the cache computed by one task and passed by reference."""
    ray = connect(execution)
    device = device or base.device
    resources = {"num_cpus": execution.cpus_per_run, "num_gpus": execution.gpus_per_run}
    need = sorted({k for k in (cache_layer(configs[c][0], base) for c in todo) if k is not None})
    cache_refs: dict[int, Any] = {}
    if need:
        task = ray.remote(_ray_build_caches).options(num_returns=len(need), max_retries=execution.retries,
                                                      retry_exceptions=True, **resources)
        refs = task.remote(asdict(base), need, device)
        cache_refs = dict(zip(need, refs if len(need) > 1 else [refs]))
    cell_task = ray.remote(_ray_cell).options(max_retries=execution.retries, retry_exceptions=True, **resources)
    pending = {}
    for cell in todo:
        pc, tc = configs[cell]
        ref = cell_task.remote(pc.to_dict(), asdict(tc), str(store.join(out, "runs", cell.name)),
                               cache_refs.get(cache_layer(pc, base)), device)
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
                               f"(after {execution.retries + 1} attempts)"}
            logger.error("cell %s failed: %s", cell.name, result["error"])
        on_done(cell, result)


def run(execution: ExecutorConfig, todo: list, configs: dict, base: TrainConfig, out, on_done,
        prepared: Prepared | None = None, progress: bool = True, device: str | None = None,
        release_weights: bool = False, seconds: dict[str, float] | None = None) -> None:
    """Run ``todo`` cells with the configured executor (see the module docstring);
    ``release_weights``: the local executor may drop lower-layer weights of ``prepared``;
    ``seconds``: the local executor adds its phases' time to it (Ray's run at once: none)."""
    if execution.executor == "ray":
        run_ray(todo, configs, execution, base, out, on_done, prepared, progress, device)
    else:
        run_local(todo, configs, execution, base, out, on_done, prepared or prepare(base), progress,
                  release_weights=release_weights or prepared is None, seconds=seconds)
