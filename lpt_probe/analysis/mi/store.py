"""What an ``mi`` run keeps on disk: each condition's representations (``reps/``,
:class:`StoredRepresentations`) and the probe pieces (``pieces/``, :class:`ProbePieces`):
what each piece reads, its content key and files, the jobs that fit the pieces, and
collecting their tables (``mi.csv``, ``mdl.csv``, ``pvi.csv``).

A *piece* is one hidden state of one condition, probed (``lpt_probe.analysis.engine.pieces``).
``lpt_probe.analysis.mi.study.MIRun`` builds one of each once its data is loaded and holds
them (``run.reps``, ``run.pieces``); each takes what it reads in its constructor: the
settings, the output folder, the encoded probe splits and their fingerprints, the backbone,
and the study's answers about a condition's model (:class:`ConditionModels`: its content
key, what a probe at a hidden state reads, and the model itself, trained or loaded only
when asked). The representations remove the probe pieces fitted on a file they find damaged
through the ``piece_files`` they are given (:meth:`ProbePieces.files_of`). A piece is keyed
by its input and every probe setting, so it is reused only by an invocation that would
compute it identically; pieces that read the same input (a prompt's states below PL are the
frozen model's) are fitted once.
The work comes in per-condition steps (``reps.extract_reps``, ``pieces.sequence_jobs``)
that ``MIRun.phases`` names, so that either executor (``lpt_probe.analysis.engine.executors``)
can run each, here or as a Ray task.
"""

from __future__ import annotations

import logging
import shutil
from contextlib import ExitStack
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Protocol

import numpy as np
import pandas as pd

from ... import store
from ...model.backbone import Backbone
from ...probing import make_probe, parse_probe_grid
from ...runs.run import SPLITS
from ..engine.base import piece_done
from ..engine.pieces import PieceJob, ProbeFactory, layer_arrays
from ..engine.rep_files import StreamedSafetensors
from ..engine.representations import (constant_representation, extract_many, layer_sequences, open_representations,
                              representation_specs, write_representation_info)
from ..engine.conditions import Condition

if TYPE_CHECKING:
    from ...data.encoded import Encoded
    from ...model.late_prompt import LatePromptModel
    from ..config import MIConfig

__all__ = ["PIECE_FORMAT", "REPS_FORMAT", "ConditionModels", "ProbePieces", "StoredRepresentations"]

logger = logging.getLogger(__name__)
REPS_FORMAT = 2
PIECE_FORMAT = 3  # 3: PVI per probe seed, shuffled-label permutations per piece


class ConditionModels(Protocol):
    """What the stores ask the study about a condition's model (``MIRun`` answers)."""

    def model_key(self, cond: Condition) -> str:
        """The content key of what ``cond``'s representations come from."""

    def input_key(self, cond: Condition, layer: int) -> str:
        """The content key of what a probe at hidden state ``layer`` of ``cond`` reads."""

    def model_for(self, cond: Condition) -> LatePromptModel | Backbone | None:
        """The late-prompt model (trained or reused), the random backbone, or None (frozen)."""


class StoredRepresentations:
    """Each condition's vectors at every hidden state, extracted once into ``reps/`` (see the
    module docstring). ``out``: the run's folder; ``encoded``: split -> the encoded probe
    split; ``fingerprints``: split -> its fingerprint; ``backbone``: the frozen model;
    ``models``: the study's answers about each condition's model; ``identity`` (the loaded
    model's) and ``task`` (its name): what each sidecar records; ``piece_files``: the files of
    every probe piece fitted on a condition's representations (removed with them when they
    cannot be a real extraction); ``progress``: show progress bars."""

    def __init__(self, out: Path, encoded: dict[str, Encoded], fingerprints: dict[str, str], backbone: Backbone,
                 models: ConditionModels, identity: Any, task: str,
                 piece_files: Callable[[Condition], Iterable[Path]], progress: bool = False):
        self.out, self.encoded, self.fingerprints, self.backbone = Path(out), encoded, fingerprints, backbone
        self.models, self.identity, self.task = models, identity, task
        self.piece_files, self.progress = piece_files, progress

    def reps_folder(self, cond: Condition) -> tuple[Path, str]:
        key = store.content_key({"format": REPS_FORMAT, "model": self.models.model_key(cond),
                                 "data": self.fingerprints})
        return self.out / "reps" / f"{cond.name}-{key[:12]}", key

    def _reps_done(self, cond: Condition) -> bool:
        folder, key = self.reps_folder(cond)
        try:
            return all((folder / f"{s}.json").exists() and store.read_json_object(folder / f"{s}.json").get("key")
                       == key and (folder / f"{s}.safetensors").exists() for s in SPLITS)
        except store.DamagedFile:
            return False

    def missing_reps(self, conds: list[Condition]) -> list[Condition]:
        """The conditions whose representations are not stored (complete, same key) yet."""
        return [c for c in conds if not self._reps_done(c)]

    def check_stored_reps(self, conds: list[Condition]) -> list[Condition]:
        """Check the stored representations this run would reuse, before it starts (so before
        any table is set aside): a file whose sha256 differs from its sidecar stops the run
        (``DamagedFile``, one line; nothing is removed); a file that cannot be a real extraction
        (:func:`~.representations.constant_representation`: all zeros, or other labels) is
        removed with a warning, with every probe piece of its condition (fitted on it), and
        computed again. Returns the conditions whose files were removed."""
        redo = []
        for cond in conds:
            if not self._reps_done(cond):
                continue
            folder, _ = self.reps_folder(cond)
            for s in SPLITS:
                arrays, _ = open_representations(folder, s)  # the sha256 check: DamagedFile
                why = constant_representation(arrays, self.encoded[s].labels)
                if why:
                    logger.warning("%s/%s.safetensors cannot be a real extraction (%s): an earlier lpt_probe wrote it "
                                   "wrongly; computing the representations of %s again, and its probe pieces",
                                   folder, s, why, cond.name)
                    shutil.rmtree(folder)
                    for path in self.piece_files(cond):
                        path.unlink(missing_ok=True)
                    redo.append(cond)
                    break
        return redo

    def extract_reps(self, conds: list[Condition]) -> None:
        """Extract and store the representations of ``conds``: the frozen model and every
        prompt in one frozen pass per batch, random weights one by one, each batch's rows
        written straight to the files (``rep_files.StreamedSafetensors``), so memory holds a
        batch whatever the number of examples. A condition's file does not depend on which
        others share its pass, so a Ray task extracting one condition writes the same bytes."""
        shared = [c for c in conds if c.method in ("frozen", "lpt")]
        if shared:
            self._extract_into({c.name: self.models.model_for(c) for c in shared}, shared)
            logger.info("extracted %s", ", ".join(c.name for c in shared))
        for c in conds:
            if c.method == "random_weights":
                self._extract_into({c.name: None}, [c], backbone=self.models.model_for(c))
                logger.info("extracted %s", c.name)

    def _extract_into(self, models: dict, conds: list[Condition], backbone: Backbone | None = None) -> None:
        """One pass over each split for ``models``, into each condition's ``<split>.safetensors``,
        then its sidecar (with the file's sha256: the mark that it is complete)."""
        backbone = backbone or self.backbone
        L, d = backbone.num_hidden_layers, backbone.hidden_size
        for s in SPLITS:
            n = len(self.encoded[s])
            with ExitStack() as stack:
                files = {c.name: stack.enter_context(StreamedSafetensors(
                    self.reps_folder(c)[0] / f"{s}.safetensors",
                    representation_specs(L, n, d, models[c.name].l if models[c.name] is not None else None)))
                    for c in conds}
                extract_many(backbone, models, self.encoded[s], desc=f"extract {s}" if len(conds) > 1 else
                             f"{conds[0].name} {s}", progress=self.progress, into=files)
            for c in conds:
                self._save_reps_info(c, s)

    def load_reps(self, conds: list[Condition]) -> dict[str, dict[str, dict[str, np.ndarray]]]:
        """name -> split -> the stored arrays of every condition of ``conds``: labels in memory,
        the rest read one hidden state at a time as float32 (``open_representations``)."""
        out = {}
        for c in conds:
            folder, _ = self.reps_folder(c)
            out[c.name] = {s: open_representations(folder, s)[0] for s in SPLITS}  # read per hidden state
        return out

    def _save_reps_info(self, cond: Condition, split: str) -> None:
        folder, key = self.reps_folder(cond)
        info = {"key": key, "condition": asdict(cond), "model": self.identity,
                "model_key": self.models.model_key(cond), "task": self.task,
                "fingerprint": self.fingerprints[split]}
        write_representation_info(folder, split, info)


class ProbePieces:
    """Probe pieces of an ``mi`` run (see the module docstring). ``cfg``: the run's settings;
    ``out``: its folder; ``L``: the backbone's layers (hidden states 0..L); ``n_classes``: the
    task's labels; ``encoded``: split -> the encoded probe split; ``backbone``: the frozen
    model; ``models``: the study's answers about each condition's model and input; ``task``
    and ``model``: the task's name and the model's slug, the rows' labels in the tables."""

    def __init__(self, cfg: MIConfig, out: Path, L: int, n_classes: int, encoded: dict[str, Encoded],
                 backbone: Backbone, models: ConditionModels, task: str, model: str):
        self.cfg, self.out, self.L, self.n_classes = cfg, Path(out), L, n_classes
        self.encoded, self.backbone, self.models, self.task, self.model = encoded, backbone, models, task, model

    @property
    def representation_label(self) -> str:
        """``representation`` in mi.csv: the vector read (cls/mask/mean), or ``seq:<input>``."""
        return self.cfg.mi.probe_options.input_tag(self.cfg.mi.representation)

    def probe_settings(self, cond: Condition) -> dict[str, Any]:
        """Every probe setting a piece's key holds; the probe's construction (``kwargs``,
        ``init``) is the probe's answer (``ProbeOptions.settings``)."""
        c = self.cfg
        built = c.mi.probe_options.settings(parse_probe_grid(c.mi.probe, c.mi.probe_grid))
        return {"format": PIECE_FORMAT, "probe": c.mi.probe, "kwargs": built["kwargs"], "init": built["init"],
                "seeds": list(c.mi.probe_seeds), "bootstrap": c.bootstrap,
                "controls": bool(c.mi.controls and cond.method != "random_weights"), "mdl": c.mi.mdl,
                "control_permutations": c.mi.control_permutations,
                "n_classes": self.n_classes}

    def piece_paths(self, cond: Condition, layer: int) -> tuple[dict[str, Path], str]:
        key = store.content_key({"input": self.models.input_key(cond, layer), "probe": self.probe_settings(cond)})
        stem = self.out / "pieces" / f"h{layer}-{self.cfg.mi.probe}-{key[:16]}"
        return {k: stem.with_name(f"{stem.name}.{k}.csv") for k in ("mi", "mdl", "pvi")} | \
            {"done": stem.with_name(f"{stem.name}.json")}, key

    def files_of(self, cond: Condition) -> list[Path]:
        """The files of every probe piece that reads ``cond``'s hidden states 0..L."""
        return [path for layer in range(self.L + 1) for path in self.piece_paths(cond, layer)[0].values()]

    def piece_done(self, cond: Condition, layer: int) -> bool:
        paths, key = self.piece_paths(cond, layer)
        return piece_done(paths["done"], key, {k: paths[k] for k in ("mi", "mdl", "pvi")})

    def probe_factory(self):
        c = self.cfg
        kw = self.probe_settings(Condition("x", "frozen", 0, 0))["kwargs"]
        live = c.mi.probe_options.live_kwargs(self.backbone)  # e.g. layers copied from the backbone
        if live:  # not picklable: these probes fit in this process (ProbeOptions.in_process)
            return lambda seed: make_probe(c.mi.probe, self.n_classes, seed, **kw, **live)
        return ProbeFactory(c.mi.probe, self.n_classes, kw)  # picklable: pieces may run in worker processes

    def piece_job(self, cond: Condition, layer: int, X: dict, y: dict, scratch: tuple = ()) -> PieceJob:
        """What probing ``layer`` of ``cond`` needs (see ``lpt_probe.analysis.engine.pieces``)."""
        c = self.cfg
        paths, key = self.piece_paths(cond, layer)
        settings = self.probe_settings(cond)
        return PieceJob(key=key, paths=paths, sidecar={"condition": asdict(cond), "layer": layer, "settings": settings},
                        layer=layer, probe=c.mi.probe, representation=self.representation_label,
                        n_classes=self.n_classes, probe_seeds=tuple(c.mi.probe_seeds), bootstrap=c.bootstrap,
                        controls=settings["controls"], permutations=c.mi.control_permutations, mdl=c.mi.mdl,
                        test_ids=list(self.encoded["test"].ids), X=X, y=y, factory=self.probe_factory(),
                        scratch=scratch)

    def pending(self, conds: list[Condition]) -> list[tuple[Condition, int]]:
        """The (condition, hidden state) pieces still to fit, each distinct piece once: under
        the first condition that reads it (a prompt's states below PL are the frozen model's)."""
        todo, seen = [], set()
        for cond in conds:
            for layer in range(self.L + 1):
                key = self.piece_paths(cond, layer)[1]
                if key not in seen and not self.piece_done(cond, layer):
                    seen.add(key)
                    todo.append((cond, layer))
        return todo

    def vector_pieces(self, conds: list[Condition], reps: dict) -> tuple[int, Any]:
        """(how many pieces are missing, a lazy iterable of their jobs) for vector probes."""
        todo = self.pending(conds)

        def jobs():
            for cond, layer in todo:
                y = {s: reps[cond.name][s]["labels"] for s in SPLITS}
                yield self.piece_job(cond, layer, layer_arrays(reps[cond.name], self.cfg.mi.representation, layer,
                                                               lazy=True), y)

        return len(todo), jobs()

    def sequence_layers(self, conds: list[Condition]) -> dict[Condition, list[int]]:
        """condition -> the hidden states of its sequence-probe pieces still to fit."""
        layers_of: dict[Condition, list[int]] = {}
        for cond, layer in self.pending(conds):
            layers_of.setdefault(cond, []).append(layer)
        return layers_of

    def scratch_folder(self, cond: Condition | None = None) -> Path:
        """Where sequence-probe layer files live while their pieces are fitted (``cond``'s
        own folder, or the root of all): ``<out>/scratch``, never a result."""
        root = self.out / "scratch"
        return root if cond is None else root / f"{cond.name}-{self.models.model_key(cond)[:12]}"

    def clear_scratch(self) -> None:
        """Remove the scratch folder (after every piece that reads from it is done)."""
        shutil.rmtree(self.scratch_folder(), ignore_errors=True)

    def sequence_jobs(self, cond: Condition, layers: list[int]):
        """The piece jobs of ``cond`` at ``layers`` (ascending) for sequence probes: its hidden
        states are computed one after the other (one forward pass, a batch in memory), each
        written to a layer file per split in the scratch folder and dispatched as its piece
        (``PieceJob.scratch``: removed when the piece is done), so the next layer is computed
        while worker processes fit the probes of the previous ones, and no split's states
        are held in memory."""
        y = {s: np.asarray(self.encoded[s].labels) for s in SPLITS}
        model = self.models.model_for(cond)
        frozen, lpt = (model, None) if isinstance(model, Backbone) else (self.backbone, model)
        scratch = self.scratch_folder(cond)
        shutil.rmtree(scratch, ignore_errors=True)  # what an interrupted run left
        gens = {s: layer_sequences(frozen, lpt, self.encoded[s], self.cfg.mi.probe_options.reads_prompt,
                                   start=layers[0], stop=layers[-1], folder=scratch / s) for s in SPLITS}
        for items in zip(*(gens[s] for s in SPLITS)):
            layer = items[0][0]
            files = tuple(scratch / s / f"h{layer}.seq" for s in SPLITS)
            if layer in layers:
                yield self.piece_job(cond, layer, {s: seq for s, (_, seq) in zip(SPLITS, items)}, y, files)
            else:  # a piece already done: its states are not needed
                for f in files:
                    f.unlink(missing_ok=True)

    def sequence_pieces(self, conds: list[Condition]) -> tuple[int, Any]:
        """(how many pieces are missing, a lazy iterable of their jobs) for sequence probes."""
        layers_of = self.sequence_layers(conds)

        def jobs():
            for cond, layers in layers_of.items():
                yield from self.sequence_jobs(cond, layers)

        return sum(map(len, layers_of.values())), jobs()

    def collect(self, conds: list[Condition]) -> dict[str, pd.DataFrame]:
        frames: dict[str, list[pd.DataFrame]] = {"mi": [], "mdl": [], "pvi": []}
        task = self.task
        for cond in conds:
            for layer in range(self.L + 1):
                paths, _ = self.piece_paths(cond, layer)
                for k in frames:
                    part = pd.read_csv(paths[k]) if paths[k].stat().st_size > 1 else pd.DataFrame()
                    if part.empty:
                        continue
                    head = pd.DataFrame({"task": task, "model": self.model, "method": cond.method,
                                         "prompt_layer": cond.prompt_layer, "seed": cond.seed}, index=part.index)
                    # a piece is shared by the conditions that read the same input (a prompt's
                    # layers below PL are the frozen model's): label it with this run's settings
                    part = part.assign(probe=self.cfg.mi.probe, representation=self.representation_label)
                    frames[k].append(pd.concat([head, part], axis=1))
        out = {}
        for k, parts in frames.items():
            out[k] = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
            store.write_csv(self.out / f"{k}.csv", out[k])
        return out
