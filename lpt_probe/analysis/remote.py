"""Where the work of ``mi`` and ``influence`` runs: in this process, or as Ray tasks.

``study_executor(execution, device)`` gives a :class:`LocalStudy` or a :class:`RayStudy`
(``--executor local|ray``, the execution flags of ``lpt_probe.runs.executors.ExecutorConfig``
less ``--retries``). ``run_mi`` and ``run_influence`` keep the orchestration (which
conditions, which pieces, what is reused) and hand the work to it:

=============================  ====================================  =====================================
work                           local                                 ray
=============================  ====================================  =====================================
training the prompts           this process, one lower-layer cache   the sweep's tasks (``run_ray``): one
                               for every prompt                      builds the cache, one per prompt
representations (vector        this process: the frozen model and    one task per condition
probes)                        the prompts in one frozen pass
probe pieces (vector probes)   ``--jobs`` processes (joblib)         one task per piece; it reads its
                                                                     hidden state from the stored arrays
sequence probes                this process computes the layers,     one task per condition computes its
                               ``--jobs`` processes fit the pieces   layers, each piece a task of its own
influence pieces               this process, one after another       one task per (prompt, checkpoint)
=============================  ====================================  =====================================

A task builds the same ``MIRun`` / ``InfluenceRun`` from the same settings in its worker
and calls the same methods the local path calls, so it writes the same files under the
same content keys: a folder started under one executor resumes under the other, and the
tables are the same. Workers keep the last model they loaded
(``runs.executors.prepared_in_worker``, shared with the sweep's training tasks) and the
study built on it, so a worker's next task of the same study loads nothing. Tasks reserve
``--cpus-per-run`` / ``--gpus-per-run`` and are retried once by Ray; ``--device`` resolves
on each worker (``auto``: CUDA where Ray gave the task a GPU). Paths (``--out``,
``--data-dir``, ``--reuse-runs``, a task file) are made absolute: every worker must see them.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from .. import store
from ..data.sources import is_task_file
from ..progress import bar
from ..runs.executors import ExecutorConfig, connect, prepared_in_worker, run_ray
from ..runs.folders import check_run
from ..runs.run import SPLITS
from .config import EXECUTION_HELP, add_execution_args  # noqa: F401  (re-exported)
from .pieces import drop_scratch, fit_piece, log_levels, run_pieces

__all__ = ["EXECUTION_HELP", "LocalStudy", "RayStudy", "add_execution_args", "study_executor", "study_in_worker"]

logger = logging.getLogger(__name__)
def study_executor(execution: ExecutorConfig | None = None, device: str | None = None) -> LocalStudy:
    """The executor of ``execution`` (default: local); ``device``: as the user asked for it
    (``auto`` resolves on each Ray worker; default: the study's own, resolved here)."""
    execution = execution or ExecutorConfig()
    return RayStudy(execution, device) if execution.executor == "ray" else LocalStudy(execution)


class LocalStudy:
    """Everything in this process; vector-probe pieces on ``--jobs`` worker processes."""

    def __init__(self, execution: ExecutorConfig):
        self.execution = execution

    def settle(self, cfg):
        """The study's settings as this executor runs them (unchanged here)."""
        return cfg

    def mi(self, run, conds: list) -> int:
        """Train, extract and probe what ``conds`` still need; returns the pieces fitted."""
        cfg = run.cfg
        if cfg.sequence_probe:  # prompts first: training time is training only
            run.train_prompts(list(run.sequence_layers(conds)))
            t1 = time.perf_counter()
            total, jobs = run.sequence_pieces(conds)
            n_jobs = 1 if cfg.probe_options.in_process else cfg.jobs  # e.g. probes that hold the live backbone
        else:
            reps = run.vector_reps(conds)
            t1 = time.perf_counter()
            total, jobs = run.vector_pieces(conds, reps)
            n_jobs = cfg.jobs
        n = run_pieces(jobs, total, n_jobs, cfg.progress)
        run.clear_scratch()
        run.seconds["probe"] += time.perf_counter() - t1
        logger.info("probed %d piece(s) (%d conditions x %d hidden states, shared pieces once) in %.0f s "
                    "with %d process(es)", n, len(conds), run.L + 1, time.perf_counter() - t1, max(1, min(n_jobs, n)))
        return n

    def influence(self, run, todo: list) -> int:
        """Measure the (condition, checkpoint) pieces of ``todo`` not done yet; returns how many."""
        return sum(run.measure_piece(cond, ckpt) for cond, ckpt in bar(todo, desc="influence",
                                                                        enabled=run.cfg.progress))


@dataclass(frozen=True)
class _RunFolder:
    """A prompt to train, named as the sweep's executor names a cell: its run folder's name."""

    name: str


def _absolute(path: str | None) -> str | None:
    return path if path is None or store.is_url(path) else os.path.abspath(path)


class RayStudy(LocalStudy):
    """Each piece of work a Ray task (see the module docstring)."""

    def __init__(self, execution: ExecutorConfig, device: str | None = None):
        super().__init__(execution)
        self.device = device
        self.options = {"num_cpus": execution.cpus_per_run, "num_gpus": execution.gpus_per_run,
                        "max_retries": execution.retries, "retry_exceptions": True}

    def settle(self, cfg):
        """Every path absolute: workers may start in another folder, or on another node."""
        return replace(cfg, out=_absolute(str(cfg.out_dir)), data_dir=_absolute(cfg.data_dir),
                       task=_absolute(cfg.task) if is_task_file(cfg.task) else cfg.task,
                       reuse_runs=tuple(_absolute(p) for p in cfg.reuse_runs))

    @property
    def ray(self):
        return connect(self.execution)  # started (or joined) on first use: a resumed study may need none

    def _task(self, fn):
        return self.ray.remote(fn).options(**self.options)

    def _wait(self, refs: dict, desc: str, progress: bool) -> list:
        """The results of ``refs`` (ref -> what it does), as they finish; a task that failed
        every attempt raises, naming what it did and why."""
        if not refs:
            return []
        ray, out, pending = self.ray, [], list(refs)
        pbar = bar(total=len(pending), desc=desc, enabled=progress)
        try:
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                try:
                    out.append(ray.get(done[0]))
                except ray.exceptions.RayError as exc:
                    cause = getattr(exc, "cause", None) or exc
                    raise RuntimeError(f"{refs[done[0]]} failed on Ray ({self.execution.retries + 1} attempt(s)): "
                                       f"{type(cause).__name__}: {str(cause).strip().splitlines()[-1][:300]}") from None
                pbar.update(1)
        finally:
            pbar.close()
        return out

    def train(self, run, conds: list, key_of) -> None:
        """Train the prompts of ``conds`` whose run folders are not finished (``key_of(cond)``:
        the run key), as the sweep's cells on Ray; a prompt that fails raises."""
        base = run.train_config(run.cfg.seeds[0])
        todo, configs = [], {}
        for c in (c for c in conds if c.method == "lpt"):
            folder = Path(run.run_folder(c))
            run.run_dirs[c.name] = os.path.relpath(folder, run.out)
            if not check_run(folder, key_of(c))[0]:
                cell = _RunFolder(folder.name)  # under <out>/runs/, where run_ray trains a cell
                todo.append(cell)
                configs[cell] = (run.prompt_config(c), run.train_config(c.seed))
        if not todo:
            return
        t0, failed = time.perf_counter(), []
        pbar = bar(total=len(todo), desc="prompts (Ray)", enabled=run.cfg.progress)

        def on_done(cell, result: dict) -> None:
            pbar.update(1)
            if result["status"] != "complete":
                failed.append(f"{cell.name}: {result['error']}")

        try:
            run_ray(todo, configs, self.execution, base, run.out, on_done, progress=False,
                    device=self.device or base.device)
        finally:
            pbar.close()
        run.seconds["train"] += time.perf_counter() - t0
        if failed:
            raise RuntimeError(f"training {len(failed)} prompt(s) on Ray failed: {'; '.join(failed)}")
        logger.info("trained %d prompt(s) as Ray tasks in %.0f s", len(todo), time.perf_counter() - t0)

    def mi(self, run, conds: list) -> int:
        cfg, level = run.cfg, log_levels()
        device = self.device or cfg.device
        if cfg.sequence_probe:
            layers_of = run.sequence_layers(conds)
            self.train(run, list(layers_of), run.model_key)
            t1 = time.perf_counter()
            task = self._task(_ray_sequence) if layers_of else None
            refs = {task.remote(type(run), cfg, device, c, layers, level, self.options): f"the pieces of {c.name}"
                    for c, layers in layers_of.items()}
            n = sum(self._wait(refs, "conditions (Ray)", cfg.progress))
            run.clear_scratch()
        else:
            missing = run.missing_reps(conds)
            self.train(run, missing, run.model_key)
            t0 = time.perf_counter()
            task = self._task(_ray_extract) if missing else None
            self._wait({task.remote(type(run), cfg, device, c): f"extracting {c.name}" for c in missing},
                       "extract (Ray)", cfg.progress)
            run.seconds["extract"] += time.perf_counter() - t0
            reps = run.load_reps(conds)
            t1 = time.perf_counter()
            total, jobs = run.vector_pieces(conds, reps)
            task, arrays, refs = self._task(_ray_piece) if total else None, {}, {}
            for job in jobs:
                name = job.sidecar["condition"]["name"]
                if name not in arrays:  # one object per condition: per split its stored [L+1, n, d]
                    # array (a task reads one hidden state of it from disk) and the labels
                    arrays[name] = self.ray.put({s: (reps[name][s][cfg.representation], reps[name][s]["labels"])
                                                 for s in SPLITS})
                refs[task.remote(replace(job, X=None, y=None), arrays[name], level)] = \
                    f"the piece of {name} at hidden state {job.layer}"
            n = len(self._wait(refs, "probe pieces (Ray)", cfg.progress))
        run.seconds["probe"] += time.perf_counter() - t1
        logger.info("probed %d piece(s) as Ray tasks in %.0f s", n, time.perf_counter() - t1)
        return n

    def influence(self, run, todo: list) -> int:
        todo = [(c, k) for c, k in todo if not run.piece_done(c, k)]
        self.train(run, list(dict.fromkeys(c for c, k in todo if k != "init")), run.run_key)
        t0 = time.perf_counter()
        task, device = self._task(_ray_measure) if todo else None, self.device or run.cfg.device
        refs = {task.remote(type(run), run.cfg, device, c, k): f"measuring {c.name} {k}" for c, k in todo}
        n = sum(self._wait(refs, "influence (Ray)", run.cfg.progress))
        run.seconds["measure"] += time.perf_counter() - t0
        return n


# -- in a Ray worker ------------------------------------------------------------------------
_WORKER_STUDY: dict[tuple, Any] = {}


def study_in_worker(cls, cfg, device: str):
    """In a worker: ``cls(cfg)`` (``MIRun`` or ``InfluenceRun``) with its data loaded, on the
    worker's model (``prepared_in_worker``, which the training tasks share), built once per
    worker and settings; ``device`` resolves here."""
    cfg = replace(cfg, device=device, progress=False)
    prepared = prepared_in_worker(replace(cfg.train_config(cfg.seeds[0]), device=device))
    key = (cls.__module__, cls.__qualname__, store.content_key(asdict(cfg)), id(prepared))
    if key not in _WORKER_STUDY:
        _WORKER_STUDY.clear()  # one study per worker at a time
        run = cls(cfg, bundle=(prepared.backbone.model, prepared.tokenizer, prepared.model_info))
        run.load_data()
        _WORKER_STUDY[key] = run
    return _WORKER_STUDY[key]


def _ray_extract(cls, cfg, device: str, cond) -> str:
    """Ray task: store the representations of one condition."""
    study_in_worker(cls, cfg, device).extract_reps([cond])
    return cond.name


def _ray_piece(job, arrays: dict, level: dict[str, int]) -> str:
    """Ray task: fit one vector-probe piece, reading its hidden state from its condition's
    stored arrays (``StoredArray``, passed through the object store as a handle)."""
    X = {s: a[job.layer] for s, (a, _) in arrays.items()}
    return fit_piece(replace(job, X=X, y={s: labels for s, (_, labels) in arrays.items()}), level)


def _ray_sequence(cls, cfg, device: str, cond, layers: list[int], level: dict[str, int], options: dict) -> int:
    """Ray task: compute one condition's hidden states layer by layer and fit each piece as
    a task of its own (the transformer probe from the backbone's layers holds this worker's
    model: fitted here)."""
    import ray

    run = study_in_worker(cls, cfg, device)
    jobs = run.sequence_jobs(cond, layers)
    if run.cfg.probe_options.in_process:
        return run_pieces(jobs, len(layers), 1, progress=False)
    fit = ray.remote(fit_piece).options(**options)
    refs = []
    for job in jobs:  # the layer's states go into the object store when submitted: its files can go
        refs.append(fit.remote(job, level))
        drop_scratch(job)
    return len(ray.get(refs))  # blocked in get: Ray frees this task's CPUs


def _ray_measure(cls, cfg, device: str, cond, checkpoint: str) -> bool:
    """Ray task: measure one (prompt, checkpoint) influence piece."""
    return study_in_worker(cls, cfg, device).measure_piece(cond, checkpoint)
