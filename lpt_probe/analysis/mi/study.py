"""Per-layer I(h;y) with and without a late prompt: the library behind ``python -m lpt_probe.mi``.

The paper's Section 4 (Figure 2 right). ``MIConfig`` holds every setting; ``run_mi(cfg)``
does the work, resumably. For each prompt layer in ``prompt_layers`` (default: 1, the
middle and the last layer) and each seed it

1. trains the late prompt (few-shot, ``shots``), or reuses a finished run folder that holds
   exactly that run (``runs/<condition>-<key>``; the rules of ``lpt_probe.runs.folders``);
2. for vector probes (``linear``, ``mlp``) extracts the representation of every example at
   every hidden state 0..L once, to ``reps/<condition>-<key>/``; the hidden states below
   the prompt layer are the frozen model's, taken from one shared frozen pass
   (``lpt_probe.analysis.engine.representations``). Sequence probes (``transformer``) read each
   layer's whole sequence of states, recomputed layer by layer (one layer in memory);
3. fits one probe per hidden state on the probe train split, selects its hyperparameters
   on the probe dev split, scores on test (``lpt_probe.probing``), with the controls:
   shuffled labels, the frozen model without a prompt (whose layer 0 is the embedding
   baseline) and the same architecture with random weights; plus MDL online codelength
   and per-example PVI.

Every cached piece is **content-addressed**: a representation folder by the key of its
model (the training run's key, the frozen model's identity, or the random seed) and the
fingerprints of the encoded probe splits; a probe piece (``pieces/``) by the key of its
input (which model, which hidden state, which representation, which data) and every probe
setting. A piece is reused only when its stored key matches and its files are intact, so
changing any setting into the same ``--out`` gives what an empty folder would (changing
``--probe`` reuses the representations; rows of a late prompt below its prompt layer are
the frozen model's rows, computed once). ``mi.csv`` is assembled from exactly this
invocation's pieces. Where the work runs (this process, or Ray tasks with ``--executor
ray``) is ``lpt_probe.analysis.engine.executors``'s; the files are the same either way.

Probe data: the prompt is trained on the few-shot sample, but probes need more rows than
K=100 to estimate information; they use the task's full-data splits (train capped at
``probe_train_max`` rows, stratified with a fixed seed; dev for hyperparameters; test for
the estimate). No test row ever reaches a prompt or a probe during fitting.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, replace
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd

from ... import store
from ...data.encoded import encode_split
from ...data.sources import probe_splits
from ...model.backbone import Backbone
from ...model.cache import LowerLayerCache
from ...model.late_prompt import LatePromptModel
from ...model.loading import identity, random_identity, random_like
from ...probing import assert_disjoint, pooled_null
from ...runs.folders import load_run
from ...runs.run import SPLITS, load_data, prepare
from ...runs.executors import ExecutorConfig
from .compare import condition_differences, effects_table
from ..engine.base import Phase, Pieces, StreamedPieces, Study, StudyCalls, TrainPrompts
from .store import ProbePieces, StoredRepresentations
from ..engine.executors import study_executor
from ..results import MIResult
from ..config import PROBE_INPUTS, MIConfig  # noqa: F401  (re-exported: the settings live there)
from ..engine.conditions import Condition, StudyOutput, unique_conditions

logger = logging.getLogger(__name__)
COND_COLUMNS = ["task", "model", "method", "prompt_layer", "seed"]


def default_out(cfg: MIConfig) -> Path:
    return cfg.default_out()


def _sha(path: Path) -> str:
    return store.file_sha256(path)


class MIRun(Study):
    """One ``mi`` invocation: settings, the loaded model and data, the prompts and their
    representations (a :class:`~lpt_probe.analysis.engine.base.Study`). What it keeps on disk
    it holds once its data is loaded: :attr:`reps` (the representations,
    :class:`~lpt_probe.analysis.mi.store.StoredRepresentations`) and :attr:`pieces` (the probe
    pieces, :class:`~lpt_probe.analysis.mi.store.ProbePieces`); it answers their questions
    about a condition's model (``model_key``, ``input_key``, ``model_for``:
    :class:`~lpt_probe.analysis.mi.store.ConditionModels`)."""

    phase_names = ("train", "extract", "probe")

    def summary(self, mi: pd.DataFrame, diff: pd.DataFrame | None = None) -> str:
        """The text the command prints for this run's tables (``summary_table``; what
        ``MIResult.summary`` shows)."""
        return summary_table(mi, self.cfg, diff)

    def __init__(self, cfg: MIConfig, bundle=None):  # bundle: (model, tokenizer, info) already loaded
        super().__init__(cfg, bundle)
        self._random: dict[int, Backbone] = {}
        self.reps: StoredRepresentations | None = None  # built by ``load_data``: they read the probe data
        self.pieces: ProbePieces | None = None

    # -- data -------------------------------------------------------------------------
    def load_data(self) -> None:
        """The prompt's data (few-shot train, its dev, test) and the probes': every other
        non-test row of the task (``data.sources.probe_splits``), the same test split."""
        base = self.train_config(self.cfg.grid.seeds[0])
        self.prompt_prepared = prepare(base, bundle=self.bundle) if self.prompt_layers else None
        full = load_data(replace(base, shots=None, steps=1))
        prompt_rows = ([i for s in ("train", "dev") for i in getattr(self.prompt_prepared.data, s).ids]
                       if self.prompt_prepared else [])
        train, dev, self.probe_rows = probe_splits(full, prompt_rows, self.cfg.mi.probe_dev_size,
                                                   self.cfg.mi.probe_train_max)
        self.probe_data = replace(full, train=train, dev=dev)
        kind = self.backbone.template_kind
        tok = self.bundle[1]
        enc = {s: encode_split(self.probe_data.task, getattr(self.probe_data, s), tok, kind, self.cfg.train.max_length,
                               s, max_positions=self.backbone.max_positions) for s in SPLITS}
        self.encoded = enc
        self.n_classes = self.probe_data.task.num_labels
        assert_disjoint(*(enc[s].ids for s in SPLITS), *([prompt_rows] if prompt_rows else []),
                        names=list(SPLITS) + (["prompt train+dev"] if prompt_rows else []))
        self.fingerprints = {s: enc[s].fingerprint for s in SPLITS}
        self.pieces = ProbePieces(self.cfg, self.out, self.L, self.n_classes, enc, self.backbone, models=self,
                                  task=self.probe_data.task.name, model=self.slug)
        self.reps = StoredRepresentations(self.out, enc, self.fingerprints, self.backbone, models=self,
                                          identity=self.bundle[2]["identity"], task=self.probe_data.task.name,
                                          piece_files=self.pieces.files_of, progress=self.cfg.output.progress)

    # -- conditions and their keys ----------------------------------------------------
    def conditions(self) -> list[Condition]:
        conds = [Condition("frozen", "frozen", 0, 0)]
        conds += [Condition.lpt(k, s) for k in self.prompt_layers for s in self.cfg.grid.seeds]
        if self.cfg.mi.controls:
            conds.append(Condition(f"random-s{self.cfg.grid.seeds[0]}", "random_weights", 0, self.cfg.grid.seeds[0]))
        return unique_conditions(conds)

    def model_key(self, cond: Condition) -> str:
        """What a condition's representations come from: the frozen model's identity, the
        random weights' seed, or the prompt's run key."""
        if cond.name not in self.model_keys:
            if cond.method == "frozen":
                key = store.content_key(identity(self.bundle[2]))
            elif cond.method == "random_weights":
                key = store.content_key(random_identity(self.bundle[2], cond.seed))
            else:
                key = self.run_key(cond)
            self.model_keys[cond.name] = key
        return self.model_keys[cond.name]

    def shares_frozen_input(self, cond: Condition, layer: int) -> bool:
        """Whether a probe at ``layer`` of ``cond`` reads exactly the frozen model's input:
        a late prompt's text states below PL are the frozen model's; a sequence probe that
        reads the prompt positions too (``text+prompt``) sees them from hidden state PL-1
        on (the prompt joins there), so only its states below PL-1 are shared. The probe
        says which (``ProbeOptions.first_changed_state``)."""
        return cond.method == "lpt" and layer < self.cfg.mi.probe_options.first_changed_state(cond.prompt_layer)

    def input_key(self, cond: Condition, layer: int) -> str:
        """What a probe at ``layer`` of ``cond`` reads; where it is the frozen model's input
        (:meth:`shares_frozen_input`) the two conditions share one piece."""
        below = self.shares_frozen_input(cond, layer)
        src = self.conditions()[0] if below else cond
        what = self.cfg.mi.probe_options.input_tag(self.cfg.mi.representation, cond.method == "lpt" and not below)
        return store.content_key({"model": self.model_key(src), "layer": layer, "input": what,
                                  "data": self.fingerprints})

    # -- models -----------------------------------------------------------------------
    def model_for(self, cond: Condition, caches: dict[str, LowerLayerCache] | None = None
                  ) -> LatePromptModel | Backbone | None:
        """The late-prompt model (trained or reused), the random backbone, or None (frozen).
        ``caches``: the lower-layer cache of the prompt's start state, when one is at hand."""
        if cond.method == "frozen":
            return None
        if cond.method == "random_weights":
            if cond.seed not in self._random:
                self._random[cond.seed] = Backbone(random_like(self.bundle[0], cond.seed))
            return self._random[cond.seed]
        if cond.name not in self.models:  # stays loaded: extraction and the probes read it
            res = self.trained(cond, caches)
            model = res.model if res.model is not None else load_run(res.run_dir, self.device,
                                                                     bundle=self.bundle).model
            self.models[cond.name] = model.eval()
        return self.models[cond.name]

    # -- the work -----------------------------------------------------------------------
    def phases(self, conds: list[Condition]) -> Iterator[Phase]:
        """Vector probes: train the prompts whose representations are missing, extract them
        (the frozen model and the prompts in one frozen pass), then fit the pieces from the
        stored arrays. Sequence probes: train, then each condition computes its layers one
        after the other and hands each layer's piece out as it is computed."""
        if self.cfg.mi.sequence_probe:  # prompts first: training time is training only
            layers_of = self.pieces.sequence_layers(conds)
            yield TrainPrompts(conditions=list(layers_of))
            yield StreamedPieces("probe", method="pieces.sequence_jobs", items=list(layers_of.items()),
                                 total=sum(map(len, layers_of.values())),
                                 in_process=self.cfg.mi.probe_options.in_process, processes=self.cfg.mi.jobs)
            self.pieces.clear_scratch()
        else:
            missing = self.reps.missing_reps(conds)
            yield TrainPrompts(conditions=missing)  # train first: extraction timing is extraction only
            yield StudyCalls("extract", method="reps.extract_reps", items=missing)
            total, jobs = self.pieces.vector_pieces(conds, self.reps.load_reps(conds))
            yield Pieces("probe", total=total, jobs=jobs, processes=self.cfg.mi.jobs)


def warn_grid_edges(mi: pd.DataFrame) -> str | None:
    """One warning for the probes whose chosen hyperparameters sit at their grid's edge."""
    if "grid_edge" not in mi.columns:
        return None
    real = mi[mi["control"] == "none"]
    edges = real["grid_edge"].fillna("").astype(str)
    hit = edges[edges != ""]
    if hit.empty:
        return None
    counts = hit.str.split(",").explode().value_counts().to_dict()
    msg = (f"{len(hit)} of {len(real)} probes chose a hyperparameter at the edge of its grid "
           f"({', '.join(f'{k}: {v}' for k, v in counts.items())}); widen it with --probe-grid")
    logger.warning(msg)
    return msg


def run_mi(cfg: MIConfig, execution: ExecutorConfig | None = None) -> MIResult:
    """The whole analysis into ``cfg.output.out``; returns an :class:`~lpt_probe.analysis.results.MIResult`:
    the run, the tables (``mi``, ``mdl``, ``pvi``, ``diff``: DataFrames) and ``run.json`` (it
    unpacks as ``run, tables, meta``), with ``.summary()`` (the command's tables) and
    ``.plot()`` (its figure). ``execution``: where the work runs (default: this
    process; ``lpt_probe.analysis.engine.executors``); ``cfg.train.device`` is resolved where the study
    runs (Ray workers resolve ``auto`` themselves). Drawing is the caller's (the command
    draws ``mi_by_layer.pdf`` with ``lpt_probe.viz.plot_mi_by_layer``)."""
    executor = study_executor(execution)
    cfg = executor.settle(replace(cfg, out=str(cfg.out_dir)))
    out = cfg.out_dir
    with StudyOutput(out, "run.json", stale=("mi.csv", "mdl.csv", "pvi.csv", "mi_diff.csv", "mi_by_layer.pdf"),
                     overwrite=cfg.output.overwrite) as study:
        run = MIRun(cfg)
        run.load_data()
        conds = run.conditions()
        run.reps.check_stored_reps(conds)  # before start sets the tables aside: a damaged file costs none of them
        study.start(store.run_meta(status="running", settings=asdict(cfg), prompt_layers=run.prompt_layers,
                                   model=run.bundle[2], probe_data=run.probe_data.to_meta(),
                                   probe_fingerprints=run.fingerprints,
                                   probe_label_counts={s: np.bincount(run.encoded[s].labels,
                                                                      minlength=run.n_classes).tolist()
                                                       for s in SPLITS},
                                   truncation={s: run.encoded[s].truncation for s in SPLITS},
                                   probe_rows=run.probe_rows, conditions=[asdict(c) for c in conds],
                                   execution=asdict(executor.execution)))
        study.meta["phase_seconds"] = run.seconds  # filled as the phases run, kept if one fails
        fitted = executor.run(run, conds)  # the phases that are missing, here or on Ray (run.phases)
        frames = run.pieces.collect(conds)
        frames["diff"] = condition_differences(frames["pvi"], cfg.bootstrap)
        store.write_csv(out / "mi_diff.csv", frames["diff"])
        shuffled = frames["mi"][frames["mi"]["control"] == "shuffled_labels"] if len(frames["mi"]) else []
        study.meta.update(runs=run.run_dirs, model_keys=run.model_keys, pieces_fitted=fitted,
                          grid_edge_warning=warn_grid_edges(frames["mi"]),
                          shuffled_label_null=pooled_null(shuffled) if len(shuffled) else None)
    return MIResult(run, frames, study.meta)


def summary_table(mi: pd.DataFrame, cfg: MIConfig, diff: pd.DataFrame | None = None) -> str:
    """The printed table: mean I(h;y) per hidden state and condition, saying what it rests
    on; the pooled shuffled-label null; and with ``diff`` (``mi_diff.csv``) each prompt's
    difference to the frozen model, effects marked."""
    real = mi[mi["control"] == "none"]
    view = real.pivot_table(index="layer", columns=["method", "prompt_layer"], values="mi_bits", aggfunc="mean")
    head = (f"I(h;y) in bits ({cfg.mi.probe} probe, held-out test; null-model minus probe cross-entropy), mean over "
            f"{len(cfg.grid.seeds)} prompt seed(s) ({','.join(map(str, cfg.grid.seeds))}) x "
            f"{len(cfg.mi.probe_seeds)} probe seed(s)")
    shuffled = mi[mi["control"] == "shuffled_labels"]
    tail = ""
    if len(shuffled):
        null = pooled_null(shuffled)
        tail = (f"shuffled-label control ({cfg.mi.control_permutations} permutation(s) per row, its own per piece): "
                f"rows mean {shuffled['mi_bits'].mean():+.3f} bits (min {shuffled['mi_bits'].min():+.3f}, max "
                f"{shuffled['mi_bits'].max():+.3f}); pooled null of {null['n_draws']} single draws: 95% within "
                f"[{null['low']:+.3f}, {null['high']:+.3f}] bits")
    parts = [head, view.round(3).to_string(), tail]
    if diff is not None and len(diff):
        n_seeds = int(diff["n_seeds"].max())
        parts += [f"late prompt minus frozen model at each hidden state (bits; mean over {n_seeds} prompt seed(s) x "
                  f"{len(cfg.mi.probe_seeds)} probe seed(s); * = effect: the 95% paired bootstrap interval over test "
                  "examples excludes 0 and every seed agrees in sign)", effects_table(diff)]
    return "\n".join(x for x in parts if x)


__all__ = ["MIConfig", "MIRun", "Condition", "run_mi", "summary_table", "default_out", "PROBE_INPUTS"]
