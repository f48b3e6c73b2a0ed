"""The study engine: a declared :class:`Study` and the four kinds of work an executor runs.

A *study* (``mi``, ``influence``) trains late prompts at some prompt layers and seeds on one
task and model (or reuses finished run folders), then measures them in content-keyed pieces.
:class:`Study` owns what every study shares: the loaded model, its settings
(``StudyConfig``), the device it runs on (the config keeps the ``--device`` asked for; the
study resolves it when it starts, so a Ray worker resolves ``auto`` on its own machine),
the conditions' run keys and folders, training or reusing a prompt (:meth:`Study.trained`),
and the time of each phase. A study declares its work in :meth:`Study.phases`, a generator
of phases, each one of the kinds below; the executors (``lpt_probe.analysis.engine.executors``: in
this process, or as Ray tasks) run any study's phases without knowing which study it is:

=======================  ==================================  ===================================
phase                    local executor                      Ray executor
=======================  ==================================  ===================================
:class:`TrainPrompts`    a sweep's cells (``runs.executors``  the sweep's cell tasks
                         ``run_local``): one lower-layer     (``runs.executors.run_ray``)
                         cache for every prompt
:class:`StudyCalls`      ``study.<method>(items)`` once, so  one task per item, calling the same
                         the items may share a pass          method of the same study in a worker
:class:`Pieces`          ``--jobs`` processes (joblib)       one task per piece
:class:`StreamedPieces`  ``study.<method>(*item)`` yields    one task per item: it computes and
                         piece jobs as it computes them      fits each piece as a task of its own
=======================  ==================================  ===================================

A phase names the method it calls as a study's attribute: a method of the study
(``influence``'s ``measure_pieces``) or, dotted, of an object the study holds (``mi``'s
``reps.extract_reps``: :func:`study_method`), so the executors need to know nothing else.
A worker builds the same study from the same settings and calls the same methods, so a
phase writes the same files under the same keys wherever it runs: a folder started under
one executor resumes under the other. The phases are yielded one at a time, so a phase may
depend on what the one before it wrote (``mi`` reads the representations that its extract
phase stored); code after a ``yield`` runs once the executor has finished that phase.

Every piece a study keeps on disk is content-keyed the same way: its files, then a JSON
sidecar written last with the piece's key and each file's sha256 (:func:`seal_piece`); a
piece is reused only when its sidecar names the key the study asks for and every file
still has its hash (:func:`piece_done`).
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Iterable, Iterator

from ... import store
from ...layers import parse_prompt_layers
from ...model.backbone import Backbone
from ...model.cache import LowerLayerCache
from ...model.late_prompt import LatePromptConfig
from ...model.loading import load_model, model_slug, resolve_device
from ...runs.run import TrainResult, run_config, train
from ...runs.trainer import TrainConfig
from .conditions import Condition, StudyConfig, run_folder

__all__ = ["Phase", "Pieces", "StreamedPieces", "Study", "StudyCalls", "TrainPrompts", "piece_done", "seal_piece",
           "study_method"]

logger = logging.getLogger(__name__)


def piece_done(sidecar: Path, key: str, files: dict[str, Path], legacy: dict[str, str] | None = None) -> bool:
    """Whether a content-keyed piece is done: its sidecar (written last, :func:`seal_piece`)
    names ``key`` and the sha256 of each of ``files`` (name -> path) as they are on disk now.
    ``legacy``: name -> the top-level field an older sidecar kept that file's hash in."""
    if not sidecar.exists():
        return False
    try:
        record = store.read_json_object(sidecar)
    except store.DamagedFile:
        return False
    hashes = record.get("files") or {name: record.get(field) for name, field in (legacy or {}).items()}
    return record.get("key") == key and all(
        path.exists() and hashes.get(name) is not None and store.file_sha256(path) == hashes.get(name)
        for name, path in files.items())


def seal_piece(sidecar: Path, key: str, files: dict[str, Path], **record: Any) -> None:
    """Mark a piece done once all its ``files`` are written: the sidecar with ``key``, each
    file's sha256 and ``record``, written last (what :func:`piece_done` checks). Every
    study's pieces are kept this way: ``mi``'s probe pieces and ``influence``'s."""
    store.write_json(sidecar, {"key": key, "files": {name: store.file_sha256(path) for name, path in files.items()},
                               **record})


def study_method(study: Any, name: str):
    """The method a phase names (``StudyCalls.method``, ``StreamedPieces.method``): a method
    of the study (``"measure_pieces"``), or of an object the study holds (``"reps.extract_reps"``:
    ``study.reps.extract_reps``)."""
    target = study
    for part in name.split("."):
        target = getattr(target, part)
    return target


@dataclass
class Phase:
    """One step of a study's work; ``name`` is its entry in the study's ``seconds``."""

    name: str


@dataclass
class TrainPrompts(Phase):
    """Train (or reuse) the late prompts of ``conditions`` (other conditions are skipped)."""

    conditions: list = field(default_factory=list)
    name: str = "train"


@dataclass
class StudyCalls(Phase):
    """``study.<method>(items)``: locally once with every item, on Ray once per item (``[item]``).
    ``method`` names a method of the study or, dotted, of an object it holds (:func:`study_method`).
    The method returns how many pieces it made when ``counts`` (else its result is ignored)."""

    method: str = ""
    items: list = field(default_factory=list)
    counts: bool = False


@dataclass
class Pieces(Phase):
    """``total`` independent probe pieces (``pieces.PieceJob``, picklable: they carry their
    arrays or where to read them, never the model) from the lazy iterable ``jobs``."""

    total: int = 0
    jobs: Iterable = ()
    processes: int = 1  # local worker processes (``--jobs``)


@dataclass
class StreamedPieces(Phase):
    """Pieces made while a study method computes them: ``study.<method>(*item)`` yields the
    piece jobs of ``item`` (``total`` over every item; ``method`` as :class:`StudyCalls`'s).
    ``in_process``: the pieces hold the
    live model (``ProbeOptions.in_process``), so they are fitted where they are made."""

    method: str = ""
    items: list = field(default_factory=list)
    total: int = 0
    in_process: bool = False
    processes: int = 1  # local worker processes (``--jobs``), unless ``in_process``


class Study:
    """What every study of late prompts shares (see the module docstring). A subclass sets
    ``phase_names`` (its entries in :attr:`seconds`), implements ``load_data`` (which sets
    :attr:`prompt_prepared`, the prompts' encoded data), ``conditions`` and ``phases``."""

    phase_names: ClassVar[tuple[str, ...]] = ("train",)
    freeze_backbone: ClassVar[bool] = False

    def __init__(self, cfg: StudyConfig, bundle=None):  # bundle: (model, tokenizer, info) already loaded
        self.cfg = cfg
        self.out = cfg.out_dir
        self.device = resolve_device(cfg.train.device)  # resolved here, where the study runs (a Ray worker: there)
        self.bundle = bundle or load_model(cfg.train.model, device=self.device, dtype=cfg.train.dtype)
        self.backbone = Backbone(self.bundle[0])
        if self.freeze_backbone:
            self.backbone.freeze()
        self.L = self.backbone.num_hidden_layers
        self.prompt_layers = parse_prompt_layers(cfg.grid.prompt_layers, self.L)
        self.slug = model_slug(cfg.train.model)
        self.seconds = {name: 0.0 for name in self.phase_names}  # this invocation's time per phase
        self.prompt_prepared = None  # ``runs.run.Prepared``: the prompts' model and data (``load_data``)
        self.models: dict[str, Any] = {}  # condition name -> the trained model, once trained or loaded
        self.model_keys: dict[str, str] = {}
        self.run_dirs: dict[str, str] = {}  # condition name -> its run folder, relative to ``out``

    # -- what a subclass declares ---------------------------------------------------------
    def load_data(self) -> None:
        raise NotImplementedError

    def conditions(self) -> list[Condition]:
        raise NotImplementedError

    def phases(self, conds: list[Condition]) -> Iterator[Phase]:
        """The work ``conds`` still need, one phase at a time (see the module docstring)."""
        raise NotImplementedError

    # -- the prompts ----------------------------------------------------------------------
    def train_config(self, seed: int) -> TrainConfig:
        return self.cfg.train_config(seed)

    def prompt_config(self, cond: Condition) -> LatePromptConfig:
        pc = self.cfg.prompt_config(cond.prompt_layer)
        pc.check_against(self.backbone)
        return pc

    def run_key(self, cond: Condition) -> str:
        """The content key of the run that trains the prompt of ``cond``."""
        return run_config(self.prompt_config(cond), self.train_config(cond.seed), self.prompt_prepared)["key"]

    def run_folder(self, cond: Condition) -> Path:
        return run_folder(self.out, self.cfg, cond, self.run_key(cond))

    def trained(self, cond: Condition, caches: dict[str, LowerLayerCache] | None = None) -> TrainResult:
        """Train the prompt of ``cond`` into its run folder, or reuse the finished run there
        (``runs.run.train``); ``caches``: the lower-layer cache of its start state, when one
        is at hand. Records the folder and the time."""
        t0 = time.perf_counter()
        folder = self.run_folder(cond)
        res = train(self.prompt_config(cond), self.train_config(cond.seed), folder, prepared=self.prompt_prepared,
                    caches=caches, progress=self.cfg.output.progress)
        self.run_dirs[cond.name] = os.path.relpath(folder, self.out)
        self.seconds["train"] += time.perf_counter() - t0
        logger.info("prompt %s: %s (test %s %.4f)", cond.name, "reused" if res.reused else "trained",
                    res.metrics.get("metric_name", "metric"), res.metrics.get("test_metric", float("nan")))
        return res
