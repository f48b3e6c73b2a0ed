"""The executors of every study: in this process, or as Ray tasks.

``study_executor(execution)`` gives a :class:`LocalStudy` or a :class:`RayStudy`
(``--executor local|ray``, the execution flags of ``lpt_probe.runs.executors.ExecutorConfig``
less ``--retries``). ``executor.run(study, conds)`` runs the phases the study declares
(``study.phases(conds)``, ``lpt_probe.analysis.engine.base``) without knowing which study it is;
``run_mi`` and ``run_influence`` only build the study and collect its tables. What each
phase kind becomes:

=====================  ====================================  =====================================
phase                  local                                 ray
=====================  ====================================  =====================================
``TrainPrompts``       the sweep's ``run_local``: one        the sweep's tasks (``run_ray``): one
                       lower-layer cache for every prompt    builds the cache, one per prompt
``StudyCalls``         ``study.<method>(items)`` once (mi's  one task per item, ``<method>([item])``
                       extraction: the frozen model and the  on the worker's study
                       prompts in one frozen pass)
``Pieces``             ``--jobs`` processes (joblib)         one task per piece; it reads its
                                                             hidden state from the stored arrays
``StreamedPieces``     this process computes (a sequence     one task per item computes, each
                       probe's layers), ``--jobs``           piece a task of its own
                       processes fit the pieces
=====================  ====================================  =====================================

A task builds the same study (``MIRun``, ``InfluenceRun``) from the same settings in its
worker and calls the same methods the local path calls, so it writes the same files under
the same content keys: a folder started under one executor resumes under the other, and
the tables are the same. Workers keep the last model they loaded
(``runs.executors.prepared_in_worker``, shared with the sweep's training tasks) and the
study built on it, so a worker's next task of the same study loads nothing. Tasks reserve
``--cpus-per-run`` / ``--gpus-per-run`` and are retried once by Ray; ``--device`` resolves
on each worker (``auto``: CUDA where Ray gave the task a GPU). Paths (``--out``,
``--data-dir``, ``--reuse-runs``, a task file) are made absolute: every worker must see them.
Each phase's time goes into the study's ``seconds`` under the phase's name (``run.json``'s
``phase_seconds``)."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from ... import store
from ...data.sources import is_task_file
from ...progress import bar
from ...runs.executors import ExecutorConfig, connect, prepared_in_worker, run_local, run_ray
from ...runs.folders import check_run
from ..config import EXECUTION_HELP  # noqa: F401  (re-exported)
from .base import StreamedPieces, StudyCalls, TrainPrompts, study_method
from .pieces import drop_scratch, fit_piece, log_levels, run_pieces

__all__ = ["EXECUTION_HELP", "LocalStudy", "RayStudy", "study_executor", "study_in_worker"]

logger = logging.getLogger(__name__)
def study_executor(execution: ExecutorConfig | None = None) -> LocalStudy:
    """The executor of ``execution`` (default: local). The study's ``cfg.train.device`` is the
    device asked for; each study resolves it where it runs (``auto`` on each Ray worker)."""
    execution = execution or ExecutorConfig()
    return RayStudy(execution) if execution.executor == "ray" else LocalStudy(execution)


class LocalStudy:
    """Every phase in this process; independent probe pieces on ``--jobs`` worker processes."""

    label = ""  # how the log lines say where the work ran

    def __init__(self, execution: ExecutorConfig):
        self.execution = execution

    def settle(self, cfg):
        """The study's settings as this executor runs them (unchanged here)."""
        return cfg

    def run(self, study, conds: list) -> int:
        """Run every phase ``study.phases(conds)`` declares, in order (``base.Study``);
        returns the pieces made (probe pieces fitted, influence pieces measured)."""
        made = 0
        for phase in study.phases(conds):
            if isinstance(phase, TrainPrompts):
                self.train(study, phase.conditions)
                continue
            t0 = time.perf_counter()
            n, how = self.execute(study, phase)
            study.seconds[phase.name] += time.perf_counter() - t0
            if not isinstance(phase, StudyCalls) or phase.counts:
                made += n
                if n:
                    logger.info("%s: %d piece(s) in %.0f s %s", phase.name, n, time.perf_counter() - t0, how)
        return made

    def train(self, study, conds: list) -> None:
        """Train the prompts of ``conds`` whose run folders are not finished, as a sweep's
        cells (``runs.executors``: here ``run_local``, one lower-layer cache for them all;
        on Ray ``run_ray``); a prompt that fails raises, naming it and why."""
        base = study.train_config(study.cfg.grid.seeds[0])
        todo, configs = [], {}
        for c in (c for c in conds if c.method == "lpt"):
            folder = Path(study.run_folder(c))
            study.run_dirs[c.name] = os.path.relpath(folder, study.out)
            if not check_run(folder, study.run_key(c))[0]:
                cell = _RunFolder(folder.name)  # under <out>/runs/, where the executors train a cell
                todo.append(cell)
                configs[cell] = (study.prompt_config(c), study.train_config(c.seed))
        if not todo:
            return
        t0, failed = time.perf_counter(), []
        pbar = bar(total=len(todo), desc=f"prompts{self.label}", enabled=study.cfg.output.progress and len(todo) > 1)

        def on_done(cell, result: dict) -> None:
            pbar.update(1)
            if result["status"] != "complete":
                failed.append(f"{cell.name}: {result['error']}")

        try:
            self.train_cells(study, todo, configs, base, on_done)
        finally:
            pbar.close()
        study.seconds["train"] += time.perf_counter() - t0
        if failed:
            raise RuntimeError(f"training {len(failed)} prompt(s){self.label} failed: {'; '.join(failed)}")
        logger.info("trained %d prompt(s)%s in %.0f s", len(todo), self.label, time.perf_counter() - t0)

    def train_cells(self, study, todo: list, configs: dict, base, on_done) -> None:
        run_local(todo, configs, self.execution, base, study.out, on_done, prepared=study.prompt_prepared,
                  progress=study.cfg.output.progress)

    def execute(self, study, phase) -> tuple[int, str]:
        """Run one phase here; (how many pieces, how they ran: for the log line)."""
        cfg = study.cfg
        if isinstance(phase, StudyCalls):
            n = study_method(study, phase.method)(phase.items) if phase.items else 0
            return int(n or 0), "in this process"
        if isinstance(phase, StreamedPieces):
            jobs = (job for item in phase.items for job in study_method(study, phase.method)(*item))
            n_jobs = 1 if phase.in_process else phase.processes
        else:
            jobs, n_jobs = phase.jobs, phase.processes
        n = run_pieces(jobs, phase.total, n_jobs, cfg.output.progress) if phase.total else 0
        return n, f"with {max(1, min(n_jobs, n or 1))} process(es)"


@dataclass(frozen=True)
class _RunFolder:
    """A prompt to train, named as the sweep's executor names a cell: its run folder's name."""

    name: str


def _absolute(path: str | None) -> str | None:
    return path if path is None or store.is_url(path) else os.path.abspath(path)


class RayStudy(LocalStudy):
    """Each piece of work a Ray task (see the module docstring)."""

    def __init__(self, execution: ExecutorConfig):
        super().__init__(execution)
        self.options = {"num_cpus": execution.cpus_per_run, "num_gpus": execution.gpus_per_run,
                        "max_retries": execution.retries, "retry_exceptions": True}

    def settle(self, cfg):
        """Every path absolute: workers may start in another folder, or on another node."""
        return replace(cfg, out=_absolute(str(cfg.out_dir)), data_dir=_absolute(cfg.train.data_dir),
                       task=_absolute(cfg.train.task) if is_task_file(cfg.train.task) else cfg.train.task,
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

    label = " as Ray tasks"

    def train_cells(self, study, todo: list, configs: dict, base, on_done) -> None:
        run_ray(todo, configs, self.execution, base, study.out, on_done, progress=False)

    def execute(self, study, phase) -> tuple[int, str]:
        cfg, level = study.cfg, log_levels()
        device, cls, what = cfg.train.device, type(study), "as Ray tasks"  # as asked: each worker resolves it
        if isinstance(phase, StudyCalls):
            task = self._task(_ray_call) if phase.items else None
            refs = {task.remote(cls, cfg, device, phase.method, item): f"{phase.name} of {_name(item)}"
                    for item in phase.items}
            return sum(int(n or 0) for n in self._wait(refs, f"{phase.name} (Ray)", cfg.output.progress)), what
        if isinstance(phase, StreamedPieces):
            task = self._task(_ray_stream) if phase.items else None
            refs = {task.remote(cls, cfg, device, phase.method, item, level, self.options, phase.in_process):
                    f"the pieces of {_name(item)}" for item in phase.items}
            return sum(self._wait(refs, f"{phase.name} (Ray)", cfg.output.progress)), what
        task = self._task(_ray_piece) if phase.total else None
        refs = {task.remote(job, level): f"the piece of {job.sidecar['condition']['name']} at hidden state {job.layer}"
                for job in phase.jobs}
        return len(self._wait(refs, f"{phase.name} (Ray)", cfg.output.progress)), what


def _name(item) -> str:
    """How a phase item is named in messages: its condition's name (and checkpoint)."""
    parts = item if isinstance(item, tuple) else (item,)
    return " ".join(getattr(p, "name", None) or str(p) for p in parts if not isinstance(p, list))


# -- in a Ray worker ------------------------------------------------------------------------
_WORKER_STUDY: dict[tuple, Any] = {}


def study_in_worker(cls, cfg, device: str):
    """In a worker: ``cls(cfg)`` (``MIRun`` or ``InfluenceRun``) with its data loaded, on the
    worker's model (``prepared_in_worker``, which the training tasks share), built once per
    worker and settings; ``device`` resolves here."""
    cfg = replace(cfg, device=device, progress=False)
    prepared = prepared_in_worker(replace(cfg.train_config(cfg.grid.seeds[0]), device=device))
    key = (cls.__module__, cls.__qualname__, store.content_key(asdict(cfg)), id(prepared))
    if key not in _WORKER_STUDY:
        _WORKER_STUDY.clear()  # one study per worker at a time
        run = cls(cfg, bundle=(prepared.backbone.model, prepared.tokenizer, prepared.model_info))
        run.load_data()
        _WORKER_STUDY[key] = run
    return _WORKER_STUDY[key]


def _ray_call(cls, cfg, device: str, method: str, item):
    """Ray task: ``study.<method>([item])`` on the worker's study (a ``StudyCalls`` phase)."""
    return study_method(study_in_worker(cls, cfg, device), method)([item])


def _ray_piece(job, level: dict[str, int]) -> str:
    """Ray task: fit one probe piece (its arrays read from the stored representations here)."""
    return fit_piece(job, level)


def _ray_stream(cls, cfg, device: str, method: str, item, level: dict[str, int], options: dict,
                in_process: bool) -> int:
    """Ray task: ``study.<method>(*item)`` computes the item's pieces one after the other
    (e.g. a condition's hidden states layer by layer); each is fitted as a task of its own,
    or here when it holds this worker's model (``in_process``)."""
    import ray

    jobs = study_method(study_in_worker(cls, cfg, device), method)(*item)
    if in_process:
        return run_pieces(jobs, 1, 1, progress=False)  # one at a time, here (the count is what ran)
    fit = ray.remote(fit_piece).options(**options)
    refs = []
    for job in jobs:  # the piece's states go into the object store when submitted: its files can go
        refs.append(fit.remote(job, level))
        drop_scratch(job)
    return len(ray.get(refs))  # blocked in get: Ray frees this task's CPUs
