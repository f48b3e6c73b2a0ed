"""The trade-off of Section 4, measured: the prompt's influence on the text and the label
signal's way down to the prompt, hidden state by hidden state. The library behind
``python -m lpt_probe.influence``.

The paper explains Figure 2 by two forces it never measures: an early prompt's label
signal must travel back through many frozen layers (*propagation distance*), a late
prompt has little *influence* on the text's hidden states. ``InfluenceConfig`` holds the
settings, ``run_influence(cfg)`` does the work, resumably; the measurement of one model
on one batch is :func:`measure_batch` (start reading there). For each prompt layer PL and
seed, at ``checkpoint`` ``init`` (the untrained prompt the run starts from: the same seed,
``torch.manual_seed(seed)`` right before building the model, as the trainer does, so it
equals the run's ``checkpoints/step-0``), every ``step-N`` of ``checkpoints`` and
``trained`` (the best-on-dev prompt), on ``influence_max`` examples of ``split``:

influence of the prompt on the text (hidden state j = the output of layer j)
  - ``attention_mass`` (j >= PL): the attention probability that layer j's text queries
    put on the l prompt keys, mean over heads; ``prediction`` = the query at the
    prediction position, ``text_mean`` = mean over the example's real tokens. In a
    decoder the prompt precedes the text, so every text query sees all l prompt keys.
    The probabilities come from the model itself (``Backbone.capture_attention``: its
    eager path), so SDPA / flash models give the eager numbers.
  - ``displacement`` = ||h_j - h_j^frozen|| / ||h_j^frozen|| and ``cosine`` between them
    (every j), at the text positions only: the late-prompt model's states (its own lower
    pass below PL, prompt positions dropped above) against the frozen model's on the text
    alone. Below PL both are the same computation: displacement 0, cosine 1, exactly.
    Hidden state L is after the decoders' final norm, as everywhere in lpt_probe.
  - ``logprob_drop_layer`` / ``logprob_drop_from`` (j >= PL, position ``prediction``):
    the gold label's log-probability AMONG THE LABELS (a log-softmax over the label words'
    logits, or the classifier's; never the whole vocabulary, :func:`gold_logprob`)
    with the prompt intact minus with the prompt's keys hidden from the text queries of
    layer j alone / of layers j..L (``Backbone.run_layers(blocked=...)``; prompt queries
    still run). Hiding it from every layer >= PL gives the frozen model's own logits: for
    BERT, RoBERTa, GPT-2 (positions only at the embeddings) and DeBERTa (relative
    positions) the same text-to-text computation, for rotary models (Llama) the same up to
    float rounding of the rotation at positions shifted by l (the text sits at l..l+n-1
    above PL, ``lpt_probe.model.late_prompt``; rotary scores depend on offsets only).

the label signal on its way down (loss = the model's own loss on the gold label)
  - ``grad_norm`` (j = PL-1..L): the norm of d loss / d h_j, at ``prediction`` and mean
    over real tokens of the per-token norms (``text_mean``); ``prompt`` (layer PL-1): the
    norm w.r.t. the inserted prompt itself (l x hidden; the generated prompt for
    generators). At j = L the gradient is w.r.t. the state the head reads.
  - ``grad_x_state_norm`` = ||g|| ||h|| and ``grad_dot_state`` = g . h (same positions as
    ``grad_norm``; at ``prompt`` h is the inserted prompt): scale-free beside the raw norm.
    A layer-normed model is (nearly) blind to the scale of its hidden states, so where the
    states are large the gradient is small for that reason alone, and raw norms of different
    layers do not compare; g . h is the change of the loss when h is scaled by (1 + eps),
    per eps, and ||g|| ||h|| bounds it. (The loss here is the model's own training loss,
    ``LatePromptModel.loss``: what the prompt's gradient is.)
  - ``grad_coherence``: ||mean_i g_i||^2 / mean_i ||g_i||^2 across examples (1 = every
    example pushes the same way, about 1/n = noise), of the gradient at ``prediction``,
    of the mean over real tokens of the per-token gradients (``text_mean``: the gradient
    w.r.t. one shift shared by every token, over n) and w.r.t. the prompt (``prompt``).

Per-example gradients come from one backward pass of the summed loss (examples do not
interact in a batch; eval mode). Values are means over examples with a percentile 95%
bootstrap over examples (``ci_low``, ``ci_high``; the coherence is recomputed on each
resample); ``n`` = examples.

Caching follows ``lpt_probe.analysis.mi.study``: prompts are trained (or finished run folders
reused) under ``runs/<condition>-<key>`` through ``lpt_probe.runs.run.train``; each
(condition, checkpoint) is one **content-addressed** piece (``pieces/``) keyed by the
model (run key and checkpoint, or for ``init`` what determines the initial prompt), the
measured data's fingerprint and every measurement setting; a piece is reused only when
its stored key matches and its CSV is intact. ``influence.csv`` is assembled from exactly
this invocation's pieces.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd
import torch

from ... import store
from ...model.late_prompt import LatePromptModel
from ...model.loading import identity
from ...progress import bar
from ...runs.executors import ExecutorConfig
from ...runs.folders import load_run
from ...runs.run import initial_model, prepare, write_npz
from ..engine.base import Phase, Study, StudyCalls, TrainPrompts, piece_done, seal_piece
from .measures import GRADIENT_LOSSES, QUANTITIES, coherence, coherence_replicates, forward_measures, gold_logprob  # noqa: F401
from .measures import gradient_measures, measure, measure_batch, prompt_keys_blocked  # noqa: F401
from .measures import resample_counts, summarise_coherence, summarise_mean  # noqa: F401 (re-exported)
from ..engine.executors import study_executor
from ..results import InfluenceResult
from ..config import InfluenceConfig  # noqa: F401  (re-exported: the settings live there)
from ..engine.conditions import Condition, StudyOutput, unique_conditions

logger = logging.getLogger(__name__)
Tensor = torch.Tensor
PIECE_FORMAT = 3  # 2: log-prob drops over the label words only; scale-free gradient measures; 3: per-example npz
LEGACY_SIDECAR = {"csv": "sha256", "npz": "examples_sha256"}  # where sidecars before the shared piece store kept the hashes
COLUMNS = ["task", "model", "method", "generator", "prompt_layer", "seed", "checkpoint", "layer", "quantity",
           "position", "value", "ci_low", "ci_high", "n"]


def default_out(cfg: InfluenceConfig) -> Path:
    return cfg.default_out()


# -- the run ------------------------------------------------------------------------------
class InfluenceRun(Study):
    """One ``influence`` invocation: settings, the loaded model and data, the pieces on disk
    (a :class:`~lpt_probe.analysis.engine.base.Study`)."""

    phase_names = ("train", "measure")
    freeze_backbone = True

    @staticmethod
    def summary(table: pd.DataFrame) -> str:
        """The text the command prints for an ``influence.csv`` table (``summary_table``; what
        ``InfluenceResult.summary`` shows)."""
        return summary_table(table)

    def load_data(self) -> None:
        self.prepared = self.prompt_prepared = prepare(self.train_config(self.cfg.grid.seeds[0]), bundle=self.bundle)
        self.data = self.prepared.encoded[self.cfg.influence.split].subsample(self.cfg.influence.influence_max)
        self.task = self.prepared.data.task

    def conditions(self) -> list[Condition]:
        return unique_conditions([Condition.lpt(k, s) for k in self.prompt_layers for s in self.cfg.grid.seeds])

    def phases(self, conds: list[Condition]) -> Iterator[Phase]:
        """Train the prompts whose trained pieces are missing, then measure each missing
        (prompt, checkpoint) piece."""
        todo = [(c, k) for c in conds for k in self.cfg.influence.checkpoint_names if not self.piece_done(c, k)]
        yield TrainPrompts(conditions=list(dict.fromkeys(c for c, k in todo if k != "init")))
        yield StudyCalls("measure", method="measure_pieces", items=todo, counts=True)

    def model_key(self, cond: Condition, checkpoint: str) -> str:
        """What determines the prompt measured: the run (and checkpoint), or for ``init``
        only what the initial prompt depends on (so changing --steps keeps init pieces)."""
        name = f"{cond.name}/{checkpoint}"
        if name not in self.model_keys:
            if checkpoint == "init":
                what = {"init": self.prompt_config(cond).to_dict(), "seed": cond.seed,
                        "model": identity(self.bundle[2]), "label_word_ids": self.prepared.label_word_ids,
                        "num_labels": self.task.num_labels}
                if self.prompt_config(cond).prompt_init == "states":  # drawn from the training examples
                    what["train_data"] = self.prepared.fingerprints()["train"]
            else:
                what = {"run": self.run_key(cond), "checkpoint": checkpoint}
            self.model_keys[name] = store.content_key(what)
        return self.model_keys[name]

    def model_for(self, cond: Condition, checkpoint: str) -> LatePromptModel:
        pc = self.prompt_config(cond)
        if checkpoint == "init":  # exactly as the trainer builds it before step 1
            return initial_model(pc, cond.seed, self.prepared, self.device, copy_backbone=False).eval()
        folder = self.trained(cond).run_dir  # reused: the train phase trained it (or it was done before)
        name = None if checkpoint == "trained" else f"checkpoints/{checkpoint}.safetensors"
        return load_run(folder, self.device, bundle=self.bundle, checkpoint=name).model.eval()

    def settings(self) -> dict:
        c = self.cfg
        return {"format": PIECE_FORMAT, "split": c.influence.split, "data": self.data.fingerprint,
                "bootstrap": c.bootstrap, "gradient_loss": c.influence.gradient_loss}

    def piece_paths(self, cond: Condition, checkpoint: str) -> tuple[Path, Path, str]:
        key = store.content_key({"model": self.model_key(cond, checkpoint), **self.settings()})
        stem = self.out / "pieces" / f"{cond.name}-{checkpoint}-{key[:16]}"
        return stem.with_name(stem.name + ".csv"), stem.with_name(stem.name + ".json"), key

    def piece_done(self, cond: Condition, checkpoint: str) -> bool:
        csv, done, key = self.piece_paths(cond, checkpoint)
        return piece_done(done, key, {"csv": csv, "npz": csv.with_suffix(".npz")}, LEGACY_SIDECAR)

    def measure_piece(self, cond: Condition, checkpoint: str) -> bool:
        """Measure one (condition, checkpoint) unless its piece is done; True if measured."""
        if self.piece_done(cond, checkpoint):
            return False
        model = self.model_for(cond, checkpoint)
        t0 = time.perf_counter()
        examples: dict = {}
        table = measure(model, self.backbone, self.data, self.cfg.influence.measure_batch_size, self.cfg.bootstrap,
                        desc=f"{cond.name} {checkpoint}", progress=self.cfg.output.progress,
                        loss=self.cfg.influence.gradient_loss, examples=examples)
        csv, done, key = self.piece_paths(cond, checkpoint)
        store.write_csv(csv, table)
        write_npz(csv.with_suffix(".npz"), examples)
        seal_piece(done, key, {"csv": csv, "npz": csv.with_suffix(".npz")}, condition=asdict(cond),
                   checkpoint=checkpoint, settings=self.settings())
        logger.info("measured %s %s in %.0f s", cond.name, checkpoint, time.perf_counter() - t0)
        return True

    def measure_pieces(self, todo: list[tuple[Condition, str]]) -> int:
        """Measure the (condition, checkpoint) pieces of ``todo`` not done yet; returns how many."""
        return sum(self.measure_piece(cond, ckpt) for cond, ckpt in bar(todo, desc="influence",
                                                                        enabled=self.cfg.output.progress))

    def collect(self, conds: list[Condition]) -> pd.DataFrame:
        parts = []
        for cond in conds:
            for ckpt in self.cfg.influence.checkpoint_names:
                part = pd.read_csv(self.piece_paths(cond, ckpt)[0])
                head = {"task": self.task.name, "model": self.slug, "method": "lpt",
                        "generator": self.cfg.late_prompt.generator, "prompt_layer": cond.prompt_layer, "seed": cond.seed,
                        "checkpoint": ckpt}
                parts.append(part.assign(**head))
        table = pd.concat(parts, ignore_index=True)[COLUMNS]
        store.write_csv(self.out / "influence.csv", table)
        self.collect_examples(conds)
        return table

    def collect_examples(self, conds: list[Condition]) -> None:
        """``influence_examples.csv`` (per example: prompt_layer, seed, checkpoint, quantity,
        position, layer, example, value, for ``EXAMPLE_QUANTITIES``) and ``influence_gram.npz``
        (``pl<PL>-s<seed>-<checkpoint>`` -> the prompt gradients' Gram matrix): what the
        Section 4 verdicts resample."""
        rows, grams = [], {}
        for cond in conds:
            for ckpt in self.cfg.influence.checkpoint_names:
                with np.load(self.piece_paths(cond, ckpt)[0].with_suffix(".npz")) as z:
                    for name in z.files:
                        if name == "gram":
                            grams[f"pl{cond.prompt_layer}-s{cond.seed}-{ckpt}"] = z[name]
                            continue
                        q, pos, j = name.split("|")
                        v = z[name]
                        rows.append(pd.DataFrame({"prompt_layer": cond.prompt_layer, "seed": cond.seed,
                                                  "checkpoint": ckpt, "quantity": q, "position": pos,
                                                  "layer": int(j), "example": np.arange(len(v)), "value": v}))
        store.write_csv(self.out / "influence_examples.csv", pd.concat(rows, ignore_index=True))
        write_npz(self.out / "influence_gram.npz", grams)


def run_influence(cfg: InfluenceConfig, execution: ExecutorConfig | None = None) -> InfluenceResult:
    """The whole analysis into ``cfg.output.out``; returns an :class:`~lpt_probe.analysis.results.InfluenceResult`:
    the run, ``influence.csv`` as a DataFrame and ``run.json`` (it unpacks as ``run, table, meta``),
    with ``.summary()`` (the command's table) and ``.plot()`` (its figure).
    ``execution``: where the work runs (default: this process; ``lpt_probe.analysis.engine.executors``);
    ``cfg.train.device`` is resolved where the study runs. Drawing is the caller's (the command
    draws ``influence_by_layer.pdf``)."""
    executor = study_executor(execution)
    cfg = executor.settle(replace(cfg, out=str(cfg.out_dir)))
    out = cfg.out_dir
    with StudyOutput(out, "run.json", stale=("influence.csv", "influence_examples.csv", "influence_gram.npz",
                                             "influence_by_layer.pdf"), overwrite=cfg.output.overwrite) as study:
        run = InfluenceRun(cfg)
        run.load_data()
        conds = run.conditions()
        study.start(store.run_meta(status="running", settings=asdict(cfg), prompt_layers=run.prompt_layers,
                                   model=run.bundle[2], data=run.prepared.data.to_meta(), split=cfg.influence.split,
                                   measured_examples=len(run.data), measured_fingerprint=run.data.fingerprint,
                                   measured_label_counts=np.bincount(run.data.labels,
                                                                     minlength=run.task.num_labels).tolist(),
                                   conditions=[asdict(c) for c in conds], checkpoints=cfg.influence.checkpoint_names,
                                   execution=asdict(executor.execution)))
        study.meta["phase_seconds"] = run.seconds  # filled as the phases run, kept if one fails
        todo = [(c, k) for c in conds for k in cfg.influence.checkpoint_names]
        measured = executor.run(run, conds)  # run.phases: here, or each piece a Ray task
        table = run.collect(conds)
        study.meta.update(pieces_measured=measured, pieces_reused=len(todo) - measured, runs=run.run_dirs,
                          model_keys=run.model_keys)
    return InfluenceResult(run, table, study.meta)


def summary_table(table: pd.DataFrame) -> str:
    """The printed table: for the trained prompts, per prompt layer (mean over seeds), the
    influence at the top layer and the signal reaching the prompt, init -> trained."""
    def pick(ckpt, q, p, layer=None):
        t = table[(table["checkpoint"] == ckpt) & (table["quantity"] == q) & (table["position"] == p)]
        if layer == "top":
            t = t[t["layer"] == t["layer"].max()]
        return t.groupby("prompt_layer")["value"].mean()

    view = pd.DataFrame({
        "attn_mass@L": pick("trained", "attention_mass", "prediction", "top"),
        "displacement@L": pick("trained", "displacement", "prediction", "top"),
        "drop_from_PL": table[(table["checkpoint"] == "trained") & (table["quantity"] == "logprob_drop_from")
                              & (table["layer"] == table["prompt_layer"])].groupby("prompt_layer")["value"].mean(),
        "grad_norm@prompt init": pick("init", "grad_norm", "prompt"),
        "coherence@prompt init": pick("init", "grad_coherence", "prompt"),
        "coherence@prompt trained": pick("trained", "grad_coherence", "prompt"),
    })
    n = int(table["n"].iloc[0])
    head = (f"influence of the prompt and the label signal reaching it ({n} examples, mean over "
            f"{table['seed'].nunique()} seed(s); L = top hidden state; drop in nats)")
    return head + "\n" + view.round(4).to_string()


__all__ = [
    "COLUMNS",
    "QUANTITIES",
    "Condition",
    "InfluenceConfig",
    "InfluenceRun",
    "coherence",
    "coherence_replicates",
    "default_out",
    "forward_measures",
    "gold_logprob",
    "gradient_measures",
    "measure",
    "measure_batch",
    "prompt_keys_blocked",
    "resample_counts",
    "run_influence",
    "summarise_coherence",
    "summarise_mean",
    "summary_table",
]
