"""One probe piece of an ``mi`` analysis, and running many of them on every CPU core.

A *piece* is one hidden state of one condition (a late prompt, the frozen model, random
weights), probed: the probe per seed, the shuffled-label control, the MDL online code and
the per-example PVI. :class:`PieceJob` carries everything a piece needs: the layer's
arrays, the labels, the probe settings and where the files go; nothing of the model. So
:func:`fit_piece` runs in this process or in a worker process, and
:func:`run_pieces` spreads vector-probe pieces over ``n_jobs`` processes (joblib's
process pool). Every fit is seeded, so a piece's files are the same wherever and in
whichever order it ran; each piece writes its three CSVs and then, last, its JSON sidecar
with their sha256 (the mark that the piece is done; ``lpt_probe.analysis.mi.study`` reads it).

Why processes: the probes fit with one BLAS / torch thread each (a probe-sized lbfgs fit
runs slower, not faster, on several threads), so one process leaves every other core idle
while the pieces of a Figure-2 analysis (77 on MiniLM with every prompt layer) queue up.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import pandas as pd

from ... import store
from ...probing import make_probe, online_codelength, probe_information, pvi, shuffled_label_control
from ...progress import bar
from .base import seal_piece
from ..config import default_jobs  # noqa: F401  (re-exported)

logger = logging.getLogger(__name__)

__all__ = ["LayerOf", "PieceJob", "ProbeFactory", "drop_scratch", "fit_piece", "run_pieces", "default_jobs", "permutation_seed"]


@dataclass(frozen=True)
class ProbeFactory:
    """``seed -> unfitted probe`` (a picklable ``make_probe`` with fixed settings)."""

    name: str
    n_classes: int
    kwargs: dict = field(default_factory=dict)

    def __call__(self, seed: int):
        return make_probe(self.name, self.n_classes, seed, **self.kwargs)


@dataclass
class PieceJob:
    """Everything one piece needs; ``X``/``y`` map split -> [n, d] array (or Sequences) / labels."""

    key: str
    paths: dict[str, Path]  # "mi", "mdl", "pvi" (CSV) and "done" (JSON sidecar, written last)
    sidecar: dict[str, Any]  # what the sidecar records besides key and file hashes
    layer: int
    probe: str
    representation: str
    n_classes: int
    probe_seeds: tuple[int, ...]
    bootstrap: int
    controls: bool
    permutations: int
    mdl: bool
    test_ids: list
    X: dict
    y: dict
    factory: Callable[[int], Any]
    scratch: tuple[Path, ...] = ()  # files only this piece reads (a sequence probe's layer files): removed when done


@dataclass(frozen=True)
class LayerOf:
    """One hidden state of a stored ``[L+1, n, d]`` array (``representations.StoredArray``),
    read when the piece is fitted, in whichever process fits it: a job carries where its
    arrays are, so handing it to a worker process or a Ray task copies no array."""

    array: Any
    layer: int

    def read(self) -> np.ndarray:
        return np.asarray(self.array[self.layer])


def drop_scratch(job: PieceJob) -> None:
    """Remove the files only ``job`` reads (``PieceJob.scratch``)."""
    for path in job.scratch:
        Path(path).unlink(missing_ok=True)


_LOGGING_SET = False


QUIET_BELOW = ("lpt_probe.probing",)  # per-probe lines: INFO in the library, shown by the commands only with --verbose


def log_levels() -> dict[str, int]:
    """This process's logging levels that a worker mirrors: the package's, and those of the
    loggers the commands quiet unless ``--verbose`` (``QUIET_BELOW``; ``cli.setup_logging``)."""
    return {name: logging.getLogger(name).getEffectiveLevel() for name in ("lpt_probe", *QUIET_BELOW)}


def _worker_logging(level: int | dict[str, int] | None) -> None:
    """In a worker process: log at the parent's level(s) (a level, or ``log_levels()``) in the
    parent's format (once)."""
    global _LOGGING_SET
    if level is None or _LOGGING_SET:
        return
    _LOGGING_SET = True
    levels = level if isinstance(level, dict) else {"lpt_probe": level}
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")
    root.setLevel(levels["lpt_probe"])
    for name, lvl in levels.items():
        if name != "lpt_probe":
            logging.getLogger(name).setLevel(lvl)


def permutation_seed(key: str) -> int:
    """The first label permutation of a piece's shuffled-label control, drawn from the
    piece's own key: every piece (each hidden state of each condition) gets its own
    permutations, so the control rows are independent draws of the null distribution
    rather than one shared labelling moving them all together."""
    return int(hashlib.sha256(key.encode()).hexdigest()[:12], 16)


def fit_piece(job: PieceJob, log_level: int | dict[str, int] | None = None) -> str:
    """Probe one hidden state (plus controls, MDL, PVI) -> its CSVs, then the sidecar; returns the key."""
    _worker_logging(log_level)
    base = {"layer": job.layer, "probe": job.probe, "representation": job.representation, "split": "test"}
    X = {s: x.read() if isinstance(x, LayerOf) else x for s, x in job.X.items()}
    y = job.y
    args = (job.factory, X["train"], y["train"], X["dev"], y["dev"], X["test"], y["test"], job.n_classes)
    res = probe_information(*args, seeds=job.probe_seeds, bootstrap=job.bootstrap)
    rows = [{**base, **r} for r in res.rows]
    if job.controls:
        rows += [{**base, **r} for r in shuffled_label_control(
            *args, seeds=job.probe_seeds, bootstrap=job.bootstrap, permutations=job.permutations,
            permutation_seed=permutation_seed(job.key)).rows]
    pvi_rows = [{"layer": job.layer, "probe": job.probe, "representation": job.representation, "probe_seed": int(s),
                 "example_id": i, "label": int(t), "pvi_bits": float(v)}
                for s, log2q in zip(job.probe_seeds, res.log2q)
                for i, t, v in zip(job.test_ids, y["test"], pvi(log2q, res.log2q_null))]
    mdl_rows = []
    if job.mdl:
        m = online_codelength(job.factory, X["train"], y["train"], job.n_classes, seed=job.probe_seeds[0])
        mdl_rows.append({**base, "split": "train", **{k: m[k] for k in ("online_codelength_bits",
                                                                          "uniform_codelength_bits",
                                                                          "compression", "n")}})
    for name, table in (("mi", rows), ("mdl", mdl_rows), ("pvi", pvi_rows)):
        store.write_csv(job.paths[name], pd.DataFrame(table))
    seal_piece(job.paths["done"], job.key, {k: job.paths[k] for k in ("mi", "mdl", "pvi")}, **job.sidecar)
    return job.key


def run_pieces(jobs: Iterable[PieceJob], total: int, n_jobs: int = 1, progress: bool = True,
               desc: str = "probe pieces") -> int:
    """Fit ``total`` pieces from ``jobs`` (a lazy iterable: a piece's arrays are made when
    it is dispatched), in this process (``n_jobs`` 1) or in up to ``n_jobs`` worker
    processes; returns how many ran. Pieces whose key repeats are fitted once. A piece's
    ``scratch`` files are removed as soon as it is done."""
    n_jobs = max(1, min(int(n_jobs), total))
    running: dict[str, PieceJob] = {}

    def unique(it: Iterable[PieceJob]):
        seen = set()
        for job in it:
            if job.key in seen:
                drop_scratch(job)
                continue
            seen.add(job.key)
            running[job.key] = job
            yield job

    pbar = bar(total=total, desc=desc, enabled=progress)
    done = 0
    level = log_levels()
    try:
        if n_jobs == 1:
            for job in unique(jobs):
                drop_scratch(running.pop(fit_piece(job)))
                done += 1
                pbar.update(1)
        else:
            from joblib import Parallel, delayed

            pool = Parallel(n_jobs=n_jobs, backend="loky", return_as="generator_unordered",
                            pre_dispatch="2*n_jobs")
            for key in pool(delayed(fit_piece)(job, level) for job in unique(jobs)):
                drop_scratch(running.pop(key))
                done += 1
                pbar.update(1)
    finally:
        pbar.close()
    return done


def layer_arrays(reps: dict[str, dict[str, np.ndarray]], representation: str, layer: int, lazy: bool = False
                 ) -> dict[str, np.ndarray | LayerOf]:
    """split -> the [n, d] array of one hidden state of the stored representations, or with
    ``lazy`` where to read it (:class:`LayerOf`, read by ``fit_piece``)."""
    return {s: LayerOf(reps[s][representation], layer) if lazy else reps[s][representation][layer] for s in reps}
